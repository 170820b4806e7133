// Package fsalloc reads the allocation maps of the file systems image
// create knows (ext2, ext3 and ext4 block bitmaps; FAT12, FAT16 and FAT32
// allocation tables) and says which blocks of a partition its file system
// does not use. Those free blocks need not be stored, sent or written.
//
// Everything here is read from a disk that may be damaged or hostile: every
// field is checked against the partition's size before it is used, and
// anything this package does not fully understand (an unknown file
// system, a journal that needs replaying, a feature that changes the
// layout) is an error, on which the caller copies the partition whole.
package fsalloc

import (
	"errors"
	"fmt"
	"io"
)

// ErrUnknown is returned when no file system this package reads is found.
var ErrUnknown = errors.New("no known file system")

// ErrUnsupported is wrapped when a known file system is found in a state
// or with a feature whose free blocks this package cannot tell safely.
var ErrUnsupported = errors.New("file system not supported for free-block maps")

// Extent is a run of bytes, from the start of the partition.
type Extent struct {
	OffsetBytes int64
	SizeBytes   int64
}

// End returns the offset just past the extent.
func (e Extent) End() int64 { return e.OffsetBytes + e.SizeBytes }

// Map is what Read found: the file system and its free extents.
type Map struct {
	// FS names the file system: "ext2", "ext3", "ext4", "fat12", "fat16"
	// or "fat32".
	FS string
	// BlockBytes is the unit of the map: the block or cluster size.
	BlockBytes int64
	// SizeBytes is the file system's own size, at most the partition's.
	SizeBytes int64
	// Free lists the extents the file system does not use, in order and
	// merged. Bytes past SizeBytes are never free.
	Free []Extent
}

// FreeBytes returns the sum of the free extents.
func (m *Map) FreeBytes() int64 {
	var n int64
	for _, e := range m.Free {
		n += e.SizeBytes
	}
	return n
}

// Read finds the file system at the start of r, a partition (or a whole
// disk without a table) of sizeBytes, and maps its free blocks.
func Read(r io.ReaderAt, sizeBytes int64) (*Map, error) {
	if m, err := readExt(r, sizeBytes); !errors.Is(err, ErrUnknown) {
		return m, err
	}
	if m, err := readFAT(r, sizeBytes); !errors.Is(err, ErrUnknown) {
		return m, err
	}
	return nil, ErrUnknown
}

func unsupported(fs, format string, a ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrUnsupported, fs, fmt.Sprintf(format, a...))
}

// readFull reads len(b) bytes at off, or fails with context.
func readFull(r io.ReaderAt, b []byte, off int64, what string) error {
	if _, err := r.ReadAt(b, off); err != nil {
		return fmt.Errorf("read %s at %d: %w", what, off, err)
	}
	return nil
}

// runs collects free runs of blocks into merged byte extents.
type runs struct {
	blockBytes int64
	out        []Extent
}

// add records blocks [first, first+n) as free.
func (r *runs) add(first, n int64) {
	if n <= 0 {
		return
	}
	off, size := first*r.blockBytes, n*r.blockBytes
	if k := len(r.out); k > 0 && r.out[k-1].End() == off {
		r.out[k-1].SizeBytes += size
		return
	}
	r.out = append(r.out, Extent{OffsetBytes: off, SizeBytes: size})
}
