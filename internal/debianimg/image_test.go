// image_test.go checks the built images: the GPT layout, the boot code in place, the filesystems (fsck) and what each variant's ESP holds.
package debianimg

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/google/go-cmp/cmp"
	"github.com/shoal-project/shoal/internal/testdisk"
)

// builtImage returns the cached image of v, building it when needed (a
// few minutes the first time on this machine).
func builtImage(t *testing.T, v Variant) string {
	t.Helper()
	testdisk.NeedRoot(t)
	testdisk.Need(t, append([]string{"fsck.vfat", "e2fsck", "mdir", "mtype", "debugfs"}, Tools...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	p, err := Build(ctx, Options{Variant: v, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// part cuts partition startLBA..+sectors out of the image into a file.
func part(t *testing.T, img string, startLBA, sectors int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "part.img")
	if err := os.WriteFile(p, testdisk.Bytes(t, img, startLBA*sectorBytes, sectors*sectorBytes), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestImageLayout(t *testing.T) {
	for _, v := range Variants {
		t.Run(string(v), func(t *testing.T) {
			img := builtImage(t, v)
			st, err := os.Stat(img)
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() != DiskBytes {
				t.Errorf("image is %d bytes, want %d", st.Size(), DiskBytes)
			}
			d, err := diskfs.Open(img, diskfs.WithOpenMode(diskfs.ReadOnly))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			pt, err := d.GetPartitionTable()
			if err != nil {
				t.Fatal(err)
			}
			table, ok := pt.(*gpt.Table)
			if !ok {
				t.Fatalf("partition table is %T, want GPT", pt)
			}
			type row struct {
				Start, End uint64
				Type       gpt.Type
				Name       string
			}
			var got []row
			for _, p := range table.Partitions {
				got = append(got, row{p.Start, p.End, p.Type, p.Name})
			}
			lastUsable := uint64(DiskBytes/sectorBytes - 34)
			want := []row{
				{BIOSBootStartLBA, BIOSBootStartLBA + BIOSBootSectors - 1, gpt.BIOSBoot, "BIOS boot"},
				{ESPStartLBA, ESPStartLBA + ESPSectors - 1, gpt.EFISystemPartition, "EFI system"},
				{RootStartLBA, lastUsable, gpt.LinuxFilesystem, "root"},
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("GPT partitions (-want +got):\n%s", d)
			}
			out := testdisk.Run(t, "sgdisk", "-v", img)
			if !strings.Contains(out, "No problems found") {
				t.Errorf("sgdisk -v:\n%s", out)
			}

			// The boot code: MBR loads core.img from the BIOS boot
			// partition, whose blocklist covers the rest of it.
			mbr, err := DecodeBootSector(testdisk.Bytes(t, img, 0, sectorBytes))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(BootFields{KernelSector: BIOSBootStartLBA, BootDrive: 0xff, DriveCheck: [2]byte{0x90, 0x90}, Signature: 0xaa55}, mbr); d != "" {
				t.Errorf("MBR (-want +got):\n%s", d)
			}
			bl, err := DecodeBlocklists(testdisk.Bytes(t, img, BIOSBootStartLBA*sectorBytes, sectorBytes))
			if err != nil {
				t.Fatal(err)
			}
			if len(bl) != 1 || bl[0].StartLBA != BIOSBootStartLBA+1 || bl[0].Segment != 0x820 ||
				int(bl[0].Sectors)+1 > BIOSBootSectors || bl[0].Sectors < 100 {
				t.Errorf("core.img blocklist %+v", bl)
			}
		})
	}
}

func TestImageFilesystems(t *testing.T) {
	for _, tc := range []struct {
		v          Variant
		have, lack string // ESP directories
		loader     string
	}{
		{Removable, "::/EFI/BOOT", "::/EFI/debian", "::/EFI/BOOT/BOOTX64.EFI"},
		{VendorOnly, "::/EFI/debian", "::/EFI/BOOT", "::/EFI/debian/grubx64.efi"},
	} {
		t.Run(string(tc.v), func(t *testing.T) {
			img := builtImage(t, tc.v)
			esp := part(t, img, ESPStartLBA, ESPSectors)
			testdisk.Run(t, "fsck.vfat", "-n", esp)
			testdisk.Run(t, "mdir", "-i", esp, tc.have)
			if out, err := exec.Command("mdir", "-i", esp, tc.lack).CombinedOutput(); err == nil {
				t.Errorf("the ESP of %s has %s:\n%s", tc.v, tc.lack, out)
			}
			// GRUB, with the boot script built in.
			efi := testdisk.Run(t, "mtype", "-i", esp, tc.loader)
			if !strings.HasPrefix(efi, "MZ") || !strings.Contains(efi, "search --no-floppy --fs-uuid --set=root "+RootUUID) {
				t.Errorf("%s is not GRUB with the embedded script (%d bytes)", tc.loader, len(efi))
			}

			root := part(t, img, RootStartLBA, RootSectors)
			testdisk.Run(t, "e2fsck", "-fn", root)
			if out := testdisk.Run(t, "tune2fs", "-l", root); !strings.Contains(out, RootUUID) {
				t.Errorf("root filesystem UUID is not %s:\n%s", RootUUID, out)
			}
			for file, want := range map[string]string{
				"/etc/hostname": Hostname + "\n",
				"/etc/fstab":    configFiles()["etc/fstab"],
			} {
				if got := debugfs(t, root, "cat "+file); got != want {
					t.Errorf("%s = %q, want %q", file, got, want)
				}
			}
			for link, want := range map[string]string{
				"/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service": "/lib/systemd/system/serial-getty@.service",
				"/vmlinuz":    "boot/vmlinuz-",
				"/initrd.img": "boot/initrd.img-",
			} {
				out := debugfs(t, root, "stat "+link)
				if !strings.Contains(out, "Fast link dest: \""+want) {
					t.Errorf("%s does not point at %s:\n%s", link, want, out)
				}
			}
		})
	}
}

func TestBuildCached(t *testing.T) {
	first := builtImage(t, Removable)
	st, err := os.Stat(first)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	again := builtImage(t, Removable)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("a cached Build took %v", took)
	}
	st2, err := os.Stat(again)
	if err != nil {
		t.Fatal(err)
	}
	if again != first || !st2.ModTime().Equal(st.ModTime()) {
		t.Errorf("second Build gave %s (%v), first %s (%v)", again, st2.ModTime(), first, st.ModTime())
	}
	if filepath.Dir(first) != DefaultCacheDir || !strings.HasPrefix(filepath.Base(first), "removable-") {
		t.Errorf("image at %s, want %s/removable-HASH.img", first, DefaultCacheDir)
	}
	vendor := builtImage(t, VendorOnly)
	if vendor == first {
		t.Error("both variants at one path")
	}
}

// debugfs runs one debugfs request on the filesystem image fs and returns
// its standard output (the banner goes to standard error).
func debugfs(t *testing.T, fs, request string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", request, fs).Output()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v", request, err)
	}
	return string(out)
}
