// Package testdisk makes real disk images for tests: GPT and MBR disks laid
// out by sgdisk and sfdisk, holding FAT and ext4 filesystems made by
// mkfs.vfat (files added with mtools) and mkfs.ext4 -d, and loop devices
// over them. It needs those tools: without them a test is skipped on a
// laptop and fails in CI (CI=true), where .ci/run installs them.
package testdisk

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// InCI reports whether the tests run in CI, where nothing may be skipped
// for want of a tool.
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing says that something the test needs is not on this machine: it
// fails the test in CI, where .ci/run installs everything, and skips it on
// a developer's machine. Every "not here" skip goes through it.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf(format+" (CI is set: not skipping; .ci/run should have installed it)", args...)
	}
	t.Skipf(format, args...)
}

// Need skips the test (fails it in CI) unless every tool is on PATH.
func Need(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			Missing(t, "%s not found", tool)
		}
	}
}

// NeedRoot skips the test (fails it in CI) unless it runs as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root")
	}
}

// Run runs a command and fails the test with its output on error.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Partition is where a partition lies on a disk made here.
type Partition struct {
	Number    int
	StartLBA  int64
	SizeBytes int64
	FS        string // vfat or ext4
}

// Disk is a disk image file made for a test.
type Disk struct {
	Path       string
	SizeBytes  int64
	Partitions []Partition
	// BootCode is what the MBR disk carries in its first 440 bytes.
	BootCode []byte
}

// Bytes reads n bytes at off of the disk at path.
func Bytes(t testing.TB, path string, off, n int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatalf("read %d bytes at %d of %s: %v", n, off, path, err)
	}
	return b
}

// fillTree writes a directory of real files: Go sources from GOROOT (text
// that compresses), random data (that does not) and a few empty files.
func fillTree(t testing.TB, dir string, randomBytes int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "src", "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	rnd := make([]byte, randomBytes)
	rand.Read(rnd)
	if err := os.WriteFile(filepath.Join(dir, "random.bin"), rnd, 0o644); err != nil {
		t.Fatal(err)
	}
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	srcs, _ := filepath.Glob(filepath.Join(strings.TrimSpace(string(goroot)), "src", "net", "*.go"))
	if len(srcs) == 0 {
		t.Fatal("no Go sources to fill the test filesystem with")
	}
	for i, s := range srcs {
		if i >= 60 {
			break
		}
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "src", filepath.Base(s)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// writeAt copies the file fs into the disk at byte offset off.
func writeAt(t testing.TB, disk, fs string, off int64) {
	t.Helper()
	b, err := os.ReadFile(fs)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func makeFAT(t testing.TB, dir string, sizeBytes int64) string {
	t.Helper()
	p := filepath.Join(dir, "efi.fs")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, sizeBytes); err != nil {
		t.Fatal(err)
	}
	Run(t, "mkfs.vfat", "-n", "EFI", p)
	boot := filepath.Join(dir, "BOOTX64.EFI")
	b := make([]byte, 300<<10)
	rand.Read(b)
	if err := os.WriteFile(boot, b, 0o644); err != nil {
		t.Fatal(err)
	}
	Run(t, "mmd", "-i", p, "::/EFI", "::/EFI/BOOT")
	Run(t, "mcopy", "-i", p, boot, "::/EFI/BOOT/BOOTX64.EFI")
	cfg := filepath.Join(dir, "grub.cfg")
	if err := os.WriteFile(cfg, []byte("menuentry shoal { linux /vmlinuz }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	Run(t, "mcopy", "-i", p, cfg, "::/EFI/BOOT/grub.cfg")
	return p
}

func makeExt4(t testing.TB, dir string, sizeBytes int64) string {
	t.Helper()
	tree := filepath.Join(dir, "tree")
	fillTree(t, tree, 3<<20)
	p := filepath.Join(dir, "root.fs")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, sizeBytes); err != nil {
		t.Fatal(err)
	}
	Run(t, "mkfs.ext4", "-q", "-F", "-d", tree, p)
	return p
}

// GPT makes a GPT disk of sizeBytes (at least 64 MiB) with a 16 MiB FAT EFI
// system partition and an ext4 partition filling the rest.
func GPT(t testing.TB, dir string, sizeBytes int64) *Disk {
	t.Helper()
	Need(t, "sgdisk", "mkfs.vfat", "mmd", "mcopy", "mkfs.ext4")
	d := &Disk{Path: filepath.Join(dir, "gpt.img"), SizeBytes: sizeBytes}
	if err := os.WriteFile(d.Path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(d.Path, sizeBytes); err != nil {
		t.Fatal(err)
	}
	Run(t, "sgdisk", "-n1:2048:+16M", "-t1:ef00", "-c1:EFI system", "-n2:0:0", "-t2:8300", "-c2:root", "-A2:set:2", d.Path)
	d.Partitions = []Partition{sgdiskPart(t, d.Path, 1, "vfat"), sgdiskPart(t, d.Path, 2, "ext4")}
	writeAt(t, d.Path, makeFAT(t, dir, d.Partitions[0].SizeBytes), d.Partitions[0].StartLBA*512)
	writeAt(t, d.Path, makeExt4(t, dir, d.Partitions[1].SizeBytes), d.Partitions[1].StartLBA*512)
	return d
}

func sgdiskPart(t testing.TB, path string, n int, fs string) Partition {
	t.Helper()
	out := Run(t, "sgdisk", "-i", strconv.Itoa(n), path)
	var first, last int64
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "First" && f[1] == "sector:" {
			first, _ = strconv.ParseInt(f[2], 10, 64)
		}
		if len(f) >= 3 && f[0] == "Last" && f[1] == "sector:" {
			last, _ = strconv.ParseInt(f[2], 10, 64)
		}
	}
	if last <= first {
		t.Fatalf("sgdisk -i %d %s: no extent in\n%s", n, path, out)
	}
	return Partition{Number: n, StartLBA: first, SizeBytes: (last - first + 1) * 512, FS: fs}
}

// MBR makes an MBR disk of sizeBytes (at least 32 MiB) with random boot
// code in its first 440 bytes, a disk signature, a bootable FAT partition
// at 1 MiB and an ext4 partition filling the rest.
func MBR(t testing.TB, dir string, sizeBytes int64) *Disk {
	t.Helper()
	Need(t, "sfdisk", "mkfs.vfat", "mmd", "mcopy", "mkfs.ext4")
	d := &Disk{Path: filepath.Join(dir, "mbr.img"), SizeBytes: sizeBytes}
	if err := os.WriteFile(d.Path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(d.Path, sizeBytes); err != nil {
		t.Fatal(err)
	}
	script := "label: dos\nlabel-id: 0x5ba1d15c\nstart=2048, size=16MiB, type=c, bootable\nstart=34816, type=83\n"
	cmd := exec.Command("sfdisk", "--no-reread", "--no-tell-kernel", d.Path)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	d.Partitions = []Partition{
		{Number: 1, StartLBA: 2048, SizeBytes: 16 << 20, FS: "vfat"},
		{Number: 2, StartLBA: 34816, SizeBytes: sizeBytes - 34816*512, FS: "ext4"},
	}
	writeAt(t, d.Path, makeFAT(t, dir, d.Partitions[0].SizeBytes), d.Partitions[0].StartLBA*512)
	writeAt(t, d.Path, makeExt4(t, dir, d.Partitions[1].SizeBytes), d.Partitions[1].StartLBA*512)
	d.BootCode = make([]byte, 440)
	rand.Read(d.BootCode)
	f, err := os.OpenFile(d.Path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(d.BootCode, 0); err != nil {
		t.Fatal(err)
	}
	return d
}

// Fsck checks the filesystem of partition p on the disk at path with
// e2fsck -fn or fsck.vfat -n, failing the test on any problem.
func Fsck(t testing.TB, path string, p Partition) {
	t.Helper()
	part := filepath.Join(t.TempDir(), fmt.Sprintf("p%d.fs", p.Number))
	if err := os.WriteFile(part, Bytes(t, path, p.StartLBA*512, p.SizeBytes), 0o644); err != nil {
		t.Fatal(err)
	}
	switch p.FS {
	case "ext4":
		Run(t, "e2fsck", "-fn", part)
	case "vfat":
		out := Run(t, "fsck.vfat", "-n", part)
		if !strings.Contains(out, "files") {
			t.Fatalf("fsck.vfat -n: unexpected output\n%s", out)
		}
	default:
		t.Fatalf("no fsck for %q", p.FS)
	}
}

// Loop attaches a loop device over path with the given logical sector size
// and detaches it when the test ends.
func Loop(t testing.TB, path string, sectorBytes int) string {
	t.Helper()
	NeedRoot(t)
	Need(t, "losetup")
	out := Run(t, "losetup", "--find", "--show", "--sector-size", strconv.Itoa(sectorBytes), path)
	dev := strings.TrimSpace(out)
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

// Equal reports whether the files at a and b hold the same n bytes at
// offset off.
func Equal(t testing.TB, a, b string, off, n int64) bool {
	t.Helper()
	return bytes.Equal(Bytes(t, a, off, n), Bytes(t, b, off, n))
}
