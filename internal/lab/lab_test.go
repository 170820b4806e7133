package lab

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/shoal-project/shoal/netboot/api"
)

func TestParseRepoEgress(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     int64
		wantErr  bool
	}{
		{"present", "# HELP x\nshoal_serve_http_response_bytes_total{route=\"boot\"} 99\nshoal_serve_http_response_bytes_total{route=\"repo\"} 1.2345678e+07\n", 12345678, false},
		{"absent", "shoal_serve_http_response_bytes_total{route=\"boot\"} 99\n", 0, false},
		{"garbage", "shoal_serve_http_response_bytes_total{route=\"repo\"} lots\n", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRepoEgress(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("ParseRepoEgress() = %d, %v; want %d, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c := Config{Shoal: "shoal"}
	if err := c.defaults(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"bios", "uefi"}, c.Firmware); c.Nodes != 3 || diff != "" || c.Timeout != 15*time.Minute {
		t.Errorf("defaults: nodes %d firmware %v timeout %v; want 3, [bios uefi], 15m", c.Nodes, c.Firmware, c.Timeout)
	}
	for _, bad := range []Config{{Shoal: "s", Firmware: []string{"coreboot"}}, {Shoal: "s", Nodes: 1000}} {
		if err := bad.defaults(); err == nil {
			t.Errorf("defaults(%+v) = nil, want an error", bad)
		}
	}
}

// TestNodeUpdate checks how a machine's state follows the server's reports
// and its console.
func TestNodeUpdate(t *testing.T) {
	n := &node{started: time.Now(), sample: true}
	n.Name = "node1"
	n.update(nil)
	if n.over() || n.ok() {
		t.Fatalf("machine with no report: over %v ok %v, want neither", n.over(), n.ok())
	}
	n.update(&api.Machine{Action: api.Local, LastReport: time.Now(), Status: api.Status{State: "done", Role: "follower", Verified: true, BytesFromPeers: 5}})
	if n.Action != "local" {
		t.Errorf("action %q after the server's machine says local, want local", n.Action)
	}
	n.update(&api.Machine{Action: api.Local, LastReport: time.Now(), Status: api.Status{State: "done"}})
	if diff := cmp.Diff([]api.State{api.StateDone}, n.States); diff != "" {
		t.Errorf("states, a state reported twice (-want +got):\n%s", diff)
	}
	if n.over() || n.ok() || n.Seconds <= 0 || n.Role != "follower" || n.BytesFromPeers != 5 {
		t.Errorf("done but not booted: over %v ok %v seconds %v role %q peers %d", n.over(), n.ok(), n.Seconds, n.Role, n.BytesFromPeers)
	}
	n.update(&api.Machine{LastReport: time.Now(), Status: api.Status{State: "done"}})
	if n.BytesFromPeers != 5 {
		t.Errorf("a report without counts took the bytes from peers from 5 to %d, want them kept", n.BytesFromPeers)
	}
	n.BootedNewOS = true
	n.sample = false
	if !n.ok() {
		t.Errorf("done, verified and booted, image not the sample OS: ok = false, want true")
	}
	n.sample = true
	if !n.over() || n.ok() {
		t.Errorf("done and booted, disk not compared: over %v ok %v, want over and not ok", n.over(), n.ok())
	}
	n.DiskMatches = true
	if !n.over() || !n.ok() {
		t.Errorf("done, booted, disk matches: over %v ok %v, want both", n.over(), n.ok())
	}
	f := &node{}
	f.update(&api.Machine{LastReport: time.Now(), Status: api.Status{State: "failed", Error: "disk too small"}})
	if !f.over() || f.ok() || f.Error != "disk too small" {
		t.Errorf("failed machine: over %v ok %v error %q", f.over(), f.ok(), f.Error)
	}
}

func TestTableAndSummary(t *testing.T) {
	var b bytes.Buffer
	n := &node{}
	n.NodeSummary = NodeSummary{Name: "node2", Firmware: "uefi", MAC: "52:54:00:5e:00:02", State: "writing", Role: "leader", BytesFromServer: 3 << 20, Progress: 0.42}
	n.rateBitsPerSec = 12.5e6
	quiet := &node{silent: true}
	quiet.NodeSummary = NodeSummary{Name: "node3", State: "writing", Role: "follower"}
	printTable(&b, []*node{n, quiet}, 65*time.Second)
	if !regexp.MustCompile(`node3 .* silent `).MatchString(b.String()) {
		t.Errorf("table lacks node3 shown silent:\n%s", b.String())
	}
	printSummary(&b, Summary{Seconds: 12, ImageBytes: 10 << 20, ServerEgressBytes: 11 << 20, Nodes: []NodeSummary{n.NodeSummary}})
	for _, want := range []string{"01:05", "node2", "uefi", "writing", "leader", "  42%", "12.5Mbit/s", "server ", "3.0MiB", "1.10x the image"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}
}

func TestKillTarget(t *testing.T) {
	mk := func(name string, state api.State, role api.Role, progress float64) *node {
		n := &node{started: time.Now()}
		n.Name, n.State, n.Role, n.Progress = name, state, role, progress
		return n
	}
	tiny := mk("tiny", "", "", 0)
	tiny.tiny = true
	for _, tc := range []struct {
		name  string
		nodes []*node
		want  string // the leader killed; "" for none
	}{
		{"all follow, half way", []*node{mk("a", "writing", "leader", 0.9), mk("b", "writing", "follower", 0.5), mk("c", "writing", "follower", 0.2)}, "a"},
		{"not half way yet", []*node{mk("a", "writing", "leader", 0.9), mk("b", "writing", "follower", 0.4), mk("c", "writing", "follower", 0.2)}, ""},
		{"one still booting", []*node{mk("a", "writing", "leader", 0.9), mk("b", "writing", "follower", 0.7), mk("c", "", "", 0)}, ""},
		{"one still listening", []*node{mk("a", "writing", "leader", 0.9), mk("b", "writing", "follower", 0.7), mk("c", "listening", "listening", 0)}, ""},
		{"a tiny disk is left out", []*node{mk("a", "writing", "leader", 0.9), mk("b", "writing", "follower", 0.7), tiny}, "a"},
		{"a complete follower is left out", []*node{mk("a", "writing", "leader", 1), mk("b", "done", "follower", 1), mk("c", "writing", "follower", 0.6)}, "a"},
		{"the leader is done", []*node{mk("a", "done", "leader", 1), mk("b", "writing", "follower", 0.7)}, ""},
		{"no leader", []*node{mk("b", "writing", "follower", 0.7)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := killTarget(tc.nodes, 0.5)
			got := ""
			if l != nil {
				got = l.Name
			}
			if got != tc.want {
				t.Errorf("killTarget() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestConsoleFailure(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"banner", "[ 9.1] shoal: \n=====\nSHOAL: REIMAGING FAILED at step \"target disk\"\n  image:  lab\n  error:  /dev/vda: 8.0 MiB is too small\n  what to do: x\n", `at step "target disk": /dev/vda: 8.0 MiB is too small`},
		{"none", "[ 9.1] shoal: SUCCESS\n", ""},
		{"no error line", "SHOAL: REIMAGING FAILED at step \"network\"\n", `at step "network"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ConsoleFailure([]byte(tc.in)); got != tc.want {
				t.Errorf("ConsoleFailure() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFirstDifference(t *testing.T) {
	dir := t.TempDir()
	base := make([]byte, 3<<20+5)
	for i := range base {
		base[i] = byte(i * 7)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("a", base)
	flip := append([]byte(nil), base...)
	flip[2<<20+3] ^= 1
	for _, tc := range []struct {
		name string
		b    []byte
		want int64
	}{
		{"equal", base, -1},
		{"one bit", flip, 2<<20 + 3},
		{"shorter", base[:1<<20], 1 << 20},
		{"longer", append(append([]byte(nil), base...), 0), int64(len(base))},
		{"empty", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := firstDifference(a, write(tc.name, tc.b))
			if err != nil || got != tc.want {
				t.Errorf("firstDifference() = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
	if _, err := firstDifference(a, filepath.Join(dir, "missing")); err == nil {
		t.Errorf("firstDifference(missing file) = nil error, want one")
	}
}

// TestNewOSConsole: the boot check matches only what the new OS printed,
// after the appliance's after-action line; a USB machine started again
// from its disk has a console of its own.
func TestNewOSConsole(t *testing.T) {
	appliance := "[ 30.1] shoal: configuration:\n  login: ignored\n[ 40.2] shoal: SUCCESS: image lab\n"
	for _, tc := range []struct {
		name    string
		n       node
		console string
		want    bool
	}{
		{"appliance only", node{}, appliance + "shoal-debian login: \n", false},
		{"after the reboot", node{}, appliance + "[ 40.3] shoal: after-action: reboot\n\x1b[2JSeaBIOS\nDebian GNU/Linux 12 shoal-debian ttyS0\n\nshoal-debian login: ", true},
		{"rebooted, no prompt yet", node{}, appliance + "[ 40.3] shoal: after-action: reboot\nSeaBIOS\nBooting `Debian'\n", false},
		{"usb from disk", node{stick: "s", fromDisk: true}, "shoal-debian login: ", true},
		{"usb still on the stick", node{stick: "s"}, "shoal-debian login: ", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			re := regexp.MustCompile(DefaultBootCheck)
			if got := re.Match(tc.n.newOSConsole([]byte(tc.console))); got != tc.want {
				t.Errorf("boot check on %q = %v, want %v", tc.console, got, tc.want)
			}
		})
	}
}

// TestWhy: a machine that is not ok says why, never only its empty state.
func TestWhy(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    node
		want string
	}{
		{"qemu exited", node{NodeSummary: NodeSummary{MachineError: "qemu exited (signal: aborted): kvm_buf_set_msrs: Assertion failed"}}, "kvm_buf_set_msrs"},
		{"never reported", node{}, "never reported to the server"},
		{"not booted", node{NodeSummary: NodeSummary{State: "done", Verified: true}, bootCheck: regexp.MustCompile(DefaultBootCheck)}, "boot check"},
		{"not verified", node{NodeSummary: NodeSummary{State: "done"}}, "not verified"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.n.why(); !strings.Contains(got, tc.want) {
				t.Errorf("why() = %q, want it to contain %q", got, tc.want)
			}
		})
	}
}
