package qemutests

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/internal/lab"
	"github.com/shoal-project/shoal/internal/netlab"
)

// fleetSetup checks the tools and returns a boot directory with the
// appliance, built by ./build.sh when out/ lacks it.
func fleetSetup(t *testing.T) (out, shoal string) {
	t.Helper()
	netlab.RequireRoot(t)
	netlab.RequireTool(t, "qemu-system-x86_64")
	out, err := filepath.Abs("../out")
	if err != nil {
		t.Fatal(err)
	}
	missing := false
	for _, f := range append(lab.BootFiles, "sample-os.img") {
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
// LAN with shoal serve, and a fourth whose disk is too small. The three
// are reimaged from one image with one leader and two followers, the
// server sends about one image, every disk verifies, and each machine
// boots the sample OS from its own disk; the fourth fails cleanly at the
// server with nothing written.
func TestFleet(t *testing.T) {
	out, shoal := fleetSetup(t)
	var table bytes.Buffer
	sum, err := lab.Run(context.Background(), lab.Config{
		Nodes: 4, Firmware: []string{"bios", "uefi", "bios", "bios"},
		Out: out, Shoal: shoal, Dashboard: "off", Table: &table,
		Timeout: 8 * time.Minute, Stagger: 500 * time.Millisecond,
		Faults: lab.Faults{TinyDisk: 4},
	})
	t.Logf("lab:\n%s", lastTable(table.String()))
	if err != nil {
		t.Fatalf("lab.Run: %v", err)
	}
	roles := map[string]int{}
	for _, n := range sum.Nodes[:3] {
		roles[n.Role]++
		if !n.Verified || !n.BootedNewOS {
			t.Errorf("%s: verified %v, booted new OS %v; want both", n.Name, n.Verified, n.BootedNewOS)
		}
	}
	if roles["leader"] != 1 || roles["follower"] != 2 {
		t.Errorf("roles %v, want one leader and two followers", roles)
	}
	if tiny := sum.Nodes[3]; tiny.State != "failed" || !strings.Contains(strings.ToLower(tiny.Error), "small") {
		t.Errorf("machine with a tiny disk: state %q error %q, want failed saying the disk is too small", tiny.State, tiny.Error)
	}
	if r := float64(sum.ServerEgressBytes) / float64(sum.ImageBytes); r > 1.5 {
		t.Errorf("server sent %d bytes = %.2fx the image's %d, want about one image (<= 1.5x)", sum.ServerEgressBytes, r, sum.ImageBytes)
	}
	t.Logf("%.0f s; server egress %.2fx the image", sum.Seconds, float64(sum.ServerEgressBytes)/float64(sum.ImageBytes))
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
