package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/internal/httpcount"
)

// BenchmarkResumeAfterKill is issue 15's resume figure: `shoal image
// apply` of a 1 GiB incompressible image from an HTTP repository is
// killed (SIGKILL, as a power loss) once the server has sent half the
// image, then run again over the same disk with no state file. moved/image
// is what the server sent over both runs, over the image's stored size
// (target at most 0.55); second/image is the second run's share.
//
//	go test -run '^$' -bench ResumeAfterKill -benchtime 1x ./cmd/shoal
func BenchmarkResumeAfterKill(b *testing.B) {
	dir := benchDir(b)
	bin := buildShoal(b, dir)
	src := filepath.Join(dir, "disk.raw")
	writeDisk(b, src, "random", 256)
	repo := filepath.Join(dir, "repo")
	if out, err := exec.Command(bin, "image", "create", "--unsigned", "--repo", repo, "--name", "big", src).CombinedOutput(); err != nil {
		b.Fatalf("image create: %v\n%s", err, out)
	}
	img, err := imaging.LoadImage(b.Context(), imaging.DirRepo(repo), "big", nil)
	if err != nil {
		b.Fatal(err)
	}
	stored := img.Manifest.StoredBytes
	h := &httpcount.Handler{H: http.FileServer(http.Dir(repo))}
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	apply := func(target string) *exec.Cmd {
		return exec.Command(bin, "image", "apply", "--insecure-unsigned", "--repo", srv.URL, "--name", "big", target)
	}
	var first, second int64
	for i := 0; b.Loop(); i++ {
		target := filepath.Join(dir, "target.img")
		os.Remove(target)
		h.Sent.Store(0)
		cmd := apply(target)
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		for h.Sent.Load() < stored/2 {
			time.Sleep(5 * time.Millisecond)
		}
		cmd.Process.Kill()
		cmd.Wait()
		first = h.Sent.Load()
		h.Sent.Store(0)
		if out, err := apply(target).CombinedOutput(); err != nil {
			b.Fatalf("second apply: %v\n%s", err, out)
		}
		second = h.Sent.Load()
		if out, err := exec.Command("cmp", src, target).CombinedOutput(); err != nil {
			b.Fatalf("the resumed target is not the image: %v\n%s", err, out)
		}
	}
	b.ReportMetric(float64(first+second)/float64(stored), "moved/image")
	b.ReportMetric(float64(second)/float64(stored), "second/image")
}
