package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := Write(p, []byte("one"), Options{}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o644 {
		t.Errorf("new file mode %v, want 0644", fi.Mode().Perm())
	}
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, []byte("two"), Options{Perm: 0o600}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "two" {
		t.Errorf("content %q, want two", b)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
		t.Errorf("rewritten file mode %v, want its own 0640 kept", fi.Mode().Perm())
	}
	if err := Write(p, []byte("three"), Options{Perm: 0o600, ForcePerm: true}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("ForcePerm: mode %v, want 0600", fi.Mode().Perm())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries, want only the file (no temporary left)", len(ents))
	}
}

// TestSymlinkKept: writing through a symbolic link replaces its target
// and keeps the link (an operator's machines file in /etc linked to a
// repository checkout, say).
func TestSymlinkKept(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.WriteFile(real, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "sub", "link")
	os.Mkdir(filepath.Dir(link), 0o755)
	if err := os.Symlink("../real", link); err != nil {
		t.Fatal(err)
	}
	if err := Write(link, []byte("new"), Options{}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link was replaced: %v %v", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(real); string(b) != "new" {
		t.Errorf("target holds %q, want new", b)
	}
}

func TestWriteErrors(t *testing.T) {
	if err := Write(filepath.Join(t.TempDir(), "missing", "f"), nil, Options{}); err == nil {
		t.Errorf("Write into a missing directory = nil error, want one")
	}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.Symlink(b, a)
	os.Symlink(a, b)
	if err := Write(a, nil, Options{}); err == nil {
		t.Errorf("Write through a symlink loop = nil error, want one")
	}
}

func TestRename(t *testing.T) {
	dir := t.TempDir()
	tmp, p := filepath.Join(dir, ".big.tmp"), filepath.Join(dir, "big")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmp, []byte("streamed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "streamed" {
		t.Errorf("content %q, want streamed", b)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("temporary still there: %v", err)
	}
	other := filepath.Join(t.TempDir(), "x")
	os.WriteFile(other, nil, 0o644)
	if err := Rename(other, p); err == nil {
		t.Errorf("Rename across directories = nil error, want one")
	}
	if err := Rename(filepath.Join(dir, "missing"), p); err == nil {
		t.Errorf("Rename of a missing file = nil error, want one")
	}
}
