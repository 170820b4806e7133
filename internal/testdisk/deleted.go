package testdisk

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Kept names a file that a disk made by WithDeleted still holds, with its
// contents, to read back after the disk is imaged and applied.
type Kept struct {
	Partition int    // partition number
	Path      string // in the file system: "/keep.bin", "::/KEEP.BIN"
	Data      []byte
}

// Deleted is a GPT disk whose free blocks hold old data: made like GPT's,
// but every byte is random before mkfs, and files are written and then
// deleted from both file systems, so that their blocks are free in the
// allocation maps yet still hold their data.
type Deleted struct {
	*Disk
	Kept []Kept
}

// WithDeleted makes a GPT disk of sizeBytes with a 16 MiB FAT EFI system
// partition and an ext4 partition filling the rest, in which usedBytes of
// random data is kept and deletedBytes more was written and deleted.
func WithDeleted(t testing.TB, dir string, sizeBytes, usedBytes, deletedBytes int64) *Deleted {
	t.Helper()
	Need(t, "sgdisk", "mkfs.vfat", "mcopy", "mdel", "mkfs.ext4", "debugfs")
	d := &Deleted{Disk: &Disk{Path: filepath.Join(dir, "deleted.img"), SizeBytes: sizeBytes}}
	randomFile(t, d.Path, sizeBytes)
	Run(t, "sgdisk", "-n1:2048:+16M", "-t1:ef00", "-c1:EFI system", "-n2:0:0", "-t2:8300", "-c2:root", d.Path)
	d.Partitions = []Partition{sgdiskPart(t, d.Path, 1, "vfat"), sgdiskPart(t, d.Path, 2, "ext4")}

	efi := filepath.Join(dir, "deleted-efi.fs")
	randomFile(t, efi, d.Partitions[0].SizeBytes)
	Run(t, "mkfs.vfat", "-n", "EFI", efi)
	keepEFI := writeRandom(t, filepath.Join(dir, "KEEP.BIN"), 2<<20)
	Run(t, "mcopy", "-i", efi, filepath.Join(dir, "KEEP.BIN"), "::/KEEP.BIN")
	writeRandom(t, filepath.Join(dir, "GONE.BIN"), 6<<20)
	Run(t, "mcopy", "-i", efi, filepath.Join(dir, "GONE.BIN"), "::/GONE.BIN")
	Run(t, "mdel", "-i", efi, "::/GONE.BIN")
	writeAt(t, d.Path, efi, d.Partitions[0].StartLBA*512)

	// The ext4 partition starts as zeros, as a disk's blocks do before
	// their first file system; its old data is the deleted file's. (Old
	// data under mkfs would also sit in blocks that mke2fs marks used but
	// may not write, and shoal copies every block the bitmap marks used;
	// partclone's image was 1 MiB smaller at 1 GiB that way.)
	root := filepath.Join(dir, "deleted-root.fs")
	if err := os.WriteFile(root, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(root, d.Partitions[1].SizeBytes); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(dir, "deleted-tree")
	fillTree(t, tree, 1<<20)
	keepRoot := writeRandom(t, filepath.Join(tree, "keep.bin"), int(usedBytes))
	writeRandom(t, filepath.Join(tree, "gone.bin"), int(deletedBytes))
	// nodiscard: mke2fs would punch the file's holes, and the old data
	// would be gone before the test starts. lazy_itable_init=0: inode
	// tables zeroed now, as the kernel does after a file system's first
	// mount, rather than left holding the old data.
	Run(t, "mkfs.ext4", "-q", "-F", "-E", "nodiscard,lazy_itable_init=0", "-d", tree, root)
	Run(t, "debugfs", "-w", "-R", "rm /gone.bin", root)
	writeAt(t, d.Path, root, d.Partitions[1].StartLBA*512)
	os.Remove(efi)
	os.Remove(root)

	d.Kept = []Kept{
		{Partition: 1, Path: "::/KEEP.BIN", Data: keepEFI},
		{Partition: 2, Path: "/keep.bin", Data: keepRoot},
	}
	return d
}

// randomFile makes path a file of sizeBytes random bytes.
func randomFile(t testing.TB, path string, sizeBytes int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1<<20)
	for off := int64(0); off < sizeBytes; off += int64(len(b)) {
		rand.Read(b)
		if _, err := f.WriteAt(b[:min(int64(len(b)), sizeBytes-off)], off); err != nil {
			t.Fatal(err)
		}
	}
}

func writeRandom(t testing.TB, path string, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// ReadKept reads k back from the disk at path, whose partitions are laid
// out as parts, with debugfs (ext4) or mtype (FAT).
func ReadKept(t testing.TB, path string, parts []Partition, k Kept) []byte {
	t.Helper()
	var p Partition
	for _, q := range parts {
		if q.Number == k.Partition {
			p = q
		}
	}
	fs := filepath.Join(t.TempDir(), "kept.fs")
	if err := os.WriteFile(fs, Bytes(t, path, p.StartLBA*512, p.SizeBytes), 0o644); err != nil {
		t.Fatal(err)
	}
	switch p.FS {
	case "ext4":
		return output(t, "debugfs", "-R", "cat "+k.Path, fs)
	case "vfat":
		return output(t, "mtype", "-i", fs, k.Path)
	}
	t.Fatalf("partition %d: no reader for %q", p.Number, p.FS)
	return nil
}

// output runs a command and returns its standard output alone (debugfs
// says its version on standard error).
func output(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, stderr.Bytes())
	}
	return out
}
