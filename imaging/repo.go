package imaging

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrNotFound is wrapped when a repository has no such image or chunk.
var ErrNotFound = errors.New("not found")

// Repo is where images come from: a directory or an HTTP server. Peers
// deliver chunks through imaging/mcast and imaging/session, not through a
// Repo.
type Repo interface {
	// Manifest returns an image's manifest bytes and its signature (nil
	// when the image is not signed).
	Manifest(ctx context.Context, name string) (manifest, sig []byte, err error)
	// Chunk returns a chunk's stored (compressed) bytes, appended to buf.
	Chunk(ctx context.Context, c Chunk, buf []byte) ([]byte, error)
	// String names the repository in messages.
	String() string
}

// ManifestPath, SigPath and ChunkPath give the slash-separated paths of a
// repository's files, relative to its root.
func ManifestPath(name string) string { return "images/" + name + "/manifest.json" }

// SigPath is the path of an image's signature.
func SigPath(name string) string { return "images/" + name + "/manifest.sig" }

// ChunkPath is the path of the chunk with hash h.
func ChunkPath(h Hash) string {
	s := h.String()
	return "chunks/" + s[:2] + "/" + s + ".zst"
}

// OpenRepo opens a repository by directory path or http(s) URL.
func OpenRepo(dirOrURL string) (Repo, error) {
	if strings.HasPrefix(dirOrURL, "http://") || strings.HasPrefix(dirOrURL, "https://") {
		return NewHTTPRepo(dirOrURL, nil)
	}
	st, err := os.Stat(dirOrURL)
	if err != nil {
		return nil, fmt.Errorf("open repository: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("open repository %s: not a directory", dirOrURL)
	}
	return DirRepo(dirOrURL), nil
}

// DirRepo is a repository in a local directory.
type DirRepo string

func (d DirRepo) String() string { return string(d) }

func (d DirRepo) path(rel string) string { return filepath.Join(string(d), filepath.FromSlash(rel)) }

// Manifest implements Repo.
func (d DirRepo) Manifest(ctx context.Context, name string) ([]byte, []byte, error) {
	if err := ValidName(name); err != nil {
		return nil, nil, err
	}
	m, err := readFileMax(d.path(ManifestPath(name)), MaxManifestBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("image %q in %s: %w", name, d, ErrNotFound)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read manifest: %w", err)
	}
	sig, err := readFileMax(d.path(SigPath(name)), 1024)
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read signature: %w", err)
	}
	return m, sig, nil
}

// Chunk implements Repo.
func (d DirRepo) Chunk(ctx context.Context, c Chunk, buf []byte) ([]byte, error) {
	p := d.path(ChunkPath(c.Hash))
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return buf, fmt.Errorf("chunk %s: %w", c.Hash, ErrNotFound)
	}
	if err != nil {
		return buf, fmt.Errorf("chunk %s: %w", c.Hash, err)
	}
	defer f.Close()
	return readExact(f, c, buf)
}

// readExact reads exactly c.StoredBytes from r into buf.
func readExact(r io.Reader, c Chunk, buf []byte) ([]byte, error) {
	n := int(c.StoredBytes)
	start := len(buf)
	buf = growTo(buf, start+n)
	got, err := io.ReadFull(r, buf[start:start+n])
	if err != nil {
		return buf[:start], fmt.Errorf("chunk %s: read %d of %d stored bytes: %w", c.Hash, got, n, err)
	}
	// One more byte means the stored chunk is longer than the manifest says.
	var one [1]byte
	if k, _ := r.Read(one[:]); k > 0 {
		return buf[:start], fmt.Errorf("chunk %s: %w: longer than the %d stored bytes the manifest gives", c.Hash, ErrCorrupt, n)
	}
	return buf[:start+n], nil
}

func growTo(b []byte, n int) []byte {
	if cap(b) >= n {
		return b[:n]
	}
	nb := make([]byte, n)
	copy(nb, b)
	return nb
}

func readFileMax(path string, maxBytes int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > maxBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxBytes)
	}
	return b, nil
}

// HTTPRepo is a repository served by any static HTTP(S) server.
type HTTPRepo struct {
	base   *url.URL
	client *http.Client
	// Attempts is how many times a request is tried (default 6).
	Attempts int
	// Backoff is the wait before the first retry; it doubles each time,
	// with jitter, up to 8 s (default 250 ms).
	Backoff time.Duration
}

// NewTransport is the HTTP transport of a repository client: the
// default's, with 16 idle connections per host (parallel chunk fetches)
// and 30 s to the response header.
func NewTransport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	tr.ResponseHeaderTimeout = 30 * time.Second
	return tr
}

// NewHTTPRepo returns a repository at base. A nil client gets one with
// sensible timeouts.
func NewHTTPRepo(base string, client *http.Client) (*HTTPRepo, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("repository URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("repository URL %s: want http or https", base)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	if client == nil {
		client = &http.Client{Transport: NewTransport()}
	}
	return &HTTPRepo{base: u, client: client, Attempts: 6, Backoff: 250 * time.Millisecond}, nil
}

func (h *HTTPRepo) String() string { return h.base.String() }

// httpStatusError is a non-2xx answer.
type httpStatusError struct {
	url    string
	status int
}

func (e *httpStatusError) Error() string {
	return fmt.Sprintf("GET %s: %d %s", e.url, e.status, http.StatusText(e.status))
}

// get fetches rel and hands the body to read, retrying on errors that may
// pass: network errors, timeouts, 5xx and 429, and bodies cut short.
func (h *HTTPRepo) get(ctx context.Context, rel string, read func(io.Reader) error) error {
	u := h.base.ResolveReference(&url.URL{Path: rel}).String()
	backoff := h.Backoff
	var last error
	for attempt := 0; attempt < max(h.Attempts, 1); attempt++ {
		if attempt > 0 {
			wait := backoff/2 + time.Duration(rand.Int64N(int64(backoff)))
			select {
			case <-ctx.Done():
				return fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
			case <-time.After(wait):
			}
			backoff = min(2*backoff, 8*time.Second)
		}
		err := h.try(ctx, u, read)
		if err == nil {
			return nil
		}
		last = err
		var se *httpStatusError
		if errors.As(err, &se) && se.status < 500 && se.status != http.StatusTooManyRequests && se.status != http.StatusRequestTimeout {
			if se.status == http.StatusNotFound {
				return fmt.Errorf("%w: %w", err, ErrNotFound)
			}
			return err
		}
		if errors.Is(err, ErrCorrupt) || ctx.Err() != nil {
			return err
		}
	}
	return fmt.Errorf("after %d attempts: %w", max(h.Attempts, 1), last)
}

func (h *HTTPRepo) try(ctx context.Context, u string, read func(io.Reader) error) error {
	// A body that stalls for a minute is a timeout worth retrying.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return &httpStatusError{u, resp.StatusCode}
	}
	return read(resp.Body)
}

// Manifest implements Repo.
func (h *HTTPRepo) Manifest(ctx context.Context, name string) ([]byte, []byte, error) {
	if err := ValidName(name); err != nil {
		return nil, nil, err
	}
	var m, sig []byte
	readMax := func(dst *[]byte, maxBytes int64) func(io.Reader) error {
		return func(r io.Reader) error {
			b, err := io.ReadAll(io.LimitReader(r, maxBytes+1))
			if err != nil {
				return err
			}
			if int64(len(b)) > maxBytes {
				return fmt.Errorf("%w: larger than %d bytes", ErrCorrupt, maxBytes)
			}
			*dst = b
			return nil
		}
	}
	if err := h.get(ctx, ManifestPath(name), readMax(&m, MaxManifestBytes)); err != nil {
		return nil, nil, fmt.Errorf("image %q manifest: %w", name, err)
	}
	if err := h.get(ctx, SigPath(name), readMax(&sig, 1024)); err != nil {
		if errors.Is(err, ErrNotFound) {
			return m, nil, nil
		}
		return nil, nil, fmt.Errorf("image %q signature: %w", name, err)
	}
	return m, sig, nil
}

// Chunk implements Repo.
func (h *HTTPRepo) Chunk(ctx context.Context, c Chunk, buf []byte) ([]byte, error) {
	out := buf
	err := h.get(ctx, ChunkPath(c.Hash), func(r io.Reader) error {
		b, err := readExact(r, c, buf)
		if err != nil {
			return err
		}
		out = b
		return nil
	})
	if err != nil {
		return buf, fmt.Errorf("fetch chunk %s: %w", c.Hash, err)
	}
	return out, nil
}
