package inventory

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// FuzzInventory: no file makes Open panic, and a file that opens survives
// the server's rewrite. Every machine reports a verified success (turning
// it local, which rewrites the file); the file written opens again with
// the same machines, images and disks, all local.
func FuzzInventory(f *testing.F) {
	f.Add([]byte("# mac action image disk\n52:54:00:12:34:56  reimage  debian-12  /dev/vda\n52:54:00:12:34:57 local debian-12 size>=100G # rack 4\n"))
	f.Add([]byte("52-54-00-12-34-56 reimage img -\n\n   # only a comment\n"))
	f.Add([]byte("52:54:00:12:34:56 reimage img\r\n52:54:00:12:34:58 reimage img2 model=A*\r\n"))
	f.Add([]byte("52:54:00:12:34:56 reboot img\n"))
	f.Add([]byte("not-a-mac reimage img\n"))
	f.Add([]byte("52:54:00:12:34:56 reimage img /dev/vda extra\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "machines")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Open(path, "")
		if err != nil {
			return
		}
		before := s.Machines()
		for _, m := range before {
			if _, err := s.Report(m.MAC, Status{State: "done", Progress: 1, Verified: true}, time.Now()); err != nil {
				t.Fatalf("Report(%s) = %v", m.MAC, err)
			}
		}
		if err := s.Save(); err != nil {
			t.Fatalf("Save = %v", err)
		}
		written, _ := os.ReadFile(path)
		s2, err := Open(path, "")
		if err != nil {
			t.Fatalf("the file the server wrote does not open: %v\n%q", err, written)
		}
		type entry struct{ MAC, Image, Disk string }
		var want, got []entry
		for _, m := range before {
			want = append(want, entry{m.MAC, m.Image, m.Disk})
		}
		for _, m := range s2.Machines() {
			got = append(got, entry{m.MAC, m.Image, m.Disk})
			if m.Action != Local {
				t.Errorf("%s: action %q after a verified success, want local", m.MAC, m.Action)
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("machines after the rewrite (-want +got):\n%s\nfile: %q", diff, written)
		}
	})
}
