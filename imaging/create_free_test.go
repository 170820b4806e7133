package imaging

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/imaging/fsalloc"
	"github.com/shoal-project/shoal/internal/testdisk"
)

// TestFreeBlocksNeverTravel makes a GPT disk whose ext4 and FAT file
// systems hold deleted data in their free blocks, images it, and applies
// the image over a target full of other data: the free blocks are neither
// stored nor written (they still hold the target's old bytes on a file and
// are discarded on a loop device), yet both file systems pass fsck and hold
// their files. The ext4 partition, 25% used and its free blocks mostly
// holding deleted data, is stored in no more than its used bytes (0.31 of
// an image of every block) and than partclone's zstd-compressed image.
func TestFreeBlocksNeverTravel(t *testing.T) {
	testdisk.Need(t, "e2fsck", "fsck.vfat", "mtype", "partclone.ext4", "zstd")
	dir := t.TempDir()
	const diskBytes = 128 << 20
	d := testdisk.WithDeleted(t, dir, diskBytes, 28<<20, 64<<20)
	ctx := context.Background()

	all, _, err := Create(ctx, d.Path, filepath.Join(dir, "all"), "disk", CreateOptions{AllBlocks: true})
	if err != nil {
		t.Fatalf("Create --all-blocks: %v", err)
	}
	repoDir := filepath.Join(dir, "repo")
	img, st, err := Create(ctx, d.Path, repoDir, "disk", CreateOptions{})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if img.Manifest.Version != FormatVersion {
		t.Errorf("manifest version %d, want %d (it has free extents)", img.Manifest.Version, FormatVersion)
	}
	var freeBytes int64
	for _, r := range img.Manifest.Regions {
		freeBytes += r.FreeBytes()
	}
	if freeBytes == 0 || freeBytes > st.FreeBytes {
		t.Fatalf("manifest's free extents hold %d bytes, Create left out %d", freeBytes, st.FreeBytes)
	}
	root := d.Partitions[1]
	rootStored, rootAll := partitionStored(img, root.Number), partitionStored(all, root.Number)
	ratio := float64(rootStored) / float64(rootAll)
	t.Logf("disk: stored %d bytes, every block %d; %d free bytes left out, %d of them in whole chunks",
		img.Manifest.StoredBytes, all.Manifest.StoredBytes, st.FreeBytes, freeBytes)
	t.Logf("ext4 partition: stored %d bytes, every block %d (%.3f)", rootStored, rootAll, ratio)
	// The bench's 1 GiB partition meets issue 15's 0.3; this small one has
	// relatively more metadata, so what is checked here is that no more
	// than the used blocks, with 1% to spare, is stored.
	f, err := os.Open(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fm, err := fsalloc.Read(io.NewSectionReader(f, root.StartLBA*512, root.SizeBytes), root.SizeBytes)
	if err != nil {
		t.Fatalf("fsalloc.Read: %v", err)
	}
	if used := root.SizeBytes - fm.FreeBytes(); float64(rootStored) > 1.01*float64(used) {
		t.Errorf("ext4 partition stored in %d bytes, more than its %d used bytes", rootStored, used)
	}
	if ratio > 0.4 {
		t.Errorf("ext4 partition stored in %.3f of an image of every block, want at most 0.4", ratio)
	}
	pc := partcloneBytes(t, d.Path, root)
	t.Logf("ext4 partition: partclone.ext4 | zstd -3 %d bytes (shoal %.4f of it)", pc, float64(rootStored)/float64(pc))
	if rootStored > pc {
		t.Errorf("ext4 partition stored in %d bytes, more than partclone's %d", rootStored, pc)
	}

	garbage := bytes.Repeat([]byte("old data on the target "), diskBytes/23+1)[:diskBytes]
	e := img.Manifest.Regions[len(img.Manifest.Regions)-1].Free[0]
	for _, tc := range []struct {
		name   string
		device bool
		// free is what a free extent holds after apply: the target's old
		// bytes on a file (left as it is), zeros on a loop device (which
		// passes the discard to its file as a hole).
		free []byte
	}{
		{"file", false, garbage[e.OffsetBytes:e.End()]},
		{"loop device", true, make([]byte, e.SizeBytes)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "target.img")
			if err := os.WriteFile(dst, garbage, 0o644); err != nil {
				t.Fatal(err)
			}
			target := dst
			if tc.device {
				target = testdisk.Loop(t, dst, 512)
			}
			if err := applyTo(t, img, DirRepo(repoDir), target, ApplyOptions{}); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			for _, p := range d.Partitions {
				testdisk.Fsck(t, target, p)
			}
			for _, k := range d.Kept {
				if got := testdisk.ReadKept(t, target, d.Partitions, k); !bytes.Equal(got, k.Data) {
					t.Errorf("partition %d %s: read back %d bytes, not the %d written", k.Partition, k.Path, len(got), len(k.Data))
				}
			}
			if got := testdisk.Bytes(t, target, e.OffsetBytes, e.SizeBytes); !bytes.Equal(got, tc.free) {
				t.Errorf("free extent %+v of %s: not what it should hold after apply (the old bytes on a file, zeros once discarded)", e, target)
			}
		})
	}
}

// partcloneBytes returns the size of partclone's image of partition p of
// the disk at path, compressed by zstd at its default level (3, as shoal's
// codec).
func partcloneBytes(t testing.TB, path string, p testdisk.Partition) int64 {
	t.Helper()
	part := filepath.Join(t.TempDir(), "part.fs")
	if err := os.WriteFile(part, testdisk.Bytes(t, path, p.StartLBA*512, p.SizeBytes), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", `partclone.ext4 -q -c -s "$1" -o - | zstd -3 -q -c | wc -c`, "sh", part)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("partclone.ext4 | zstd: %v\n%s", err, out)
	}
	f := strings.Fields(string(out))
	n, err := strconv.ParseInt(f[len(f)-1], 10, 64)
	if err != nil || n < 4096 {
		t.Fatalf("partclone.ext4 | zstd | wc -c: %q", out)
	}
	return n
}

// BenchmarkFreeBlocks is issue 15's figure: a 1 GiB ext4 partition, 25%
// used, whose free blocks hold deleted data. It reports the stored size as
// a fraction of an image of every block (free/all, target at most 0.3) and
// of partclone.ext4's image compressed by zstd -3 (free/partclone, target
// at most 1), and create's CPU seconds per GiB of source.
//
//	go test -run '^$' -bench BenchmarkFreeBlocks -benchtime 1x ./imaging/
func BenchmarkFreeBlocks(b *testing.B) {
	testdisk.Need(b, "partclone.ext4", "zstd")
	dir := b.TempDir()
	d := testdisk.WithDeleted(b, dir, 16<<20+1<<30+2<<20, 256<<20, 640<<20)
	root := d.Partitions[1]
	pc := partcloneBytes(b, d.Path, root)
	var all, free int64
	var cpuSec float64
	for i := 0; b.Loop(); i++ {
		img, _, err := Create(context.Background(), d.Path, filepath.Join(dir, "all", strconv.Itoa(i)), "disk", CreateOptions{AllBlocks: true})
		if err != nil {
			b.Fatal(err)
		}
		all = partitionStored(img, root.Number)
		before := cpuTime()
		if img, _, err = Create(context.Background(), d.Path, filepath.Join(dir, "free", strconv.Itoa(i)), "disk", CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		cpuSec = (cpuTime() - before).Seconds()
		free = partitionStored(img, root.Number)
	}
	b.ReportMetric(float64(free)/float64(all), "free/all")
	b.ReportMetric(float64(free)/float64(pc), "free/partclone")
	b.ReportMetric(float64(free)/(1<<20), "stored-MiB")
	b.ReportMetric(float64(pc)/(1<<20), "partclone-MiB")
	b.ReportMetric(float64(free-pc)/(1<<10), "over-partclone-KiB")
	b.ReportMetric(cpuSec/(float64(d.SizeBytes)/(1<<30)), "create-cpu-s/GiB")
}

// cpuTime returns the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// partitionStored sums the stored bytes of partition n's chunks.
func partitionStored(img *Image, n int) int64 {
	var sum int64
	for _, r := range img.Manifest.Regions {
		if r.Kind == RegionPartition && r.Partition == n {
			for _, c := range r.Chunks {
				sum += c.StoredBytes
			}
		}
	}
	return sum
}
