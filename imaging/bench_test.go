package imaging

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkApplyIncompressible measures Apply's CPU path (read, decode,
// hash, write) on 256 MiB of random data into a file.
func BenchmarkApplyIncompressible(b *testing.B) {
	data := make([]byte, 256<<20)
	rand.Read(data)
	repo, img := rawImage(b, data, DefaultChunkBytes)
	dst := filepath.Join(b.TempDir(), "dst")
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		os.Remove(dst)
		tg, err := openTestTarget(img, dst)
		if err != nil {
			b.Fatal(err)
		}
		if err := Apply(context.Background(), img, DirRepo(repo), tg, ApplyOptions{}); err != nil {
			b.Fatal(err)
		}
		tg.Close()
	}
}
