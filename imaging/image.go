package imaging

import (
	"context"
	"crypto/ed25519"
	"fmt"

	"github.com/shoal-project/shoal/imaging/sign"
	"github.com/shoal-project/shoal/partition"
)

// Image is a parsed manifest with the bytes it came from.
type Image struct {
	Manifest *Manifest
	Raw      []byte // the manifest's exact bytes
	Sig      []byte // ed25519 signature over Raw; nil when unsigned
	ID       ID     // ImageID(Raw)
	Chunks   []ChunkRef
}

// NewImage parses a manifest and, when pub is not nil, checks its signature
// (a missing or bad signature is then an error).
func NewImage(raw, sig []byte, pub ed25519.PublicKey) (*Image, error) {
	if pub != nil {
		if err := sign.Verify(pub, raw, sig); err != nil {
			return nil, fmt.Errorf("manifest signature: %w", err)
		}
	}
	m, err := ParseManifest(raw)
	if err != nil {
		return nil, err
	}
	return &Image{Manifest: m, Raw: raw, Sig: sig, ID: ImageID(raw), Chunks: m.Chunks()}, nil
}

// LoadImage fetches and checks an image's manifest from repo.
func LoadImage(ctx context.Context, repo Repo, name string, pub ed25519.PublicKey) (*Image, error) {
	raw, sig, err := repo.Manifest(ctx, name)
	if err != nil {
		return nil, err
	}
	return ImageNamed(raw, sig, pub, name, repo)
}

// ImageNamed checks a manifest that repo gave for image name (its
// signature with pub, when set, and that it names that image) and returns
// the image: LoadImage's checks, for callers that fetch the manifest
// themselves.
func ImageNamed(raw, sig []byte, pub ed25519.PublicKey, name string, repo Repo) (*Image, error) {
	img, err := NewImage(raw, sig, pub)
	if err != nil {
		return nil, fmt.Errorf("image %q from %s: %w", name, repo, err)
	}
	if img.Manifest.Name != name {
		return nil, fmt.Errorf("image %q from %s: %w: manifest names image %q", name, repo, ErrBadManifest, img.Manifest.Name)
	}
	return img, nil
}

// Requirements returns what the image needs of a target.
func (img *Image) Requirements() partition.Requirements {
	m := img.Manifest
	return partition.Requirements{
		MinSizeBytes:       m.Target.MinSizeBytes,
		LogicalSectorBytes: m.Target.LogicalSectorBytes,
		CreateSizeBytes:    m.DiskSizeBytes,
	}
}
