package imaging

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/internal/testdisk"
)

// countingRepo counts the chunks fetched from a repository and, with
// failAfter > 0, fails every fetch after that many (a link lost mid-run).
type countingRepo struct {
	Repo
	mu        sync.Mutex
	fetched   map[int64]int // by the chunk's offset on the disk
	failAfter int
}

var errLinkLost = errors.New("link lost")

func (r *countingRepo) Chunk(ctx context.Context, c Chunk, buf []byte) ([]byte, error) {
	r.mu.Lock()
	n := 0
	for _, k := range r.fetched {
		n += k
	}
	if r.failAfter > 0 && n >= r.failAfter {
		r.mu.Unlock()
		return buf, errLinkLost
	}
	r.fetched[c.OffsetBytes]++
	r.mu.Unlock()
	return r.Repo.Chunk(ctx, c, buf)
}

func (r *countingRepo) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, k := range r.fetched {
		n += k
	}
	return n
}

// reuseImages is a disk of chunks 64 KiB chunks of random data (v1) and
// v2, which differs from it in the chunks listed in changed.
func reuseImages(t *testing.T, chunks int, changed []int) (v1, v2 []byte) {
	t.Helper()
	const chunkBytes = 64 << 10
	v1 = make([]byte, chunks*chunkBytes)
	rand.Read(v1)
	v2 = bytes.Clone(v1)
	for _, c := range changed {
		rand.Read(v2[c*chunkBytes : (c+1)*chunkBytes])
	}
	return v1, v2
}

// applyOver writes data to a new file in dir, then applies img from repo
// over it with opts, and returns the file, the writer's scan and the
// fetches.
func applyOver(t *testing.T, data []byte, img *Image, repo Repo, topts TargetOptions, failAfter int) (string, ScanStats, *countingRepo, error) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cr := &countingRepo{Repo: repo, fetched: map[int64]int{}, failAfter: failAfter}
	tg := NewTarget(dst, topts)
	err := tg.Apply(context.Background(), img, cr, ApplyOptions{Workers: 2})
	var st ScanStats
	if tg.w != nil {
		st = tg.w.Scanned()
	}
	if cerr := tg.Close(); err == nil {
		err = cerr
	}
	return dst, st, cr, err
}

// TestApplyReusesWhatTheDiskHolds: applied over a disk that holds v1, v2
// fetches and writes only the chunks that differ (and those of the commit
// region, always written by Finish); the result is v2 byte for byte. With
// NoReuse every chunk is fetched.
func TestApplyReusesWhatTheDiskHolds(t *testing.T) {
	const chunks = 40 // 2.5 MiB: 16 chunks in the commit region
	changed := []int{20, 27, 39}
	v1, v2 := reuseImages(t, chunks, changed)
	repoDir, img := rawImage(t, v2, 64<<10)
	repo, err := OpenRepo(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	commit := int(CommitBytes / (64 << 10))
	for _, tc := range []struct {
		name        string
		opts        TargetOptions
		wantFetched int
		wantPresent int
	}{
		{"reuse", TargetOptions{}, commit + len(changed), chunks - commit - len(changed)},
		{"no reuse", TargetOptions{NoReuse: true}, chunks, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst, st, cr, err := applyOver(t, v1, img, repo, tc.opts, 0)
			if err != nil {
				t.Fatalf("apply: %v", err)
			}
			got, err := os.ReadFile(dst)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[:len(v2)], v2) {
				t.Errorf("the target is not v2")
			}
			if n := cr.total(); n != tc.wantFetched {
				t.Errorf("fetched %d chunks, want %d", n, tc.wantFetched)
			}
			if st.PresentChunks != tc.wantPresent {
				t.Errorf("scan found %d chunks present, want %d (%v)", st.PresentChunks, tc.wantPresent, st)
			}
			for _, c := range changed {
				if cr.fetched[int64(c)<<16] != 1 {
					t.Errorf("changed chunk %d fetched %d times, want 1", c, cr.fetched[int64(c)<<16])
				}
			}
		})
	}
}

// corruptChunks and corruptChunk: corruptV2's image has that many chunks of
// 64 KiB, and its disk one byte flipped in that one.
const corruptChunks, corruptChunk = 24, 21

// corruptV2 returns an image v2 (its bytes, the image, its repository)
// and a disk that holds v2 but for one byte of chunk corruptChunk.
func corruptV2(t *testing.T) (v2, disk []byte, img *Image, repo Repo) {
	t.Helper()
	_, v2 = reuseImages(t, corruptChunks, nil)
	repoDir, img := rawImage(t, v2, 64<<10)
	repo, err := OpenRepo(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	disk = bytes.Clone(v2)
	disk[corruptChunk<<16+777] ^= 0x40
	return v2, disk, img, repo
}

// TestScanRewritesCorruptChunk: a chunk of v2 on the disk with one byte
// flipped is not trusted: it is fetched and rewritten.
func TestScanRewritesCorruptChunk(t *testing.T) {
	v2, disk, img, repo := corruptV2(t)
	for _, direct := range []bool{false, true} {
		t.Run(fmt.Sprintf("direct=%v", direct), func(t *testing.T) {
			dst, st, cr, err := applyOver(t, disk, img, repo, TargetOptions{Scan: ScanOptions{Direct: direct}}, 0)
			if err != nil {
				t.Fatalf("apply: %v", err)
			}
			if want := direct && directWorks(t, filepath.Dir(dst)); st.Direct != want {
				t.Errorf("scan read with O_DIRECT: %v, want %v", st.Direct, want)
			}
			if cr.fetched[corruptChunk<<16] != 1 {
				t.Errorf("the corrupt chunk was fetched %d times, want 1", cr.fetched[corruptChunk<<16])
			}
			// Not the commit region, not the bad chunk, and not the last:
			// the wipe of the old tables zeroes the disk's last 33 sectors
			// (a backup GPT's place) before the scan.
			if want := corruptChunks - 16 - 1 - 1; st.PresentChunks != want {
				t.Errorf("present %d, want %d", st.PresentChunks, want)
			}
			got, _ := os.ReadFile(dst)
			if !bytes.Equal(got[:len(v2)], v2) {
				t.Errorf("the corrupt chunk was not rewritten")
			}
		})
	}
}

// directWorks reports whether files in dir open with O_DIRECT (tmpfs
// before Linux 6.6 refuses).
func directWorks(t *testing.T, dir string) bool {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "direct-probe"), os.O_CREATE|os.O_RDWR|unix.O_DIRECT, 0o600)
	if err != nil {
		t.Logf("O_DIRECT in %s: %v", dir, err)
		return false
	}
	f.Close()
	return true
}

// TestResumeAfterLostLink: an apply that loses its repository part way
// leaves no partition table and no commit region; the next apply over the
// same disk fetches only what the first did not write, and the disk ends
// as the image, with its table.
func TestResumeAfterLostLink(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "disk.raw")
	data := make([]byte, 6<<20)
	rand.Read(data)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	repoDir := filepath.Join(dir, "repo")
	img, _, err := Create(context.Background(), src, repoDir, "resume", CreateOptions{ChunkSizeBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	repo, err := OpenRepo(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "target")
	if err := os.WriteFile(dst, make([]byte, len(data)), 0o644); err != nil {
		t.Fatal(err)
	}
	first := &countingRepo{Repo: repo, fetched: map[int64]int{}, failAfter: 50}
	tg := NewTarget(dst, TargetOptions{})
	err = tg.Apply(context.Background(), img, first, ApplyOptions{Workers: 2})
	tg.Close()
	if !errors.Is(err, errLinkLost) {
		t.Fatalf("first apply: %v, want the lost link", err)
	}
	half, _ := os.ReadFile(dst)
	if !isZero(half[:CommitBytes]) {
		t.Errorf("the interrupted apply wrote the commit region")
	}
	second := &countingRepo{Repo: repo, fetched: map[int64]int{}}
	tg = NewTarget(dst, TargetOptions{})
	if err := tg.Apply(context.Background(), img, second, ApplyOptions{Workers: 2}); err != nil {
		t.Fatalf("second apply: %v", err)
	}
	tg.Close()
	got, _ := os.ReadFile(dst)
	if diff := cmp.Diff(len(data), len(got)); diff != "" || !bytes.Equal(got, data) {
		t.Fatalf("the resumed target is not the image %s", diff)
	}
	// The first run's fetches beyond the commit region were written and
	// found again; only the commit region is fetched twice.
	var again int
	for off := range first.fetched {
		if second.fetched[off] > 0 && off >= CommitBytes {
			again++
		}
	}
	if again > 0 {
		t.Errorf("%d chunks fetched by both runs beyond the commit region", again)
	}
	if total, chunks := first.total()+second.total(), len(img.Chunks); total > chunks+int(CommitBytes>>16) {
		t.Errorf("both runs fetched %d chunks, image has %d", total, chunks)
	}
}

// TestScanStopsOnZeros: over an empty (zeroed) disk the scan ends after
// ZeroRunBytes of zero chunks; with a negative ZeroRunBytes it reads all.
func TestScanStopsOnZeros(t *testing.T) {
	const chunks = 64
	_, v2 := reuseImages(t, chunks, nil)
	repoDir, img := rawImage(t, v2, 64<<10)
	repo, err := OpenRepo(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		zeroRun     int64
		wantEarly   bool
		wantScanned int
	}{
		{"early", 8 << 16, true, -1},
		{"never", -1, false, chunks - 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, st, _, err := applyOver(t, make([]byte, len(v2)), img, repo, TargetOptions{Scan: ScanOptions{ZeroRunBytes: tc.zeroRun, Workers: 1}}, 0)
			if err != nil {
				t.Fatal(err)
			}
			if st.StoppedEarly != tc.wantEarly {
				t.Errorf("stopped early %v, want %v (%v)", st.StoppedEarly, tc.wantEarly, st)
			}
			if tc.wantScanned >= 0 && st.ScannedChunks != tc.wantScanned {
				t.Errorf("scanned %d, want %d", st.ScannedChunks, tc.wantScanned)
			}
			if tc.wantEarly && st.ScannedChunks > 8+2 {
				t.Errorf("scanned %d chunks after a zero run of 8", st.ScannedChunks)
			}
			if st.PresentChunks != 0 {
				t.Errorf("present %d on a zero disk", st.PresentChunks)
			}
		})
	}
}

// TestScanDirectOnDevice: over a block device (a loop device) the scan
// reads around the page cache without being asked, finds the chunks that
// are right, and the corrupt one is rewritten.
func TestScanDirectOnDevice(t *testing.T) {
	v2, disk, img, repo := corruptV2(t)
	backing := filepath.Join(t.TempDir(), "backing")
	if err := os.WriteFile(backing, disk, 0o644); err != nil {
		t.Fatal(err)
	}
	dev := testdisk.Loop(t, backing, 512)
	tg := NewTarget(dev, TargetOptions{})
	if err := tg.Apply(context.Background(), img, repo, ApplyOptions{Workers: 2}); err != nil {
		t.Fatalf("apply onto %s: %v", dev, err)
	}
	st := tg.Scanned()
	if err := tg.Close(); err != nil {
		t.Fatal(err)
	}
	if !st.Direct {
		t.Errorf("the scan of block device %s went through the page cache (%v)", dev, st)
	}
	if want := corruptChunks - 16 - 1 - 1; st.PresentChunks != want {
		t.Errorf("present %d, want %d", st.PresentChunks, want)
	}
	got, err := os.ReadFile(dev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:len(v2)], v2) {
		t.Errorf("%s does not hold the image after the apply", dev)
	}
}
