package repocache

import (
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/shoal-project/shoal/imaging"
)

// FuzzVerifyChunk: whatever an upstream sends as a chunk, verifyChunk
// never panics, and accepts it only when it decodes to bytes of the hash
// asked for.
func FuzzVerifyChunk(f *testing.F) {
	codec := imaging.NewCodec(0)
	plain := []byte("shoal shoal shoal shoal shoal")
	good, err := codec.Compress(nil, plain)
	if err != nil {
		f.Fatal(err)
	}
	h := imaging.Hash(sha256.Sum256(plain))
	f.Add(good, int64(0))
	f.Add(good, int64(len(good)))
	f.Add(good[:len(good)-1], int64(0))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd}, int64(0))
	f.Add(append(good, 0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0), int64(len(good)))
	f.Fuzz(func(t *testing.T, stored []byte, storedBytes int64) {
		err := verifyChunk(h, stored, storedBytes)
		if err != nil {
			if !errors.Is(err, ErrUnverified) {
				t.Fatalf("verifyChunk: %v does not wrap ErrUnverified", err)
			}
			return
		}
		if _, err := codec.Decode(nil, stored, imaging.Chunk{Hash: h, SizeBytes: int64(len(plain)), StoredBytes: int64(len(stored))}); err != nil {
			t.Fatalf("verifyChunk accepted what Codec.Decode refuses: %v", err)
		}
	})
}

// FuzzParsePath: the cache's path parsers accept only the repository's
// canonical paths.
func FuzzParsePath(f *testing.F) {
	f.Add("chunks/ab/ab" + "00000000000000000000000000000000000000000000000000000000000000"[:62] + ".zst")
	f.Add("images/debian-12/manifest.json")
	f.Add("images/../manifest.sig")
	f.Fuzz(func(t *testing.T, p string) {
		if h, ok := parseChunkPath(p); ok && imaging.ChunkPath(h) != p {
			t.Fatalf("parseChunkPath(%q) = %v: not its canonical path %q", p, h, imaging.ChunkPath(h))
		}
		if name, file, ok := parseImagePath(p); ok && "images/"+name+"/"+file != p {
			t.Fatalf("parseImagePath(%q) = %q, %q", p, name, file)
		}
	})
}
