// stamp.go tells whether the machines file changed since it was read.

package inventory

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// fileStamp identifies one version of a file: what an edit or a rename
// over it changes (through symbolic links: the file they lead to).
type fileStamp struct {
	exists     bool
	dev, ino   uint64
	sizeBytes  int64
	mtime      time.Time
	ctimeNanos int64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fileStamp{}, nil
	}
	if err != nil {
		return fileStamp{}, err
	}
	st := fileStamp{exists: true, sizeBytes: fi.Size(), mtime: fi.ModTime()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.dev, st.ino = uint64(sys.Dev), sys.Ino
		st.ctimeNanos = sys.Ctim.Nano()
	}
	return st, nil
}
