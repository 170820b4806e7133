package qemutests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-project/shoal/internal/lab"
	"github.com/shoal-project/shoal/internal/netlabtest"
	"github.com/shoal-project/shoal/internal/syncbuf"
	"github.com/shoal-project/shoal/netboot/api"
)

// fleetSetup checks the tools and returns a boot directory with the
// appliance, built by ./build.sh when out/ lacks it.
func fleetSetup(t *testing.T) (out, shoal string) {
	t.Helper()
	netlabtest.RequireRoot(t)
	netlabtest.RequireTool(t, "qemu-system-x86_64")
	out, err := filepath.Abs("../out")
	if err != nil {
		t.Fatal(err)
	}
	missing := false
	for _, f := range append(lab.BootFiles, "sample-os.img", lab.USBStick) {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			missing = true
		}
	}
	if missing {
		cmd := exec.Command("../build.sh")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("./build.sh: %v\n%s", err, b)
		}
	}
	dir := t.TempDir()
	shoal, _ = netbootBuild(t, dir)
	return out, shoal
}

// TestFleet PXE-boots three machines (SeaBIOS, OVMF, SeaBIOS) on a private
// LAN with shoal serve, a fourth whose disk is too small, and boots a fifth
// (OVMF) from the USB stick out/shoal-usb.img with its shoal.conf pointed
// at the server. The four that fit are reimaged from one image with one
// leader and three followers, the server sends about one image, every
// chunk verifies and every disk equals byte for byte the one shoal image
// apply writes on the host, the inventory turns each to local, and each
// machine boots the sample OS from its own disk (the USB machine with the
// stick pulled); the fourth fails cleanly at the
// server and on its console, with nothing written.
func TestFleet(t *testing.T) {
	out, shoal := fleetSetup(t)
	var table bytes.Buffer
	sum, err := lab.Run(context.Background(), lab.Config{
		Nodes: 5, Firmware: []string{"bios", "uefi", "bios", "bios", "usb"},
		Out: out, Shoal: shoal, Dashboard: "off", Table: &table, Accel: testAccel(t),
		Timeout: 8 * time.Minute, Stagger: 500 * time.Millisecond,
		Faults: lab.Faults{TinyDisk: 4},
	})
	t.Logf("lab:\n%s", lastTable(table.String()))
	if err != nil {
		t.Fatalf("lab.Run: %v", err)
	}
	roles := map[api.Role]int{}
	for _, n := range append(sum.Nodes[:3:3], sum.Nodes[4]) {
		roles[n.Role]++
		if !n.Verified || !n.DiskMatches || !n.BootedNewOS || n.Action != "local" {
			t.Errorf("%s (%s): verified %v, disk equal to the image %v, booted new OS %v, inventory action %q; want all, and local",
				n.Name, n.Firmware, n.Verified, n.DiskMatches, n.BootedNewOS, n.Action)
		}
	}
	if roles["leader"] != 1 || roles["follower"] != 3 {
		t.Errorf("roles %v, want one leader and three followers", roles)
	}
	for _, n := range sum.Nodes {
		// The leader stays to multicast once its disk is complete.
		if s := fmt.Sprint(n.States); n.Role == api.RoleLeader && !strings.Contains(s, "serving done") {
			t.Errorf("leader %s reported states %q, want serving then done", n.Name, s)
		}
	}
	if u := sum.Nodes[4]; u.Firmware != "usb" || u.State != "done" {
		t.Errorf("the USB machine: %+v, want firmware usb, done", u)
	}
	if tiny := sum.Nodes[3]; tiny.State != "failed" || !strings.Contains(strings.ToLower(tiny.Error), "small") {
		t.Errorf("machine with a tiny disk: state %q error %q, want failed saying the disk is too small", tiny.State, tiny.Error)
	} else if tiny.Action != "reimage" {
		t.Errorf("machine with a tiny disk: inventory action %q, want it left at reimage", tiny.Action)
	} else if !strings.Contains(strings.ToLower(tiny.ConsoleError), "small") {
		t.Errorf("machine with a tiny disk: its console's failure banner says %q, want the disk too small", tiny.ConsoleError)
	}
	if r := float64(sum.ServerEgressBytes) / float64(sum.ImageBytes); r > 1.5 {
		t.Errorf("server sent %d bytes = %.2fx the image's %d, want about one image (<= 1.5x)", sum.ServerEgressBytes, r, sum.ImageBytes)
	}
	t.Logf("%.0f s; server egress %.2fx the image", sum.Seconds, float64(sum.ServerEgressBytes)/float64(sum.ImageBytes))
}

// TestFleetLeaderKilled PXE-boots three SeaBIOS machines and kills the
// leader's QEMU once both others follow it and one has half the image:
// the two complete, verify and boot their new OS, and one of them took
// over (it ends as a leader that had data from peers: it followed, won
// the election and fetched the rest from the server for both).
//
// The multicast runs at 4 Mbit/s so that the 20 MiB sample OS (9.5 MiB
// stored, 20 chunks of 1 MiB) takes about 20 s to send: machines boot
// seconds apart under TCG, and the kill needs both followers in the
// session before it ends.
func TestFleetLeaderKilled(t *testing.T) {
	out, shoal := fleetSetup(t)
	var table bytes.Buffer
	sum, err := lab.Run(context.Background(), lab.Config{
		Nodes: 3, Firmware: []string{"bios"},
		Out: out, Shoal: shoal, Dashboard: "off", Table: &table, Accel: testAccel(t),
		Timeout: 8 * time.Minute, Stagger: 500 * time.Millisecond,
		RateBitsPerSec: 4e6,
		Faults:         lab.Faults{KillLeaderAt: 0.5},
	})
	t.Logf("lab:\n%s", lastTable(table.String()))
	if err != nil {
		t.Fatalf("lab.Run: %v", err)
	}
	if sum.KilledLeaderAt < 0.5 || sum.KilledLeaderAt >= 1 {
		t.Fatalf("the leader was killed when a follower had %.2f of the image, want a kill half way (0.5 to <1)", sum.KilledLeaderAt)
	}
	var survivors, tookOver []lab.NodeSummary
	for _, n := range sum.Nodes {
		if n.Killed {
			continue
		}
		survivors = append(survivors, n)
		if !n.Verified || !n.DiskMatches || !n.BootedNewOS {
			t.Errorf("%s: verified %v, disk equal to the image %v, booted new OS %v; want all", n.Name, n.Verified, n.DiskMatches, n.BootedNewOS)
		}
		if n.Role == "leader" && n.BytesFromPeers > 0 {
			tookOver = append(tookOver, n)
		}
	}
	if len(survivors) != 2 {
		t.Fatalf("%d machines not killed, want 2: %+v", len(survivors), sum.Nodes)
	}
	if len(tookOver) != 1 {
		t.Errorf("%d survivors took over (ended as leader with data from peers), want 1: %+v", len(tookOver), survivors)
	}
	t.Logf("%.0f s; killed at %.0f%%; server egress %.2fx the image", sum.Seconds, 100*sum.KilledLeaderAt, float64(sum.ServerEgressBytes)/float64(sum.ImageBytes))
}

// TestLabInterrupted runs `shoal lab` as a program and interrupts it
// (SIGINT, as Ctrl-C does) once a machine is writing its disk: it exits
// non-zero within a minute, the QEMUs and the server it started (the PIDs
// its log names) are gone, its namespaces are deleted and its work
// directory removed.
func TestLabInterrupted(t *testing.T) {
	out, shoal := fleetSetup(t)
	var stdout, stderr syncbuf.Buffer
	cmd := exec.Command(shoal, "lab", "--nodes", "2", "--firmware", "bios", "--out", out, "--dashboard", "off", "--accel", string(testAccel(t)), "-v")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1) // one value: the select that takes it ends the test's wait
	waited := make(chan struct{})
	go func() { exited <- cmd.Wait(); close(waited) }()
	t.Cleanup(func() {
		select {
		case <-waited:
		default:
			cmd.Process.Kill() // the process this test started, by PID
			<-waited
		}
	})
	deadline := time.After(5 * time.Minute)
	for !regexp.MustCompile(`(?m)^ +node\d +bios +\S+ +writing `).MatchString(stdout.String()) {
		select {
		case err := <-exited:
			t.Fatalf("shoal lab ended before a machine was writing: %v\n%s\n%s", err, stdout.String(), stderr.String())
		case <-deadline:
			t.Fatalf("no machine writing after 5 minutes:\n%s\n%s", stdout.String(), stderr.String())
		case <-time.After(500 * time.Millisecond):
		}
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err == nil {
			t.Errorf("shoal lab exited 0 after an interrupt, want non-zero")
		}
	case <-time.After(time.Minute):
		t.Fatalf("shoal lab still running a minute after SIGINT:\n%s", stderr.String())
	}
	log := stderr.String()
	var pids []int
	for _, m := range regexp.MustCompile(`msg="(?:machine started|shoal serve started)".* pid=(\d+)`).FindAllStringSubmatch(log, -1) {
		pid, _ := strconv.Atoi(m[1])
		pids = append(pids, pid)
	}
	if len(pids) != 3 {
		t.Fatalf("the log names %d PIDs (machines and server), want 3:\n%s", len(pids), log)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still there after shoal lab ended (kill 0: %v)", pid, err)
		}
	}
	net := regexp.MustCompile(`msg=network hub=(\S+) server=(\S+)`).FindStringSubmatch(log)
	if net == nil {
		t.Fatalf("the log names no network:\n%s", log)
	}
	ns, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range net[1:] {
		if regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\b`).Match(ns) {
			t.Errorf("namespace %s still there:\n%s", name, ns)
		}
	}
	work := regexp.MustCompile(`msg="work directory" path=(\S+)`).FindStringSubmatch(log)
	if work == nil {
		t.Fatalf("the log names no work directory:\n%s", log)
	}
	if _, err := os.Stat(work[1]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("work directory %s: %v, want it removed", work[1], err)
	}
	t.Logf("interrupted; %d processes, namespaces %v and %s gone", len(pids), net[1:], work[1])
}

// lastTable returns the last live table and the summary.
func lastTable(s string) string {
	if i := strings.LastIndex(s, "\n\n"); i > 0 {
		if j := strings.LastIndex(s[:i], "\n\n"); j > 0 {
			return s[j:]
		}
	}
	return s
}
