package imaging

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkApplyIncompressible measures Target.Apply's CPU path (read, decode,
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
		tg := NewTarget(dst, TargetOptions{Create: true})
		if err := tg.Apply(context.Background(), img, DirRepo(repo), ApplyOptions{}); err != nil {
			b.Fatal(err)
		}
		if err := tg.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
