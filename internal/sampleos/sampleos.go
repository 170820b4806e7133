// Package sampleos builds shoal's sample OS disk: a tiny GPT disk that boots
// under both legacy BIOS and UEFI and prints a marker naming the machine.
// `shoal lab` and the end-to-end tests reimage machines with it and then
// check that each machine boots its new OS from its own disk.
//
// The disk (64 MiB by default):
//
//	sector 0    protective MBR with syslinux's gptmbr.bin as boot code
//	partition 1 "ESP", FAT, legacy-BIOS-bootable attribute set:
//	            syslinux (BIOS) and systemd-boot as EFI/BOOT/BOOTX64.EFI
//	            (UEFI), both loading /vmlinuz and /initrd.gz; with
//	            Options.VendorLoaderOnly, systemd-boot only at
//	            EFI/systemd/systemd-bootx64.efi and nothing under EFI/BOOT,
//	            as many real images are: UEFI firmware boots that only
//	            through a boot entry
//	partition 2 "root", ext4 with a small marker file, growing to fill
//	            the target disk when imaged
//
// The initramfs holds one static Go program (internal/sampleos/init) that
// prints "SHOAL-SAMPLE-OS booted host=NAME firmware=bios|uefi" on the
// console and powers off. NAME is the SMBIOS serial (QEMU:
// -smbios type=1,serial=NAME).
package sampleos

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/shoal-project/shoal/internal/atomicfile"
)

// Marker starts the line the sample OS prints on its console when booted.
const Marker = "SHOAL-SAMPLE-OS booted"

// Default paths of the boot loaders (Debian packages syslinux,
// syslinux-common and systemd-boot-efi).
const (
	DefaultGPTMBR      = "/usr/lib/syslinux/mbr/gptmbr.bin"
	DefaultSystemdBoot = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
)

// Options say what to build the sample OS from.
type Options struct {
	Kernel string // a bzImage with an EFI stub (required)
	Out    string // the disk image to write (required)
	// SizeBytes is the disk's size (default 64 MiB).
	SizeBytes int64
	// Cmdline is the kernel command line (default "console=ttyS0 panic=-1").
	Cmdline string
	// GPTMBR and SystemdBoot override the boot loaders' paths.
	GPTMBR, SystemdBoot string
	// VendorLoaderOnly puts systemd-boot only at VendorLoaderPath, with
	// nothing under \EFI\BOOT: the disk boots under UEFI only through a
	// firmware boot entry (which the appliance makes). BIOS boot is as by
	// default.
	VendorLoaderOnly bool
}

// VendorLoaderPath is where VendorLoaderOnly puts systemd-boot on the ESP.
const VendorLoaderPath = `\EFI\systemd\systemd-bootx64.efi`

// Tools are the programs Build runs.
var Tools = []string{"go", "sgdisk", "mkfs.vfat", "mcopy", "mmd", "syslinux", "mkfs.ext4"}

// Build writes the sample OS disk to o.Out. It needs the Go toolchain (to
// build the init) and Tools; the output is written to a temporary file
// first, so o.Out is never left half written.
func Build(ctx context.Context, o Options) error {
	if o.Kernel == "" || o.Out == "" {
		return fmt.Errorf("sampleos: kernel and output are required")
	}
	if o.SizeBytes == 0 {
		o.SizeBytes = 64 << 20
	}
	if o.Cmdline == "" {
		o.Cmdline = "console=ttyS0 panic=-1"
	}
	if o.GPTMBR == "" {
		o.GPTMBR = DefaultGPTMBR
	}
	if o.SystemdBoot == "" {
		o.SystemdBoot = DefaultSystemdBoot
	}
	for _, f := range []string{o.Kernel, o.GPTMBR, o.SystemdBoot} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("sampleos: %w", err)
		}
	}
	for _, t := range Tools {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("sampleos: %s not found (./build.sh deps installs it): %w", t, err)
		}
	}
	tmp, err := os.MkdirTemp("", "sampleos-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	initBin := filepath.Join(tmp, "init")
	if err := run(ctx, []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath", "-o", initBin, "github.com/shoal-project/shoal/internal/sampleos/init"); err != nil {
		return err
	}
	initrd := filepath.Join(tmp, "initrd.gz")
	if err := writeInitrd(initBin, initrd); err != nil {
		return err
	}

	const mib = 1 << 20
	espBytes := int64(40 * mib)
	rootBytes := o.SizeBytes - espBytes - 2*mib
	if rootBytes < 4*mib {
		return fmt.Errorf("sampleos: disk of %d bytes is too small (at least %d)", o.SizeBytes, espBytes+6*mib)
	}

	// The ESP: syslinux first (it writes the boot sector and ldlinux.sys),
	// then the files.
	esp := filepath.Join(tmp, "esp.img")
	if err := truncate(esp, espBytes); err != nil {
		return err
	}
	loaderConf := "timeout 0\ndefault sample.conf\n"
	entry := fmt.Sprintf("title shoal sample OS\nlinux /vmlinuz\ninitrd /initrd.gz\noptions %s\n", o.Cmdline)
	syslinuxCfg := fmt.Sprintf("DEFAULT sample\nPROMPT 0\nTIMEOUT 0\nLABEL sample\n  KERNEL /vmlinuz\n  INITRD /initrd.gz\n  APPEND %s\n", o.Cmdline)
	files := map[string]string{
		"loader.conf":  loaderConf,
		"sample.conf":  entry,
		"syslinux.cfg": syslinuxCfg,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(tmp, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	efiDir, efiLoader := "::/EFI/BOOT", "::/EFI/BOOT/BOOTX64.EFI"
	if o.VendorLoaderOnly {
		efiDir, efiLoader = "::/EFI/systemd", "::"+strings.ReplaceAll(VendorLoaderPath, `\`, "/")
	}
	steps := [][]string{
		{"mkfs.vfat", "-F", "32", "-n", "SHOAL-ESP", esp},
		{"syslinux", "--install", esp},
		{"mmd", "-i", esp, "::/EFI", efiDir, "::/loader", "::/loader/entries"},
		{"mcopy", "-i", esp, o.SystemdBoot, efiLoader},
		{"mcopy", "-i", esp, filepath.Join(tmp, "loader.conf"), "::/loader/loader.conf"},
		{"mcopy", "-i", esp, filepath.Join(tmp, "sample.conf"), "::/loader/entries/sample.conf"},
		{"mcopy", "-i", esp, filepath.Join(tmp, "syslinux.cfg"), "::/syslinux.cfg"},
		{"mcopy", "-i", esp, o.Kernel, "::/vmlinuz"},
		{"mcopy", "-i", esp, initrd, "::/initrd.gz"},
	}
	// The root partition: ext4 holding a marker file.
	rootDir := filepath.Join(tmp, "rootfs")
	if err := os.MkdirAll(filepath.Join(rootDir, "etc"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(rootDir, "etc", "shoal-sample-os"), []byte("shoal sample OS root\n"), 0o644); err != nil {
		return err
	}
	root := filepath.Join(tmp, "root.img")
	if err := truncate(root, rootBytes); err != nil {
		return err
	}
	steps = append(steps, []string{"mkfs.ext4", "-q", "-F", "-L", "sample-root", "-d", rootDir, root})

	disk := filepath.Join(tmp, "disk.img")
	if err := truncate(disk, o.SizeBytes); err != nil {
		return err
	}
	espEnd := (mib+espBytes)/512 - 1
	steps = append(steps,
		[]string{"sgdisk", "-n", fmt.Sprintf("1:2048:%d", espEnd), "-t", "1:ef00", "-c", "1:ESP",
			"-A", "1:set:2", // legacy BIOS bootable, for gptmbr.bin
			"-n", fmt.Sprintf("2:%d:%d", espEnd+1, espEnd+rootBytes/512), "-t", "2:8300", "-c", "2:root", disk})
	for _, s := range steps {
		if err := run(ctx, nil, s[0], s[1:]...); err != nil {
			return err
		}
	}
	if err := copyInto(disk, esp, mib); err != nil {
		return err
	}
	if err := copyInto(disk, root, mib+espBytes); err != nil {
		return err
	}
	mbr, err := os.ReadFile(o.GPTMBR)
	if err != nil {
		return err
	}
	if len(mbr) > 440 {
		mbr = mbr[:440]
	}
	if err := writeAt(disk, mbr, 0); err != nil {
		return err
	}
	if err := run(ctx, nil, "sgdisk", "-v", disk); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(o.Out), 0o755); err != nil {
		return err
	}
	if err := run(ctx, nil, "cp", "--sparse=always", disk, o.Out+".tmp"); err != nil {
		return err
	}
	// cp streams the disk: atomicfile.Rename makes it durable under its name.
	return atomicfile.Rename(o.Out+".tmp", o.Out)
}

func run(ctx context.Context, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("sampleos: %s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func truncate(path string, sizeBytes int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f.Truncate(sizeBytes); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeAt(path string, b []byte, off int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(b, off); err != nil {
		f.Close()
		return fmt.Errorf("sampleos: write %s: %w", path, err)
	}
	return f.Close()
}

func copyInto(disk, part string, off int64) error {
	b, err := os.ReadFile(part)
	if err != nil {
		return err
	}
	return writeAt(disk, b, off)
}

// writeInitrd writes a gzip-compressed newc cpio holding initBin as /init.
func writeInitrd(initBin, dst string) error {
	data, err := os.ReadFile(initBin)
	if err != nil {
		return err
	}
	var raw bytes.Buffer
	w := cpio.Newc.Writer(&raw)
	recs := []cpio.Record{
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.Directory("proc", 0o755),
		cpio.Directory("sys", 0o755),
		cpio.StaticFile("init", string(data), 0o755),
	}
	if err := cpio.WriteRecords(w, recs); err != nil {
		return err
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return err
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(dst, gz.Bytes(), 0o644)
}
