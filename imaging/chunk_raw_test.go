package imaging

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/zstd"
)

func TestRawBlocks(t *testing.T) {
	random := make([]byte, 300<<10) // three blocks, the last short
	rand.Read(random)
	frame, err := NewCodec(0).Compress(nil, random)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(true))
	if err != nil {
		t.Fatal(err)
	}
	withCRC := enc.EncodeAll(random, nil)
	text, err := NewCodec(0).Compress(nil, bytes.Repeat([]byte("shoal "), 50<<10))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		stored []byte
		want   []byte // nil: not a frame of raw blocks
	}{
		{"incompressible", frame, random},
		{"with a content checksum", withCRC, random},
		{"compressible", text, nil},
		{"truncated", frame[:len(frame)-1], nil},
		{"a byte beyond the frame", append(bytes.Clone(frame), 0), nil},
		{"two frames", append(bytes.Clone(frame), frame...), nil},
		{"no magic", frame[1:], nil},
		{"header only", frame[:5], nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parts, ok := rawBlocks(nil, tc.stored)
			if ok != (tc.want != nil) {
				t.Fatalf("rawBlocks ok = %v, want %v", ok, tc.want != nil)
			}
			if !ok {
				return
			}
			if diff := cmp.Diff(tc.want, bytes.Join(parts, nil)); diff != "" {
				t.Errorf("the blocks are not the chunk (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWriterRawPath: chunks beyond the commit region, stored as raw
// blocks, are hashed and written without a decoder, and bad ones are
// refused all the same, writing nothing.
func TestWriterRawPath(t *testing.T) {
	const chunk = 256 << 10
	data := make([]byte, CommitBytes+4*chunk)
	rand.Read(data)
	repo, img := rawImage(t, data, chunk)
	dst := filepath.Join(t.TempDir(), "dst")
	w := newTestWriter(t, img, dst)
	const i = CommitBytes/chunk + 1
	ref := img.Chunks[i]
	good, err := DirRepo(repo).Chunk(context.Background(), ref.Chunk, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rawBlocks(nil, good); !ok {
		t.Fatal("an incompressible chunk is not stored as raw blocks: the test tests nothing")
	}
	other, err := DirRepo(repo).Chunk(context.Background(), img.Chunks[i+1].Chunk, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"another chunk's bytes", other},
		{"flipped bit", func() []byte { b := bytes.Clone(good); b[len(b)/2] ^= 1; return b }()},
		{"truncated", good[:len(good)-1]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := w.WriteStored(i, tc.b); !errors.Is(err, ErrCorrupt) {
				t.Errorf("WriteStored = %v, want %v", err, ErrCorrupt)
			}
			if w.Has(i) {
				t.Errorf("chunk %d marked written after bad data", i)
			}
		})
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got[ref.OffsetBytes:ref.OffsetBytes+ref.SizeBytes], make([]byte, ref.SizeBytes)) {
		t.Fatal("bad data reached the target")
	}
	if err := w.WriteStored(i, good); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(dst)
	if !bytes.Equal(got[ref.OffsetBytes:ref.OffsetBytes+ref.SizeBytes], data[ref.OffsetBytes:ref.OffsetBytes+ref.SizeBytes]) {
		t.Error("the chunk written is not the source's")
	}
	if !w.Has(i) || w.WrittenBytes() != ref.SizeBytes {
		t.Errorf("Has = %v, WrittenBytes = %d, want true, %d", w.Has(i), w.WrittenBytes(), ref.SizeBytes)
	}
}
