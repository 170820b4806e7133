// resume_test.go: a receive killed at random points and run again until done, and an apply over a disk that holds the previous image.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/internal/netlab"
	"github.com/shoal-project/shoal/internal/netlabtest"
)

// randomImage writes sizeBytes of random data as a raw disk in dir and
// makes it a signed image "raw" in dir/repo (1 MiB chunks).
func randomImage(t *testing.T, dir string, sizeBytes int) (src []byte, repo string) {
	t.Helper()
	src = make([]byte, sizeBytes)
	rand.Read(src)
	path := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(path, src, 0o644); err != nil {
		t.Fatal(err)
	}
	repo = filepath.Join(dir, "repo")
	if _, err := os.Stat(filepath.Join(dir, "site.key")); err != nil {
		mustShoal(t, "key", "gen", "--out", filepath.Join(dir, "site"))
	}
	mustShoal(t, "image", "create", "--repo", repo, "--name", "raw", "--sign", filepath.Join(dir, "site.key"), "--chunk-size", "1MiB", path)
	return src, repo
}

var alreadyRE = regexp.MustCompile(`; (\d+) chunks \([^)]*\) were already on the target`)

// already is how many chunks a command's summary says the target held.
func already(out string) int {
	m := alreadyRE.FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestReceiveResumesAfterKill: shoal receive is killed (SIGKILL, as a
// power loss) at random points and run again, each time from a new sender,
// until one run completes. A killed run leaves the first MiB (boot sector,
// the commit region) unwritten, so the disk never looks whole early; each
// new run finds what the killed ones wrote, and the end is the image.
func TestReceiveResumesAfterKill(t *testing.T) {
	netlabtest.RequireRoot(t)
	dir := t.TempDir()
	src, repo := randomImage(t, dir, 24<<20)
	bin := filepath.Join(dir, "shoal")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	lan := netlabtest.New(t, netlab.Config{Nodes: 2})
	target := filepath.Join(dir, "target.img")
	pub := filepath.Join(dir, "site.pub")
	var wroteBefore bool // a killed run left chunks beyond the first MiB
	for attempt := 0; ; attempt++ {
		kill := attempt < 4
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var out, errOut, txErr bytes.Buffer
		rx := lan.Nodes[1].Command(ctx, bin, "receive", "--name", "raw", "--iface", "eth0", "--pub", pub, "--timeout", "20s", target)
		rx.Stdout, rx.Stderr = &out, &errOut
		if err := rx.Start(); err != nil {
			t.Fatal(err)
		}
		tx := lan.Nodes[0].Command(ctx, bin, "send", "--repo", repo, "--name", "raw", "--iface", "eth0", "--rate", "40Mbit",
			"--min-receivers", "1", "--max-wait", "20s", "--linger", "200ms")
		tx.Stderr = &txErr
		if err := tx.Start(); err != nil {
			t.Fatal(err)
		}
		rxDone := make(chan error, 1)
		go func() { rxDone <- rx.Wait() }()
		var err error
		killed := false
		if kill {
			// 24 MiB at 40 Mbit/s take about 5 s: kill in the first 4.
			ms, _ := rand.Int(rand.Reader, big.NewInt(4000))
			after := 300*time.Millisecond + time.Duration(ms.Int64())*time.Millisecond
			select {
			case err = <-rxDone:
			case <-time.After(after):
				_ = rx.Process.Kill()
				<-rxDone
				killed = true
				t.Logf("attempt %d: killed the receiver after %v", attempt, after)
			}
		} else {
			err = <-rxDone
		}
		_ = tx.Process.Kill()
		_ = tx.Wait()
		cancel()
		got, rerr := os.ReadFile(target)
		if rerr != nil && !os.IsNotExist(rerr) {
			t.Fatal(rerr)
		}
		if wroteBefore {
			if n := already(out.String()); n == 0 && out.Len() > 0 {
				t.Errorf("attempt %d: a killed run wrote chunks, but this one found none on the target:\n%s", attempt, out.String())
			}
		}
		done := !killed && err == nil
		if done {
			t.Logf("attempt %d: %s", attempt, out.String())
			if !bytes.Equal(got, src) {
				t.Fatalf("attempt %d: the target is not the image", attempt)
			}
			return
		}
		if !kill {
			t.Fatalf("attempt %d: receive failed: %v\n%s\nsender: %s", attempt, err, errOut.String(), txErr.String())
		}
		if len(got) >= imaging.CommitBytes && !bytes.Equal(got[:imaging.CommitBytes], make([]byte, imaging.CommitBytes)) {
			t.Errorf("attempt %d: a killed receive wrote the first MiB (the disk looks whole before it is)", attempt)
		}
		if len(got) > imaging.CommitBytes && !bytes.Equal(got[imaging.CommitBytes:], make([]byte, len(got)-imaging.CommitBytes)) {
			wroteBefore = true
		}
	}
}

// TestApplyOverPreviousImage: shoal image apply of v2 over a disk that
// holds v1 (which differs in 2 of 16 chunks) says how much was already
// there and leaves v2; --no-reuse writes it all.
func TestApplyOverPreviousImage(t *testing.T) {
	dir := t.TempDir()
	v1 := make([]byte, 16<<20)
	rand.Read(v1)
	v2 := bytes.Clone(v1)
	rand.Read(v2[5<<20 : 6<<20])
	rand.Read(v2[11<<20 : 12<<20])
	path := filepath.Join(dir, "v2.raw")
	if err := os.WriteFile(path, v2, 0o644); err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(dir, "repo")
	mustShoal(t, "image", "create", "--repo", repo, "--name", "v2", "--chunk-size", "1MiB", path)
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		// 16 chunks: not the first (the commit region, always written),
		// the last (the wipe clears a backup table's place) or the two
		// that changed.
		{"reuse", nil, 16 - 4},
		{"no reuse", []string{"--no-reuse"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "disk")
			if err := os.WriteFile(target, v1, 0o644); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"image", "apply", "--repo", repo, "--name", "v2", "--insecure-unsigned"}, tc.args...)
			out := mustShoal(t, append(args, target)...)
			if n := already(out); n != tc.want {
				t.Errorf("summary says %d chunks already on the target, want %d:\n%s", n, tc.want, out)
			}
			got, err := os.ReadFile(target)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, v2) {
				t.Errorf("the target is not v2")
			}
		})
	}
}
