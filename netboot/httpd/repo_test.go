package httpd

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/imaging/repocache"
	"github.com/shoal-project/shoal/netboot/inventory"
)

// TestRepoCacheControl: the repository directory's chunks are served as
// immutable, its manifests as no-cache, and a missing chunk's 404 is not
// cacheable as a chunk.
func TestRepoCacheControl(t *testing.T) {
	f := newFixture(t, false, "ignore")
	h := imaging.Hash{0xab}
	p := filepath.Join(f.dir, "repo", filepath.FromSlash(imaging.ChunkPath(h)))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("zstd"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, want string
		code       int
	}{
		{"/repo/" + imaging.ChunkPath(h), repocache.ChunkCacheControl, http.StatusOK},
		{"/repo/images/debian-12/manifest.json", repocache.ManifestCacheControl, http.StatusOK},
		{"/repo/" + imaging.ChunkPath(imaging.Hash{1}), "", http.StatusNotFound},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, err := http.Get(f.srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.code || resp.Header.Get("Cache-Control") != tc.want {
				t.Errorf("GET %s: %d, Cache-Control %q; want %d, %q", tc.path, resp.StatusCode, resp.Header.Get("Cache-Control"), tc.code, tc.want)
			}
		})
	}
}

// TestRepoHandler: with Config.Repo set, /repo/ is that handler's, with
// the path below /repo/, and no repository directory is opened.
func TestRepoHandler(t *testing.T) {
	dir := t.TempDir()
	inv, err := inventory.Open(filepath.Join(dir, "machines"), inventory.Ignore)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{
		RepoDir:   filepath.Join(dir, "no such directory"),
		BootDir:   dir,
		Inventory: inv,
		Repo: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "cache: "+r.URL.Path)
		}),
	})
	if err != nil {
		t.Fatalf("New with Repo and no repository directory: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/repo/images/x/manifest.json", nil))
	if got, want := rec.Body.String(), "cache: images/x/manifest.json"; rec.Code != http.StatusOK || got != want {
		t.Errorf("GET /repo/images/x/manifest.json: %d %q, want 200 %q", rec.Code, got, want)
	}
}
