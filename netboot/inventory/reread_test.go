package inventory

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var success = Status{State: "done", Progress: 1, Verified: true}

func writeMachines(t *testing.T, path, data string) {
	t.Helper()
	// A different size or a later time: what an editor's save changes.
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestOperatorEditsWin: the operator edits the file while the server runs;
// the next report (which rewrites the file) keeps the edit, and a report
// for a changed entry applies only where it still makes sense.
func TestOperatorEditsWin(t *testing.T) {
	const orig = "52:54:00:00:00:01 reimage img-a /dev/vda\n52:54:00:00:00:02 reimage img-a\n"
	for _, tc := range []struct {
		name, edit string
		report     string // MAC reporting a verified success after its boot
		wantLines  []string
	}{
		{"added machine kept", orig + "52:54:00:00:00:03 reimage img-b # new rack\n", "52:54:00:00:00:01",
			[]string{"52:54:00:00:00:01  local    img-a  /dev/vda", "52:54:00:00:00:02 reimage img-a", "52:54:00:00:00:03 reimage img-b - # new rack"}},
		{"removed machine stays removed", "52:54:00:00:00:01 reimage img-a /dev/vda\n", "52:54:00:00:00:01",
			[]string{"52:54:00:00:00:01  local    img-a  /dev/vda"}},
		{"image changed: stays reimage", "52:54:00:00:00:01 reimage img-new /dev/vda\n52:54:00:00:00:02 reimage img-a\n", "52:54:00:00:00:01",
			[]string{"52:54:00:00:00:01 reimage img-new /dev/vda", "52:54:00:00:00:02 reimage img-a"}},
		{"other machine's edit kept", "52:54:00:00:00:01 reimage img-a /dev/vda\n52:54:00:00:00:02 local img-c\n", "52:54:00:00:00:01",
			[]string{"52:54:00:00:00:01  local    img-a  /dev/vda", "52:54:00:00:00:02 local img-c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "machines")
			writeMachines(t, path, orig)
			s, err := Open(path, "")
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			s.MarkBoot(tc.report, now)
			writeMachines(t, path, tc.edit)
			if _, err := s.Report(tc.report, success, now); err != nil {
				t.Fatal(err)
			}
			if err := s.Save(); err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(path)
			// Fields compared, not spacing (the server aligns the lines
			// it writes; "-" is the default disk).
			norm := func(lines []string) string {
				var out []string
				for _, l := range lines {
					f := strings.Fields(l)
					if len(f) == 3 {
						f = append(f, "-")
					}
					out = append(out, strings.Join(f, " "))
				}
				return strings.Join(out, "\n")
			}
			got := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
			if norm(got) != norm(tc.wantLines) {
				t.Errorf("file after edit and report:\n%s\nwant:\n%s", data, strings.Join(tc.wantLines, "\n"))
			}
		})
	}
}

// TestBadEditNotOverwritten: an edit with a syntax error is not replaced
// by the server's copy; the report that would save says so.
func TestBadEditNotOverwritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "machines")
	writeMachines(t, path, "52:54:00:00:00:01 reimage img-a\n")
	s, err := Open(path, "")
	if err != nil {
		t.Fatal(err)
	}
	const bad = "52:54:00:00:00:01 reimage img-a\n52:54:00:00:00:02 reboot\n"
	writeMachines(t, path, bad)
	if _, err := s.Report("52:54:00:00:00:01", success, time.Now()); err == nil {
		t.Errorf("Report with a bad file saved without an error")
	}
	if data, _ := os.ReadFile(path); string(data) != bad {
		t.Errorf("bad edit overwritten: %q", data)
	}
}

// TestSaveKeepsModeAndSymlink: the rewrite keeps the file's mode and a
// symbolic link to it.
func TestSaveKeepsModeAndSymlink(t *testing.T) {
	for _, tc := range []struct {
		name    string
		symlink bool
		mode    os.FileMode
	}{{"mode 0644", false, 0o644}, {"mode 0664", false, 0o664}, {"symlink", true, 0o640}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			real := filepath.Join(dir, "real-machines")
			if err := os.WriteFile(real, []byte("52:54:00:00:00:01 reimage img-a\n"), tc.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(real, tc.mode)
			path := real
			if tc.symlink {
				path = filepath.Join(dir, "machines")
				if err := os.Symlink("real-machines", path); err != nil {
					t.Fatal(err)
				}
			}
			s, err := Open(path, "")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Report("52:54:00:00:00:01", success, time.Now()); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if tc.symlink && fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("symlink replaced by a %v", fi.Mode())
			}
			fi, err = os.Stat(real)
			if err != nil || fi.Mode().Perm() != tc.mode {
				t.Errorf("mode after save %v (%v), want %v", fi.Mode().Perm(), err, tc.mode)
			}
			if data, _ := os.ReadFile(real); !strings.Contains(string(data), "local") {
				t.Errorf("target not rewritten: %q", data)
			}
		})
	}
}

// TestUnknownBootsBounded: 2,000 unknown MACs fetching a boot script (with
// --unknown IMAGE) hold at most MaxPending entries, none in Machines or
// the file; one that reports joins Machines.
func TestUnknownBootsBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "machines")
	writeMachines(t, path, "52:54:00:00:00:01 reimage img-a\n")
	s, err := Open(path, "img-u")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range 2000 {
		s.MarkBoot(fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff), now.Add(time.Duration(i)*time.Millisecond))
	}
	if n := len(s.Machines()); n != 1 {
		t.Errorf("%d machines after 2,000 unknown boots, want 1", n)
	}
	if n := s.Pending(); n != MaxPending {
		t.Errorf("%d pending, want %d", n, MaxPending)
	}
	last := "02:00:00:00:07:cf" // the 2,000th: still pending
	m, err := s.Report(last, Status{State: "booting"}, now.Add(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if m.LastBoot.IsZero() || m.Image != "img-u" {
		t.Errorf("reported machine %+v: want its boot time and the unknown image", m)
	}
	if n := len(s.Machines()); n != 2 {
		t.Errorf("%d machines after one reported, want 2", n)
	}
	if data, _ := os.ReadFile(path); strings.Contains(string(data), "02:00") {
		t.Errorf("unknown machine written to the file: %q", data)
	}
}
