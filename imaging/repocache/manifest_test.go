package repocache

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/imaging/sign"
)

// TestSignatureAfterTTL: the signature asked for just after the manifest
// is the one of the manifest served, even when the TTL ran out between
// the two requests; the manifest itself is asked of the upstream again.
func TestSignatureAfterTTL(t *testing.T) {
	f := newFixture(t, fixtureOptions{cfg: func(c *Config) { c.ManifestTTL = time.Millisecond }})
	if code, _, _ := f.get(imaging.ManifestPath(f.image.Name)); code != http.StatusOK {
		t.Fatalf("manifest: %d", code)
	}
	time.Sleep(5 * time.Millisecond)
	code, _, body := f.get(imaging.SigPath(f.image.Name))
	if code != http.StatusOK || body != string(f.image.Image.Sig) {
		t.Errorf("signature: %d, want 200 and the manifest's signature", code)
	}
	if n := f.origin.count("/" + imaging.ManifestPath(f.image.Name)); n != 1 {
		t.Errorf("upstream asked for the manifest %d times before the signature, want 1", n)
	}
	if code, _, _ := f.get(imaging.ManifestPath(f.image.Name)); code != http.StatusOK {
		t.Fatalf("manifest again: %d", code)
	}
	if n := f.origin.count("/" + imaging.ManifestPath(f.image.Name)); n != 2 {
		t.Errorf("upstream asked for the manifest %d times after its TTL, want 2", n)
	}
}

// TestStoredChunkResized: when a newly verified manifest gives a stored
// chunk another stored size (the repository's file was reencoded), the
// cache drops its copy and fetches the new one.
func TestStoredChunkResized(t *testing.T) {
	f := newFixture(t, fixtureOptions{cfg: func(c *Config) { c.ManifestTTL = time.Millisecond }})
	ctx := context.Background()
	m := f.image.Image.Manifest
	ri, ci := len(m.Regions)-1, 0
	ch := m.Regions[ri].Chunks[ci]
	path := imaging.ChunkPath(ch.Hash)
	if code, _, _ := f.get(imaging.ManifestPath(f.image.Name)); code != http.StatusOK {
		t.Fatalf("manifest: %d", code)
	}
	if code, _, _ := f.get(path); code != http.StatusOK {
		t.Fatalf("chunk: %d", code)
	}

	old, err := f.image.Repo.Chunk(ctx, ch, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Another encoding of the same bytes: a skippable zstd frame after it.
	reencoded := append(bytes.Clone(old), 0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4)
	if _, err := imaging.NewCodec(0).Decode(nil, reencoded, imaging.Chunk{Hash: ch.Hash, SizeBytes: ch.SizeBytes, StoredBytes: int64(len(reencoded))}); err != nil {
		t.Fatalf("the chunk with a skippable frame: %v", err)
	}
	if err := os.WriteFile(filepath.Join(f.image.RepoDir, filepath.FromSlash(path)), reencoded, 0o644); err != nil {
		t.Fatal(err)
	}
	m.Regions[ri].Chunks[ci].StoredBytes = int64(len(reencoded))
	m.StoredBytes += int64(len(reencoded) - len(old))
	raw, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for p, b := range map[string][]byte{imaging.ManifestPath(f.image.Name): raw, imaging.SigPath(f.image.Name): sign.Sign(f.key, raw)} {
		if err := os.WriteFile(filepath.Join(f.image.RepoDir, filepath.FromSlash(p)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	time.Sleep(5 * time.Millisecond)
	if code, _, body := f.get(imaging.ManifestPath(f.image.Name)); code != http.StatusOK || body != string(raw) {
		t.Fatalf("new manifest: %d", code)
	}
	code, _, body := f.get(path)
	if code != http.StatusOK || body != string(reencoded) {
		t.Errorf("chunk after the new manifest: %d, %d bytes; want 200 and the %d new bytes", code, len(body), len(reencoded))
	}
	if n := f.origin.count("/" + path); n != 2 {
		t.Errorf("upstream asked for the chunk %d times, want 2 (before and after)", n)
	}
}
