package imaging

// scan_direct.go: the scan's reads of the target, through the page cache or around it (O_DIRECT), so that a cold disk's bytes cost neither a copy nor cache pages.

import (
	"errors"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// directAlign is the alignment O_DIRECT reads get here: of the offset, the
// length and the buffer (a page: enough for 512- and 4096-byte sectors).
const directAlign = 4096

// scanReader reads chunks for the scan: with O_DIRECT when it was asked
// for, the target could be opened so and a read is aligned, else (and for
// good after a read refused with EINVAL) through f, the target's own file.
type scanReader struct {
	f      *os.File
	direct *os.File // nil: none
	off    atomic.Bool
}

func openScanReader(path string, f *os.File, direct bool) *scanReader {
	r := &scanReader{f: f}
	if direct {
		if d, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECT, 0); err == nil {
			r.direct = d
		}
	}
	return r
}

// usesDirect reports whether reads go around the page cache (so far).
func (r *scanReader) usesDirect() bool { return r.direct != nil && !r.off.Load() }

func (r *scanReader) ReadAt(b []byte, off int64) (int, error) {
	if r.usesDirect() && off%directAlign == 0 && len(b)%directAlign == 0 &&
		(len(b) == 0 || uintptr(unsafe.Pointer(&b[0]))%directAlign == 0) {
		n, err := r.direct.ReadAt(b, off)
		if !errors.Is(err, unix.EINVAL) {
			return n, err
		}
		r.off.Store(true) // the file system or device refuses: buffered from now on
	}
	return r.f.ReadAt(b, off)
}

func (r *scanReader) Close() error {
	if r.direct != nil {
		return r.direct.Close()
	}
	return nil
}

// alignedBuf returns n bytes whose address is a multiple of directAlign.
func alignedBuf(n int64) []byte {
	b := make([]byte, n+directAlign)
	skip := (directAlign - int(uintptr(unsafe.Pointer(&b[0]))%directAlign)) % directAlign
	return b[skip : int64(skip)+n : int64(skip)+n]
}
