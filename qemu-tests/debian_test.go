// debian_test.go boots the real Debian 12 image of internal/debianimg from its own disk under SeaBIOS and OVMF.
package qemutests

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/internal/debianimg"
	"github.com/shoal-project/shoal/internal/lab"
	"github.com/shoal-project/shoal/internal/netlabtest"
	"github.com/shoal-project/shoal/internal/testdisk"
	"github.com/shoal-project/shoal/internal/vm"
	"github.com/shoal-project/shoal/netboot/api"
)

// debianMisc is what OVMF prints when the disk (its "UEFI Misc Device"
// option, made for every disk) holds no removable-path loader.
var debianMisc = regexp.MustCompile(`BdsDxe: failed to load Boot[0-9A-F]{4} "UEFI Misc Device"[^\n]*Not Found`)

// debianShell is the prompt of OVMF's UEFI shell, its last boot option.
const debianShell = "Shell> "

// TestDebianImageBoots is the control of TestLabDebian: a copy of the
// vendor-only image (no reimaging), under OVMF with a fresh variable
// store, must not boot: with no boot entry for \EFI\debian\grubx64.efi
// and no removable-path loader, OVMF fails the disk and ends in its UEFI
// shell. (The images' boots to Debian's login prompt are TestLabDebian's:
// SeaBIOS through the MBR, the BIOS boot partition's core.img and the
// root by UUID; OVMF through the entry the appliance made.)
func TestDebianImageBoots(t *testing.T) {
	netlabtest.RequireRoot(t)
	for _, tool := range append([]string{"qemu-system-x86_64", "cp"}, debianimg.Tools...) {
		netlabtest.RequireTool(t, tool)
	}
	if _, err := os.Stat(vm.OVMFCode); err != nil {
		testdisk.Missing(t, "OVMF (apt-get install ovmf): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 14*time.Minute)
	defer cancel()
	images := map[debianimg.Variant]string{}
	for _, v := range debianimg.Variants {
		start := time.Now()
		p, err := debianimg.Build(ctx, debianimg.Options{Variant: v})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s image %s (Build took %v)", v, p, time.Since(start).Round(100*time.Millisecond))
		images[v] = p
	}

	for _, tc := range []struct {
		name     string
		variant  debianimg.Variant
		firmware string
		boots    bool
	}{
		{"vendor-uefi", debianimg.VendorOnly, "uefi", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			disk := filepath.Join(dir, "disk.img")
			// A copy: the guest writes to its disk, the cache stays as built.
			if out, err := exec.Command("cp", "--sparse=always", images[tc.variant], disk).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v\n%s", err, out)
			}
			start := time.Now()
			m, err := vm.Start(ctx, vm.Config{Name: "debian-" + tc.name, Firmware: tc.firmware, MemMiB: 1024,
				Dir: dir, Disks: []vm.Disk{{Path: disk}}}, debianNoNIC)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Kill()
			platform := map[string]string{"bios": "pc", "uefi": "efi"}[tc.firmware]
			if tc.boots {
				bootCtx, cancel := context.WithTimeout(ctx, 4*time.Minute)
				defer cancel()
				out, err := m.WaitFor(bootCtx, debianimg.LoginPrompt)
				if err != nil {
					t.Fatalf("%v\nserial:\n%s", err, debianTail(out, 4000))
				}
				took := time.Since(start)
				if !strings.Contains(string(out), debianimg.BootMarker+" "+platform) {
					t.Errorf("serial has no %q: booted by another loader?\n%s", debianimg.BootMarker+" "+platform, debianTail(out, 4000))
				}
				if !regexp.MustCompile(debianimg.LoginPrompt).Match(out) {
					t.Error("LoginPrompt does not match the console as a regexp")
				}
				t.Logf("%s: QEMU start to %q in %v", tc.name, debianimg.LoginPrompt, took.Round(100*time.Millisecond))
				return
			}
			// It must not boot: wait (at most 90 s) for OVMF's shell, then
			// a little longer to see that nothing follows it.
			shellCtx, cancel := context.WithTimeout(ctx, 90*time.Second)
			defer cancel()
			out, err := m.WaitFor(shellCtx, debianShell)
			if err != nil {
				t.Fatalf("OVMF did not end in its UEFI shell: %v\nserial:\n%s", err, debianTail(out, 4000))
			}
			t.Logf("%s: QEMU start to OVMF's %q in %v", tc.name, strings.TrimSpace(debianShell), time.Since(start).Round(100*time.Millisecond))
			time.Sleep(10 * time.Second)
			out = m.Serial()
			if !debianMisc.Match(out) {
				t.Errorf("OVMF did not report the disk without a loader (%s)\n%s", debianMisc, debianTail(out, 4000))
			}
			for _, bad := range []string{debianimg.BootMarker, debianimg.LoginPrompt, "Linux version"} {
				if strings.Contains(string(out), bad) {
					t.Errorf("the vendor-only image booted under OVMF with a fresh variable store: serial has %q\n%s", bad, debianTail(out, 4000))
				}
			}
		})
	}
}

// debianNoNIC runs QEMU without its default NIC: the guest needs no
// network, and OVMF would otherwise try PXE and HTTP boot on it first.
func debianNoNIC(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, name, append(args, "-nic", "none")...)
}

func debianTail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// TestLabDebian reimages, in the lab, one SeaBIOS and one OVMF machine
// with the vendor-only variant of the real Debian 12 image (GRUB for
// BIOS in its BIOS boot partition; for UEFI only \EFI\debian\grubx64.efi,
// nothing at the removable path): one leads, one follows, the server
// sends about one image, and both must reach Debian's login prompt from
// their own disks, matched by the lab's default boot check after the
// appliance's reboot. The OVMF machine boots only through the entry the
// appliance wrote into its variable store (TestDebianImageBoots shows
// that the same image with a fresh store does not boot).
func TestLabDebian(t *testing.T) {
	out, shoal := fleetSetup(t)
	for _, tool := range debianimg.Tools {
		netlabtest.RequireTool(t, tool)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	img, err := debianimg.Build(ctx, debianimg.Options{Variant: debianimg.VendorOnly})
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	sum, err := lab.Run(ctx, lab.Config{
		Nodes: 2, Firmware: []string{"bios", "uefi"}, Image: img, MemMiB: 1024,
		Out: out, Shoal: shoal, Dashboard: "off", Table: &table, Accel: testAccel(t),
		Timeout: 15 * time.Minute,
	})
	t.Logf("lab:\n%s", lastTable(table.String()))
	if err != nil {
		t.Fatalf("lab.Run: %v", err)
	}
	roles := map[api.Role]int{}
	for _, n := range sum.Nodes {
		roles[n.Role]++
		if n.BootCheck != lab.DefaultBootCheck {
			t.Errorf("%s: boot check %q, want the default login prompt %q", n.Name, n.BootCheck, lab.DefaultBootCheck)
		}
		if !n.Verified || !n.BootedNewOS || n.Action != api.Local {
			t.Errorf("%s (%s): verified %v, booted Debian to its login prompt %v, inventory action %q; want both, and local",
				n.Name, n.Firmware, n.Verified, n.BootedNewOS, n.Action)
		}
	}
	if roles[api.RoleLeader] != 1 || roles[api.RoleFollower] != 1 {
		t.Errorf("roles %v, want one leader and one follower", roles)
	}
	if u := sum.Nodes[1]; !strings.Contains(u.BootEntry, `"debian" \EFI\debian\grubx64.efi`) {
		t.Errorf("the OVMF machine's boot entry: %q, want one made for \\EFI\\debian\\grubx64.efi", u.BootEntry)
	}
	r := float64(sum.ServerEgressBytes) / float64(sum.ImageBytes)
	if r > 1.5 {
		t.Errorf("server sent %d bytes = %.2fx the image's %d, want about one image (<= 1.5x)", sum.ServerEgressBytes, r, sum.ImageBytes)
	}
	t.Logf("%.0f s under %s; image %d MiB stored; server egress %.2fx the image", sum.Seconds, sum.Accel, sum.ImageBytes>>20, r)
}
