package efiboot

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoal-project/shoal/internal/testdisk"
)

// FuzzInspect: a written disk holds whatever the image held. The input
// patches a real GPT disk (sgdisk) whose ESP is a FAT made by mkfs.vfat
// holding \EFI\debian\shimx64.efi (mmd, mcopy), at an offset: the
// protective MBR, the GPT header and entries, the FAT's boot sector, its
// FATs and directories. Inspect must return a layout or an error, never
// panic (go-diskfs's panics become ErrFilesystem) nor hang.
func FuzzInspect(f *testing.F) {
	testdisk.Need(f, "sgdisk", "mkfs.vfat", "mmd", "mcopy")
	dir := f.TempDir()
	base := filepath.Join(dir, "base.img")
	if err := os.WriteFile(base, nil, 0o644); err != nil {
		f.Fatal(err)
	}
	if err := os.Truncate(base, 6<<20); err != nil {
		f.Fatal(err)
	}
	testdisk.Run(f, "sgdisk", "-n1:2048:+4M", "-t1:ef00", base)
	esp := filepath.Join(dir, "esp.fs")
	testdisk.Run(f, "mkfs.vfat", "-C", esp, "4096")
	testdisk.Run(f, "mmd", "-i", esp, "::/EFI", "::/EFI/debian")
	loader := filepath.Join(dir, "shimx64.efi")
	if err := os.WriteFile(loader, []byte("MZ shim"), 0o644); err != nil {
		f.Fatal(err)
	}
	testdisk.Run(f, "mcopy", "-i", esp, loader, "::/EFI/debian/shimx64.efi")
	fat, err := os.ReadFile(esp)
	if err != nil {
		f.Fatal(err)
	}
	img, err := os.ReadFile(base)
	if err != nil {
		f.Fatal(err)
	}
	copy(img[2048*512:], fat)
	if err := os.WriteFile(base, img, 0o644); err != nil {
		f.Fatal(err)
	}
	if l, err := Inspect(base); err != nil || l.Loader.Path != `\EFI\debian\shimx64.efi` {
		f.Fatalf("Inspect(the unpatched disk) = %+v, %v", l, err)
	}
	const espOff = 2048 * 512
	f.Add(uint32(0), []byte{})                            // as made
	f.Add(uint32(450), []byte{0xee, 0, 0, 0, 0})          // protective MBR entry
	f.Add(uint32(512+80), []byte{0xff, 0xff, 0, 0})       // GPT: number of entries
	f.Add(uint32(1024+32), []byte{0xff, 0xff, 0xff})      // GPT entry 1: first LBA
	f.Add(uint32(espOff+11), []byte{0, 0})                // bytes per sector 0
	f.Add(uint32(espOff+13), []byte{0})                   // sectors per cluster 0
	f.Add(uint32(espOff+16), []byte{0})                   // no FATs
	f.Add(uint32(espOff+0x200), []byte{0xff, 0xff, 0xff}) // the FAT
	f.Fuzz(func(t *testing.T, off uint32, patch []byte) {
		b := append([]byte(nil), img...)
		if len(patch) > 4096 {
			patch = patch[:4096]
		}
		copy(b[int(off%uint32(len(b))):], patch)
		p := filepath.Join(t.TempDir(), "disk.img")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			Inspect(p)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("Inspect still running after 10 s (patch %d bytes at %d)", len(patch), off%uint32(len(b)))
		}
	})
}
