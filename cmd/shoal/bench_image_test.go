package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"
)

// The image benchmarks compare `shoal image apply` with `dd bs=4M
// conv=fsync` of the raw disk, writing to the same filesystem in the same
// run, and measure peak RSS. They make large files: set SHOAL_BENCH_DIR to
// a directory with room (default: the system's temporary directory).
//
//	go test -run XXX -bench ImageApply -benchtime 1x ./cmd/shoal
//	go test -run XXX -bench ImageLarge -benchtime 1x ./cmd/shoal   # 8 GiB

func benchDir(b *testing.B) string {
	d := os.Getenv("SHOAL_BENCH_DIR")
	if d == "" {
		return b.TempDir()
	}
	dir, err := os.MkdirTemp(d, "shoal-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// buildShoal builds the shoal binary into dir.
func buildShoal(b *testing.B, dir string) string {
	bin := filepath.Join(dir, "shoal")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// timed runs a command and returns its wall time and peak RSS in bytes.
func timed(b *testing.B, name string, args ...string) (time.Duration, int64) {
	cmd := exec.Command(name, args...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	el := time.Since(start)
	if err != nil {
		b.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return el, ru.Maxrss * 1024
}

// writeDisk writes a raw disk of n chunks of 4 MiB: kind "half" leaves every
// other chunk zero and fills the rest alternately with random bytes and
// text; "random" fills every chunk with random bytes; "sparse8" (8 GiB)
// holds random data in one chunk of four.
func writeDisk(b *testing.B, path, kind string, chunks int) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	const chunk = 4 << 20
	text, err := os.ReadFile("image.go")
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, chunk)
	for i := range chunks {
		switch {
		case kind == "random", kind == "half" && i%4 == 1, kind == "sparse8" && i%4 == 0:
			rand.Read(buf)
		case kind == "half" && i%4 == 3:
			for j := 0; j < chunk; j += len(text) {
				copy(buf[j:], text)
			}
			copy(buf, fmt.Sprint(i)) // no two text chunks alike
		default:
			continue
		}
		if _, err := f.WriteAt(buf, int64(i)*chunk); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Truncate(int64(chunks) * chunk); err != nil {
		b.Fatal(err)
	}
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// BenchmarkImageApply: 1 GiB, half empty and incompressible. Each iteration
// runs dd and apply alternately three times and reports the medians and
// their ratio.
func BenchmarkImageApply(b *testing.B) {
	for _, kind := range []string{"half", "random"} {
		b.Run(kind, func(b *testing.B) {
			dir := benchDir(b)
			bin := buildShoal(b, dir)
			src := filepath.Join(dir, kind+".raw")
			writeDisk(b, src, kind, 256)
			repo := filepath.Join(dir, "repo")
			createTime, createRSS := timed(b, bin, "image", "create", "--repo", repo, "--name", kind, src)
			out := filepath.Join(dir, "out.raw")
			b.ResetTimer()
			for range b.N {
				var dd, apply []time.Duration
				var rss int64
				for range 3 {
					os.Remove(out)
					syscall.Sync()
					t, _ := timed(b, "dd", "if="+src, "of="+out, "bs=4M", "conv=fsync", "status=none")
					dd = append(dd, t)
					os.Remove(out)
					syscall.Sync()
					t, r := timed(b, bin, "image", "apply", "--repo", repo, "--name", kind, out)
					apply = append(apply, t)
					rss = max(rss, r)
				}
				b.ReportMetric(median(dd).Seconds(), "dd-s")
				b.ReportMetric(median(apply).Seconds(), "apply-s")
				b.ReportMetric(float64(median(apply))/float64(median(dd)), "apply/dd")
				b.ReportMetric(float64(rss)/(1<<20), "apply-maxrss-MiB")
			}
			b.ReportMetric(float64(1<<30)/1e6/createTime.Seconds(), "create-MB/s")
			b.ReportMetric(float64(createRSS)/(1<<20), "create-maxrss-MiB")
		})
	}
}

// BenchmarkImageLarge creates and applies an 8 GiB image (2 GiB of random
// data spread over it) and reports peak RSS of both.
func BenchmarkImageLarge(b *testing.B) {
	dir := benchDir(b)
	bin := buildShoal(b, dir)
	src := filepath.Join(dir, "big.raw")
	writeDisk(b, src, "sparse8", 2048)
	repo := filepath.Join(dir, "repo")
	out := filepath.Join(dir, "out.raw")
	b.ResetTimer()
	for range b.N {
		os.RemoveAll(repo)
		ct, crss := timed(b, bin, "image", "create", "--repo", repo, "--name", "big", src)
		os.Remove(out)
		at, arss := timed(b, bin, "image", "apply", "--repo", repo, "--name", "big", out)
		b.ReportMetric(float64(8<<30)/1e6/ct.Seconds(), "create-MB/s")
		b.ReportMetric(float64(crss)/(1<<20), "create-maxrss-MiB")
		b.ReportMetric(at.Seconds(), "apply-s")
		b.ReportMetric(float64(arss)/(1<<20), "apply-maxrss-MiB")
	}
}
