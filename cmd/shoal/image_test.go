package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/imaging/sign"
	"github.com/shoal-project/shoal/internal/testdisk"
	"github.com/shoal-project/shoal/partition"
)

// shoal runs the CLI in-process and returns its stdout.
func shoal(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	if err != nil {
		t.Logf("shoal %s: %v\nstderr: %s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), err
}

func mustShoal(t *testing.T, args ...string) string {
	t.Helper()
	out, err := shoal(t, args...)
	if err != nil {
		t.Fatalf("shoal %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func makeFile(t *testing.T, path string, sizeBytes int64) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, sizeBytes); err != nil {
		t.Fatal(err)
	}
}

// checkPartitions asserts that every partition of src has the same bytes on
// dst and that its filesystem is clean there.
func checkPartitions(t *testing.T, src *testdisk.Disk, dst string) {
	t.Helper()
	for _, p := range src.Partitions {
		if !testdisk.Equal(t, src.Path, dst, p.StartLBA*512, p.SizeBytes) {
			t.Errorf("partition %d: bytes on target differ from the source", p.Number)
		}
		testdisk.Fsck(t, dst, p)
	}
}

// checkUsed is checkPartitions for a target that held other data: the
// free blocks the image left out are not written and so hold the target's
// old bytes; every other byte of each partition equals the source's.
func checkUsed(t *testing.T, src *testdisk.Disk, dst, repoDir, name string) {
	t.Helper()
	img, err := imaging.LoadImage(context.Background(), imaging.DirRepo(repoDir), name, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range src.Partitions {
		a := testdisk.Bytes(t, src.Path, p.StartLBA*512, p.SizeBytes)
		b := testdisk.Bytes(t, dst, p.StartLBA*512, p.SizeBytes)
		for _, r := range img.Manifest.Regions {
			for _, e := range r.Free {
				lo, hi := max(e.OffsetBytes, p.StartLBA*512), min(e.End(), p.StartLBA*512+p.SizeBytes)
				if lo < hi {
					base := p.StartLBA * 512
					copy(b[lo-base:hi-base], a[lo-base:hi-base])
				}
			}
		}
		if !bytes.Equal(a, b) {
			t.Errorf("partition %d: bytes outside the free blocks differ from the source", p.Number)
		}
		testdisk.Fsck(t, dst, p)
	}
}

func TestRoundTripGPT(t *testing.T) {
	testdisk.Need(t, "sgdisk")
	dir := t.TempDir()
	src := testdisk.GPT(t, dir, 64<<20)
	repo := filepath.Join(dir, "repo")
	mustShoal(t, "key", "gen", "--out", filepath.Join(dir, "site"))
	mustShoal(t, "image", "create", "--repo", repo, "--name", "debian-12", "--sign", filepath.Join(dir, "site.key"), "--chunk-size", "1MiB", src.Path)

	srv := httptest.NewServer(http.FileServer(http.Dir(repo)))
	t.Cleanup(srv.Close)

	for _, tc := range []struct{ name, repo string }{
		{"directory", repo},
		{"http", srv.URL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "target.img")
			const targetBytes = 100 << 20
			makeFile(t, dst, targetBytes)
			mustShoal(t, "image", "verify", "--repo", tc.repo, "--name", "debian-12", "--pub", filepath.Join(dir, "site.pub"))
			mustShoal(t, "image", "apply", "--repo", tc.repo, "--name", "debian-12", "--pub", filepath.Join(dir, "site.pub"), dst)
			checkPartitions(t, src, dst)
			out := testdisk.Run(t, "sgdisk", "-v", dst)
			if !strings.Contains(out, "No problems found") {
				t.Errorf("sgdisk -v on target:\n%s", out)
			}
			// The ext4 partition was marked to grow: it now ends at the
			// end of the larger target, 1 MiB aligned.
			out = testdisk.Run(t, "sgdisk", "-i", "2", dst)
			if !strings.Contains(out, "Last sector: 202751") {
				t.Errorf("sgdisk -i 2: partition 2 did not grow to the 1 MiB boundary before the backup GPT:\n%s", out)
			}
			if !strings.Contains(out, "Partition name: 'root'") {
				t.Errorf("sgdisk -i 2: name not carried over:\n%s", out)
			}
			if got, want := testdisk.Run(t, "sgdisk", "-A", "2:get:2", dst), "2:2:1"; !strings.Contains(got, want) {
				t.Errorf("attribute bit 2 of partition 2 = %q, want %q", got, want)
			}
			src1, dst1 := testdisk.Run(t, "sgdisk", "-i", "1", src.Path), testdisk.Run(t, "sgdisk", "-i", "1", dst)
			if src1 != dst1 {
				t.Errorf("partition 1 entry differs:\nsource:\n%s\ntarget:\n%s", src1, dst1)
			}
		})
	}
}

func TestRoundTripMBR(t *testing.T) {
	dir := t.TempDir()
	src := testdisk.MBR(t, dir, 48<<20)
	repo := filepath.Join(dir, "repo")
	mustShoal(t, "image", "create", "--repo", repo, "--name", "legacy", src.Path)
	dst := filepath.Join(dir, "target.img")
	// Missing target: created at the image's disk size.
	mustShoal(t, "image", "apply", "--repo", repo, "--name", "legacy", dst)
	checkPartitions(t, src, dst)
	if got := testdisk.Bytes(t, dst, 0, 440); !bytes.Equal(got, src.BootCode) {
		t.Errorf("boot code not carried over")
	}
	// Disk signature, partition entries and 0x55AA all equal.
	if !testdisk.Equal(t, src.Path, dst, 440, 72) {
		t.Errorf("MBR bytes 440-511 differ:\nsource %x\ntarget %x", testdisk.Bytes(t, src.Path, 440, 72), testdisk.Bytes(t, dst, 440, 72))
	}
	st, err := os.Stat(dst)
	if err != nil || st.Size() != src.SizeBytes {
		t.Errorf("created target: %v, size %d, want %d", err, st.Size(), src.SizeBytes)
	}
	// Onto a larger existing target holding old data: the last partition
	// grows; everything else matches.
	big := filepath.Join(dir, "big.img")
	makeFile(t, big, 80<<20)
	old := bytes.Repeat([]byte("old data "), 1<<20)
	f, _ := os.OpenFile(big, os.O_WRONLY, 0)
	f.WriteAt(old, 0)
	f.Close()
	mustShoal(t, "image", "apply", "--repo", repo, "--name", "legacy", big)
	checkUsed(t, src, big, repo, "legacy")
	out := testdisk.Run(t, "sfdisk", "--dump", big)
	if !strings.Contains(out, "start=       34816, size=      129024, type=83") {
		t.Errorf("sfdisk --dump: partition 2 did not grow to the end of the 80 MiB target:\n%s", out)
	}
}

func TestRoundTripNoTable(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "raw.img")
	b := make([]byte, 5<<20+512)
	for i := range b {
		b[i] = byte(i * 7 / 3)
	}
	copy(b[2<<20:], make([]byte, 1<<20)) // a zero run, not stored
	if err := os.WriteFile(src, b, 0o644); err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(dir, "repo")
	mustShoal(t, "image", "create", "--repo", repo, "--name", "raw", "--chunk-size", "1MiB", src)
	out := mustShoal(t, "image", "inspect", "--repo", repo, "--name", "raw")
	for _, want := range []string{"none table", "5 chunks"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`(?m)^serial +1$`).MatchString(out) {
		t.Errorf("inspect output lacks serial 1:\n%s", out)
	}
	dst := filepath.Join(dir, "dst.img")
	makeFile(t, dst, 8<<20)
	f, _ := os.OpenFile(dst, os.O_WRONLY, 0)
	f.Write(bytes.Repeat([]byte{0xff}, 8<<20))
	f.Close()
	mustShoal(t, "image", "apply", "--repo", repo, "--name", "raw", dst)
	got := testdisk.Bytes(t, dst, 0, int64(len(b)))
	if !bytes.Equal(got, b) {
		t.Errorf("applied bytes differ from the source (the zero run must be zeroed on an old target)")
	}
}

// TestBadInput checks that each bad input gives a clear error and leaves the
// target as it was where nothing may be written, and without a partition
// table where the failure comes after writing began.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	src := testdisk.GPT(t, dir, 64<<20)
	repo := filepath.Join(dir, "repo")
	mustShoal(t, "key", "gen", "--out", filepath.Join(dir, "site"))
	mustShoal(t, "key", "gen", "--out", filepath.Join(dir, "other"))
	mustShoal(t, "image", "create", "--repo", repo, "--name", "signed", "--sign", filepath.Join(dir, "site.key"), src.Path)
	mustShoal(t, "image", "create", "--repo", repo, "--name", "unsigned", "--unsigned", src.Path)
	pub := filepath.Join(dir, "site.pub")

	// copyRepo makes a private copy of the repository that a case may break.
	copyRepo := func(t *testing.T) string {
		dst := filepath.Join(t.TempDir(), "repo")
		testdisk.Run(t, "cp", "-a", repo, dst)
		return dst
	}
	firstChunk := func(t *testing.T, repo string) string {
		r := imaging.DirRepo(repo)
		img, err := imaging.LoadImage(context.Background(), r, "signed", nil)
		if err != nil {
			t.Fatal(err)
		}
		return filepath.Join(repo, filepath.FromSlash(imaging.ChunkPath(img.Chunks[len(img.Chunks)-1].Hash)))
	}
	oldContent := bytes.Repeat([]byte{0xa5}, 70<<20)

	for _, tc := range []struct {
		name string
		// prepare returns the repository (dir or URL) to use.
		prepare func(t *testing.T) string
		args    []string
		target  int64 // size of the existing target; 0: none
		wantErr error // checked with errors.Is, when set
		want    string
		// untouched: the target must be byte-for-byte as before.
		untouched bool
	}{
		{
			name: "target too small", prepare: func(*testing.T) string { return repo },
			target: 32 << 20, wantErr: partition.ErrTooSmall, want: "too small", untouched: true,
		},
		{
			name: "unsigned with --pub", prepare: func(*testing.T) string { return repo },
			args: []string{"--name", "unsigned", "--pub", pub}, target: 64 << 20, wantErr: sign.ErrNoSignature, untouched: true,
		},
		{
			name: "signed by another key", prepare: func(*testing.T) string { return repo },
			args: []string{"--pub", filepath.Join(dir, "other.pub")}, target: 64 << 20, wantErr: sign.ErrBadSignature, untouched: true,
		},
		{
			name: "tampered manifest", prepare: func(t *testing.T) string {
				r := copyRepo(t)
				p := filepath.Join(r, "images", "signed", "manifest.json")
				b, _ := os.ReadFile(p)
				b = bytes.Replace(b, []byte(`"name": "root"`), []byte(`"name": "evil"`), 1)
				os.WriteFile(p, b, 0o644)
				return r
			},
			args: []string{"--pub", pub}, target: 64 << 20, wantErr: sign.ErrBadSignature, untouched: true,
		},
		{
			name: "garbled manifest", prepare: func(t *testing.T) string {
				r := copyRepo(t)
				p := filepath.Join(r, "images", "signed", "manifest.json")
				b, _ := os.ReadFile(p)
				os.WriteFile(p, b[:len(b)/2], 0o644)
				return r
			},
			target: 64 << 20, wantErr: imaging.ErrBadManifest, untouched: true,
		},
		{
			name: "manifest edited without signature check", prepare: func(t *testing.T) string {
				r := copyRepo(t)
				p := filepath.Join(r, "images", "signed", "manifest.json")
				b, _ := os.ReadFile(p)
				b = bytes.Replace(b, []byte(`"name": "root"`), []byte(`"name": "evil"`), 1)
				os.WriteFile(p, b, 0o644)
				return r
			},
			target: 64 << 20, wantErr: imaging.ErrBadManifest, want: "content hash", untouched: true,
		},
		{
			name: "no such image", prepare: func(*testing.T) string { return repo },
			args: []string{"--name", "nope"}, target: 64 << 20, wantErr: imaging.ErrNotFound, untouched: true,
		},
		{
			name: "missing target with bad manifest is not created", prepare: func(t *testing.T) string {
				r := copyRepo(t)
				os.WriteFile(filepath.Join(r, "images", "signed", "manifest.json"), []byte("{"), 0o644)
				return r
			},
			wantErr: imaging.ErrBadManifest, untouched: true,
		},
		{
			name: "corrupt chunk", prepare: func(t *testing.T) string {
				r := copyRepo(t)
				p := firstChunk(t, r)
				b, _ := os.ReadFile(p)
				b[len(b)/2] ^= 0xff
				os.WriteFile(p, b, 0o644)
				return r
			},
			target: 64 << 20, wantErr: imaging.ErrCorrupt,
		},
		{
			name: "missing chunk", prepare: func(t *testing.T) string {
				r := copyRepo(t)
				os.Remove(firstChunk(t, r))
				return r
			},
			target: 64 << 20, wantErr: imaging.ErrNotFound,
		},
		{
			name: "corrupt chunk over http", prepare: func(t *testing.T) string {
				r := copyRepo(t)
				p := firstChunk(t, r)
				b, _ := os.ReadFile(p)
				os.WriteFile(p, append(b, 0), 0o644) // one byte too long
				srv := httptest.NewServer(http.FileServer(http.Dir(r)))
				t.Cleanup(srv.Close)
				return srv.URL
			},
			target: 64 << 20, wantErr: imaging.ErrCorrupt,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.prepare(t)
			dst := filepath.Join(t.TempDir(), "target.img")
			if tc.target > 0 {
				if err := os.WriteFile(dst, oldContent[:tc.target], 0o644); err != nil {
					if tc.target > int64(len(oldContent)) {
						t.Fatal("target larger than the old content")
					}
					t.Fatal(err)
				}
			}
			args := append([]string{"image", "apply", "--repo", r, "--name", "signed"}, tc.args...)
			if !slices.Contains(tc.args, "--pub") {
				args = append(args, "--insecure-unsigned") // the case checks no signature
			}
			args = append(args, dst)
			_, err := shoal(t, args...)
			if err == nil {
				t.Fatalf("shoal %s: no error", strings.Join(args, " "))
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %q is not %v", err, tc.wantErr)
			}
			if tc.want != "" && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if tc.target == 0 {
				if _, serr := os.Stat(dst); !errors.Is(serr, os.ErrNotExist) {
					t.Errorf("target %s exists after a failed apply (stat: %v)", dst, serr)
				}
				return
			}
			got, rerr := os.ReadFile(dst)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if tc.untouched {
				if !bytes.Equal(got, oldContent[:tc.target]) {
					t.Errorf("target changed although nothing may be written")
				}
				return
			}
			// Writing began: no partition table may be on the target.
			f, _ := os.Open(dst)
			defer f.Close()
			l, lerr := partition.ReadLayout(f, tc.target, 512)
			if lerr == nil && l.Table != partition.TableNone {
				t.Errorf("target has a %s partition table after a failed apply", l.Table)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"nosuch"},
		{"image"},
		{"image", "apply", "--repo", "x"},
		{"image", "create", "--name", "a", "src"},
		{"image", "create", "--repo", "r", "--name", "../evil", "src"},
		{"image", "create", "--repo", "r", "--name", "a", "--chunk-size", "3k", "src"},
		{"key"},
	} {
		t.Run(strings.Join(args, "_"), func(t *testing.T) {
			dir := t.TempDir()
			wd, _ := os.Getwd()
			os.Chdir(dir)
			defer os.Chdir(wd)
			if _, err := shoal(t, args...); err == nil {
				t.Errorf("shoal %v: no error", args)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("shoal %v wrote %d files", args, len(ents))
			}
		})
	}
}

// TestCreateFromBlockDevice makes the same image from a loop device over a
// disk as from the disk's file: same content hash.
func TestCreateFromBlockDevice(t *testing.T) {
	dir := t.TempDir()
	src := testdisk.GPT(t, dir, 64<<20)
	dev := testdisk.Loop(t, src.Path, 512)
	repo := filepath.Join(dir, "repo")
	mustShoal(t, "image", "create", "--repo", repo, "--name", "fromfile", src.Path)
	mustShoal(t, "image", "create", "--repo", repo, "--name", "fromdev", dev)
	a, err := imaging.LoadImage(context.Background(), imaging.DirRepo(repo), "fromfile", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := imaging.LoadImage(context.Background(), imaging.DirRepo(repo), "fromdev", nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Manifest.ContentHash != b.Manifest.ContentHash {
		t.Errorf("content hash from device %s = %s, from file %s", dev, b.Manifest.ContentHash, a.Manifest.ContentHash)
	}
	if a.ID == b.ID {
		t.Errorf("images named differently have the same ID %s", a.ID)
	}
	// Applying onto a block device holding old data: same result as a file.
	tfile := filepath.Join(dir, "target.img")
	if err := os.WriteFile(tfile, bytes.Repeat([]byte{0xee}, 80<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	tdev := testdisk.Loop(t, tfile, 512)
	mustShoal(t, "image", "apply", "--repo", repo, "--name", "fromdev", tdev)
	checkPartitions(t, src, tdev)
	if out := testdisk.Run(t, "sgdisk", "-v", tdev); !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v %s:\n%s", tdev, out)
	}
}
