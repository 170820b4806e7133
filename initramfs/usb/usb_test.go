package usb

import (
	"bytes"
	"crypto/rand"
	"debug/pe"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/initramfs/appliance"
	"github.com/shoal-project/shoal/internal/testdisk"
)

// TestWrite makes a stick image from stand-in kernel and initramfs files
// and reads it back with other tools: sgdisk sees one EFI system
// partition, mtools finds EFI/BOOT/BOOTX64.EFI and shoal.conf on its FAT,
// the unified kernel image's PE sections hold the kernel, the initramfs
// and the command line byte for byte, and the appliance's own reader finds
// shoal.conf.
func TestWrite(t *testing.T) {
	testdisk.Need(t, "objcopy", "sgdisk", "mcopy")
	if _, err := os.Stat(DefaultStub); err != nil {
		if testdisk.InCI() {
			t.Fatalf("%s missing (apt-get install systemd-boot-efi); CI is set, so not skipping", DefaultStub)
		}
		t.Skipf("%s missing (apt-get install systemd-boot-efi)", DefaultStub)
	}
	dir := t.TempDir()
	kernel, initramfs := make([]byte, 3<<20+17), make([]byte, 5<<20+3)
	rand.Read(kernel)
	rand.Read(initramfs)
	kPath, iPath := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initramfs")
	os.WriteFile(kPath, kernel, 0o644)
	os.WriteFile(iPath, initramfs, 0o644)
	conf := []byte("repo = http://10.0.0.1:8080/repo/\nimage = debian-12\n")
	out := filepath.Join(dir, "stick.img")
	if err := Write(Options{Kernel: kPath, Initramfs: iPath, Cmdline: "console=ttyS0 panic=-1", Conf: conf}, out); err != nil {
		t.Fatal(err)
	}
	if p := testdisk.Run(t, "sgdisk", "-p", out); !strings.Contains(p, "EF00  SHOAL") {
		t.Errorf("sgdisk -p: no EFI system partition named SHOAL:\n%s", p)
	}
	efi := filepath.Join(dir, "BOOTX64.EFI")
	testdisk.Run(t, "mcopy", "-i", out+"@@1M", "::/EFI/BOOT/BOOTX64.EFI", efi)
	gotConf := filepath.Join(dir, "shoal.conf")
	testdisk.Run(t, "mcopy", "-i", out+"@@1M", "::/shoal.conf", gotConf)
	if b, _ := os.ReadFile(gotConf); !bytes.Equal(b, conf) {
		t.Errorf("shoal.conf via mtools = %q, want %q", b, conf)
	}
	f, err := pe.Open(efi)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for name, want := range map[string][]byte{".linux": kernel, ".initrd": initramfs, ".cmdline": []byte("console=ttyS0 panic=-1\x00")} {
		s := f.Section(name)
		if s == nil {
			t.Errorf("BOOTX64.EFI has no %s section", name)
			continue
		}
		b, err := s.Data()
		if err != nil {
			t.Fatal(err)
		}
		// PE pads raw data to the file alignment.
		if len(b) < len(want) || !bytes.Equal(b[:len(want)], want) || s.VirtualSize != uint32(len(want)) {
			t.Errorf("section %s: %d bytes (virtual %d), want the %d bytes given", name, len(b), s.VirtualSize, len(want))
		}
	}
	// No two sections overlap in memory (the stub's and the added ones).
	for i, a := range f.Sections {
		for _, b := range f.Sections[i+1:] {
			if a.VirtualAddress < b.VirtualAddress+b.VirtualSize && b.VirtualAddress < a.VirtualAddress+a.VirtualSize {
				t.Errorf("sections %s and %s overlap", a.Name, b.Name)
			}
		}
	}
	if b, err := appliance.ReadConf(out); err != nil || !bytes.Equal(b, conf) {
		t.Errorf("appliance.ReadConf = %q, %v; want %q", b, err, conf)
	}
}
