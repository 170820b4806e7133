// Package sign makes and checks the ed25519 signatures over image manifests,
// and reads and writes the key files of `shoal key gen`.
//
// Keys are stored as PEM: PREFIX.key holds a PKCS #8 "PRIVATE KEY" (mode
// 0600) and PREFIX.pub a PKIX "PUBLIC KEY", so that openssl can read both.
package sign

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// ErrBadSignature is returned when a signature does not match the manifest.
var ErrBadSignature = errors.New("signature does not match manifest")

// ErrNoSignature is returned when a signature was required but is absent.
var ErrNoSignature = errors.New("manifest is not signed")

// Generate writes a new key pair to prefix+".key" and prefix+".pub". It
// refuses to overwrite existing files.
func Generate(prefix string) (ed25519.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	if err := writeNew(prefix+".key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(prefix+".pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		os.Remove(prefix + ".key")
		return nil, err
	}
	return pub, nil
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("write key %s: %w", path, err)
	}
	return nil
}

func readPEM(path, wantType string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("read key %s: no PEM block", path)
	}
	if block.Type != wantType {
		return nil, fmt.Errorf("read key %s: PEM type %q, want %q", path, block.Type, wantType)
	}
	return block.Bytes, nil
}

// LoadPrivate reads a private key written by Generate.
func LoadPrivate(path string) (ed25519.PrivateKey, error) {
	der, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("read key %s: %T is not an ed25519 key", path, k)
	}
	return priv, nil
}

// LoadPublic reads a public key written by Generate.
func LoadPublic(path string) (ed25519.PublicKey, error) {
	der, err := readPEM(path, "PUBLIC KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", path, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("read key %s: %T is not an ed25519 key", path, k)
	}
	return pub, nil
}

// Sign signs a manifest's exact bytes.
func Sign(priv ed25519.PrivateKey, manifest []byte) []byte {
	return ed25519.Sign(priv, manifest)
}

// Verify checks sig over manifest. A nil or empty sig gives ErrNoSignature.
func Verify(pub ed25519.PublicKey, manifest, sig []byte) error {
	if len(sig) == 0 {
		return ErrNoSignature
	}
	if len(sig) != ed25519.SignatureSize || !ed25519.Verify(pub, manifest, sig) {
		return ErrBadSignature
	}
	return nil
}
