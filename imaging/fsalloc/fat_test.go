package fsalloc

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/shoal-project/shoal/internal/testdisk"
)

var (
	fsckClustersRE  = regexp.MustCompile(`(\d+)/(\d+) clusters`)
	fsckDataStartRE = regexp.MustCompile(`Data area starts at byte (\d+)`)
)

// TestFATMatchesFsck maps real FAT file systems made by mkfs.vfat, with
// files copied in by mtools and some deleted again, and checks the free
// clusters against fsck.fat's count and every extent against the layout.
func TestFATMatchesFsck(t *testing.T) {
	testdisk.Need(t, "mkfs.vfat", "mcopy", "mdel", "fsck.vfat")
	for _, tc := range []struct {
		name      string
		sizeBytes int64
		mkfs      []string
		fs        string
	}{
		{"fat12", 4 << 20, []string{"-F", "12"}, "fat12"},
		{"fat16", 32 << 20, []string{"-F", "16"}, "fat16"},
		{"fat16 4k sectors", 64 << 20, []string{"-F", "16", "-S", "4096"}, "fat16"},
		{"fat32", 64 << 20, []string{"-F", "32"}, "fat32"},
		{"fat32 8 sectors per cluster", 300 << 20, []string{"-F", "32", "-s", "8"}, "fat32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newFile(t, "fat.img", tc.sizeBytes)
			testdisk.Run(t, "mkfs.vfat", append(tc.mkfs, p)...)
			src := filepath.Join(t.TempDir(), "f")
			b := make([]byte, tc.sizeBytes/10)
			for i := range b {
				b[i] = byte(i * 13)
			}
			if err := os.WriteFile(src, b, 0o644); err != nil {
				t.Fatal(err)
			}
			for i := range 4 {
				testdisk.Run(t, "mcopy", "-i", p, src, "::/f"+strconv.Itoa(i))
			}
			testdisk.Run(t, "mdel", "-i", p, "::/f1", "::/f2")
			m, err := readFile(t, p)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if m.FS != tc.fs {
				t.Errorf("FS = %q, want %q", m.FS, tc.fs)
			}
			out := testdisk.Run(t, "fsck.vfat", "-n", "-v", p)
			c := fsckClustersRE.FindStringSubmatch(out)
			if c == nil {
				t.Fatalf("no cluster count in fsck.vfat's output:\n%s", out)
			}
			used, _ := strconv.ParseInt(c[1], 10, 64)
			total, _ := strconv.ParseInt(c[2], 10, 64)
			if got, want := m.FreeBytes()/m.BlockBytes, total-used; got != want || m.FreeBytes()%m.BlockBytes != 0 {
				t.Errorf("free clusters = %d (%d bytes), fsck.vfat says %d of %d", got, m.FreeBytes(), want, total)
			}
			// The free extents lie in the data area, whole clusters from
			// its start, with two deleted files' worth among them.
			ds := fsckDataStartRE.FindStringSubmatch(out)
			if ds == nil {
				t.Fatalf("no data area start in fsck.vfat's output:\n%s", out)
			}
			dataStart, _ := strconv.ParseInt(ds[1], 10, 64)
			dataEnd := dataStart + total*m.BlockBytes
			for _, e := range m.Free {
				if e.OffsetBytes < dataStart || e.End() > dataEnd || (e.OffsetBytes-dataStart)%m.BlockBytes != 0 || e.SizeBytes%m.BlockBytes != 0 {
					t.Errorf("free extent %+v: not whole clusters of the data area [%d, %d)", e, dataStart, dataEnd)
				}
			}
			if m.FreeBytes() < 2*int64(len(b)) {
				t.Errorf("free bytes %d: less than the two deleted files (%d)", m.FreeBytes(), 2*len(b))
			}
		})
	}
}

// TestFATRefused checks boot sectors that are not FAT, or whose FAT does
// not fit the partition.
func TestFATRefused(t *testing.T) {
	testdisk.Need(t, "mkfs.vfat")
	p := newFile(t, "fat.img", 32<<20)
	testdisk.Run(t, "mkfs.vfat", "-F", "16", p)
	good, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		edit      func(b []byte)
		sizeBytes int64
		want      error
	}{
		{"no signature", func(b []byte) { b[510] = 0 }, 32 << 20, ErrUnknown},
		{"sector size 300", func(b []byte) { b[0x0B], b[0x0C] = 0x2C, 0x01 }, 32 << 20, ErrUnknown},
		{"no tables", func(b []byte) { b[0x10] = 0 }, 32 << 20, ErrUnknown},
		{"cut partition", func([]byte) {}, 16 << 20, ErrUnsupported},
		{"fat16 without a root directory", func(b []byte) { b[0x11], b[0x12] = 0, 0 }, 32 << 20, ErrUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := append([]byte(nil), good...)
			tc.edit(b)
			r := byteReader(b)
			if _, err := Read(r, tc.sizeBytes); !errors.Is(err, tc.want) {
				t.Fatalf("Read = %v, want %v", err, tc.want)
			}
		})
	}
}
