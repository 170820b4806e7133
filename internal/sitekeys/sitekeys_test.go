package sitekeys

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/shoal-project/shoal/imaging/sign"
)

func TestEnsureMakesOnceAndKeeps(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	k1, made, err := Ensure(dir, nil)
	if err != nil || !made {
		t.Fatalf("first Ensure: made %v, err %v; want made", made, err)
	}
	for name, want := range map[string]os.FileMode{SigningKeyFile: 0o600, SessionSecretFile: 0o600, SigningPubFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", name, got, want)
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("state directory mode %o, want 700", fi.Mode().Perm())
	}
	k2, made, err := Ensure(dir, nil)
	if err != nil || made {
		t.Fatalf("second Ensure: made %v, err %v; want nothing made", made, err)
	}
	if !k1.SigningKey.Equal(k2.SigningKey) || !bytes.Equal(k1.SessionSecret, k2.SessionSecret) {
		t.Error("second Ensure changed the keys")
	}
	msg := []byte(`{"name":"x"}`)
	if err := sign.Verify(k2.SigningPub, msg, sign.Sign(k1.SigningKey, msg)); err != nil {
		t.Errorf("the public key does not check the private key's signature: %v", err)
	}
}

func TestEnsureMakesOnlyWhatIsMissing(t *testing.T) {
	dir := t.TempDir()
	k1, _, err := Ensure(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, SessionSecretFile)); err != nil {
		t.Fatal(err)
	}
	k2, made, err := Ensure(dir, nil)
	if err != nil || !made {
		t.Fatalf("Ensure: made %v, err %v", made, err)
	}
	if !k1.SigningKey.Equal(k2.SigningKey) {
		t.Error("the signing key was replaced, only the secret was missing")
	}
	if bytes.Equal(k1.SessionSecret, k2.SessionSecret) {
		t.Error("a new secret equals the old one")
	}
}

func TestLoadErrors(t *testing.T) {
	t.Run("empty dir", func(t *testing.T) {
		if _, err := Load(t.TempDir()); !errors.Is(err, ErrNoKeys) {
			t.Errorf("Load: %v, want ErrNoKeys", err)
		}
	})
	t.Run("pub without key", func(t *testing.T) {
		dir := t.TempDir()
		if _, _, err := Ensure(dir, nil); err != nil {
			t.Fatal(err)
		}
		os.Remove(KeyPath(dir))
		if _, _, err := Ensure(dir, nil); err == nil {
			t.Error("Ensure made a new private key beside an old public key")
		}
	})
	t.Run("mismatched pair", func(t *testing.T) {
		dir, other := t.TempDir(), t.TempDir()
		for _, d := range []string{dir, other} {
			if _, _, err := Ensure(d, nil); err != nil {
				t.Fatal(err)
			}
		}
		data, _ := os.ReadFile(PubPath(other))
		os.WriteFile(PubPath(dir), data, 0o644)
		if _, err := Load(dir); err == nil {
			t.Error("Load accepted a public key of another pair")
		}
	})
	t.Run("short secret", func(t *testing.T) {
		dir := t.TempDir()
		if _, _, err := Ensure(dir, nil); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, SessionSecretFile), []byte("abcd\n"), 0o600)
		if _, err := Load(dir); err == nil {
			t.Error("Load accepted a 2-byte secret")
		}
	})
}

func TestSessionKey(t *testing.T) {
	sec := bytes.Repeat([]byte{1}, SecretBytes)
	a, b := [32]byte{1}, [32]byte{2}
	ka, kb := SessionKey(sec, a), SessionKey(sec, b)
	if len(ka) != 32 || bytes.Equal(ka, kb) {
		t.Errorf("keys of two images: %x %x; want 32 distinct bytes each", ka, kb)
	}
	if !bytes.Equal(ka, SessionKey(sec, a)) {
		t.Error("SessionKey is not a function of its inputs")
	}
	if bytes.Equal(ka, SessionKey(bytes.Repeat([]byte{2}, SecretBytes), a)) {
		t.Error("two secrets give one key")
	}
}
