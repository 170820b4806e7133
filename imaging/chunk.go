package imaging

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// ErrCorrupt is wrapped when stored bytes do not decode to the chunk the
// manifest names (bad zstd, wrong size or wrong hash).
var ErrCorrupt = errors.New("chunk is corrupt")

// Codec compresses and decompresses chunks. It is safe for concurrent use
// and keeps one zstd encoder or decoder per goroutine in flight.
type Codec struct {
	level zstd.EncoderLevel
	encs  sync.Pool
	decs  sync.Pool
}

// NewCodec returns a codec. Level is zstd's level (zstd.SpeedDefault when 0).
func NewCodec(level zstd.EncoderLevel) *Codec {
	if level == 0 {
		level = zstd.SpeedDefault
	}
	return &Codec{level: level}
}

// Compress appends the zstd frame of plain to dst.
func (c *Codec) Compress(dst, plain []byte) ([]byte, error) {
	e, _ := c.encs.Get().(*zstd.Encoder)
	if e == nil {
		var err error
		e, err = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(c.level),
			zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(zstd.MaxWindowSize>>6), // 8 MiB, enough for any chunk
			zstd.WithEncoderCRC(false),                 // chunks carry SHA-256
			zstd.WithZeroFrames(true))
		if err != nil {
			return dst, fmt.Errorf("zstd encoder: %w", err)
		}
	}
	out := e.EncodeAll(plain, dst)
	c.encs.Put(e)
	return out, nil
}

// Decode decompresses stored into dst (reusing its capacity) and checks
// that the result has the chunk's size and hash. A mismatch wraps
// ErrCorrupt.
func (c *Codec) Decode(dst, stored []byte, ch Chunk) ([]byte, error) {
	if int64(len(stored)) != ch.StoredBytes {
		return dst[:0], fmt.Errorf("chunk %s: %w: %d stored bytes, manifest says %d", ch.Hash, ErrCorrupt, len(stored), ch.StoredBytes)
	}
	d, _ := c.decs.Get().(*zstd.Decoder)
	if d == nil {
		var err error
		d, err = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(false),
			zstd.WithDecoderMaxMemory(MaxChunkBytes),
			zstd.WithDecoderMaxWindow(MaxChunkBytes))
		if err != nil {
			return dst[:0], fmt.Errorf("zstd decoder: %w", err)
		}
	}
	if int64(cap(dst)) < ch.SizeBytes {
		dst = make([]byte, 0, ch.SizeBytes)
	}
	out, err := d.DecodeAll(stored, dst[:0])
	c.decs.Put(d)
	if err != nil {
		return dst[:0], fmt.Errorf("chunk %s: %w: %v", ch.Hash, ErrCorrupt, err)
	}
	if int64(len(out)) != ch.SizeBytes {
		return out[:0], fmt.Errorf("chunk %s: %w: %d bytes, manifest says %d", ch.Hash, ErrCorrupt, len(out), ch.SizeBytes)
	}
	if Hash(sha256.Sum256(out)) != ch.Hash {
		return out[:0], fmt.Errorf("chunk %s: %w: hash mismatch", ch.Hash, ErrCorrupt)
	}
	return out, nil
}

var zeros [64 << 10]byte

// isZero reports whether b is all zeros.
func isZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeros))
		if !bytes.Equal(b[:n], zeros[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}
