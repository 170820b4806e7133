package appliance

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoal-project/shoal/internal/testdisk"
)

// FuzzReadConf: a stick's filesystem comes off a disk anyone may have
// written. The input patches a FAT image made by mkfs.vfat and mcopy (a
// shoal.conf in it) at an offset: the boot sector, the FATs, the
// directory entries. ReadConf must return the file or an error, never
// panic, and never more than 1 MiB.
func FuzzReadConf(f *testing.F) {
	testdisk.Need(f, "mkfs.vfat", "mcopy")
	dir := f.TempDir()
	base := filepath.Join(dir, "base.img")
	testdisk.Run(f, "mkfs.vfat", "-C", base, "1024")
	conf := filepath.Join(dir, "shoal.conf")
	if err := os.WriteFile(conf, []byte("repo = http://h/repo/\nimage = x\n"), 0o644); err != nil {
		f.Fatal(err)
	}
	testdisk.Run(f, "mcopy", "-i", base, conf, "::/shoal.conf")
	img, err := os.ReadFile(base)
	if err != nil {
		f.Fatal(err)
	}
	if b, err := ReadConf(base); err != nil || len(b) == 0 {
		f.Fatalf("ReadConf(the unpatched image) = %q, %v", b, err)
	}
	f.Add(uint32(0), []byte{})                                 // as made
	f.Add(uint32(11), []byte{0, 0})                            // bytes per sector 0
	f.Add(uint32(13), []byte{0})                               // sectors per cluster 0
	f.Add(uint32(14), []byte{0xff, 0xff})                      // reserved sectors
	f.Add(uint32(16), []byte{0})                               // no FATs
	f.Add(uint32(0x200), []byte{0xff, 0xff, 0xff, 0xff, 0xff}) // the FAT
	f.Add(uint32(510), []byte{0, 0})                           // no boot signature
	f.Add(uint32(len(img)/2), []byte("garbage in the data area"))
	f.Fuzz(func(t *testing.T, off uint32, patch []byte) {
		b := append([]byte(nil), img...)
		if len(patch) > 4096 {
			patch = patch[:4096]
		}
		at := int(off % uint32(len(b)))
		copy(b[at:], patch)
		p := filepath.Join(t.TempDir(), "stick.img")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		type result struct {
			b   []byte
			err error
		}
		done := make(chan result, 1)
		go func() {
			b, err := ReadConf(p)
			done <- result{b, err}
		}()
		select {
		case r := <-done:
			if r.err == nil && len(r.b) > 1<<20 {
				t.Errorf("ReadConf returned %d bytes, more than 1 MiB", len(r.b))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("ReadConf still running after 10 s (patch %d bytes at %d)", len(patch), at)
		}
	})
}
