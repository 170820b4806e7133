package mcast

// sender_cache.go: the caches of the sending goroutine: parity of groups lately encoded, chunks lately loaded.

import (
	"context"
	"fmt"
)

// parityCache keeps the parity of the groups encoded lately (for a repair,
// or for a pass that sends parity blocks), so that repeated repairs of a
// group are not encoded again.
type parityCache struct {
	m     map[groupKey][][]byte
	order []groupKey
}

const parityCacheGroups = 64

func (c *parityCache) get(k groupKey) ([][]byte, bool) {
	p, ok := c.m[k]
	return p, ok
}

func (c *parityCache) put(k groupKey, p [][]byte) {
	if c.m == nil {
		c.m = make(map[groupKey][][]byte)
	}
	if len(c.order) >= parityCacheGroups {
		delete(c.m, c.order[0])
		c.order = c.order[1:]
	}
	c.m[k] = p
	c.order = append(c.order, k)
}

// chunkCache keeps the last few chunks sent: repairs of the chunks just
// sent interleave with the first pass and would otherwise read them again.
type chunkCache struct {
	chunks []int
	bufs   [][]byte
	free   []byte
}

const cacheChunks = 4

func (c *chunkCache) get(chunk int) ([]byte, bool) {
	for i, ch := range c.chunks {
		if ch == chunk {
			return c.bufs[i], true
		}
	}
	return nil, false
}

// spare returns a buffer to read the next chunk into.
func (c *chunkCache) spare() []byte {
	if len(c.chunks) < cacheChunks {
		return nil
	}
	return c.free
}

func (c *chunkCache) put(chunk int, b []byte) {
	if len(c.chunks) == cacheChunks {
		// The oldest goes; its buffer was handed out by spare.
		c.chunks, c.bufs = c.chunks[1:], c.bufs[1:]
	}
	c.chunks = append(c.chunks, chunk)
	c.bufs = append(c.bufs, b)
	if len(c.chunks) == cacheChunks {
		c.free = c.bufs[0][:0]
	}
}

// load returns chunk's stored bytes: the manifest blob, or the chunk from
// cache, else from the source (and then cached).
func (s *sender) load(ctx context.Context, cache *chunkCache, chunk int) ([]byte, error) {
	if chunk < 0 {
		return s.blob, nil
	}
	if b, ok := cache.get(chunk); ok {
		return b, nil
	}
	b, err := s.cfg.Source.Chunk(ctx, chunk, cache.spare())
	if err != nil {
		return nil, fmt.Errorf("chunk %d: %w", chunk, err)
	}
	cache.put(chunk, b)
	return b, nil
}
