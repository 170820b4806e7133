package inventory

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const sample = `# mac              action   image      disk
52:54:00:12:34:56  reimage  debian-12  /dev/vda   # rack 1
52-54-00-12-34-57  local    debian-12  -
`

func TestParse(t *testing.T) {
	s, err := Parse([]byte(sample), "")
	if err != nil {
		t.Fatal(err)
	}
	got := s.Machines()
	want := []Machine{
		{MAC: "52:54:00:12:34:56", Action: Reimage, Image: "debian-12", Disk: "/dev/vda", Known: true},
		{MAC: "52:54:00:12:34:57", Action: Local, Image: "debian-12", Known: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Machines() mismatch (-want +got):\n%s", diff)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"bad mac", "zz reimage img\n", "bad MAC"},
		{"bad action", "52:54:00:12:34:56 wipe img\n", "action"},
		{"too few fields", "52:54:00:12:34:56 reimage\n", "fields"},
		{"duplicate", "52:54:00:12:34:56 reimage a\n52:54:00:12:34:56 local a\n", "twice"},
		{"long mac", "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01 reimage a\n", "bad MAC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in), "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse(%q) error = %v, want one containing %q", tc.in, err, tc.want)
			}
		})
	}
}

func TestUnknownPolicy(t *testing.T) {
	ignore, err := Parse([]byte(sample), "ignore")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ignore.Lookup("02:00:00:00:00:01"); !errors.Is(err, ErrUnknown) {
		t.Errorf("Lookup(unknown) with ignore: error = %v, want ErrUnknown", err)
	}
	if _, err := ignore.Report("02:00:00:00:00:01", Status{State: "writing"}, time.Now()); !errors.Is(err, ErrUnknown) {
		t.Errorf("Report(unknown) with ignore: error = %v, want ErrUnknown", err)
	}
	img, err := Parse([]byte(sample), "fallback")
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Lookup("02:00:00:00:00:01")
	if err != nil {
		t.Fatal(err)
	}
	if m.Image != "fallback" || m.Action != Reimage || m.Known {
		t.Errorf("Lookup(unknown) with image policy = %+v, want unknown reimage with fallback", m)
	}
	if n := len(img.Machines()); n != 2 {
		t.Errorf("after Lookup, %d machines listed, want 2 (lookups must not add)", n)
	}
}

func TestSuccessTurnsLocalAndSaves(t *testing.T) {
	path := filepath.Join(t.TempDir(), "machines")
	if err := os.WriteFile(path, []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, "fallback")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	// Progress does not change the action.
	m, err := s.Report("52:54:00:12:34:56", Status{State: "writing", Progress: 0.5}, now)
	if err != nil || m.Action != Reimage {
		t.Fatalf("Report(writing) = %+v, %v; want action reimage", m, err)
	}
	// Done but not verified does not either.
	if m, _ := s.Report("52:54:00:12:34:56", Status{State: "done"}, now); m.Action != Reimage {
		t.Errorf("unverified done turned action to %s, want reimage", m.Action)
	}
	if m, _ := s.Report("52:54:00:12:34:56", Status{State: "done", Verified: true, Progress: 1}, now); m.Action != Local {
		t.Errorf("verified done: action %s, want local", m.Action)
	}
	// An unknown machine let in by the policy is appended when it succeeds.
	if _, err := s.Report("02:00:00:00:00:09", Status{State: "done", Verified: true}, now); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := `# mac              action   image      disk
52:54:00:12:34:56  local    debian-12  /dev/vda  # rack 1
52:54:00:12:34:57  local    debian-12  -
02:00:00:00:00:09  local    fallback  -
`
	if diff := cmp.Diff(want, string(data)); diff != "" {
		t.Errorf("saved file mismatch (-want +got):\n%s", diff)
	}
	// And it loads back the same.
	s2, err := Open(path, "ignore")
	if err != nil {
		t.Fatal(err)
	}
	m2, err := s2.Lookup("02:00:00:00:00:09")
	if err != nil || m2.Action != Local || m2.Image != "fallback" {
		t.Errorf("reloaded Lookup = %+v, %v; want local fallback", m2, err)
	}
}

func TestSilentAt(t *testing.T) {
	now := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		m    Machine
		want bool
	}{
		{"never reported", Machine{}, false},
		{"writing, reported 5 s ago", Machine{LastReport: now.Add(-5 * time.Second), Status: Status{State: "writing"}}, false},
		{"writing, reported 2 min ago", Machine{LastReport: now.Add(-2 * time.Minute), Status: Status{State: "writing"}}, true},
		{"done 2 min ago", Machine{LastReport: now.Add(-2 * time.Minute), Status: Status{State: "done"}}, false},
		{"failed 2 min ago", Machine{LastReport: now.Add(-2 * time.Minute), Status: Status{State: "failed"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.m.SilentAt(now, 30*time.Second); got != tc.want {
				t.Errorf("SilentAt() = %v, want %v", got, tc.want)
			}
		})
	}
}
