package imaging

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestCreateSerial: each Create of a name gets one more than the highest
// serial of any manifest of that name in the repository (1 for the
// first); the serial is in the signed bytes.
func TestCreateSerial(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(src, testData(256<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(dir, "repo")
	create := func(name string) *Image {
		t.Helper()
		img, _, err := Create(context.Background(), src, repo, name, CreateOptions{ChunkSizeBytes: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	for i, want := range []uint64{1, 2, 3} {
		img := create("img")
		if img.Manifest.Serial != want {
			t.Errorf("create %d: serial %d, want %d", i+1, img.Manifest.Serial, want)
		}
		if !bytes.Contains(img.Raw, []byte(`"serial": `)) {
			t.Errorf("create %d: no serial in the manifest's bytes", i+1)
		}
	}
	if got := create("other").Manifest.Serial; got != 1 {
		t.Errorf("first image of another name: serial %d, want 1", got)
	}
	// A copy of img's manifest under another folder (same name inside)
	// with a higher serial counts too.
	cp := filepath.Join(repo, "images", "img-copy")
	os.MkdirAll(cp, 0o755)
	raw := mutated(t, func(m *Manifest) { m.Name, m.Serial = "img", 10 })
	if err := os.WriteFile(filepath.Join(cp, "manifest.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := create("img").Manifest.Serial; got != 11 {
		t.Errorf("after a manifest of serial 10: serial %d, want 11", got)
	}
}

func TestManifestWithoutSerial(t *testing.T) {
	raw := seedManifest(t)
	if bytes.Contains(raw, []byte("serial")) {
		t.Fatalf("seed manifest has a serial field; it should be an old manifest")
	}
	m, err := ParseManifest(raw)
	if err != nil {
		t.Fatal(err)
	}
	if m.Serial != 0 {
		t.Errorf("serial %d, want 0", m.Serial)
	}
}

func TestCheckNotOlder(t *testing.T) {
	for _, tc := range []struct {
		serial, min uint64
		rollback    bool
	}{
		{0, 0, false},
		{5, 0, false},
		{5, 5, false}, // the same image again
		{6, 5, false},
		{4, 5, true},
		{0, 1, true}, // an old manifest without a serial, after a serial one
	} {
		err := CheckNotOlder(&Manifest{Name: "img", Serial: tc.serial}, tc.min)
		if got := errors.Is(err, ErrRollback); got != tc.rollback {
			t.Errorf("CheckNotOlder(serial %d, min %d) = %v, want rollback %v", tc.serial, tc.min, err, tc.rollback)
		}
		if !tc.rollback && err != nil {
			t.Errorf("CheckNotOlder(serial %d, min %d) = %v, want nil", tc.serial, tc.min, err)
		}
	}
}
