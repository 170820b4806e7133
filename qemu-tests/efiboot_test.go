package qemutests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/internal/sampleos"
	"github.com/shoal-project/shoal/internal/testdisk"
	"github.com/shoal-project/shoal/internal/vm"
)

// TestEFIBootEntry: a machine under OVMF, with one variable store (its
// NVRAM) for all its boots, boots the real appliance kernel and initramfs
// and reimages its blank disk with the sample OS whose systemd-boot is
// only at \EFI\systemd\systemd-bootx64.efi (nothing at the removable
// path): the appliance writes the firmware boot entry and says so on the
// console. The same machine then boots from that disk alone and the
// sample OS comes up. The control: the same disk in a machine with a
// fresh OVMF variable store runs through its boot options to the UEFI
// shell without booting it.
func TestEFIBootEntry(t *testing.T) {
	kernel, initramfs := applianceInitramfs(t)
	testdisk.Need(t, append([]string{"qemu-system-x86_64"}, sampleos.Tools...)...)
	netbootRequire(t, sampleos.DefaultGPTMBR, "apt-get install syslinux-common")
	netbootRequire(t, sampleos.DefaultSystemdBoot, "apt-get install systemd-boot-efi")
	netbootRequire(t, vm.OVMFCode, "apt-get install ovmf")
	netbootRequire(t, vm.OVMFVars, "apt-get install ovmf")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	dir := t.TempDir()
	src := filepath.Join(dir, "sample-vendor.img")
	if err := sampleos.Build(ctx, sampleos.Options{Kernel: kernel, Out: src, VendorLoaderOnly: true}); err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(dir, "repo")
	if _, _, err := imaging.Create(ctx, src, repo, "sample-vendor", imaging.CreateOptions{SignKey: siteKey(t)}); err != nil {
		t.Fatal(err)
	}
	port := applianceServe(t, repo)
	disk := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 96<<20); err != nil {
		t.Fatal(err)
	}

	// 1. The appliance: direct kernel boot under OVMF (the kernel runs as
	// an EFI application and has efivarfs), the repository on the host's
	// loopback as 10.0.2.2. Dir holds the machine's variable store (its
	// NVRAM), which vm keeps across the machine's starts.
	accel := testAccel(t)
	machine := filepath.Join(dir, "machine")
	if err := os.Mkdir(machine, 0o755); err != nil {
		t.Fatal(err)
	}
	m, err := vm.Start(ctx, vm.Config{Name: "efi1", Firmware: "uefi", Dir: machine, Accel: accel,
		Disks: []vm.Disk{{Path: disk}}, NICs: []vm.NIC{{NoROM: true}}, Kernel: kernel, Initrd: initramfs,
		Append: fmt.Sprintf("console=ttyS0 panic=-1 shoal.repo=http://10.0.2.2:%d/ shoal.image=sample-vendor shoal.after=poweroff", port)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Kill()
	start := time.Now()
	if out, err := m.WaitFor(ctx, "shoal: DHCP lease"); err != nil {
		t.Fatalf("%v\nserial:\n%s", err, applianceTail(string(out), 6000))
	}
	lease := time.Since(start)
	out, err := m.WaitFor(ctx, "shoal: SUCCESS")
	if err != nil {
		t.Fatalf("%v\nserial:\n%s", err, applianceTail(string(out), 6000))
	}
	written := time.Since(start)
	select {
	case <-m.Done():
	case <-time.After(2 * time.Minute):
		t.Fatalf("the appliance did not power off after its success; serial:\n%s", applianceTail(string(m.Serial()), 3000))
	}
	entryRE := regexp.MustCompile(`\[[ 0-9.]+\] shoal: UEFI boot entry (Boot[0-9A-F]{4}) "systemd" created, first in BootOrder: /dev/vda partition 1, \\EFI\\systemd\\systemd-bootx64\.efi`)
	line := entryRE.FindStringSubmatch(string(m.Serial()))
	if line == nil {
		t.Fatalf("console lacks the boot entry line; serial:\n%s", applianceTail(string(m.Serial()), 4000))
	}
	t.Logf("console: %s", line[0])
	t.Logf("appliance under OVMF: QEMU start to DHCP lease %v, to disk written %v", lease.Round(100*time.Millisecond), written.Round(100*time.Millisecond))
	// The entry reached the machine's NVRAM: OVMF's variable store holds
	// its file path in UCS-2.
	nvram, err := os.ReadFile(filepath.Join(machine, vm.VarsFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(nvram, efibootUCS2(sampleos.VendorLoaderPath)) {
		t.Fatalf("%s does not hold %s", vm.VarsFile, sampleos.VendorLoaderPath)
	}

	// 2. The control: the same disk in a machine with a fresh variable
	// store and no NIC (-nic none: QEMU adds one otherwise). It must run
	// through its boot options to the UEFI shell, never the sample OS.
	fresh, err := vm.Start(ctx, vm.Config{Name: "efi-fresh", Firmware: "uefi", MemMiB: 256, Dir: t.TempDir(), Accel: accel,
		Disks: []vm.Disk{{Path: disk}}, Extra: []string{"-nic", "none"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Kill()
	freshStart := time.Now()
	wctx, wcancel := context.WithTimeout(ctx, 4*time.Minute)
	c, err := fresh.WaitFor(wctx, "Shell> ")
	wcancel()
	if bytes.Contains(c, []byte(sampleos.Marker)) {
		t.Fatalf("with a fresh variable store the disk booted the sample OS: the entry is not what makes it boot; serial:\n%s", applianceTail(string(c), 3000))
	}
	if err != nil || !bytes.Contains(c, []byte(`"EFI Internal Shell"`)) {
		t.Fatalf("with a fresh variable store: %v (want the firmware to reach its shell)\nserial:\n%s", err, applianceTail(string(c), 3000))
	}
	t.Logf("fresh variable store: no sample OS, the UEFI shell after %v", time.Since(freshStart).Round(100*time.Millisecond))
	fresh.Kill()

	// 3. The machine again (same Dir: its own variable store), from its
	// disk alone.
	again, err := vm.Start(ctx, vm.Config{Name: "efi1", Firmware: "uefi", MemMiB: 256, Dir: machine, Accel: accel,
		Disks: []vm.Disk{{Path: disk}}, Extra: []string{"-nic", "none"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Kill()
	againStart := time.Now()
	wctx, wcancel = context.WithTimeout(ctx, 4*time.Minute)
	c, err = again.WaitFor(wctx, sampleos.Marker+" host=efi1 firmware=uefi")
	wcancel()
	if err != nil {
		t.Fatalf("the machine did not boot its disk with the entry the appliance made: %v\nserial:\n%s", err, applianceTail(string(c), 4000))
	}
	if starting := fmt.Sprintf(`BdsDxe: starting %s "systemd"`, line[1]); !bytes.Contains(c, []byte(starting)) {
		t.Errorf("the firmware did not boot through the entry (%q not on the console):\n%s", starting, applianceTail(string(c), 3000))
	}
	t.Logf("the machine's NVRAM: disk to sample OS in %v", time.Since(againStart).Round(100*time.Millisecond))
}

// efibootUCS2 is s in little-endian UCS-2, as UEFI stores strings.
func efibootUCS2(s string) []byte {
	var b []byte
	for _, r := range s {
		b = append(b, byte(r), byte(r>>8))
	}
	return b
}
