package fsalloc

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

type byteReader []byte

func (b byteReader) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(b).ReadAt(p, off)
}

// FuzzRead feeds Read damaged and hostile file systems: it must return a
// map whose extents lie in order inside the file system, or an error, and
// never panic. The seeds in testdata/ are real file systems (see its
// README).
func FuzzRead(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.img")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(make([]byte, 4096))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Read(byteReader(b), int64(len(b)))
		if err != nil {
			if !errors.Is(err, ErrUnknown) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, io.EOF) {
				t.Fatalf("Read: unexpected error %v", err)
			}
			return
		}
		if m.SizeBytes > int64(len(b)) || m.BlockBytes <= 0 {
			t.Fatalf("map of %d bytes in blocks of %d, input %d", m.SizeBytes, m.BlockBytes, len(b))
		}
		for i, e := range m.Free {
			if e.OffsetBytes < 0 || e.SizeBytes <= 0 || e.End() > m.SizeBytes || (i > 0 && e.OffsetBytes <= m.Free[i-1].End()) {
				t.Fatalf("free extent %d %+v out of order or outside the file system (%d bytes)", i, e, m.SizeBytes)
			}
		}
	})
}

// TestSeeds checks that every seed is a file system Read maps, so that
// the fuzzer starts from valid input.
func TestSeeds(t *testing.T) {
	for _, tc := range []struct{ file, fs string }{
		{"ext2-1k.img", "ext2"},
		{"ext4.img", "ext4"},
		{"fat12.img", "fat12"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			m, err := Read(byteReader(b), int64(len(b)))
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if m.FS != tc.fs || m.FreeBytes() == 0 {
				t.Errorf("got %s with %d free bytes, want %s with some free", m.FS, m.FreeBytes(), tc.fs)
			}
		})
	}
}
