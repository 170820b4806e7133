package appliance

import (
	"errors"
	"fmt"
	"io/fs"

	diskfs "github.com/diskfs/go-diskfs"
)

// ConfName is the configuration file a field tech edits on the USB stick.
const ConfName = "shoal.conf"

// ReadConf returns shoal.conf from the first FAT filesystem of the disk
// (or disk image) at path that has one: partitions first, then the whole
// disk. It reads the filesystem in userspace (go-diskfs), so the appliance
// mounts nothing and needs no FAT driver.
func ReadConf(path string) ([]byte, error) {
	d, err := diskfs.Open(path, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	var idx []int
	if t, err := d.GetPartitionTable(); err == nil && t != nil {
		for i := range t.GetPartitions() {
			idx = append(idx, i+1)
		}
	}
	idx = append(idx, 0)
	for _, i := range idx {
		f, err := d.GetFilesystem(i)
		if err != nil {
			continue
		}
		b, err := fs.ReadFile(f, ConfName)
		if err != nil {
			b, err = fs.ReadFile(f, "/"+ConfName)
		}
		if err == nil {
			// go-diskfs v1.9 returns whole clusters; the directory
			// entry has the file's size.
			if st, err := fs.Stat(f, ConfName); err == nil && st.Size() < int64(len(b)) {
				b = b[:st.Size()]
			}
			if len(b) > 1<<20 {
				return nil, fmt.Errorf("%s on %s: larger than 1 MiB", ConfName, path)
			}
			return b, nil
		}
	}
	return nil, errors.New(ConfName + " not found on " + path)
}
