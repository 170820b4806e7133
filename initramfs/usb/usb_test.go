package usb

import (
	"bytes"
	"crypto/rand"
	"debug/pe"
	"os"
	"os/exec"
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
	dir, kernel, initramfs, out, conf := writeStick(t)
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

// writeStick writes a stick image from random stand-in kernel and
// initramfs files, with a shoal.conf.
func writeStick(t *testing.T) (dir string, kernel, initramfs []byte, out string, conf []byte) {
	t.Helper()
	testdisk.Need(t, "objcopy", "sgdisk", "mcopy", "fsck.fat")
	if _, err := os.Stat(DefaultStub); err != nil {
		testdisk.Missing(t, "%s missing (apt-get install systemd-boot-efi)", DefaultStub)
	}
	dir = t.TempDir()
	kernel, initramfs = make([]byte, 3<<20+17), make([]byte, 5<<20+3)
	rand.Read(kernel)
	rand.Read(initramfs)
	kPath, iPath := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initramfs")
	os.WriteFile(kPath, kernel, 0o644)
	os.WriteFile(iPath, initramfs, 0o644)
	conf = []byte("repo = http://10.0.0.1:8080/repo/\nimage = debian-12\n")
	out = filepath.Join(dir, "stick.img")
	if err := Write(Options{Kernel: kPath, Initramfs: iPath, Cmdline: "console=ttyS0 panic=-1", Conf: conf}, out); err != nil {
		t.Fatal(err)
	}
	return dir, kernel, initramfs, out, conf
}

// TestSetConf replaces shoal.conf on a stick, with a longer and then a
// shorter file: mtools and the appliance read the new one, fsck.fat finds
// the FAT clean, and the unified kernel image is unchanged. A bad
// shoal.conf, or a file that is not a stick, is refused with nothing
// written.
func TestSetConf(t *testing.T) {
	dir, _, _, stick, _ := writeStick(t)
	efi := func() []byte {
		p := filepath.Join(dir, "BOOTX64.EFI")
		os.Remove(p)
		testdisk.Run(t, "mcopy", "-i", stick+"@@1M", "::/EFI/BOOT/BOOTX64.EFI", p)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	efiBefore := efi()
	// fsck.fat checks the partition, cut out of the disk image. go-diskfs's
	// FAT already has two things fsck.fat would fix (a directory's '..'
	// naming the root's cluster, no free-cluster count in FSInfo), which
	// the firmware and Linux accept: SetConf must add none.
	fsck := func() string {
		part := filepath.Join(dir, "esp.img")
		testdisk.Run(t, "dd", "if="+stick, "of="+part, "bs=1M", "skip=1", "status=none")
		out, _ := exec.Command("fsck.fat", "-n", part).CombinedOutput()
		var keep []string
		for _, l := range strings.Split(string(out), "\n") {
			if !strings.Contains(l, "clusters") && !strings.Contains(l, "should be") && !strings.HasPrefix(l, "fsck.fat ") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	fsckBefore := fsck()
	long := []byte("# the lab\nrepo = http://192.168.77.1:8080/repo/\nserver = http://192.168.77.1:8080\nimage = lab\ndisk = auto\nafter = poweroff\n" + strings.Repeat("# padding\n", 600))
	for _, conf := range [][]byte{long, []byte("repo = http://h/repo/\nimage = x\n")} {
		if err := SetConf(stick, conf); err != nil {
			t.Fatalf("SetConf(%d bytes): %v", len(conf), err)
		}
		got := filepath.Join(dir, "got.conf")
		os.Remove(got)
		testdisk.Run(t, "mcopy", "-i", stick+"@@1M", "::/shoal.conf", got)
		if b, _ := os.ReadFile(got); !bytes.Equal(b, conf) {
			t.Errorf("shoal.conf via mtools after SetConf: %d bytes, want the %d given", len(b), len(conf))
		}
		if b, err := appliance.ReadConf(stick); err != nil || !bytes.Equal(b, conf) {
			t.Errorf("appliance.ReadConf after SetConf = %d bytes, %v; want the %d given", len(b), err, len(conf))
		}
		if got := fsck(); got != fsckBefore {
			t.Errorf("fsck.fat -n after SetConf:\n%s\nwant what it said before:\n%s", got, fsckBefore)
		}
	}
	if !bytes.Equal(efi(), efiBefore) {
		t.Errorf("SetConf changed EFI/BOOT/BOOTX64.EFI")
	}

	before, err := os.ReadFile(stick)
	if err != nil {
		t.Fatal(err)
	}
	if err := SetConf(stick, []byte("repo http://no-equals-sign\n")); err == nil {
		t.Errorf("SetConf(bad syntax) = nil, want an error")
	}
	if after, _ := os.ReadFile(stick); !bytes.Equal(after, before) {
		t.Errorf("SetConf(bad syntax) wrote to the stick")
	}
	notStick := filepath.Join(dir, "blank.img")
	if err := os.Truncate(notStick, 8<<20); err != nil {
		os.WriteFile(notStick, make([]byte, 8<<20), 0o644)
	}
	if err := SetConf(notStick, []byte("image = x\n")); err == nil {
		t.Errorf("SetConf(a blank file) = nil, want an error")
	}
	if b, _ := os.ReadFile(notStick); !bytes.Equal(b, make([]byte, 8<<20)) {
		t.Errorf("SetConf(a blank file) wrote to it")
	}
}
