package appliance

import (
	"errors"
	"fmt"
	"io/fs"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
)

// ConfName is the configuration file a field tech edits on the USB stick.
const ConfName = "shoal.conf"

// ErrFilesystem is wrapped when reading a filesystem in userspace failed
// inside go-diskfs with a panic: it trusts on-disk fields (a FAT whose
// sectors per cluster is 0 divides by zero), and a stick or disk may hold
// anything.
var ErrFilesystem = errors.New("damaged filesystem")

// guard runs f, turning a panic into an error that wraps ErrFilesystem.
func guard(what string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: %w: %v", what, ErrFilesystem, r)
		}
	}()
	return f()
}

// ReadConf returns shoal.conf from the first FAT filesystem of the disk
// (or disk image) at path that has one: partitions first, then the whole
// disk. It reads the filesystem in userspace (go-diskfs), so the appliance
// mounts nothing and needs no FAT driver. A damaged filesystem is skipped
// (its error, wrapping ErrFilesystem, is returned when no other has the
// file), never a crash.
func ReadConf(path string) ([]byte, error) {
	var (
		d   *disk.Disk
		idx []int
	)
	if err := guard(path, func() error {
		var err error
		if d, err = diskfs.Open(path, diskfs.WithOpenMode(diskfs.ReadOnly)); err != nil {
			return err
		}
		if t, err := d.GetPartitionTable(); err == nil && t != nil {
			for i := range t.GetPartitions() {
				idx = append(idx, i+1)
			}
		}
		return nil
	}); err != nil {
		if d != nil {
			d.Close()
		}
		return nil, err
	}
	defer d.Close()
	idx = append(idx, 0)
	var damaged error
	for _, i := range idx {
		var b []byte
		err := guard(fmt.Sprintf("%s partition %d", path, i), func() error {
			f, err := d.GetFilesystem(i)
			if err != nil {
				return err
			}
			b, err = fs.ReadFile(f, ConfName)
			if err != nil {
				b, err = fs.ReadFile(f, "/"+ConfName)
			}
			if err != nil {
				return err
			}
			// go-diskfs v1.9 returns whole clusters; the directory
			// entry has the file's size.
			if st, err := fs.Stat(f, ConfName); err == nil && st.Size() < int64(len(b)) {
				b = b[:st.Size()]
			}
			return nil
		})
		if errors.Is(err, ErrFilesystem) && damaged == nil {
			damaged = err
		}
		if err != nil {
			continue
		}
		if len(b) > 1<<20 {
			return nil, fmt.Errorf("%s on %s: larger than 1 MiB", ConfName, path)
		}
		return b, nil
	}
	if damaged != nil {
		return nil, fmt.Errorf("%s not found on %s: %w", ConfName, path, damaged)
	}
	return nil, errors.New(ConfName + " not found on " + path)
}
