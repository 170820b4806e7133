package mcast

// receiver_fec.go: assembling data blocks into FEC groups, and groups into chunks.

import (
	"fmt"
	"time"

	"github.com/shoal-project/shoal/imaging/mcast/wire"
)

// partial is a chunk being assembled.
type partial struct {
	chunk int // -1: manifest blob
	l     layout
	buf   []byte     // blocks*blockBytes
	have  [][]bool   // per group: shards received (data, then parity)
	count []int      // per group: distinct shards received
	par   [][][]byte // per group: parity shards received
	done  []bool
	left  int // groups not done
	// Requests, per group: when the next is due (zero: not scheduled),
	// and when data for the group last came.
	due  []time.Time
	last []time.Time
	// The highest group seen and when any datagram of the chunk came.
	maxGroup int
	lastAny  time.Time
	// lastSeq is the receiver's datagram count at the chunk's last
	// datagram; reqSeq, per group, the count when it was last asked for.
	// Counting datagrams rather than time keeps a receiver that was not
	// scheduled for a while from asking for what sits in its socket.
	lastSeq int64
	reqSeq  []int64
	// firstPass: the chunk's data came from the first pass, whose
	// cursor then says which groups are over.
	firstPass bool
}

func newPartial(chunk int, l layout, buf []byte) *partial {
	g := l.groups()
	if n := l.blocks() * l.blockBytes; cap(buf) >= n {
		buf = buf[:n] // old bytes do no harm: every block is overwritten
	} else {
		buf = make([]byte, n)
	}
	p := &partial{
		chunk: chunk, l: l,
		buf:  buf,
		have: make([][]bool, g), count: make([]int, g), par: make([][][]byte, g),
		done: make([]bool, g), left: g, due: make([]time.Time, g), last: make([]time.Time, g),
		reqSeq: make([]int64, g),
	}
	// One allocation for every group's shard flags, rather than one per
	// group as its first datagram comes.
	have := make([]bool, 2*l.blocks())
	for i := range p.have {
		k := l.groupData(i)
		p.have[i], have = have[:2*k:2*k], have[2*k:]
	}
	return p
}

// parityBuf returns a copy of parity block b, in a buffer reused from the
// parity of groups done; r.mu is held.
func (r *receiver) parityBuf(b []byte) []byte {
	var buf []byte
	if n := len(r.blocks); n > 0 {
		buf, r.blocks = r.blocks[n-1], r.blocks[:n-1]
	}
	return append(buf[:0], b...)
}

// releaseParity keeps group g's parity buffers for reuse and forgets them
// and the group's shard flags; r.mu is held.
func (r *receiver) releaseParity(p *partial, g int) {
	for j, b := range p.par[g] {
		if b != nil && len(r.blocks) < maxFreeBlocks {
			r.blocks = append(r.blocks, b)
		}
		p.par[g][j] = nil
	}
	clear(p.have[g])
}

// maxFreeBlocks bounds the parity buffers kept for reuse (two groups of
// 128 blocks each for every chunk the receiver may hold, at 16 chunks).
const maxFreeBlocks = 4096

func (r *receiver) layout(chunk int) (layout, bool) {
	l := layout{blockBytes: int(r.ann.BlockBytes), groupBlocks: int(r.ann.GroupBlocks)}
	switch {
	case chunk < 0:
		l.storedBytes = int(r.ann.ManifestBytes)
	case r.img != nil && chunk < r.chunks:
		l.storedBytes = int(r.img.Chunks[chunk].StoredBytes)
	default:
		return l, false
	}
	return l, l.valid() == nil
}

// data handles a data datagram; r.mu is held.
func (r *receiver) data(now time.Time, d wire.Data) {
	chunk := chunkIndex(d.Chunk)
	g, s := int(d.Group), int(d.Shard)
	n := int64(len(d.Block))
	r.stats.ReceivedBytes += n
	r.seq++
	r.lastData = now
	if r.opening || chunk >= 0 && r.img == nil {
		r.stats.NoRoom++ // no manifest yet
		return
	}
	l, ok := r.layout(chunk)
	if !ok || g >= l.groups() || s >= 2*l.groupData(g) || len(d.Block) != l.blockLen(g, s) {
		r.stats.Malformed++
		return
	}
	r.seqSeen(d.Seq)
	if d.Flags&wire.DataFirstPass != 0 {
		r.advance(groupKey{chunk, g})
	}
	if (chunk < 0 && r.img != nil) || (chunk >= 0 && (r.written[chunk] || r.writing[chunk])) {
		r.stats.DuplicateBytes += n
		return
	}
	p := r.partials[chunk]
	if p == nil {
		if chunk >= 0 && len(r.partials)+len(r.writing) >= r.cfg.BufferChunks {
			r.stats.NoRoom++
			r.lossNoRoom++ // lost to the sender too: it must slow down
			return
		}
		var buf []byte
		if n := len(r.free); n > 0 {
			buf, r.free = r.free[n-1], r.free[:n-1]
		}
		p = newPartial(chunk, l, buf)
		p.firstPass = d.Flags&wire.DataFirstPass != 0
		r.partials[chunk] = p
		delete(r.wholeDue, chunk)
	}
	if p.done[g] {
		r.stats.DuplicateBytes += n
		return
	}
	k := l.groupData(g)
	if p.have[g][s] {
		r.stats.DuplicateBytes += n
		return
	}
	p.have[g][s] = true
	p.count[g]++
	p.last[g] = now
	p.lastAny = now
	p.lastSeq = r.seq
	p.maxGroup = max(p.maxGroup, g)
	if s < k {
		copy(p.buf[l.offset(g, s):], d.Block)
	} else {
		if p.par[g] == nil {
			p.par[g] = make([][]byte, k)
		}
		p.par[g][s-k] = r.parityBuf(d.Block)
	}
	if p.count[g] < k {
		return
	}
	if err := r.decode(p, g); err != nil {
		// Forged or damaged shards: start the group again.
		r.log.Warn("group does not decode", "chunk", chunk, "group", g, "err", err)
		r.releaseParity(p, g)
		p.count[g] = 0
		return
	}
	p.done[g] = true
	r.releaseParity(p, g)
	p.left--
	if p.left > 0 {
		return
	}
	delete(r.partials, chunk)
	if chunk < 0 {
		r.manifest(p)
		return
	}
	r.writing[chunk] = true
	select {
	case r.writeQ <- p:
	default:
		// Cannot happen: the queue holds BufferChunks and so do we.
		delete(r.writing, chunk)
	}
}

// decode rebuilds group g's missing data blocks from parity.
func (r *receiver) decode(p *partial, g int) error {
	l := p.l
	k := l.groupData(g)
	missing := false
	for s := 0; s < k; s++ {
		if !p.have[g][s] {
			missing = true
			break
		}
	}
	if !missing {
		return nil
	}
	enc, err := r.codecs.get(k)
	if err != nil {
		return err
	}
	if cap(r.rsShards) < 2*k {
		r.rsShards = make([][]byte, 2*k)
	}
	shards := r.rsShards[:2*k]
	for s := 0; s < k; s++ {
		// The chunk's buffer has a full block's room for every block,
		// the short last one too (beyond the stored bytes, which is
		// never written out): blocks are decoded from and into it.
		off := l.offset(g, s)
		if !p.have[g][s] {
			shards[s] = p.buf[off : off : off+l.blockBytes] // empty: rebuilt in place
			continue
		}
		if n := l.blockLen(g, s); n < l.blockBytes {
			clear(p.buf[off+n : off+l.blockBytes]) // the erasure code's zero padding
		}
		shards[s] = p.buf[off : off+l.blockBytes]
	}
	for j := 0; j < k; j++ {
		shards[k+j] = nil
		if p.have[g][k+j] {
			shards[k+j] = p.par[g][j]
		}
	}
	err = enc.ReconstructData(shards)
	clear(shards) // no reference to the chunk kept
	if err != nil {
		return fmt.Errorf("reconstruct: %w", err)
	}
	return nil
}
