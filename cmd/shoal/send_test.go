package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-project/shoal/internal/netlab"
	"github.com/shoal-project/shoal/internal/netlabtest"
	"github.com/shoal-project/shoal/internal/testdisk"
)

func TestParseFEC(t *testing.T) {
	tests := []struct {
		in     string
		k, m   int
		wantOK bool
	}{
		{"64+0", 64, 0, true}, {"32+4", 32, 4, true}, {"128+128", 128, 128, true},
		{"64", 0, 0, false}, {"0+0", 0, 0, false}, {"129+1", 0, 0, false}, {"8+9", 0, 0, false}, {"a+b", 0, 0, false},
	}
	for _, tc := range tests {
		k, m, err := parseFEC(tc.in)
		if got := []any{k, m, err == nil}; !cmp.Equal(got, []any{tc.k, tc.m, tc.wantOK}) {
			t.Errorf("parseFEC(%q) = %d, %d, %v; want %d, %d, ok=%v", tc.in, k, m, err, tc.k, tc.m, tc.wantOK)
		}
	}
}

func TestSendReceiveUsage(t *testing.T) {
	for _, args := range [][]string{
		{"send"}, {"send", "--repo", "x"}, {"send", "--repo", "x", "--name", "y", "--rate", "fast"},
		{"send", "--repo", "x", "--name", "y", "--fec", "9"}, {"receive"}, {"receive", "a", "b"},
	} {
		if _, err := shoal(t, args...); err == nil || !strings.Contains(err.Error(), "usage") {
			t.Errorf("shoal %s = %v, want a usage error", strings.Join(args, " "), err)
		}
	}
}

// TestSendReceive runs the real binary: `shoal send` in one namespace and
// `shoal receive` in two others with 2% loss, a signed GPT image, and checks
// the targets' partitions and tables. A third receiver holds the wrong
// public key and must refuse the image.
func TestSendReceive(t *testing.T) {
	netlabtest.RequireRoot(t)
	dir, src, repo, bin := signedImageFixture(t)
	lan := netlabtest.New(t, netlab.Config{Nodes: 4})
	for _, n := range lan.Nodes[1:3] {
		if err := n.SetLoss(20); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type result struct {
		out, errOut bytes.Buffer
		err         error
	}
	run := func(n *netlab.Node, r *result, args ...string) *exec.Cmd {
		cmd := n.Command(ctx, bin, args...)
		cmd.Stdout, cmd.Stderr = &r.out, &r.errOut
		return cmd
	}
	var wg sync.WaitGroup
	rx := make([]result, 3)
	targets := []string{filepath.Join(dir, "t0.img"), filepath.Join(dir, "t1.img"), filepath.Join(dir, "t2.img")}
	pubs := []string{"site.pub", "site.pub", "other.pub"}
	for i := range rx {
		cmd := run(lan.Nodes[1+i], &rx[i], "receive", "--name", "debian-12", "--iface", "eth0", "--pub", filepath.Join(dir, pubs[i]), "--timeout", "30s", targets[i])
		wg.Add(1)
		go func() { defer wg.Done(); rx[i].err = cmd.Run() }()
	}
	var tx result
	tx.err = run(lan.Nodes[0], &tx, "send", "--repo", repo, "--name", "debian-12", "--iface", "eth0", "--rate", "300Mbit",
		"--fec", "32+1", "--min-receivers", "3", "--max-wait", "20s", "--linger", "300ms").Run()
	wg.Wait()
	if tx.err != nil {
		t.Errorf("shoal send: %v\nstderr: %s", tx.err, tx.errOut.String())
	}
	t.Logf("send: %s", tx.out.String())
	for i := 0; i < 2; i++ {
		if rx[i].err != nil {
			t.Errorf("receiver %d: shoal receive: %v\nstderr: %s", i, rx[i].err, rx[i].errOut.String())
			continue
		}
		t.Logf("receiver %d: %s", i, rx[i].out.String())
		checkPartitions(t, src, targets[i])
		if out := testdisk.Run(t, "sgdisk", "-v", targets[i]); !strings.Contains(out, "No problems found") {
			t.Errorf("sgdisk -v on target %d:\n%s", i, out)
		}
	}
	if rx[2].err == nil || !strings.Contains(rx[2].errOut.String(), "signature") {
		t.Errorf("receiver with the wrong key: err %v, stderr %q; want a signature error", rx[2].err, rx[2].errOut.String())
	}
}

// signedImageFixture makes, in a new directory, a 48 MiB GPT disk (src),
// site.key/.pub and other.key/.pub, the image debian-12 of src signed
// with site.key in repo (1 MiB chunks), and the shoal binary (bin) for
// the tests that run it in namespaces.
func signedImageFixture(t *testing.T) (dir string, src *testdisk.Disk, repo, bin string) {
	t.Helper()
	testdisk.Need(t, "sgdisk")
	dir = t.TempDir()
	src = testdisk.GPT(t, dir, 48<<20)
	repo = filepath.Join(dir, "repo")
	mustShoal(t, "key", "gen", "--out", filepath.Join(dir, "site"))
	mustShoal(t, "key", "gen", "--out", filepath.Join(dir, "other"))
	mustShoal(t, "image", "create", "--repo", repo, "--name", "debian-12", "--sign", filepath.Join(dir, "site.key"), "--chunk-size", "1MiB", src.Path)
	bin = filepath.Join(dir, "shoal")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir, src, repo, bin
}
