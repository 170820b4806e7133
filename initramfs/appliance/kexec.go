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
// userspace with go-diskfs: ext4 and FAT) for /boot/vmlinuz (or the newest
// /boot/vmlinuz-VERSION by version order, or /vmlinuz) and its initrd. The command line is
// /etc/kernel/cmdline when the partition has one, else "root=PARTUUID=GUID
// ro" for a GPT partition.
func FindKernel(disk string) (*BootFiles, error) {
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
		// fs.FS paths: no leading slash.
		k := findFile(f, "boot", "vmlinuz")
		if k == "" {
			k = findFile(f, ".", "vmlinuz")
		}
		if k == "" {
			continue
		}
		b := &BootFiles{Partition: i + 1, Kernel: "/" + k}
		if b.kernel, err = fs.ReadFile(f, k); err != nil {
			return nil, fmt.Errorf("%s partition %d: %s: %w", disk, i+1, k, err)
		}
		ver := strings.TrimPrefix(path.Base(k), "vmlinuz")
		for _, c := range []string{path.Join(path.Dir(k), "initrd.img"+ver), path.Join(path.Dir(k), "initramfs"+ver+".img")} {
			if data, err := fs.ReadFile(f, c); err == nil {
				b.Initrd, b.initrd = "/"+c, data
				break
			}
		}
		if c, err := fs.ReadFile(f, "etc/kernel/cmdline"); err == nil {
			b.Cmdline = strings.TrimSpace(string(c))
		} else if gp, ok := p.(*gpt.Partition); ok && gp.GUID != "" {
			b.Cmdline = "root=PARTUUID=" + strings.ToLower(gp.GUID) + " ro"
		}
		return b, nil
	}
	return nil, errors.New("no /boot/vmlinuz on any partition of " + disk)
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
