package imaging

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
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
