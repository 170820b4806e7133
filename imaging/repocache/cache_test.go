package repocache

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/imaging/sign"
)

// TestFetchTwice: an image fetched twice through the cache is fetched from
// the upstream once (each chunk and the manifest once), the second time is
// all hits, and each response carries its Cache-Control.
func TestFetchTwice(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.fetchImage()
	f.fetchImage()
	img := f.image.Image
	for _, c := range img.Chunks {
		if n := f.origin.count("/" + imaging.ChunkPath(c.Hash)); n != 1 {
			t.Errorf("upstream served chunk %d %d times, want 1", c.Index, n)
		}
	}
	if n := f.origin.count("/" + imaging.ManifestPath(f.image.Name)); n != 1 {
		t.Errorf("upstream served the manifest %d times within its TTL, want 1", n)
	}
	var stored int64
	for _, c := range img.Chunks {
		stored += c.StoredBytes
	}
	st := f.cache.Stats()
	want := Stats{Hits: int64(len(img.Chunks)) + 2 + 1, Misses: int64(len(img.Chunks)) + 1,
		UpstreamBytes: stored + int64(len(img.Raw)+len(img.Sig)), StoredChunks: len(img.Chunks), StoredBytes: stored}
	if d := cmp.Diff(want, st); d != "" {
		t.Errorf("Stats (-want +got):\n%s", d)
	}
	for _, tc := range []struct {
		path, cacheControl string
		code               int
	}{
		{imaging.ChunkPath(img.Chunks[0].Hash), ChunkCacheControl, http.StatusOK},
		{imaging.ManifestPath(f.image.Name), ManifestCacheControl, http.StatusOK},
		{imaging.SigPath(f.image.Name), ManifestCacheControl, http.StatusOK},
		{imaging.ChunkPath(imaging.Hash{1}), "no-store", http.StatusNotFound},
		{"images/site/other.json", "", http.StatusNotFound},
		{"../etc/passwd", "", http.StatusNotFound},
	} {
		t.Run(tc.path, func(t *testing.T) {
			code, h, _ := f.get(tc.path)
			if code != tc.code || h.Get("Cache-Control") != tc.cacheControl {
				t.Errorf("GET %s: %d, Cache-Control %q; want %d, %q", tc.path, code, h.Get("Cache-Control"), tc.code, tc.cacheControl)
			}
		})
	}
}

// TestCoalesce: many clients asking for the same chunk at once, while the
// upstream is slow, make one upstream fetch, and all get the chunk.
func TestCoalesce(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	gate := make(chan struct{})
	f.origin.set(func(o *origin) { o.gate = gate })
	var arrived atomic.Int64
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		f.cache.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	c := f.image.Image.Chunks[0]
	want, err := f.image.Repo.Chunk(context.Background(), c.Chunk, nil)
	if err != nil {
		t.Fatal(err)
	}
	const clients = 32
	var wg sync.WaitGroup
	errs := make([]error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			repo, err := imaging.NewHTTPRepo(front.URL+"/", nil)
			if err != nil {
				errs[i] = err
				return
			}
			repo.Attempts = 1
			got, err := repo.Chunk(context.Background(), c.Chunk, nil)
			if err == nil && !bytes.Equal(got, want) {
				err = errors.New("wrong bytes")
			}
			errs[i] = err
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for arrived.Load() < clients && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if arrived.Load() < clients {
		t.Fatalf("only %d of %d clients reached the cache", arrived.Load(), clients)
	}
	time.Sleep(100 * time.Millisecond) // let them all get to the fetch in flight
	close(gate)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("client %d: %v", i, err)
		}
	}
	if n := f.origin.count("/" + imaging.ChunkPath(c.Hash)); n != 1 {
		t.Errorf("upstream got %d requests for the chunk from %d clients at once, want 1", n, clients)
	}
	if st := f.cache.Stats(); st.Misses != 1 {
		t.Errorf("Stats.Misses = %d, want 1", st.Misses)
	}
}

// TestCorruptChunk: whatever is wrong with what the upstream sends for a
// chunk, the client gets 502, nothing is stored, and a later good fetch
// works.
func TestCorruptChunk(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	img := f.image.Image
	// The manifest first, so that the cache knows the stored sizes.
	if code, _, body := f.get(imaging.ManifestPath(f.image.Name)); code != http.StatusOK {
		t.Fatalf("manifest: %d %s", code, body)
	}
	good := func(c imaging.ChunkRef) []byte {
		b, err := f.image.Repo.Chunk(context.Background(), c.Chunk, nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for i, tc := range []struct {
		name    string
		corrupt func(b, other []byte) []byte
	}{
		{"flipped byte", func(b, _ []byte) []byte { b = bytes.Clone(b); b[len(b)/2] ^= 0x40; return b }},
		{"cut short", func(b, _ []byte) []byte { return b[:len(b)-10] }},
		{"another chunk", func(_, other []byte) []byte { return other }},
		{"not zstd", func(b, _ []byte) []byte { return bytes.Repeat([]byte("x"), len(b)) }},
		{"longer than the manifest says", func(b, _ []byte) []byte {
			// A skippable zstd frame after the chunk: decodes to the same bytes.
			return append(bytes.Clone(b), 0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, other := img.Chunks[i], img.Chunks[(i+1)%len(img.Chunks)]
			path := "/" + imaging.ChunkPath(c.Hash)
			bad := tc.corrupt(good(c), good(other))
			f.origin.set(func(o *origin) {
				o.override = func(w http.ResponseWriter, r *http.Request) bool {
					if r.URL.Path != path {
						return false
					}
					w.Write(bad)
					return true
				}
			})
			code, _, body := f.get(imaging.ChunkPath(c.Hash))
			if code != http.StatusBadGateway || !strings.Contains(body, "unverified") {
				t.Errorf("corrupt chunk: %d %q, want 502 saying unverified", code, body)
			}
			if _, err := os.Stat(filepath.Join(f.dir, filepath.FromSlash(imaging.ChunkPath(c.Hash)))); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("corrupt chunk stored: Stat = %v", err)
			}
			f.origin.set(func(o *origin) { o.override = nil })
			code, h, body := f.get(imaging.ChunkPath(c.Hash))
			if code != http.StatusOK || body != string(good(c)) || h.Get("Cache-Control") != ChunkCacheControl {
				t.Errorf("good chunk after a corrupt one: %d (%d bytes), Cache-Control %q", code, len(body), h.Get("Cache-Control"))
			}
		})
	}
	if st := f.cache.Stats(); st.Failures != 5 || st.StoredChunks != 5 {
		t.Errorf("Stats: %d failures, %d chunks stored; want 5 and 5", st.Failures, st.StoredChunks)
	}
}

// TestUpstreamDown: with the upstream gone, a chunk not cached is a 502
// that says why, a cached chunk is served, and a manifest past its TTL is
// served from the last verified copy (also after a restart).
func TestUpstreamDown(t *testing.T) {
	f := newFixture(t, fixtureOptions{cfg: func(c *Config) { c.ManifestTTL = time.Millisecond }})
	img := f.image.Image
	cached := imaging.ChunkPath(img.Chunks[0].Hash)
	if code, _, _ := f.get(cached); code != http.StatusOK {
		t.Fatalf("chunk: %d", code)
	}
	if code, _, _ := f.get(imaging.ManifestPath(f.image.Name)); code != http.StatusOK {
		t.Fatalf("manifest: %d", code)
	}
	f.origin.set(func(o *origin) {
		o.override = func(w http.ResponseWriter, r *http.Request) bool {
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return true
		}
	})
	code, _, body := f.get(imaging.ChunkPath(img.Chunks[1].Hash))
	if code != http.StatusBadGateway || !strings.Contains(body, "503") {
		t.Errorf("chunk from an upstream answering 503: %d %q, want 502 with the upstream's status", code, body)
	}
	// Nothing listening at all.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	again := f.newCache(Config{Upstream: dead.URL, Dir: f.dir, Pub: f.pub, ManifestTTL: time.Millisecond})
	srv := httptest.NewServer(again)
	t.Cleanup(srv.Close)
	f.url = srv.URL + "/"
	code, _, body = f.get(imaging.ChunkPath(img.Chunks[1].Hash))
	if code != http.StatusBadGateway || !strings.Contains(body, "connection refused") {
		t.Errorf("chunk from an upstream that is down: %d %q, want 502 saying connection refused", code, body)
	}
	if code, _, _ := f.get(cached); code != http.StatusOK {
		t.Errorf("cached chunk with the upstream down: %d, want 200", code)
	}
	code, _, body = f.get(imaging.ManifestPath(f.image.Name))
	if code != http.StatusOK || body != string(img.Raw) {
		t.Errorf("stored manifest with the upstream down: %d, want 200 and the manifest", code)
	}
	if code, _, body := f.get(imaging.SigPath(f.image.Name)); code != http.StatusOK || body != string(img.Sig) {
		t.Errorf("stored signature with the upstream down: %d, want 200 and the signature", code)
	}
}

// TestManifestSignature: only manifests signed with the site's key are
// served, unless InsecureUnsigned lets unsigned ones through; a bad
// signature is refused either way.
func TestManifestSignature(t *testing.T) {
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		unsigned bool
		resign   bool // sign with another key
		insecure bool
		wantCode int
	}{
		{"signed", false, false, false, http.StatusOK},
		{"unsigned", true, false, false, http.StatusBadGateway},
		{"unsigned insecure", true, false, true, http.StatusOK},
		{"other key", false, true, false, http.StatusBadGateway},
		{"other key insecure", false, true, true, http.StatusBadGateway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, fixtureOptions{unsigned: tc.unsigned, cfg: func(c *Config) { c.InsecureUnsigned = tc.insecure }})
			if tc.resign {
				sig := sign.Sign(otherKey, f.image.Image.Raw)
				if err := os.WriteFile(filepath.Join(f.image.RepoDir, filepath.FromSlash(imaging.SigPath(f.image.Name))), sig, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			code, _, body := f.get(imaging.ManifestPath(f.image.Name))
			if code != tc.wantCode {
				t.Fatalf("manifest: %d %q, want %d", code, body, tc.wantCode)
			}
			sigCode, _, _ := f.get(imaging.SigPath(f.image.Name))
			wantSig := tc.wantCode
			if tc.unsigned && tc.wantCode == http.StatusOK {
				wantSig = http.StatusNotFound
			}
			if sigCode != wantSig {
				t.Errorf("signature: %d, want %d", sigCode, wantSig)
			}
			_, err := os.Stat(filepath.Join(f.dir, "images", f.image.Name, "manifest.json"))
			if stored := err == nil; stored != (tc.wantCode == http.StatusOK) {
				t.Errorf("manifest stored: %v, want %v", stored, tc.wantCode == http.StatusOK)
			}
		})
	}
	if _, err := New(Config{Upstream: "http://127.0.0.1:1/", Dir: t.TempDir()}); err == nil {
		t.Errorf("New without a public key and without InsecureUnsigned: no error")
	}
}
