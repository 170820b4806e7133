// Package sitekeys holds a site's keys in shoal's state directory, made on
// first use as sshd makes its host keys:
//
//	DIR/signing.key     ed25519 private key, PKCS #8 PEM (mode 0600): signs manifests
//	DIR/signing.pub     its public key, PKIX PEM: built into the appliance
//	DIR/session.secret  32 random bytes, hex (mode 0600): the root of every
//	                    peer session's key (SessionKey) and of nothing else
//
// The directory is made with mode 0700. Nothing in it is ever served.
package sitekeys

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/shoal-project/shoal/imaging/sign"
	"github.com/shoal-project/shoal/internal/atomicfile"
)

// File names inside the state directory.
const (
	SigningKeyFile    = "signing.key"
	SigningPubFile    = "signing.pub"
	SessionSecretFile = "session.secret"
)

// SecretBytes is the size of the session secret.
const SecretBytes = 32

// ErrNoKeys is returned by Load for a directory without the site's keys.
var ErrNoKeys = errors.New("no site keys")

// Keys are a site's keys.
type Keys struct {
	Dir           string
	SigningKey    ed25519.PrivateKey
	SigningPub    ed25519.PublicKey
	SessionSecret []byte
}

// DefaultDir is the state directory when none is given: /var/lib/shoal for
// root, else $XDG_STATE_HOME/shoal (~/.local/state/shoal).
func DefaultDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/shoal"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "shoal")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "shoal-state")
	}
	return filepath.Join(home, ".local", "state", "shoal")
}

// PubPath is the path of the signing public key in dir.
func PubPath(dir string) string { return filepath.Join(dir, SigningPubFile) }

// KeyPath is the path of the signing private key in dir.
func KeyPath(dir string) string { return filepath.Join(dir, SigningKeyFile) }

// Load reads the keys in dir. A directory without them is ErrNoKeys.
func Load(dir string) (Keys, error) {
	k := Keys{Dir: dir}
	var err error
	if k.SigningKey, err = sign.LoadPrivate(KeyPath(dir)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Keys{}, fmt.Errorf("site keys in %s: %w", dir, ErrNoKeys)
		}
		return Keys{}, fmt.Errorf("site keys in %s: %w", dir, err)
	}
	if k.SigningPub, err = sign.LoadPublic(PubPath(dir)); err != nil {
		return Keys{}, fmt.Errorf("site keys in %s: %w", dir, err)
	}
	if !k.SigningPub.Equal(k.SigningKey.Public()) {
		return Keys{}, fmt.Errorf("site keys in %s: %s is not the public key of %s", dir, SigningPubFile, SigningKeyFile)
	}
	data, err := os.ReadFile(filepath.Join(dir, SessionSecretFile))
	if err != nil {
		return Keys{}, fmt.Errorf("site keys in %s: %w", dir, err)
	}
	sec, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(sec) != SecretBytes {
		return Keys{}, fmt.Errorf("site keys in %s: %s: want %d hex digits", dir, SessionSecretFile, 2*SecretBytes)
	}
	k.SessionSecret = sec
	return k, nil
}

// Ensure loads the keys in dir, making whatever is missing first (the
// directory, the signing pair, the session secret); made reports whether
// anything was made, and each file made is logged. An existing key is
// never replaced.
func Ensure(dir string, log *slog.Logger) (k Keys, made bool, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Keys{}, false, fmt.Errorf("state directory: %w", err)
	}
	if _, err := os.Stat(KeyPath(dir)); errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(PubPath(dir)); err == nil {
			return Keys{}, false, fmt.Errorf("site keys in %s: %s exists without %s; move it away or restore the private key", dir, SigningPubFile, SigningKeyFile)
		}
		if _, err := sign.Generate(filepath.Join(dir, "signing")); err != nil {
			return Keys{}, false, fmt.Errorf("site keys in %s: %w", dir, err)
		}
		log.Info("made the site's image-signing key", "key", KeyPath(dir), "pub", PubPath(dir))
		made = true
	}
	secPath := filepath.Join(dir, SessionSecretFile)
	if _, err := os.Stat(secPath); errors.Is(err, fs.ErrNotExist) {
		sec := make([]byte, SecretBytes)
		if _, err := rand.Read(sec); err != nil {
			return Keys{}, false, fmt.Errorf("session secret: %w", err)
		}
		if err := atomicfile.Write(secPath, []byte(hex.EncodeToString(sec)+"\n"), atomicfile.Options{Perm: 0o600, ForcePerm: true}); err != nil {
			return Keys{}, false, fmt.Errorf("session secret: %w", err)
		}
		log.Info("made the site's session secret", "path", secPath)
		made = true
	}
	k, err = Load(dir)
	return k, made, err
}

// SessionKey is the control key of the peer session for the image whose
// manifest has the SHA-256 imageID: HMAC-SHA256(secret, "shoal session
// v1\n" || imageID). A machine given it holds the key of its own image's
// session only, never the secret.
func SessionKey(secret []byte, imageID [32]byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("shoal session v1\n"))
	m.Write(imageID[:])
	return m.Sum(nil)
}
