package repocache

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-project/shoal/imaging"
)

// TestEvictLRU: a cache bounded to three chunks' bytes keeps the three
// used last (a hit counts as a use), removes the others' files, stays
// within its bound, and a new Cache on the directory finds what is left.
func TestEvictLRU(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	// The image's chunks are random data but one: about 64 KiB stored
	// each, within a few bytes.
	var chunks []imaging.ChunkRef
	for _, c := range f.image.Image.Chunks {
		if c.StoredBytes > 60<<10 {
			chunks = append(chunks, c)
		}
	}
	chunks = chunks[:5]
	minBytes, maxChunkBytes := chunks[0].StoredBytes, chunks[0].StoredBytes
	for _, c := range chunks {
		minBytes, maxChunkBytes = min(minBytes, c.StoredBytes), max(maxChunkBytes, c.StoredBytes)
	}
	// Any three fit, never four.
	maxBytes := 3*maxChunkBytes + 100
	if maxBytes >= 4*minBytes {
		t.Fatalf("chunks of %d to %d bytes: no bound fits three and not four", minBytes, maxChunkBytes)
	}
	f.cache = f.newCache(Config{Upstream: f.upURL, Dir: f.dir, Pub: f.pub, MaxBytes: maxBytes})
	srv := httptest.NewServer(f.cache)
	t.Cleanup(srv.Close)
	f.url = srv.URL + "/"

	get := func(i int) {
		t.Helper()
		if code, _, _ := f.get(imaging.ChunkPath(chunks[i].Hash)); code != http.StatusOK {
			t.Fatalf("chunk %d: %d", i, code)
		}
	}
	stored := func() []int {
		var in []int
		for i, c := range chunks {
			if _, err := os.Stat(filepath.Join(f.dir, filepath.FromSlash(imaging.ChunkPath(c.Hash)))); err == nil {
				in = append(in, i)
			} else if !errors.Is(err, fs.ErrNotExist) {
				t.Fatal(err)
			}
		}
		return in
	}
	get(0)
	get(1)
	get(2)
	get(0) // a hit: 1 is now the least recently used
	get(3) // evicts 1
	get(4) // evicts 2
	if d := cmp.Diff([]int{0, 3, 4}, stored()); d != "" {
		t.Errorf("chunks on disk (-want +got):\n%s", d)
	}
	st := f.cache.Stats()
	if st.Evictions != 2 || st.StoredChunks != 3 || st.StoredBytes > maxBytes {
		t.Errorf("Stats = %+v, want 2 evictions, 3 chunks, at most %d bytes", st, maxBytes)
	}
	for _, c := range chunks {
		if n := f.origin.count("/" + imaging.ChunkPath(c.Hash)); n != 1 {
			t.Errorf("upstream served chunk %d %d times, want 1", c.Index, n)
		}
	}

	// A restart finds the three; a bound of two then evicts the older.
	again := f.newCache(Config{Upstream: f.upURL, Dir: f.dir, Pub: f.pub, MaxBytes: maxBytes})
	if st := again.Stats(); st.StoredChunks != 3 {
		t.Errorf("after a restart: %d chunks, want 3", st.StoredChunks)
	}
	before := f.origin.count("/" + imaging.ChunkPath(chunks[3].Hash))
	rec := httptest.NewRecorder()
	again.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/"+imaging.ChunkPath(chunks[3].Hash), nil))
	if rec.Code != http.StatusOK || f.origin.count("/"+imaging.ChunkPath(chunks[3].Hash)) != before {
		t.Errorf("chunk stored before a restart: %d, upstream asked again: %v", rec.Code, f.origin.count("/"+imaging.ChunkPath(chunks[3].Hash)) != before)
	}
}

// TestStoreTooBig: a chunk larger than the whole cache is served but not
// stored.
func TestStoreTooBig(t *testing.T) {
	f := newFixture(t, fixtureOptions{cfg: func(c *Config) { c.MaxBytes = 1000 }})
	c := f.image.Image.Chunks[0]
	want, err := f.image.Repo.Chunk(context.Background(), c.Chunk, nil)
	if err != nil {
		t.Fatal(err)
	}
	code, _, body := f.get(imaging.ChunkPath(c.Hash))
	if code != http.StatusOK || body != string(want) {
		t.Errorf("chunk larger than the cache: %d, %d bytes; want 200 and the chunk", code, len(body))
	}
	if st := f.cache.Stats(); st.StoredChunks != 0 {
		t.Errorf("%d chunks stored, want 0", st.StoredChunks)
	}
}

// TestWithCacheControl: a repository directory served through
// WithCacheControl marks chunks immutable and manifests no-cache, and a
// missing chunk's 404 is not marked immutable.
func TestWithCacheControl(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	h := WithCacheControl(http.FileServer(http.Dir(f.image.RepoDir)))
	for _, tc := range []struct {
		path, want string
		code       int
	}{
		{imaging.ChunkPath(f.image.Image.Chunks[0].Hash), ChunkCacheControl, http.StatusOK},
		{imaging.ManifestPath(f.image.Name), ManifestCacheControl, http.StatusOK},
		{imaging.SigPath(f.image.Name), ManifestCacheControl, http.StatusOK},
		{imaging.ChunkPath(imaging.Hash{2}), "", http.StatusNotFound},
	} {
		t.Run(tc.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/"+tc.path, nil))
			if rec.Code != tc.code || rec.Header().Get("Cache-Control") != tc.want {
				t.Errorf("GET %s: %d, Cache-Control %q; want %d, %q", tc.path, rec.Code, rec.Header().Get("Cache-Control"), tc.code, tc.want)
			}
		})
	}
}

func TestParseChunkPath(t *testing.T) {
	h := imaging.Hash{0xab, 0xcd}
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{imaging.ChunkPath(h), true},
		{"chunks/cd/" + h.String() + ".zst", false},
		{"chunks/AB/" + "ABCD" + h.String()[4:] + ".zst", false},
		{"chunks/ab/" + h.String(), false},
		{"chunks/ab/" + h.String() + ".zst.tmp", false},
		{"chunks/ab/" + h.String()[:62] + ".zst", false},
		{"images/x/manifest.json", false},
	} {
		got, ok := parseChunkPath(tc.path)
		if ok != tc.ok || (ok && got != h) {
			t.Errorf("parseChunkPath(%q) = %v, %v; want ok %v", tc.path, got, ok, tc.ok)
		}
	}
}
