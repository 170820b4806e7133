// source_test.go: the leader serves chunks it no longer keeps in memory from its own target, not the server.
package session

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/partition"
)

// wordsDisk is sizeBytes of random words: text that compresses to a
// different size at each zstd level, as a file system's contents do
// (random bytes do not: they are stored raw at every level).
func wordsDisk(sizeBytes int, seed uint64) []byte {
	words := strings.Fields("shoal image chunk leader follower multicast manifest partition disk boot kernel initramfs verify signed repository server session epoch takeover")
	r := rand.New(rand.NewPCG(seed, seed))
	var b strings.Builder
	for b.Len() < sizeBytes {
		b.WriteString(words[r.IntN(len(words))])
		b.WriteByte(" \n"[r.IntN(2)])
	}
	return []byte(b.String()[:sizeBytes])
}

// TestLeaderSourceFromTarget: a chunk gone from the leader's cache is read
// back from its target and compressed again to the stored size the
// manifest names, for images made at Create's default level and at zstd's
// default level, so the server is never asked for it. (At Create's level
// the leader once recompressed at zstd's default only, and in the lab the
// Debian image's leader took 1.65 images from the server.)
func TestLeaderSourceFromTarget(t *testing.T) {
	for _, tc := range []struct {
		name  string
		level zstd.EncoderLevel
	}{
		{"create's level", imaging.CreateLevel},
		{"zstd's default", zstd.SpeedDefault},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "src.raw")
			if err := os.WriteFile(src, wordsDisk(8*testChunkBytes, 1), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			repoDir := filepath.Join(dir, "repo")
			if _, _, err := imaging.Create(ctx, src, repoDir, "img", imaging.CreateOptions{ChunkSizeBytes: testChunkBytes, Codec: imaging.NewCodec(tc.level)}); err != nil {
				t.Fatal(err)
			}
			repo := imaging.DirRepo(repoDir)
			img, err := imaging.LoadImage(ctx, repo, "img", nil)
			if err != nil {
				t.Fatal(err)
			}
			tpath := filepath.Join(dir, "target")
			if err := os.WriteFile(tpath, make([]byte, 8*testChunkBytes), 0o644); err != nil {
				t.Fatal(err)
			}
			tg, err := partition.OpenTarget(tpath, img.Requirements(), partition.TargetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tg.Close() })
			w, err := imaging.NewWriter(img, tg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := imaging.Fetch(ctx, w, repo, img.Chunks, imaging.ApplyOptions{}); err != nil {
				t.Fatal(err)
			}
			// A node whose server holds nothing: any chunk it asks for fails.
			n, _ := loopbackNode(t, nil, nil)
			n.w = w
			src2 := leaderSource{n: n}
			var smaller int // chunks stored smaller than their plain size
			for i, ref := range img.Chunks {
				got, err := src2.Chunk(ctx, i, nil)
				if err != nil {
					t.Fatalf("chunk %d: %v", i, err)
				}
				if int64(len(got)) != ref.StoredBytes {
					t.Fatalf("chunk %d: %d bytes, want the stored %d", i, len(got), ref.StoredBytes)
				}
				if _, err := imaging.NewCodec(0).Decode(nil, got, ref.Chunk); err != nil {
					t.Errorf("chunk %d: %v", i, err)
				}
				if ref.StoredBytes < ref.SizeBytes {
					smaller++
				}
			}
			if smaller == 0 {
				t.Fatal("no chunk compressed: the test shows nothing about levels")
			}
			if got := n.fromServer.Load(); got != 0 {
				t.Errorf("%d bytes from the server, want none", got)
			}
		})
	}
}
