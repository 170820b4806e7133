package qemutests

import (
	"crypto/ed25519"
	"os"
	"testing"

	"github.com/shoal-project/shoal/internal/sitekeys"
)

// siteKey is the signing key of the state directory ($SHOAL_STATE, else
// sitekeys.DefaultDir()) whose public half ./build.sh bakes into
// out/shoal-initramfs.cpio.zst: images the QEMU machines must accept are
// signed with it, as shoal image create does by default.
func siteKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	dir := os.Getenv("SHOAL_STATE")
	if dir == "" {
		dir = sitekeys.DefaultDir()
	}
	k, _, err := sitekeys.Ensure(dir, nil)
	if err != nil {
		t.Fatalf("site keys (baked into the initramfs by ./build.sh): %v", err)
	}
	return k.SigningKey
}
