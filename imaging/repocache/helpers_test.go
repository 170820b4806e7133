package repocache

// helpers_test.go: a signed repository, a counting upstream in front of it
// and a cache in front of that, all on loopback.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/internal/imagetest"
	"github.com/shoal-project/shoal/internal/testlog"
)

// origin serves a repository directory and counts the requests per path.
type origin struct {
	fs http.Handler

	mu       sync.Mutex
	requests map[string]int
	// override, when it returns true for a path, has answered instead.
	override func(w http.ResponseWriter, r *http.Request) bool
	// gate, when not nil, holds every chunk request until it is closed.
	gate chan struct{}
}

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.requests[r.URL.Path]++
	override, gate := o.override, o.gate
	o.mu.Unlock()
	if gate != nil && strings.HasPrefix(r.URL.Path, "/chunks/") {
		<-gate
	}
	if override != nil && override(w, r) {
		return
	}
	o.fs.ServeHTTP(w, r)
}

func (o *origin) count(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.requests[path]
}

func (o *origin) set(f func(*origin)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f(o)
}

// fixture is a repository with one image, its origin server and a cache.
type fixture struct {
	t      *testing.T
	key    ed25519.PrivateKey
	pub    ed25519.PublicKey
	image  *imagetest.Image
	origin *origin
	upURL  string
	cache  *Cache
	dir    string // the cache's directory
	url    string // the cache's URL
}

type fixtureOptions struct {
	unsigned bool
	cfg      func(*Config)
}

func newFixture(t *testing.T, o fixtureOptions) *fixture {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	opts := imagetest.Options{Name: "site", SizeBytes: 1 << 20, ChunkBytes: 64 << 10, ZeroRun: true, Compressible: true}
	if !o.unsigned {
		opts.SignKey = key
	}
	f := &fixture{t: t, key: key, pub: pub, image: imagetest.New(t, opts), dir: t.TempDir()}
	f.origin = &origin{fs: http.FileServer(http.Dir(f.image.RepoDir)), requests: map[string]int{}}
	up := httptest.NewServer(f.origin)
	t.Cleanup(up.Close)
	f.upURL = up.URL + "/"
	cfg := Config{Upstream: f.upURL, Dir: f.dir, Pub: pub, Log: testlog.New(t, "cache", slog.LevelDebug)}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	f.cache = f.newCache(cfg)
	srv := httptest.NewServer(f.cache)
	t.Cleanup(srv.Close)
	f.url = srv.URL + "/"
	return f
}

func (f *fixture) newCache(cfg Config) *Cache {
	f.t.Helper()
	c, err := New(cfg)
	if err != nil {
		f.t.Fatalf("New: %v", err)
	}
	return c
}

// client is an imaging HTTP repository of the cache, trying once.
func (f *fixture) client() *imaging.HTTPRepo {
	f.t.Helper()
	r, err := imaging.NewHTTPRepo(f.url, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	r.Attempts = 1
	return r
}

// fetchImage loads the image through the cache and fetches and decodes
// every chunk, failing the test on any error.
func (f *fixture) fetchImage() {
	f.t.Helper()
	ctx := context.Background()
	repo := f.client()
	var pub ed25519.PublicKey
	if f.image.Image.Sig != nil {
		pub = f.pub
	}
	img, err := imaging.LoadImage(ctx, repo, f.image.Name, pub)
	if err != nil {
		f.t.Fatalf("LoadImage through the cache: %v", err)
	}
	codec := imaging.NewCodec(0)
	for _, c := range img.Chunks {
		b, err := repo.Chunk(ctx, c.Chunk, nil)
		if err != nil {
			f.t.Fatalf("chunk %d through the cache: %v", c.Index, err)
		}
		if _, err := codec.Decode(nil, b, c.Chunk); err != nil {
			f.t.Fatalf("chunk %d through the cache: %v", c.Index, err)
		}
	}
}

// get fetches a path of the cache and returns the status, headers and body.
func (f *fixture) get(path string) (int, http.Header, string) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url+path, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatalf("GET %s: body: %v", path, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}
