package appliance

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/shoal-project/shoal/internal/testdisk"
)

// TestFindKernel: a GPT disk whose ext4 root holds two kernels and their
// initrds (made by mkfs.ext4 -d); FindKernel picks the newest, its initrd,
// and root=PARTUUID= of its partition.
func TestFindKernel(t *testing.T) {
	testdisk.Need(t, "sgdisk", "mkfs.ext4")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	files := map[string]string{
		"boot/vmlinuz-6.1.0-9-amd64":     "old kernel",
		"boot/initrd.img-6.1.0-9-amd64":  "old initrd",
		"boot/vmlinuz-6.1.0-10-amd64":    "new kernel",
		"boot/initrd.img-6.1.0-10-amd64": "new initrd",
		"etc/hostname":                   "node1",
	}
	for p, c := range files {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	disk := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 64<<20); err != nil {
		t.Fatal(err)
	}
	const guid = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
	testdisk.Run(t, "sgdisk", "-n1:2048:+8M", "-t1:ef00", "-n2:0:0", "-t2:8300", "-u2:"+guid, disk)
	part := filepath.Join(dir, "root.img")
	testdisk.Run(t, "mkfs.ext4", "-q", "-d", root, part, "40M")
	b, err := os.ReadFile(part)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Partition 2 starts after partition 1's 8 MiB at 1 MiB.
	if _, err := f.WriteAt(b, (2048+8*2048)*512); err != nil {
		t.Fatal(err)
	}
	f.Close()
	bf, err := FindKernel(disk)
	if err != nil {
		t.Fatal(err)
	}
	if bf.Partition != 2 || bf.Kernel != "/boot/vmlinuz-6.1.0-10-amd64" {
		t.Errorf("FindKernel = partition %d kernel %s", bf.Partition, bf.Kernel)
	}
	if !bytes.Equal(bf.kernel, []byte(files[strings.TrimPrefix(bf.Kernel, "/")])) {
		t.Errorf("kernel bytes = %q, want those of %s", bf.kernel, bf.Kernel)
	}
	if want := strings.Replace(bf.Kernel, "vmlinuz", "initrd.img", 1); bf.Initrd != want || string(bf.initrd) != files[strings.TrimPrefix(want, "/")] {
		t.Errorf("initrd = %s %q, want %s", bf.Initrd, bf.initrd, want)
	}
	if want := "root=PARTUUID=" + strings.ToLower(guid) + " ro"; bf.Cmdline != want {
		t.Errorf("cmdline = %q, want %q", bf.Cmdline, want)
	}
}

func TestVersionLess(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-10-amd64", true},
		{"vmlinuz-6.1.0-10-amd64", "vmlinuz-6.1.0-9-amd64", false},
		{"vmlinuz-5.10", "vmlinuz-6.1", true},
		{"vmlinuz-6.1", "vmlinuz-6.1.1", true},
		{"vmlinuz-6.1", "vmlinuz-6.1", false},
		{"vmlinuz-6.01", "vmlinuz-6.1", false},
	} {
		if got := versionLess(tc.a, tc.b); got != tc.want {
			t.Errorf("versionLess(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestBootEntries(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		fs                      fstest.MapFS
		kernel, initrd, cmdline string
	}{
		{"systemd-boot entry", fstest.MapFS{
			"loader/entries/b.conf": {Data: []byte("title B\nlinux /EFI/b/vmlinuz\noptions root=LABEL=b\n")},
			"loader/entries/a.conf": {Data: []byte("title A\nlinux /vmlinuz\ninitrd /initrd.gz\noptions console=ttyS0\noptions panic=-1\n")},
			"vmlinuz":               {Data: []byte("k")}, "initrd.gz": {Data: []byte("i")},
		}, "/vmlinuz", "/initrd.gz", "console=ttyS0 panic=-1"},
		{"syslinux", fstest.MapFS{
			"syslinux.cfg": {Data: []byte("DEFAULT x\nLABEL x\n  KERNEL /vmlinuz\n  INITRD /initrd.gz\n  APPEND console=ttyS0 quiet\n")},
			"vmlinuz":      {Data: []byte("k")}, "initrd.gz": {Data: []byte("i")},
		}, "/vmlinuz", "/initrd.gz", "console=ttyS0 quiet"},
		{"debian", fstest.MapFS{
			"boot/vmlinuz-6.1.0-10-amd64": {Data: []byte("k")}, "boot/initrd.img-6.1.0-10-amd64": {Data: []byte("i")},
			"etc/kernel/cmdline": {Data: []byte("root=/dev/sda2 ro\n")},
		}, "/boot/vmlinuz-6.1.0-10-amd64", "/boot/initrd.img-6.1.0-10-amd64", "root=/dev/sda2 ro"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := fromEntries(tc.fs)
			if err == nil && b == nil {
				b, err = fromFiles(tc.fs)
			}
			if err != nil || b == nil {
				t.Fatalf("no kernel: %v", err)
			}
			if b.Kernel != tc.kernel || b.Initrd != tc.initrd || b.Cmdline != tc.cmdline || string(b.kernel) != "k" || string(b.initrd) != "i" {
				t.Errorf("got kernel %s initrd %s cmdline %q (%q, %q); want %s %s %q", b.Kernel, b.Initrd, b.Cmdline, b.kernel, b.initrd, tc.kernel, tc.initrd, tc.cmdline)
			}
		})
	}
}

// FuzzBootEntries: boot loader configs off the new disk never make the
// parsers panic, and a kernel they return is a file that exists.
func FuzzBootEntries(f *testing.F) {
	f.Add("title A\nlinux /vmlinuz\ninitrd /initrd.gz\noptions console=ttyS0\n", "APPEND quiet\n")
	f.Add("linux\ninitrd /nope\n", "append")
	f.Add("linux ../../etc\n", "")
	f.Fuzz(func(t *testing.T, entry, syslinux string) {
		m := fstest.MapFS{
			"loader/entries/x.conf": {Data: []byte(entry)},
			"syslinux.cfg":          {Data: []byte(syslinux)},
			"vmlinuz":               {Data: []byte("k")},
			"initrd.gz":             {Data: []byte("i")},
		}
		b, err := fromEntries(m)
		if err == nil && b == nil {
			b, err = fromFiles(m)
		}
		if err != nil || b == nil {
			return
		}
		if _, err := fs.Stat(m, strings.TrimPrefix(b.Kernel, "/")); err != nil {
			t.Errorf("kernel %q does not exist", b.Kernel)
		}
	})
}
