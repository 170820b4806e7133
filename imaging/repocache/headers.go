package repocache

// headers.go: the Cache-Control of repository responses, for the cache and
// for a repository served from a directory.

import (
	"net/http"
	"strings"

	"github.com/shoal-project/shoal/imaging"
)

// ChunkCacheControl is the Cache-Control of a chunk: its name is the hash
// of its bytes, so it never changes.
const ChunkCacheControl = "public, max-age=31536000, immutable"

// ManifestCacheControl is the Cache-Control of a manifest and its
// signature: a new serial may replace them at any time, so a cache in
// between must ask again each time (a conditional request is enough).
const ManifestCacheControl = "no-cache"

func chunkHeaders(h http.Header, hash imaging.Hash) {
	h.Set("Cache-Control", ChunkCacheControl)
	h.Set("Content-Type", "application/zstd")
	h.Set("ETag", `"`+hash.String()+`"`)
}

// WithCacheControl sets the Cache-Control of repository paths (relative
// to the handler's root) on what h serves: ChunkCacheControl under
// chunks/, ManifestCacheControl under images/.
func WithCacheControl(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, "/")
		switch {
		case strings.HasPrefix(p, "chunks/") && strings.HasSuffix(p, ".zst"):
			w.Header().Set("Cache-Control", ChunkCacheControl)
		case strings.HasPrefix(p, "images/"):
			w.Header().Set("Cache-Control", ManifestCacheControl)
		}
		h.ServeHTTP(w, r)
	})
}
