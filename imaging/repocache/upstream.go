package repocache

// upstream.go: fetching a chunk or a manifest from the upstream repository
// and verifying it before anything else sees it.

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/shoal-project/shoal/imaging"
)

// ErrUpstream is wrapped when the upstream cannot be reached or answers
// with an error (not a 404): the cache answers 502.
var ErrUpstream = errors.New("upstream failed")

// ErrUnverified is wrapped when what the upstream sent fails verification
// (a corrupt chunk, a manifest without a valid signature): the cache
// answers 502 and stores nothing.
var ErrUnverified = errors.New("upstream sent unverified data")

// upstream is the repository the cache fetches from.
type upstream struct {
	base   *url.URL
	client *http.Client
	repo   *imaging.HTTPRepo // for manifests
}

func newUpstream(base string, client *http.Client) (*upstream, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("upstream URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("upstream URL %s: want http or https", base)
	}
	if u.Path == "" || u.Path[len(u.Path)-1] != '/' {
		u.Path += "/"
	}
	if client == nil {
		client = &http.Client{Transport: imaging.NewTransport()}
	}
	repo, err := imaging.NewHTTPRepo(u.String(), client)
	if err != nil {
		return nil, err
	}
	// One try: the cache's clients retry the cache, and an upstream that
	// is down should be a quick 502, not a minute of backoff.
	repo.Attempts = 1
	return &upstream{base: u, client: client, repo: repo}, nil
}

func (u *upstream) String() string { return u.base.String() }

// chunk fetches the stored bytes of chunk h (at most
// imaging.MaxStoredBytes(imaging.MaxChunkBytes)).
func (u *upstream) chunk(ctx context.Context, h imaging.Hash) ([]byte, error) {
	src := u.base.ResolveReference(&url.URL{Path: imaging.ChunkPath(h)}).String()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return nil, err
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("chunk %s: %w: %w", h, ErrUpstream, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("chunk %s: GET %s: %w", h, src, imaging.ErrNotFound)
	case resp.StatusCode != http.StatusOK:
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("chunk %s: %w: GET %s: %s", h, ErrUpstream, src, resp.Status)
	}
	maxBytes := imaging.MaxStoredBytes(imaging.MaxChunkBytes)
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("chunk %s: %w: GET %s: %w", h, ErrUpstream, src, err)
	}
	if int64(len(b)) > maxBytes {
		return nil, fmt.Errorf("chunk %s: %w: larger than %d bytes", h, ErrUnverified, maxBytes)
	}
	return b, nil
}

// manifest fetches an image's manifest and signature (nil when the
// upstream has none).
func (u *upstream) manifest(ctx context.Context, name string) (raw, sig []byte, err error) {
	raw, sig, err = u.repo.Manifest(ctx, name)
	if err != nil && !errors.Is(err, imaging.ErrNotFound) {
		return nil, nil, fmt.Errorf("%w: %w", ErrUpstream, err)
	}
	return raw, sig, err
}

// decoders are zstd decoders for verifyChunk, bounded as imaging.Codec's.
var decoders sync.Pool

// verifyChunk checks that stored is a zstd frame of at most
// imaging.MaxChunkBytes whose SHA-256 is h and, when storedBytes > 0 (a
// manifest the cache verified names the chunk), that it is that long.
func verifyChunk(h imaging.Hash, stored []byte, storedBytes int64) error {
	if storedBytes > 0 && int64(len(stored)) != storedBytes {
		return fmt.Errorf("chunk %s: %w: %d stored bytes, the manifest says %d", h, ErrUnverified, len(stored), storedBytes)
	}
	d, _ := decoders.Get().(*zstd.Decoder)
	if d == nil {
		var err error
		d, err = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(false),
			zstd.WithDecoderMaxMemory(imaging.MaxChunkBytes),
			zstd.WithDecoderMaxWindow(imaging.MaxChunkBytes))
		if err != nil {
			return fmt.Errorf("zstd decoder: %w", err)
		}
	}
	plain, err := d.DecodeAll(stored, nil)
	decoders.Put(d)
	if err != nil {
		return fmt.Errorf("chunk %s: %w: %w: %v", h, ErrUnverified, imaging.ErrCorrupt, err)
	}
	if imaging.Hash(sha256.Sum256(plain)) != h {
		return fmt.Errorf("chunk %s: %w: %w: hash mismatch", h, ErrUnverified, imaging.ErrCorrupt)
	}
	return nil
}

// verifyManifest checks a manifest the upstream sent for image name: its
// signature with pub (an unsigned one only when insecure), that it parses
// and that it names that image.
func verifyManifest(from imaging.Repo, name string, raw, sig []byte, pub ed25519.PublicKey, insecure bool) (*imaging.Image, error) {
	check := pub
	if insecure && (sig == nil || pub == nil) {
		check = nil
	} else if pub == nil {
		return nil, fmt.Errorf("image %q: %w: no public key to check its signature with", name, ErrUnverified)
	}
	img, err := imaging.ImageNamed(raw, sig, check, name, from)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnverified, err)
	}
	return img, nil
}
