package imaging

// receive_bench_test.go: the receive path's CPU per byte (decode, verify, write) on incompressible chunks.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"os"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/shoal-project/shoal/partition"
)

// benchChunks is an image of incompressible chunks, stored as create
// stores them, read back into memory; the first CommitBytes hold no chunk
// of it that is measured (the writer keeps those in memory).
type benchChunks struct {
	img    *Image
	refs   []ChunkRef // the chunks beyond the commit region
	stored [][]byte   // their stored bytes
}

func newBenchChunks(b *testing.B, sizeBytes int64) *benchChunks {
	b.Helper()
	data := make([]byte, sizeBytes)
	rand.Read(data)
	repo, img := rawImage(b, data, DefaultChunkBytes)
	bc := &benchChunks{img: img}
	for _, r := range img.Chunks {
		if r.OffsetBytes < CommitBytes {
			continue
		}
		s, err := DirRepo(repo).Chunk(context.Background(), r.Chunk, nil)
		if err != nil {
			b.Fatal(err)
		}
		bc.refs = append(bc.refs, r)
		bc.stored = append(bc.stored, s)
	}
	if len(bc.refs) == 0 {
		b.Fatal("no chunk beyond the commit region")
	}
	return bc
}

// devNullWriter is a Writer of img whose target is /dev/null.
func devNullWriter(b *testing.B, img *Image, codec *Codec) *Writer {
	b.Helper()
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	w, err := NewWriter(img, &partition.Target{Path: os.DevNull, File: f, Created: true}, codec)
	if err != nil {
		b.Fatal(err)
	}
	return w
}

// BenchmarkReceivePath measures what a receiver does with each verified
// chunk, one step at a time and all of them (WriteStored): zstd decode of
// an incompressible chunk, SHA-256, the write to /dev/null. Run with -cpu 1
// for the figure per core.
func BenchmarkReceivePath(b *testing.B) {
	bc := newBenchChunks(b, 32<<20)
	chunkBytes := bc.refs[0].SizeBytes
	b.Run("zstd", func(b *testing.B) {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxChunkBytes), zstd.WithDecoderMaxWindow(MaxChunkBytes))
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		out := make([]byte, 0, chunkBytes)
		b.SetBytes(chunkBytes)
		for i := range b.N {
			if out, err = d.DecodeAll(bc.stored[i%len(bc.stored)], out[:0]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sha256", func(b *testing.B) {
		plain := make([]byte, chunkBytes)
		rand.Read(plain)
		b.SetBytes(chunkBytes)
		for range b.N {
			sha256.Sum256(plain)
		}
	})
	b.Run("write", func(b *testing.B) {
		w := devNullWriter(b, bc.img, nil)
		plain := make([]byte, chunkBytes)
		b.SetBytes(chunkBytes)
		for i := range b.N {
			ref := bc.refs[i%len(bc.refs)]
			if _, err := w.t.File.WriteAt(plain[:ref.SizeBytes], ref.OffsetBytes); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode+verify", func(b *testing.B) {
		codec := NewCodec(0)
		out := make([]byte, 0, chunkBytes)
		b.SetBytes(chunkBytes)
		for i := range b.N {
			var err error
			if out, err = codec.Decode(out[:0], bc.stored[i%len(bc.stored)], bc.refs[i%len(bc.refs)].Chunk); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("WriteStored", func(b *testing.B) {
		codec := NewCodec(0)
		var w *Writer
		b.SetBytes(chunkBytes)
		for i := range b.N {
			j := i % len(bc.refs)
			if j == 0 {
				w = devNullWriter(b, bc.img, codec) // a chunk written is not written again
			}
			if err := w.WriteStored(bc.refs[j].Index, bc.stored[j]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
