package imaging

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"github.com/google/go-cmp/cmp"
	"github.com/shoal-project/shoal/imaging/sign"
	"github.com/shoal-project/shoal/internal/atomicfile"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestCreateRewritesDamagedChunk: a chunk file already in the repository
// whose bytes no longer match its name is not trusted by the next Create:
// it is hashed, found wrong and written again, so that the new manifest
// names chunks the repository really holds.
func TestCreateRewritesDamagedChunk(t *testing.T) {
	const chunk = 64 << 10
	data := make([]byte, 4*chunk)
	rand.Read(data)
	repo, img := rawImage(t, data, chunk)
	for _, tc := range []struct {
		name   string
		damage func(b []byte) []byte
	}{
		{"flipped bit", func(b []byte) []byte { b[len(b)/2] ^= 1; return b }},
		{"zeroed", func(b []byte) []byte { return make([]byte, len(b)) }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-7] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(repo, filepath.FromSlash(ChunkPath(img.Chunks[1].Hash)))
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, tc.damage(b), 0o644); err != nil {
				t.Fatal(err)
			}
			src := filepath.Join(t.TempDir(), "again.raw")
			if err := os.WriteFile(src, data, 0o644); err != nil {
				t.Fatal(err)
			}
			var logBuf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logBuf, nil))
			img2, st, err := Create(context.Background(), src, repo, "again", CreateOptions{ChunkSizeBytes: chunk, Log: log})
			if err != nil {
				t.Fatal(err)
			}
			if st.NewChunks != 1 || st.RepairedChunks != 1 {
				t.Errorf("Create stored %d new chunks, repaired %d; want 1 and 1 (the damaged one)", st.NewChunks, st.RepairedChunks)
			}
			if want := img.Chunks[1].Hash.String(); !strings.Contains(logBuf.String(), "damaged chunk") || !strings.Contains(logBuf.String(), want) {
				t.Errorf("log %q does not say that chunk %s was damaged", logBuf.String(), want)
			}
			if _, err := Verify(context.Background(), img2, DirRepo(repo), ApplyOptions{}); err != nil {
				t.Errorf("Verify of the new image: %v", err)
			}
		})
	}
}

// TestCreateWriteOrder: every file Create writes goes through
// atomicfile.Write, chunks first, then manifest.json, then manifest.sig,
// so that a reader that finds a signature finds the manifest it signs:
// checked at every write, for a first create and for a re-create that
// replaces a signed manifest.
func TestCreateWriteOrder(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	manifest := filepath.Join(repo, filepath.FromSlash(ManifestPath("img")))
	sigPath := filepath.Join(repo, filepath.FromSlash(SigPath("img")))
	var order []string
	// consistent checks what a reader sees now: no signature, or one
	// over the manifest that is there.
	consistent := func(when string) {
		sig, err := os.ReadFile(sigPath)
		if err != nil {
			return
		}
		raw, _ := os.ReadFile(manifest)
		if err := sign.Verify(pub, raw, sig); err != nil {
			t.Errorf("%s: the signature on disk does not sign the manifest on disk: %v", when, err)
		}
	}
	orig := writeFile
	t.Cleanup(func() { writeFile = orig })
	var mu sync.Mutex // chunks are written in parallel
	writeFile = func(path string, data []byte, o atomicfile.Options) error {
		mu.Lock()
		defer mu.Unlock()
		kind := "chunk"
		switch path {
		case manifest:
			kind = "manifest"
		case sigPath:
			kind = "sig"
		}
		consistent("before writing " + kind)
		order = append(order, kind)
		err := orig(path, data, o)
		consistent("after writing " + kind)
		return err
	}
	for i, fill := range []byte{1, 2} {
		src := filepath.Join(dir, "disk.raw")
		data := make([]byte, 256<<10)
		rand.Read(data[:128<<10])
		data[200<<10] = fill
		if err := os.WriteFile(src, data, 0o644); err != nil {
			t.Fatal(err)
		}
		order = nil
		if _, _, err := Create(context.Background(), src, repo, "img", CreateOptions{ChunkSizeBytes: 64 << 10, SignKey: priv}); err != nil {
			t.Fatal(err)
		}
		// Collapse runs: the chunks, then the manifest, then the signature.
		var runs []string
		for _, k := range order {
			if len(runs) == 0 || runs[len(runs)-1] != k {
				runs = append(runs, k)
			}
		}
		if diff := cmp.Diff([]string{"chunk", "manifest", "sig"}, runs); diff != "" {
			t.Errorf("create %d: order of writes (-want +got):\n%s", i+1, diff)
		}
	}
}
