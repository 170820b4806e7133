package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/imaging"
)

// metric returns the value of the sample named exactly so (with its
// labels) on the server's /metrics.
func metric(t *testing.T, base, sample string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", sample, err)
			}
			return f
		}
	}
	t.Fatalf("%s/metrics has no %s", base, sample)
	return 0
}

// signedSite is a site's state directory (with its keys), a repository
// holding image "img" signed with them and an empty boot directory, all in
// dir; uniqueChunks counts the image's distinct chunks.
type signedSite struct {
	dir, state, repo, boot string
	img                    *imaging.Image
	uniqueChunks           int
}

// newSignedSite makes a signedSite whose image is an 8 MiB disk holding
// randomMiB MiB of random data after its first MiB.
func newSignedSite(t *testing.T, randomMiB int) signedSite {
	t.Helper()
	dir := t.TempDir()
	s := signedSite{dir: dir, state: filepath.Join(dir, "state"), repo: filepath.Join(dir, "repo"), boot: filepath.Join(dir, "boot")}
	for _, d := range []string{s.repo, s.boot} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	disk := filepath.Join(dir, "disk.img")
	data := make([]byte, 8<<20)
	if _, err := rand.Read(data[1<<20 : (1+randomMiB)<<20]); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(disk, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := run(ctx, []string{"key", "ensure", "--state", s.state}, io.Discard, io.Discard); err != nil {
		t.Fatalf("key ensure: %v", err)
	}
	if err := run(ctx, []string{"image", "create", "--state", s.state, "--repo", s.repo, "--name", "img", "--chunk-size", "256KiB", disk}, io.Discard, io.Discard); err != nil {
		t.Fatalf("image create: %v", err)
	}
	img, err := imaging.LoadImage(ctx, imaging.DirRepo(s.repo), "img", nil)
	if err != nil {
		t.Fatal(err)
	}
	unique := map[imaging.Hash]bool{}
	for _, c := range img.Chunks {
		unique[c.Hash] = true
	}
	s.img, s.uniqueChunks = img, len(unique)
	return s
}

// TestServeUpstreamCache: `shoal serve --upstream` in front of another
// `shoal serve` serves an image that `shoal image verify` checks (signed
// with the site's key, which both share); verified twice, the origin
// served each chunk once, and the cache's metrics count its hits.
func TestServeUpstreamCache(t *testing.T) {
	site := newSignedSite(t, 4)
	state, repo, boot, cacheDir := site.state, site.repo, site.boot, filepath.Join(site.dir, "cache")
	ctx := context.Background()
	origin := startServe(t, "--state", state, "--repo", repo, "--boot", boot)
	cache := startServe(t, "--state", state, "--upstream", origin+"/repo/", "--cache-dir", cacheDir, "--cache-bytes", "64M", "--boot", boot)
	for i := range 2 {
		var out strings.Builder
		if err := run(ctx, []string{"image", "verify", "--state", state, "--repo", cache + "/repo/", "--name", "img"}, &out, &out); err != nil {
			t.Fatalf("image verify %d through the cache: %v\n%s", i, err, out.String())
		}
	}
	// Each chunk once, the manifest and its signature once (the second
	// verify comes within the manifest's TTL).
	if got, want := metric(t, origin, `shoal_serve_http_requests_total{code="200",route="repo"}`), float64(site.uniqueChunks+2); got != want {
		t.Errorf("origin served %v repository files, want %v (%d chunks, manifest, signature)", got, want, site.uniqueChunks)
	}
	if got, want := metric(t, cache, "shoal_serve_repocache_misses_total"), float64(site.uniqueChunks+1); got != want {
		t.Errorf("cache misses = %v, want %v", got, want)
	}
	if got := metric(t, cache, "shoal_serve_repocache_hits_total"); got < float64(site.uniqueChunks) {
		t.Errorf("cache hits = %v, want at least %d", got, site.uniqueChunks)
	}
}
