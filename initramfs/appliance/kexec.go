package appliance

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"sort"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"golang.org/x/sys/unix"
)

// BootFiles is a kernel found on a written disk.
type BootFiles struct {
	Partition int    // where it was found
	Kernel    string // path in that filesystem
	Initrd    string // "" when there is none
	Cmdline   string
	kernel    []byte
	initrd    []byte
}

// FindKernel looks in each partition of the disk at path (read in
// userspace with go-diskfs: ext4 and FAT) for the new OS's kernel: first a
// boot loader entry (systemd-boot's loader/entries/*.conf: linux, initrd,
// options), then /boot/vmlinuz (or the newest /boot/vmlinuz-VERSION by
// version order) or /vmlinuz, with its initrd (initrd.img-VERSION,
// initramfs-VERSION.img, initrd.gz, initrd.img). The command line of the
// latter comes from /etc/kernel/cmdline, a syslinux/extlinux APPEND line,
// or is "root=PARTUUID=GUID ro" for a GPT partition. A filesystem that
// makes go-diskfs panic gives an error wrapping ErrFilesystem.
func FindKernel(disk string) (b *BootFiles, err error) {
	err = guard(disk, func() error {
		b, err = findKernel(disk)
		return err
	})
	return b, err
}

func findKernel(disk string) (*BootFiles, error) {
	d, err := diskfs.Open(disk, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	t, err := d.GetPartitionTable()
	if err != nil {
		return nil, fmt.Errorf("%s: partition table: %w", disk, err)
	}
	for i, p := range t.GetPartitions() {
		f, err := d.GetFilesystem(i + 1)
		if err != nil {
			continue
		}
		b, err := fromEntries(f)
		if err != nil {
			return nil, fmt.Errorf("%s partition %d: %w", disk, i+1, err)
		}
		if b == nil {
			b, err = fromFiles(f)
			if err != nil {
				return nil, fmt.Errorf("%s partition %d: %w", disk, i+1, err)
			}
		}
		if b == nil {
			continue
		}
		b.Partition = i + 1
		if b.Cmdline == "" {
			if gp, ok := p.(*gpt.Partition); ok && gp.GUID != "" {
				b.Cmdline = "root=PARTUUID=" + strings.ToLower(gp.GUID) + " ro"
			}
		}
		return b, nil
	}
	return nil, errors.New("no kernel (boot loader entry, /boot/vmlinuz or /vmlinuz) on any partition of " + disk)
}

// fromEntries reads the first systemd-boot loader entry (by name) whose
// kernel is on the same filesystem.
func fromEntries(f fs.FS) (*BootFiles, error) {
	names, _ := fs.Glob(f, "loader/entries/*.conf")
	sort.Strings(names)
	for _, n := range names {
		data, err := fs.ReadFile(f, n)
		if err != nil {
			continue
		}
		b := &BootFiles{}
		for _, line := range strings.Split(string(data), "\n") {
			k, v, _ := strings.Cut(strings.TrimSpace(line), " ")
			v = strings.TrimSpace(v)
			switch k {
			case "linux":
				b.Kernel = v
			case "initrd":
				if b.Initrd == "" {
					b.Initrd = v
				}
			case "options":
				b.Cmdline = strings.TrimSpace(b.Cmdline + " " + v)
			}
		}
		if b.Kernel == "" {
			continue
		}
		if b.kernel, err = fs.ReadFile(f, strings.TrimPrefix(b.Kernel, "/")); err != nil {
			continue
		}
		if b.Initrd != "" {
			if b.initrd, err = fs.ReadFile(f, strings.TrimPrefix(b.Initrd, "/")); err != nil {
				return nil, fmt.Errorf("%s names initrd %s: %w", n, b.Initrd, err)
			}
		}
		return b, nil
	}
	return nil, nil
}

// fromFiles finds a kernel by its file name.
func fromFiles(f fs.FS) (*BootFiles, error) {
	// fs.FS paths: no leading slash.
	k := findFile(f, "boot", "vmlinuz")
	if k == "" {
		k = findFile(f, ".", "vmlinuz")
	}
	if k == "" {
		return nil, nil
	}
	b := &BootFiles{Kernel: "/" + k}
	var err error
	if b.kernel, err = fs.ReadFile(f, k); err != nil {
		return nil, fmt.Errorf("%s: %w", k, err)
	}
	ver := strings.TrimPrefix(path.Base(k), "vmlinuz")
	dir := path.Dir(k)
	for _, c := range []string{"initrd.img" + ver, "initramfs" + ver + ".img", "initrd" + ver + ".gz", "initrd" + ver} {
		if data, err := fs.ReadFile(f, path.Join(dir, c)); err == nil {
			b.Initrd, b.initrd = "/"+path.Join(dir, c), data
			break
		}
	}
	if c, err := fs.ReadFile(f, "etc/kernel/cmdline"); err == nil {
		b.Cmdline = strings.TrimSpace(string(c))
	} else {
		for _, cfg := range []string{"syslinux.cfg", "extlinux.conf", "boot/syslinux/syslinux.cfg", "boot/extlinux/extlinux.conf", "syslinux/syslinux.cfg", "extlinux/extlinux.conf"} {
			data, err := fs.ReadFile(f, cfg)
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(data), "\n") {
				if k, v, _ := strings.Cut(strings.TrimSpace(line), " "); strings.EqualFold(k, "APPEND") {
					b.Cmdline = strings.TrimSpace(v)
					break
				}
			}
			if b.Cmdline != "" {
				break
			}
		}
	}
	return b, nil
}

// findFile returns the path of dir/name, or of the newest dir/name-*.
func findFile(f fs.FS, dir, name string) string {
	ents, err := fs.ReadDir(f, dir)
	if err != nil {
		return ""
	}
	var vers []string
	for _, e := range ents {
		switch {
		case e.Name() == name:
			return path.Join(dir, name)
		case strings.HasPrefix(e.Name(), name+"-"):
			vers = append(vers, e.Name())
		}
	}
	if len(vers) == 0 {
		return ""
	}
	sort.Slice(vers, func(i, j int) bool { return versionLess(vers[i], vers[j]) })
	return path.Join(dir, vers[len(vers)-1])
}

// versionLess compares runs of digits as numbers: 6.1.0-9 < 6.1.0-10.
func versionLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		switch {
		case da > 0 && db > 0:
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[da:], b[db:]
		case a[0] != b[0]:
			return a[0] < b[0]
		default:
			a, b = a[1:], b[1:]
		}
	}
	return len(a) < len(b)
}

func digits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}

// Kexec loads the kernel found on disk with kexec_file_load(2) and jumps
// into it.
func Kexec(ctx context.Context, disk string, log *slog.Logger) error {
	b, err := FindKernel(disk)
	if err != nil {
		return err
	}
	log.Info("kexec", "disk", disk, "partition", b.Partition, "kernel", b.Kernel, "initrd", b.Initrd, "cmdline", b.Cmdline)
	kf, err := memFile("kernel", b.kernel)
	if err != nil {
		return err
	}
	defer kf.Close()
	flags := unix.KEXEC_FILE_NO_INITRAMFS
	initrdFd := -1
	if b.initrd != nil {
		inf, err := memFile("initrd", b.initrd)
		if err != nil {
			return err
		}
		defer inf.Close()
		initrdFd, flags = int(inf.Fd()), 0
	}
	if err := unix.KexecFileLoad(int(kf.Fd()), initrdFd, b.Cmdline, flags); err != nil {
		return fmt.Errorf("kexec_file_load %s from %s: %w", b.Kernel, disk, err)
	}
	return unix.Reboot(unix.LINUX_REBOOT_CMD_KEXEC)
}

func memFile(name string, data []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, 0)
	if err != nil {
		return nil, fmt.Errorf("memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
