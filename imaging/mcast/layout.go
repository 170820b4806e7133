// Package mcast is shoal's reliable multicast transport: a sender that
// announces an image, sends its manifest and chunks to a multicast group at
// a paced rate and serves repairs, and receivers that learn the session from
// the announce, verify the manifest and every chunk, and ask for what they
// miss (chunks, or blocks of Reed-Solomon groups within chunks) on the
// control group, suppressing requests other receivers already made.
//
// The wire format is in package wire and docs/protocol.md. The sender reads
// chunks from a Source (a repository, or the peer session's download: its
// leader's SkipSource and ReadySource); the receiver writes verified chunks
// to a Sink (an imaging.Writer).
package mcast

import (
	"fmt"
	"sync"

	"github.com/klauspost/reedsolomon"

	"github.com/shoal-project/shoal/imaging/mcast/wire"
)

// groupKey names one FEC group of one chunk.
type groupKey struct {
	chunk int // -1: the manifest blob
	group int
}

// before reports whether group a comes before group b in the first pass.
func before(a, b groupKey) bool {
	return a.chunk < b.chunk || a.chunk == b.chunk && a.group < b.group
}

// wireChunk is the chunk number on the wire of chunk (-1: the manifest).
func wireChunk(chunk int) uint32 {
	if chunk < 0 {
		return wire.ManifestChunk
	}
	return uint32(chunk)
}

// chunkIndex is the chunk a wire chunk number names (-1: the manifest).
func chunkIndex(c uint32) int {
	if c == wire.ManifestChunk {
		return -1
	}
	return int(c)
}

// layout is how one chunk's stored bytes are cut into blocks and FEC groups.
// Block i holds stored bytes [i*blockBytes, (i+1)*blockBytes); the last
// block may be short and is zero-padded for the erasure code. Group g holds
// data blocks [g*groupBlocks, (g+1)*groupBlocks) and as many parity blocks
// as it has data blocks.
type layout struct {
	storedBytes int
	blockBytes  int
	groupBlocks int
}

func (l layout) blocks() int { return (l.storedBytes + l.blockBytes - 1) / l.blockBytes }

func (l layout) groups() int { return (l.blocks() + l.groupBlocks - 1) / l.groupBlocks }

// groupData returns the number of data blocks in group g.
func (l layout) groupData(g int) int { return min(l.groupBlocks, l.blocks()-g*l.groupBlocks) }

// blockLen returns the length on the wire of shard s of group g: data
// blocks carry their real length, parity blocks a full block.
func (l layout) blockLen(g, s int) int {
	k := l.groupData(g)
	if s >= k {
		return l.blockBytes
	}
	i := g*l.groupBlocks + s
	return min(l.blockBytes, l.storedBytes-i*l.blockBytes)
}

// offset returns the offset in the stored bytes of data shard s of group g.
func (l layout) offset(g, s int) int { return (g*l.groupBlocks + s) * l.blockBytes }

func (l layout) valid() error {
	if l.storedBytes <= 0 || l.blockBytes <= 0 || l.groupBlocks <= 0 {
		return fmt.Errorf("layout %+v: sizes must be positive", l)
	}
	if l.groupBlocks > 128 {
		return fmt.Errorf("layout: %d blocks per group, at most 128", l.groupBlocks)
	}
	if l.groups() > 0xFFFE {
		return fmt.Errorf("layout: %d groups per chunk, at most %d", l.groups(), 0xFFFE)
	}
	return nil
}

// codecs caches one Reed-Solomon encoder per group size k (k data, k parity).
type codecs struct {
	mu  sync.Mutex
	enc map[int]reedsolomon.Encoder
}

func (c *codecs) get(k int) (reedsolomon.Encoder, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.enc[k]; ok {
		return e, nil
	}
	e, err := reedsolomon.New(k, k)
	if err != nil {
		return nil, fmt.Errorf("reed-solomon %d+%d: %w", k, k, err)
	}
	if c.enc == nil {
		c.enc = make(map[int]reedsolomon.Encoder)
	}
	c.enc[k] = e
	return e, nil
}

// groupShards returns the k data shards of group g of stored, each a full
// block (the last one copied into pad and zero-padded).
func groupShards(l layout, stored []byte, g int, pad []byte) [][]byte {
	k := l.groupData(g)
	shards := make([][]byte, k)
	for s := 0; s < k; s++ {
		off := l.offset(g, s)
		n := l.blockLen(g, s)
		if n == l.blockBytes {
			shards[s] = stored[off : off+n]
			continue
		}
		p := pad[:l.blockBytes]
		copy(p, stored[off:off+n])
		clear(p[n:])
		shards[s] = p
	}
	return shards
}
