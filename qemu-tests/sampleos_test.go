package qemutests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/internal/netlabtest"
	"github.com/shoal-project/shoal/internal/sampleos"
	"github.com/shoal-project/shoal/internal/vm"
)

// TestSampleOSReimagedBoots builds the sample OS disk, makes a shoal image
// of it, applies the image to a larger blank disk with `shoal image apply`,
// and boots the applied disk under SeaBIOS and OVMF: the reimaged disk
// must carry the BIOS boot code, the ESP and the partition attributes that
// both boot paths need, and come up printing the machine's name.
func TestSampleOSReimagedBoots(t *testing.T) {
	netlabtest.RequireRoot(t)
	for _, tool := range append([]string{"qemu-system-x86_64"}, sampleos.Tools...) {
		netlabtest.RequireTool(t, tool)
	}
	kernel := netbootKernel(t)
	netbootRequire(t, sampleos.DefaultGPTMBR, "apt-get install syslinux-common")
	netbootRequire(t, sampleos.DefaultSystemdBoot, "apt-get install systemd-boot-efi")
	netbootRequire(t, vm.OVMFCode, "apt-get install ovmf")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	src := filepath.Join(dir, "sample-os.img")
	if err := sampleos.Build(ctx, sampleos.Options{Kernel: kernel, Out: src}); err != nil {
		t.Fatal(err)
	}
	shoal, _ := netbootBuild(t, dir)
	repo := filepath.Join(dir, "repo")
	sampleShoal(t, shoal, "image", "create", "--repo", repo, "--name", "sample", src)

	for _, fw := range []string{"bios", "uefi"} {
		t.Run(fw, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "disk.img")
			if err := os.WriteFile(target, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(target, 96<<20); err != nil {
				t.Fatal(err)
			}
			sampleShoal(t, shoal, "image", "apply", "--repo", repo, "--name", "sample", target)
			name := "sample-" + fw
			m, err := vm.Start(ctx, vm.Config{Name: name, Firmware: fw, MemMiB: 256, Dir: t.TempDir(), Accel: testAccel(t),
				Disks: []vm.Disk{{Path: target}}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Kill()
			start := time.Now()
			want := fmt.Sprintf("%s host=%s firmware=%s", sampleos.Marker, name, fw)
			if out, err := m.WaitFor(ctx, want); err != nil {
				t.Fatalf("%v\nserial:\n%s", err, sampleTail(out, 3000))
			}
			t.Logf("%s: reimaged disk booted the sample OS in %v", fw, time.Since(start).Round(100*time.Millisecond))
		})
	}
}

func sampleShoal(t *testing.T, shoal string, args ...string) {
	t.Helper()
	out, err := exec.Command(shoal, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("shoal %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func sampleTail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
