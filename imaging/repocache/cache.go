// Package repocache is a per-site cache of an image repository: an
// http.Handler for the repository's paths (docs/image-format.md) that
// fetches each chunk and manifest from an upstream repository once,
// verifies it, stores it on disk and serves it.
//
// A chunk is verified by decoding it and comparing the SHA-256 of its bytes
// with its name (and its stored size with the one a verified manifest
// gives); a manifest by its signature with the site's public key, unless
// Config.InsecureUnsigned lets unsigned manifests through. Nothing that
// fails is stored or served: the client gets 502. Requests for the same
// object while it is being fetched wait for that one fetch. Chunks are
// kept up to Config.MaxBytes, evicting the least recently used whole
// files; manifests are kept apart (they are small), asked of the upstream
// again after Config.ManifestTTL, and served from the last verified copy
// while the upstream is down.
//
// Responses carry Cache-Control (WithCacheControl): chunks are immutable,
// manifests must be revalidated.
package repocache

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/shoal-project/shoal/imaging"
)

// DefaultMaxBytes is Config.MaxBytes's default.
const DefaultMaxBytes = 16 << 30

// DefaultManifestTTL is Config.ManifestTTL's default.
const DefaultManifestTTL = 10 * time.Second

// fetchTimeout bounds one fetch from the upstream. A fetch runs apart from
// the request that started it, so that the clients waiting for the same
// object do not lose it when the first goes away.
const fetchTimeout = 2 * time.Minute

// Config configures a Cache.
type Config struct {
	// Upstream is the repository's http(s) URL.
	Upstream string
	// Dir holds the cached chunks and manifests (made if missing).
	Dir string
	// MaxBytes bounds the chunks' stored bytes (default DefaultMaxBytes).
	MaxBytes int64
	// Pub is the site's signing public key: a manifest is served only when
	// its signature checks with it.
	Pub ed25519.PublicKey
	// InsecureUnsigned serves manifests without a signature (or, with no
	// Pub, without checking it); each is logged as INSECURE.
	InsecureUnsigned bool
	// ManifestTTL is how long a manifest is served before the upstream is
	// asked again (default DefaultManifestTTL).
	ManifestTTL time.Duration
	// Client fetches from the upstream; nil: one with imaging.NewTransport.
	Client *http.Client
	// Registry gets the cache's metrics; nil: none are registered.
	Registry prometheus.Registerer
	Log      *slog.Logger
}

// Stats are the cache's counters.
type Stats struct {
	Hits          int64 // requests answered from the cache
	Misses        int64 // fetches from the upstream (one per object, however many waited)
	Failures      int64 // fetches that failed (upstream error or unverified data)
	Evictions     int64 // chunks evicted
	UpstreamBytes int64 // body bytes received from the upstream
	StoredChunks  int
	StoredBytes   int64
}

// Cache is the caching handler.
type Cache struct {
	cfg    Config
	log    *slog.Logger
	up     *upstream
	store  *store
	flight singleflight.Group

	mu        sync.Mutex
	manifests map[string]*manifestEntry
	sizes     map[imaging.Hash]int64 // stored sizes named by verified manifests

	hits, misses, failures, evictions, upstreamBytes atomic.Int64
}

// New opens (or makes) the cache directory and indexes what it holds.
func New(cfg Config) (*Cache, error) {
	if cfg.Dir == "" {
		return nil, errors.New("repocache: no cache directory")
	}
	if cfg.Pub == nil && !cfg.InsecureUnsigned {
		return nil, errors.New("repocache: no public key to verify manifests with")
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.ManifestTTL <= 0 {
		cfg.ManifestTTL = DefaultManifestTTL
	}
	c := &Cache{cfg: cfg, log: cfg.Log, manifests: map[string]*manifestEntry{}, sizes: map[imaging.Hash]int64{}}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if c.up, err = newUpstream(cfg.Upstream, cfg.Client); err != nil {
		return nil, fmt.Errorf("repocache: %w", err)
	}
	st, evicted, err := openStore(cfg.Dir, cfg.MaxBytes)
	if err != nil {
		return nil, fmt.Errorf("repocache: %w", err)
	}
	c.store = st
	c.logEvicted(evicted)
	if cfg.Registry != nil {
		if err := c.register(cfg.Registry); err != nil {
			return nil, fmt.Errorf("repocache: metrics: %w", err)
		}
	}
	n, b := st.stats()
	c.log.Info("repository cache", "upstream", c.up.String(), "dir", cfg.Dir, "chunks", n, "storedBytes", b, "maxBytes", cfg.MaxBytes)
	if cfg.InsecureUnsigned {
		c.log.Warn("INSECURE: the repository cache serves manifests of " + c.up.String() + " without a valid signature")
	}
	return c, nil
}

func (c *Cache) register(r prometheus.Registerer) error {
	counter := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	for _, col := range []prometheus.Collector{
		counter("shoal_serve_repocache_hits_total", "Repository requests answered from the cache.", &c.hits),
		counter("shoal_serve_repocache_misses_total", "Chunks and manifests fetched from the upstream (once per object, however many requests waited).", &c.misses),
		counter("shoal_serve_repocache_failures_total", "Fetches from the upstream that failed or sent data that did not verify.", &c.failures),
		counter("shoal_serve_repocache_evictions_total", "Chunks evicted from the cache.", &c.evictions),
		counter("shoal_serve_repocache_upstream_bytes_total", "Body bytes received from the upstream.", &c.upstreamBytes),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "shoal_serve_repocache_stored_bytes", Help: "Stored bytes of the chunks in the cache."},
			func() float64 { _, b := c.store.stats(); return float64(b) }),
	} {
		if err := r.Register(col); err != nil {
			return err
		}
	}
	return nil
}

// Stats returns the cache's counters.
func (c *Cache) Stats() Stats {
	n, b := c.store.stats()
	return Stats{Hits: c.hits.Load(), Misses: c.misses.Load(), Failures: c.failures.Load(), Evictions: c.evictions.Load(),
		UpstreamBytes: c.upstreamBytes.Load(), StoredChunks: n, StoredBytes: b}
}

func (c *Cache) logEvicted(evicted []entry) {
	for _, e := range evicted {
		c.evictions.Add(1)
		c.log.Debug("repocache: evicted", "chunk", e.hash.String(), "storedBytes", e.sizeBytes)
	}
}

// ServeHTTP serves GET and HEAD of the repository paths relative to the
// handler's root (mount it with http.StripPrefix).
func (c *Cache) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := strings.TrimPrefix(r.URL.Path, "/")
	if h, ok := parseChunkPath(p); ok {
		c.serveChunk(w, r, h)
		return
	}
	if name, file, ok := parseImagePath(p); ok {
		c.serveManifest(w, r, name, file)
		return
	}
	http.NotFound(w, r)
}

// parseImagePath parses "images/NAME/manifest.json" or ".../manifest.sig".
func parseImagePath(p string) (name, file string, ok bool) {
	rest, ok := strings.CutPrefix(p, "images/")
	if !ok {
		return "", "", false
	}
	name, file, ok = strings.Cut(rest, "/")
	if !ok || imaging.ValidName(name) != nil || (file != "manifest.json" && file != "manifest.sig") {
		return "", "", false
	}
	return name, file, true
}

func (c *Cache) serveChunk(w http.ResponseWriter, r *http.Request, h imaging.Hash) {
	if f, ok := c.store.open(h); ok {
		defer f.Close()
		c.hits.Add(1)
		chunkHeaders(w.Header(), h)
		http.ServeContent(w, r, "", time.Time{}, f)
		return
	}
	v, err, _ := c.flight.Do("c/"+h.String(), func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), fetchTimeout)
		defer cancel()
		return c.fetchChunk(ctx, h)
	})
	if err != nil {
		c.fail(w, err)
		return
	}
	chunkHeaders(w.Header(), h)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(v.([]byte)))
}

// fetchChunk fetches chunk h from the upstream, verifies it and stores it.
func (c *Cache) fetchChunk(ctx context.Context, h imaging.Hash) ([]byte, error) {
	// It may have been stored since the caller looked.
	if f, ok := c.store.open(h); ok {
		defer f.Close()
		b, err := readAll(f)
		if err == nil {
			c.hits.Add(1)
			return b, nil
		}
	}
	c.misses.Add(1)
	start := time.Now()
	b, err := c.up.chunk(ctx, h)
	c.upstreamBytes.Add(int64(len(b)))
	if err == nil {
		c.mu.Lock()
		want := c.sizes[h]
		c.mu.Unlock()
		err = verifyChunk(h, b, want)
	}
	if err != nil {
		c.failures.Add(1)
		c.log.Warn("repocache: chunk from the upstream", "chunk", h.String(), "upstream", c.up.String(), "err", err)
		return nil, err
	}
	evicted, err := c.store.put(h, b)
	c.logEvicted(evicted)
	if err != nil {
		// Verified, so served all the same.
		c.log.Warn("repocache: not stored", "chunk", h.String(), "err", err)
	}
	c.log.Debug("repocache: fetched from the upstream", "chunk", h.String(), "storedBytes", len(b), "took", time.Since(start).Round(time.Millisecond))
	return b, nil
}

func readAll(f *os.File) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, err
	}
	return b, nil
}

// fail answers a failed fetch: 404 for what the upstream does not have,
// 502 with the reason for an upstream that failed or sent unverified data.
func (c *Cache) fail(w http.ResponseWriter, err error) {
	w.Header().Set("Cache-Control", "no-store")
	switch {
	case errors.Is(err, imaging.ErrNotFound):
		http.Error(w, err.Error(), http.StatusNotFound)
	case errors.Is(err, ErrUpstream), errors.Is(err, ErrUnverified), errors.Is(err, context.DeadlineExceeded):
		http.Error(w, "repository cache: "+err.Error(), http.StatusBadGateway)
	default:
		http.Error(w, "repository cache: "+err.Error(), http.StatusInternalServerError)
	}
}
