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
	return &partial{
		chunk: chunk, l: l,
		buf:  buf,
		have: make([][]bool, g), count: make([]int, g), par: make([][][]byte, g),
		done: make([]bool, g), left: g, due: make([]time.Time, g), last: make([]time.Time, g),
		reqSeq: make([]int64, g),
	}
}

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
	if p.have[g] == nil {
		p.have[g] = make([]bool, 2*k)
	}
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
		p.par[g][s-k] = append([]byte(nil), d.Block...)
	}
	if p.count[g] < k {
		return
	}
	if err := r.decode(p, g); err != nil {
		// Forged or damaged shards: start the group again.
		r.log.Warn("group does not decode", "chunk", chunk, "group", g, "err", err)
		p.have[g], p.par[g], p.count[g] = nil, nil, 0
		return
	}
	p.done[g] = true
	p.par[g], p.have[g] = nil, nil
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
	pad := make([]byte, l.blockBytes)
	shards := make([][]byte, 2*k)
	for s := 0; s < k; s++ {
		if p.have[g][s] {
			off := l.offset(g, s)
			if n := l.blockLen(g, s); n < l.blockBytes {
				copy(pad, p.buf[off:off+n])
				shards[s] = pad
			} else {
				shards[s] = p.buf[off : off+n]
			}
		}
	}
	for j := 0; j < k; j++ {
		if p.have[g][k+j] {
			shards[k+j] = p.par[g][j]
		}
	}
	if err := enc.ReconstructData(shards); err != nil {
		return fmt.Errorf("reconstruct: %w", err)
	}
	for s := 0; s < k; s++ {
		if !p.have[g][s] {
			off := l.offset(g, s)
			copy(p.buf[off:off+l.blockLen(g, s)], shards[s])
		}
	}
	return nil
}
