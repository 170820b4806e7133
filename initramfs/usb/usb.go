// Package usb makes the appliance's USB-stick image: a GPT disk whose EFI
// system partition (FAT32, written with go-diskfs) holds a unified kernel
// image as EFI/BOOT/BOOTX64.EFI, which UEFI firmware boots from removable
// media without a boot loader, and shoal.conf, the plain-text settings a
// field tech edits. The unified kernel image is systemd's EFI stub with
// the kernel, the initramfs and the command line added as PE sections by
// objcopy.
package usb

import (
	"bytes"
	"debug/pe"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/shoal-project/shoal/initramfs/config"
)

// DefaultStub is Debian's systemd-boot-efi stub.
const DefaultStub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"

// ConfTemplate is the shoal.conf put on a stick when none is given.
const ConfTemplate = `# shoal.conf: what this USB stick's appliance writes, and where.
# Edit on any computer; one "key = value" per line, '#' starts a comment.
# The kernel command line (shoal.KEY=VALUE) and the server's inventory
# win over this file. See docs/appliance.md.

# The image repository: shoal serve's /repo/ or any static HTTP server.
repo = http://images.example.net:8080/repo/

# The image to write.
image = debian-12

# The target disk: auto (the only non-removable disk that is not this
# stick), a path (/dev/nvme0n1), or a selector: size=500G, size>=100G,
# model=Samsung*, serial=S4EW*; several joined with commas.
disk = auto

# What to do after a verified write: poweroff (the default from a stick:
# pull it, then power on), kexec (start the new OS now, without the
# firmware), reboot (only where the firmware boots the disk before the
# stick: else it boots the stick and reimages again) or shell.
after = poweroff

# shoal serve, for progress reports on its dashboard (optional).
#server = http://images.example.net:8080
# The site key that signs those reports (shoal serve --key), if any.
#key =
`

// Options says what goes on the stick.
type Options struct {
	Kernel    string // bzImage with EFI stub support
	Initramfs string
	Cmdline   string
	Stub      string // default DefaultStub
	Conf      []byte // shoal.conf; nil writes ConfTemplate
	// SizeBytes is the image size (default: room for the files, at least
	// 64 MiB, the smallest FAT32 go-diskfs makes comfortably).
	SizeBytes int64
}

// UKI builds a unified kernel image at out with objcopy: the stub plus
// .osrel, .cmdline, .linux and .initrd sections placed, page-aligned,
// after the stub's own sections.
func UKI(o Options, out string) error {
	stub := o.Stub
	if stub == "" {
		stub = DefaultStub
	}
	f, err := pe.Open(stub)
	if err != nil {
		return fmt.Errorf("EFI stub %s: %w (apt-get install systemd-boot-efi)", stub, err)
	}
	var base, end uint64
	if oh, ok := f.OptionalHeader.(*pe.OptionalHeader64); ok {
		base = oh.ImageBase
	}
	for _, s := range f.Sections {
		end = max(end, uint64(s.VirtualAddress)+uint64(s.VirtualSize))
	}
	f.Close()
	tmp, err := os.MkdirTemp("", "shoal-uki")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	osrel := filepath.Join(tmp, "osrel")
	cmdline := filepath.Join(tmp, "cmdline")
	if err := os.WriteFile(osrel, []byte("ID=shoal\nNAME=\"shoal appliance\"\nPRETTY_NAME=\"shoal appliance\"\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(cmdline, []byte(o.Cmdline+"\x00"), 0o644); err != nil {
		return err
	}
	args := []string{}
	off := end
	for _, s := range []struct{ name, path string }{
		{".osrel", osrel}, {".cmdline", cmdline}, {".linux", o.Kernel}, {".initrd", o.Initramfs},
	} {
		st, err := os.Stat(s.path)
		if err != nil {
			return fmt.Errorf("unified kernel image: %w", err)
		}
		off = (off + 0xfff) &^ 0xfff
		args = append(args, "--add-section", s.name+"="+s.path,
			"--change-section-vma", fmt.Sprintf("%s=%#x", s.name, base+off))
		off += uint64(st.Size())
	}
	args = append(args, stub, out)
	cmd := exec.Command("objcopy", args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("objcopy: %w: %s", err, bytes.TrimSpace(b))
	}
	return nil
}

// Write makes the stick image at out: the unified kernel image and
// shoal.conf on a FAT32 EFI system partition of a GPT disk.
func Write(o Options, out string) error {
	tmp, err := os.MkdirTemp("", "shoal-usb")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	ukiPath := filepath.Join(tmp, "BOOTX64.EFI")
	if err := UKI(o, ukiPath); err != nil {
		return err
	}
	uki, err := os.ReadFile(ukiPath)
	if err != nil {
		return err
	}
	conf := o.Conf
	if conf == nil {
		conf = []byte(ConfTemplate)
	}
	size := o.SizeBytes
	if size == 0 {
		size = max(64<<20, (int64(len(uki))*3/2+(8<<20)+(1<<20)-1)&^(1<<20-1))
	}
	if err := os.Remove(out); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	d, err := diskfs.Create(out, size, diskfs.SectorSizeDefault)
	if err != nil {
		return fmt.Errorf("create %s: %w", out, err)
	}
	defer d.Close()
	const firstLBA = 2048
	lastLBA := uint64(size/512) - 34 // room for the backup GPT
	// go-diskfs v1.9's FAT32 sizing forgets the FAT's two reserved entries
	// when (sectors - 32 reserved) mod 130 is 0 or 129 (fsck.fat: "has N
	// clusters but only space for N-1 FAT entries"): avoid those sizes.
	for (lastLBA-firstLBA+1-32)%130 == 0 || (lastLBA-firstLBA+1-32)%130 == 129 {
		lastLBA--
	}
	table := &gpt.Table{
		LogicalSectorSize:  512,
		PhysicalSectorSize: 512,
		ProtectiveMBR:      true,
		Partitions: []*gpt.Partition{{
			Index: 1, Start: firstLBA, End: lastLBA, Type: gpt.EFISystemPartition, Name: "SHOAL",
		}},
	}
	if err := d.Partition(table); err != nil {
		return fmt.Errorf("partition %s: %w", out, err)
	}
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 1, FSType: filesystem.TypeFat32, VolumeLabel: "SHOAL"})
	if err != nil {
		return fmt.Errorf("FAT32 on %s: %w", out, err)
	}
	for _, dir := range []string{"/EFI", "/EFI/BOOT"} {
		if err := fs.Mkdir(dir); err != nil {
			return fmt.Errorf("mkdir %s: %w", dir, err)
		}
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{"/EFI/BOOT/BOOTX64.EFI", uki}, {"/shoal.conf", conf}} {
		w, err := fs.OpenFile(f.path, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return fmt.Errorf("%s: %w", f.path, err)
		}
		if _, err := w.Write(f.data); err != nil {
			return fmt.Errorf("write %s: %w", f.path, err)
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("close %s: %w", f.path, err)
		}
	}
	if err := fs.Close(); err != nil && !strings.Contains(err.Error(), "not implemented") {
		return fmt.Errorf("close filesystem: %w", err)
	}
	return nil
}

// SetConf replaces shoal.conf on a stick (an image file, or the stick's
// device) made by Write, leaving the rest of it as it is: how a stick is
// pointed at another server or image without rebuilding it. conf is
// checked first (appliance syntax); nothing is written when it is bad or
// the stick is not one of ours.
func SetConf(stick string, conf []byte) error {
	if _, err := config.ParseConf(bytes.NewReader(conf)); err != nil {
		return err
	}
	d, err := diskfs.Open(stick)
	if err != nil {
		return fmt.Errorf("open %s: %w", stick, err)
	}
	defer d.Close()
	fs, err := d.GetFilesystem(1)
	if err != nil {
		return fmt.Errorf("%s: partition 1 is not the stick's EFI system partition: %w", stick, err)
	}
	if fs.Type() != filesystem.TypeFat32 {
		return fmt.Errorf("%s: partition 1 is not FAT32", stick)
	}
	uki, err := fs.OpenFile("/EFI/BOOT/BOOTX64.EFI", os.O_RDONLY)
	if err != nil {
		return fmt.Errorf("%s: no EFI/BOOT/BOOTX64.EFI, not a shoal stick: %w", stick, err)
	}
	uki.Close()
	w, err := fs.OpenFile("/shoal.conf", os.O_CREATE|os.O_RDWR|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("%s: shoal.conf: %w", stick, err)
	}
	if _, err := w.Write(conf); err != nil {
		w.Close()
		return fmt.Errorf("%s: write shoal.conf: %w", stick, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("%s: close shoal.conf: %w", stick, err)
	}
	return nil
}
