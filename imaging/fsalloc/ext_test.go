package fsalloc

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-project/shoal/internal/testdisk"
)

// newFile makes a sparse file of sizeBytes.
func newFile(t *testing.T, name string, sizeBytes int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, sizeBytes); err != nil {
		t.Fatal(err)
	}
	return p
}

// tree makes a directory of files: n files of fileBytes random bytes.
func tree(t *testing.T, n int, fileBytes int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tree")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		b := make([]byte, fileBytes)
		for j := range b {
			b[j] = byte(i*31 + j*7 + j/4096)
		}
		if err := os.WriteFile(filepath.Join(dir, "sub", "f"+strconv.Itoa(i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var freeRangeRE = regexp.MustCompile(`^  Free blocks: (.*)$`)

// dumpe2fsFree is e2fsprogs' own answer: the free block ranges dumpe2fs
// prints per group, as extents of blockBytes.
func dumpe2fsFree(t *testing.T, path string, blockBytes int64) []Extent {
	t.Helper()
	out := testdisk.Run(t, "dumpe2fs", path)
	r := runs{blockBytes: blockBytes}
	for _, line := range strings.Split(out, "\n") {
		m := freeRangeRE.FindStringSubmatch(line)
		if m == nil || strings.TrimSpace(m[1]) == "" {
			continue
		}
		for _, part := range strings.Split(m[1], ", ") {
			a, b, found := strings.Cut(strings.TrimSpace(part), "-")
			first, err := strconv.ParseInt(a, 10, 64)
			if err != nil {
				t.Fatalf("dumpe2fs range %q: %v", part, err)
			}
			last := first
			if found {
				if last, err = strconv.ParseInt(b, 10, 64); err != nil {
					t.Fatalf("dumpe2fs range %q: %v", part, err)
				}
			}
			r.add(first, last-first+1)
		}
	}
	return r.out
}

func readFile(t *testing.T, path string) (*Map, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return Read(f, st.Size())
}

// TestExtMatchesDumpe2fs maps real file systems made by mkfs, with files
// written and some deleted again, and compares every free extent with
// what dumpe2fs says.
func TestExtMatchesDumpe2fs(t *testing.T) {
	testdisk.Need(t, "mkfs.ext4", "dumpe2fs", "debugfs")
	for _, tc := range []struct {
		name      string
		sizeBytes int64
		mkfs      []string
		fs        string
		after     func(t *testing.T, path string)
	}{
		{"ext4 default", 96 << 20, []string{"mkfs.ext4"}, "ext4", nil},
		{"ext4 many uninit groups", 600 << 20, []string{"mkfs.ext4"}, "ext4", nil},
		{"ext4 uninit groups with stale bitmaps", 600 << 20, []string{"mkfs.ext4"}, "ext4", staleUninitBitmaps},
		{"ext4 no flex_bg", 96 << 20, []string{"mkfs.ext4", "-O", "^flex_bg"}, "ext4", nil},
		{"ext4 32-bit gdt_csum", 96 << 20, []string{"mkfs.ext4", "-O", "^64bit,^metadata_csum,uninit_bg"}, "ext4", nil},
		{"ext4 1k blocks", 40 << 20, []string{"mkfs.ext4", "-b", "1024"}, "ext4", nil},
		{"ext4 no sparse_super", 96 << 20, []string{"mkfs.ext4", "-O", "^sparse_super,^resize_inode"}, "ext4", nil},
		{"ext3", 64 << 20, []string{"mkfs.ext3"}, "ext3", nil},
		{"ext2 1k blocks", 24 << 20, []string{"mkfs.ext2", "-b", "1024"}, "ext2", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newFile(t, "fs.img", tc.sizeBytes)
			args := append(tc.mkfs[1:], "-q", "-F", "-d", tree(t, 12, 1<<20), p)
			testdisk.Run(t, tc.mkfs[0], args...)
			// Deleted files leave free blocks that held data.
			for _, f := range []string{"/sub/f3", "/sub/f4", "/sub/f9"} {
				testdisk.Run(t, "debugfs", "-w", "-R", "rm "+f, p)
			}
			if tc.after != nil {
				tc.after(t, p)
			}
			m, err := readFile(t, p)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if m.FS != tc.fs {
				t.Errorf("FS = %q, want %q", m.FS, tc.fs)
			}
			want := dumpe2fsFree(t, p, m.BlockBytes)
			if diff := cmp.Diff(want, m.Free); diff != "" {
				t.Errorf("free extents differ from dumpe2fs (-dumpe2fs +Read):\n%s", diff)
			}
			if m.FreeBytes() == 0 || m.FreeBytes() >= tc.sizeBytes {
				t.Errorf("free bytes %d of %d", m.FreeBytes(), tc.sizeBytes)
			}
		})
	}
}

var uninitRE = regexp.MustCompile(`(?m)^Group (\d+): .*BLOCK_UNINIT.*\n(?:  .*\n)*?  Block bitmap at (\d+)`)

// staleUninitBitmaps fills the bitmap blocks of the groups marked
// BLOCK_UNINIT with ones: they are not to be read, and dumpe2fs, which
// computes such groups' maps, must still agree with Read.
func staleUninitBitmaps(t *testing.T, path string) {
	t.Helper()
	ms := uninitRE.FindAllStringSubmatch(testdisk.Run(t, "dumpe2fs", path), -1)
	if len(ms) == 0 {
		t.Fatal("dumpe2fs shows no BLOCK_UNINIT group")
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ones := make([]byte, 4096)
	for i := range ones {
		ones[i] = 0xFF
	}
	for _, m := range ms {
		blk, _ := strconv.ParseInt(m[2], 10, 64)
		if _, err := f.WriteAt(ones, blk*4096); err != nil {
			t.Fatal(err)
		}
	}
}

// TestExtRefused checks that states and features whose free blocks cannot
// be told safely are refused as unsupported, and that what is not ext is
// unknown.
func TestExtRefused(t *testing.T) {
	testdisk.Need(t, "mkfs.ext4", "debugfs")
	for _, tc := range []struct {
		name  string
		mkfs  []string
		after string // a debugfs -w request run after mkfs
	}{
		{"needs recovery", []string{"-O", "has_journal"}, "feature needs_recovery"},
		{"not clean", nil, "ssv state 0"},
		{"errors", nil, "ssv state 3"},
		{"meta_bg", []string{"-O", "meta_bg,^resize_inode"}, ""},
		{"bigalloc", []string{"-O", "bigalloc", "-C", "65536"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newFile(t, "fs.img", 64<<20)
			testdisk.Run(t, "mkfs.ext4", append(append([]string{"-q", "-F"}, tc.mkfs...), p)...)
			if tc.after != "" {
				testdisk.Run(t, "debugfs", "-w", "-R", tc.after, p)
			}
			_, err := readFile(t, p)
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("Read = %v, want ErrUnsupported", err)
			}
		})
	}
	t.Run("zeros", func(t *testing.T) {
		if _, err := readFile(t, newFile(t, "zero.img", 1<<20)); !errors.Is(err, ErrUnknown) {
			t.Fatalf("Read = %v, want ErrUnknown", err)
		}
	})
	t.Run("too small for its superblock", func(t *testing.T) {
		p := newFile(t, "fs.img", 64<<20)
		testdisk.Run(t, "mkfs.ext4", "-q", "-F", p)
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := Read(f, 32<<20); !errors.Is(err, ErrUnsupported) {
			t.Fatalf("Read of a cut partition = %v, want ErrUnsupported", err)
		}
	})
}
