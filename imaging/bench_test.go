package imaging

import (
	"context"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/partition"
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

// BenchmarkScan measures the scan of a target that already holds the
// image (every chunk read and hashed, all found present) against cat of
// the same file to /dev/null (128 KiB reads), in the same run: the
// scan/cat metric is their ratio. "cold" drops the file's pages before
// each read (posix_fadvise DONTNEED after fsync), so that both read the
// disk, as a scan at boot does; "cached" leaves them in the page cache,
// where cat is a memory copy and the scan is bound by SHA-256 on the
// CPUs. cpu-s/GiB is the scan's user and system time per GiB. Set
// SHOAL_SCAN_BENCH_MIB for another size than 256 MiB.
func BenchmarkScan(b *testing.B) {
	size := int64(256 << 20)
	if s := os.Getenv("SHOAL_SCAN_BENCH_MIB"); s != "" {
		mib, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatalf("SHOAL_SCAN_BENCH_MIB: %v", err)
		}
		size = mib << 20
	}
	data := make([]byte, size)
	rand.Read(data)
	_, img := rawImage(b, data, DefaultChunkBytes)
	dst := filepath.Join(b.TempDir(), "dst")
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		b.Fatal(err)
	}
	data = nil
	for _, tc := range []struct {
		name         string
		cold, direct bool
	}{
		{"cold", true, false},
		{"cold-direct", true, true},
		{"cached", false, false},
	} {
		cold := tc.cold
		b.Run(tc.name, func(b *testing.B) {
			var catTime, scanTime, scanCPU time.Duration
			b.SetBytes(size)
			for range b.N {
				if cold {
					dropPages(b, dst)
				}
				t0 := time.Now()
				if err := catFile(dst); err != nil {
					b.Fatal(err)
				}
				catTime += time.Since(t0)

				pt, err := partition.OpenTarget(dst, img.Requirements(), partition.TargetOptions{})
				if err != nil {
					b.Fatal(err)
				}
				w, err := NewWriter(img, pt, nil) // wipes the ends: the last chunk is not present
				if err != nil {
					b.Fatal(err)
				}
				if cold {
					dropPages(b, dst)
				}
				cpu0 := cpuTime()
				t0 = time.Now()
				st, err := w.Scan(context.Background(), ScanOptions{Direct: tc.direct})
				scanTime += time.Since(t0)
				scanCPU += cpuTime() - cpu0
				if st.Direct != tc.direct {
					b.Fatalf("scan read with O_DIRECT: %v, want %v", st.Direct, tc.direct)
				}
				pt.Close()
				if err != nil {
					b.Fatal(err)
				}
				// All but the commit region's chunk and the last.
				if want := len(img.Chunks) - 2; st.PresentChunks < want {
					b.Fatalf("scan found %d chunks present, want %d", st.PresentChunks, want)
				}
			}
			b.ReportMetric(float64(scanTime)/float64(catTime), "scan/cat")
			b.ReportMetric(scanCPU.Seconds()/float64(b.N)/(float64(size)/(1<<30)), "cpu-s/GiB")
		})
	}
	// An empty disk (zeros written, read cold): the scan ends after
	// ZeroRunBytes of zero chunks that are not the image's.
	empty := filepath.Join(b.TempDir(), "empty")
	writeZeros(b, empty, size)
	b.Run("empty", func(b *testing.B) {
		var catTime, scanTime time.Duration
		var scanned int64
		for range b.N {
			dropPages(b, empty)
			t0 := time.Now()
			if err := catFile(empty); err != nil {
				b.Fatal(err)
			}
			catTime += time.Since(t0)
			pt, err := partition.OpenTarget(empty, img.Requirements(), partition.TargetOptions{})
			if err != nil {
				b.Fatal(err)
			}
			w, err := NewWriter(img, pt, nil)
			if err != nil {
				b.Fatal(err)
			}
			dropPages(b, empty)
			t0 = time.Now()
			st, err := w.Scan(context.Background(), ScanOptions{})
			scanTime += time.Since(t0)
			pt.Close()
			if err != nil {
				b.Fatal(err)
			}
			if st.PresentChunks != 0 || (size > 2*defaultZeroRunBytes && !st.StoppedEarly) {
				b.Fatalf("empty disk: %v", st)
			}
			scanned += st.ScannedBytes
		}
		b.ReportMetric(float64(scanTime)/float64(catTime), "scan/cat")
		b.ReportMetric(float64(scanned)/float64(b.N)/(1<<20), "scanned-MiB")
	})
}

// catFile reads path to its end in 128 KiB reads, as cat does.
func catFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 128<<10)
	for {
		if _, err := f.Read(buf); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

// writeZeros writes sizeBytes of zeros to path (not a sparse file: its
// reads come from the disk).
func writeZeros(b *testing.B, path string, sizeBytes int64) {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	zero := make([]byte, 1<<20)
	for off := int64(0); off < sizeBytes; off += int64(len(zero)) {
		if _, err := f.Write(zero[:min(int64(len(zero)), sizeBytes-off)]); err != nil {
			b.Fatal(err)
		}
	}
}

// dropPages writes path's dirty pages and drops them from the page cache,
// so that the next read comes from the disk.
func dropPages(b *testing.B, path string) {
	b.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		b.Fatalf("fadvise %s: %v", path, err)
	}
}
