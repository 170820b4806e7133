// Package atomicfile writes files so that a crash leaves either the old
// content or the new, never a mix or an empty file: the data goes to a
// temporary file in the same directory, which is fsynced, renamed over the
// target, and the directory fsynced so that the rename itself is durable.
//
// It is the one way shoal writes a file that must survive a crash: the
// inventory, the DHCP leases, an image's manifest and signature, chunks;
// Rename does the same for a big file streamed to a temporary name (the
// sample OS disk, cached Debian images).
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Options change how Write treats an existing target.
type Options struct {
	// Perm is the mode of a new file (default 0o644). An existing file
	// keeps its own mode unless ForcePerm is set.
	Perm      fs.FileMode
	ForcePerm bool
}

// Write replaces path with data atomically and durably. When path is a
// symbolic link, the file it points to is replaced and the link is kept.
func Write(path string, data []byte, o Options) error {
	target, err := resolve(path)
	if err != nil {
		return err
	}
	perm := o.Perm
	if perm == 0 {
		perm = 0o644
	}
	if fi, err := os.Stat(target); err == nil && !o.ForcePerm {
		perm = fi.Mode().Perm()
	}
	dir := filepath.Dir(target)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(target)+".tmp-*")
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", target, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("atomicfile: chmod %s: %w", target, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("atomicfile: fsync %s: %w", target, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("atomicfile: close %s: %w", target, err)
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	done = true
	return SyncDir(dir)
}

// Rename makes a file that was streamed to tmp (too big to hold in
// memory, or written by another program such as cp) the file at path,
// durably: tmp is fsynced, renamed over path, and path's directory
// fsynced. tmp must be in path's directory (a rename does not cross file
// systems). It is Write for callers that cannot hand over the bytes.
func Rename(tmp, path string) error {
	f, err := os.OpenFile(tmp, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("atomicfile: fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("atomicfile: close %s: %w", tmp, err)
	}
	if filepath.Dir(tmp) != filepath.Dir(path) {
		return fmt.Errorf("atomicfile: rename %s to %s: not in the same directory", tmp, path)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs a directory, making the renames and creations in it
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("atomicfile: fsync directory %s: %w", dir, err)
	}
	return nil
}

// resolve follows path's symbolic links (up to 40, as the kernel does);
// a missing target is fine: the link's target is made.
func resolve(path string) (string, error) {
	for range 40 {
		fi, err := os.Lstat(path)
		if errors.Is(err, fs.ErrNotExist) {
			return path, nil
		}
		if err != nil {
			return "", fmt.Errorf("atomicfile: %w", err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			return path, nil
		}
		dest, err := os.Readlink(path)
		if err != nil {
			return "", fmt.Errorf("atomicfile: %w", err)
		}
		if !filepath.IsAbs(dest) {
			dest = filepath.Join(filepath.Dir(path), dest)
		}
		path = dest
	}
	return "", fmt.Errorf("atomicfile: %s: too many levels of symbolic links", path)
}
