// trust.go: which images the appliance accepts. By default only those
// whose manifest is signed by the key built in at /etc/shoal/pubkey.pem;
// shoal.insecure=unsigned on the kernel command line accepts any.

package appliance

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/imaging/sign"
)

// ErrNoKey is the failure of an appliance with no image-signing key built
// in and no shoal.insecure=unsigned: it cannot tell the site's images
// from anyone else's.
var ErrNoKey = errors.New("no image-signing key is built into this appliance (/etc/shoal/pubkey.pem) and shoal.insecure=unsigned is not set; the disk was not touched")

// insecureWarning is the console line of shoal.insecure=unsigned.
const insecureWarning = "WARNING: shoal.insecure=unsigned: image signatures are NOT checked: anyone on the LAN can put bytes on this disk"

// checkKey says whether the appliance may reimage at all: with a key, or
// without one only when told so on the kernel command line.
func checkKey(pub ed25519.PublicKey, insecure bool) error {
	if pub == nil && !insecure {
		return ErrNoKey
	}
	return nil
}

// finalLoadErr reports whether err, from loading an image, is final (no
// retry can help).
func finalLoadErr(err error) bool {
	return errors.Is(err, imaging.ErrNotFound) || errors.Is(err, imaging.ErrBadManifest) ||
		errors.Is(err, sign.ErrNoSignature) || errors.Is(err, sign.ErrBadSignature)
}

// loadTrusted loads j's image from repo, its signature checked with
// j.Pub, and returns the key the rest of the reimaging must check with.
// With j.Insecure, an image that is unsigned or signed by another key (or
// any image, when no key is built in) is accepted unchecked: the key
// returned is then nil, and the result must not say verified.
func loadTrusted(ctx context.Context, repo imaging.Repo, j Job) (*imaging.Image, ed25519.PublicKey, error) {
	if j.Pub != nil {
		img, err := imaging.LoadImage(ctx, repo, j.Name, j.Pub)
		if err == nil || !j.Insecure || !(errors.Is(err, sign.ErrNoSignature) || errors.Is(err, sign.ErrBadSignature)) {
			return img, j.Pub, err
		}
		if j.Log != nil {
			j.Log.Warn("image signature not checked (shoal.insecure=unsigned)", "image", j.Name, "err", err)
		}
	}
	if !j.Insecure {
		return nil, nil, fmt.Errorf("image %s: %w", j.Name, ErrNoKey)
	}
	img, err := imaging.LoadImage(ctx, repo, j.Name, nil)
	return img, nil, err
}
