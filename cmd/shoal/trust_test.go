package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/imaging/sign"
	"github.com/shoal-project/shoal/internal/sitekeys"
)

// TestMain points every command's --state default ($SHOAL_STATE, also
// inherited by the shoal binaries the tests run) at a temporary
// directory holding site keys: no test reads or writes /var/lib/shoal or
// the developer's own state directory.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shoal-state-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv(envState, dir)
	if _, _, err := sitekeys.Ensure(dir, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runCapture runs the CLI in-process and returns stdout, stderr and the error.
func runCapture(args ...string) (string, string, error) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// TestKeyEnsure: key ensure makes the keys once, prints the .pub path,
// and never replaces them.
func TestKeyEnsure(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	out, _, err := runCapture("key", "ensure", "--state", state)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(out), sitekeys.PubPath(state); got != want {
		t.Errorf("key ensure printed %q, want %q", got, want)
	}
	before, err := os.ReadFile(sitekeys.KeyPath(state))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCapture("key", "ensure", "--state", state); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(sitekeys.KeyPath(state)); !bytes.Equal(before, after) {
		t.Error("a second key ensure replaced the signing key")
	}
}

// TestImageCreateSigning: create signs with the state directory's key by
// default; with no key it is an error unless --unsigned, which warns; the
// default --pub of apply is the state's, and an unsigned image needs
// --insecure-unsigned.
func TestImageCreateSigning(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "raw.img") // no table: one region
	if err := os.WriteFile(src, bytes.Repeat([]byte("shoal"), 1<<18), 0o644); err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(dir, "repo")
	state := filepath.Join(dir, "state")
	empty := filepath.Join(dir, "empty")

	if _, _, err := runCapture("image", "create", "--state", empty, "--repo", repo, "--name", "nokey", src); !errors.Is(err, errNoSigningKey) {
		t.Errorf("create with no key: %v, want errNoSigningKey", err)
	}
	_, stderr, err := runCapture("image", "create", "--state", empty, "--repo", repo, "--name", "unsigned", "--unsigned", src)
	if err != nil {
		t.Fatalf("create --unsigned: %v", err)
	}
	if !strings.Contains(stderr, "level=WARN") || !strings.Contains(stderr, "NOT signed") {
		t.Errorf("create --unsigned did not warn: %q", stderr)
	}
	if _, _, err := runCapture("key", "ensure", "--state", state); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCapture("image", "create", "--state", state, "--repo", repo, "--name", "signed", src)
	if err != nil || !strings.Contains(out, "signed        true") {
		t.Fatalf("create with the state's key: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		name, image string
		args        []string
		want        error // nil: success
	}{
		{"signed, the state's key", "signed", []string{"--state", state}, nil},
		{"unsigned refused", "unsigned", []string{"--state", state}, sign.ErrNoSignature},
		{"unsigned with --insecure-unsigned", "unsigned", []string{"--state", state, "--insecure-unsigned"}, nil},
		{"no key in the state", "signed", []string{"--state", empty}, errNoPub},
		{"another state's key", "signed", []string{}, sign.ErrBadSignature}, // $SHOAL_STATE's keys
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"image", "verify", "--repo", repo, "--name", tc.image}, tc.args...)
			_, stderr, err := runCapture(args...)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("shoal %s: %v, want %v", strings.Join(args, " "), err, tc.want)
			}
			if tc.want == nil && strings.Contains(strings.Join(tc.args, " "), "insecure") && !strings.Contains(stderr, "level=WARN") {
				t.Errorf("--insecure-unsigned did not warn: %q", stderr)
			}
		})
	}
}
