package repocache

// manifest.go: manifests and their signatures, kept in memory and on disk
// (DIR/images/NAME/), asked of the upstream again after Config.ManifestTTL.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/internal/atomicfile"
)

// manifestEntry is a verified manifest.
type manifestEntry struct {
	raw, sig []byte // sig nil: unsigned (only with InsecureUnsigned)
	fetched  time.Time
}

// sigGrace is how much longer than ManifestTTL a signature is served from
// the manifest in memory: a client asks for the manifest, then for its
// signature, and must get the signature of the manifest it got even when
// the TTL ran out in between.
const sigGrace = time.Minute

func (c *Cache) serveManifest(w http.ResponseWriter, r *http.Request, name, file string) {
	maxAge := c.cfg.ManifestTTL
	if file == "manifest.sig" {
		maxAge += sigGrace
	}
	e, err := c.manifest(r.Context(), name, maxAge)
	if err != nil {
		c.fail(w, err)
		return
	}
	body, ctype := e.raw, "application/json"
	if file == "manifest.sig" {
		if e.sig == nil {
			w.Header().Set("Cache-Control", ManifestCacheControl)
			http.Error(w, fmt.Sprintf("image %q is not signed", name), http.StatusNotFound)
			return
		}
		body, ctype = e.sig, "application/octet-stream"
	}
	w.Header().Set("Cache-Control", ManifestCacheControl)
	w.Header().Set("Content-Type", ctype)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// manifest returns image name's verified manifest: the one in memory
// while younger than maxAge, else the upstream's.
func (c *Cache) manifest(ctx context.Context, name string, maxAge time.Duration) (*manifestEntry, error) {
	c.mu.Lock()
	e := c.manifests[name]
	c.mu.Unlock()
	if e != nil && time.Since(e.fetched) < maxAge {
		c.hits.Add(1)
		return e, nil
	}
	v, err, _ := c.flight.Do("m/"+name, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
		defer cancel()
		return c.fetchManifest(ctx, name, e)
	})
	if err != nil {
		return nil, err
	}
	return v.(*manifestEntry), nil
}

// fetchManifest asks the upstream for image name's manifest and verifies
// it. When the upstream fails, the last verified copy (old, or the one on
// disk) is served, with a warning.
func (c *Cache) fetchManifest(ctx context.Context, name string, old *manifestEntry) (*manifestEntry, error) {
	c.misses.Add(1)
	raw, sig, err := c.up.manifest(ctx, name)
	c.upstreamBytes.Add(int64(len(raw) + len(sig)))
	if errors.Is(err, imaging.ErrNotFound) {
		// Gone from the upstream: gone from here.
		c.mu.Lock()
		delete(c.manifests, name)
		c.mu.Unlock()
		os.RemoveAll(c.imageDir(name))
		return nil, err
	}
	if err != nil {
		c.failures.Add(1)
		if old == nil {
			old = c.loadManifest(name)
		}
		if old != nil {
			c.log.Warn("repocache: upstream failed; serving the last verified manifest", "image", name, "upstream", c.up.String(), "err", err)
			return old, nil
		}
		c.log.Warn("repocache: manifest from the upstream", "image", name, "upstream", c.up.String(), "err", err)
		return nil, err
	}
	img, err := verifyManifest(c.up.repo, name, raw, sig, c.cfg.Pub, c.cfg.InsecureUnsigned)
	if err != nil {
		c.failures.Add(1)
		c.log.Warn("repocache: manifest from the upstream", "image", name, "upstream", c.up.String(), "err", err)
		return nil, err
	}
	if sig == nil {
		c.log.Warn("INSECURE: repocache: serving an unsigned manifest", "image", name, "upstream", c.up.String())
	}
	if err := c.saveManifest(name, raw, sig); err != nil {
		c.log.Warn("repocache: manifest not stored", "image", name, "err", err)
	}
	e := &manifestEntry{raw: raw, sig: sig, fetched: time.Now()}
	c.mu.Lock()
	c.manifests[name] = e
	for _, ch := range img.Chunks {
		c.sizes[ch.Hash] = ch.StoredBytes
	}
	c.mu.Unlock()
	for _, ch := range img.Chunks {
		// A chunk stored before at another size (the repository's file
		// was replaced): the manifest's clients would refuse it.
		if n, ok := c.store.size(ch.Hash); ok && n != ch.StoredBytes {
			c.log.Warn("repocache: stored chunk is not the size the manifest gives; removed", "chunk", ch.Hash.String(), "image", name, "storedBytes", n, "manifestBytes", ch.StoredBytes)
			if err := c.store.remove(ch.Hash); err != nil {
				c.log.Warn("repocache: remove", "chunk", ch.Hash.String(), "err", err)
			}
		}
	}
	c.log.Debug("repocache: fetched from the upstream", "image", name, "serial", img.Manifest.Serial, "manifestBytes", len(raw))
	return e, nil
}

func (c *Cache) imageDir(name string) string {
	return filepath.Join(c.cfg.Dir, "images", name)
}

// saveManifest writes a verified manifest (and its signature, or removes
// an old one) to disk.
func (c *Cache) saveManifest(name string, raw, sig []byte) error {
	dir := c.imageDir(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	sigPath := filepath.Join(dir, "manifest.sig")
	if sig == nil {
		if err := os.Remove(sigPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := atomicfile.Write(filepath.Join(dir, "manifest.json"), raw, atomicfile.Options{}); err != nil {
		return err
	}
	if sig != nil {
		return atomicfile.Write(sigPath, sig, atomicfile.Options{})
	}
	return nil
}

// loadManifest returns the copy on disk when it verifies (as old: the
// upstream is asked again at the next request), or nil.
func (c *Cache) loadManifest(name string) *manifestEntry {
	dir := c.imageDir(name)
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil
	}
	sig, err := os.ReadFile(filepath.Join(dir, "manifest.sig"))
	if err != nil {
		sig = nil
	}
	if _, err := verifyManifest(c.up.repo, name, raw, sig, c.cfg.Pub, c.cfg.InsecureUnsigned); err != nil {
		c.log.Warn("repocache: stored manifest does not verify", "image", name, "err", err)
		return nil
	}
	return &manifestEntry{raw: raw, sig: sig}
}
