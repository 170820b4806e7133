package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-project/shoal/imaging/session"
	"github.com/shoal-project/shoal/internal/netlab"
	"github.com/shoal-project/shoal/internal/netlabtest"
	"github.com/shoal-project/shoal/internal/testdisk"
)

func TestFetchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"fetch"},
		{"fetch", "--repo", "http://x/", "t.img"},
		{"fetch", "--name", "a", "t.img"},
		{"fetch", "--repo", "http://x/", "--name", "a"},
		{"fetch", "--repo", "http://x/", "--name", "a", "--relay", "later", "t.img"},
		{"fetch", "--repo", "http://x/", "--name", "a", "--control", "nonsense", "t.img"},
		{"fetch", "--repo", "http://x/", "--name", "a", "--rate", "fast", "--insecure-no-key", "t.img"},
		// The key: never on the command line; none only when asked for.
		{"fetch", "--repo", "http://x/", "--name", "a", "--key", "secret", "t.img"},
		{"fetch", "--repo", "http://x/", "--name", "a", "t.img"},
		{"fetch", "--repo", "http://x/", "--name", "a", "--key-file", "k", "--insecure-no-key", "t.img"},
	} {
		t.Run(strings.Join(args, "_"), func(t *testing.T) {
			dir := t.TempDir()
			wd, _ := os.Getwd()
			os.Chdir(dir)
			defer os.Chdir(wd)
			_, err := shoal(t, args...)
			if !errors.Is(err, errUsage) {
				t.Errorf("shoal %v = %v, want a usage error", args, err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("shoal %v wrote %d files", args, len(ents))
			}
		})
	}
}

// TestFetch runs the real binary on a namespace LAN: two nodes fetch a
// signed GPT image (the first leads, the second follows it), and get the
// same partitions and a valid table as `shoal image apply` gives; a node
// with the wrong public key and a node with a too small target refuse,
// writing nothing.
func TestFetch(t *testing.T) {
	netlabtest.RequireRoot(t)
	dir, src, repo, bin := signedImageFixture(t)
	lan := netlabtest.New(t, netlab.Config{Nodes: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	small := filepath.Join(dir, "small.img")
	smallData := bytes.Repeat([]byte{0xee}, 1<<20)
	if err := os.WriteFile(small, smallData, 0o644); err != nil {
		t.Fatal(err)
	}
	type node struct {
		pub, target string
		out, errOut bytes.Buffer
		err         error
	}
	nodes := []*node{
		{pub: "site.pub", target: filepath.Join(dir, "t0.img")},
		{pub: "site.pub", target: filepath.Join(dir, "t1.img")},
		{pub: "other.pub", target: filepath.Join(dir, "t2.img")},
		{pub: "site.pub", target: small},
	}
	keyFile := filepath.Join(dir, "session.key")
	if err := os.WriteFile(keyFile, []byte("session key of the test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fetch := func(i int) *exec.Cmd {
		n := nodes[i]
		cmd := lan.Nodes[i].Command(ctx, bin, "fetch", "--repo", repo, "--name", "debian-12", "--pub", filepath.Join(dir, n.pub), "--key-file", keyFile,
			"--iface", "eth0", "--announce-interval", "100ms", "--listen", "500ms", "--linger", "1s",
			"--stats", filepath.Join(dir, filepath.Base(n.target)+".json"), n.target)
		cmd.Stdout, cmd.Stderr = &n.out, &n.errOut
		return cmd
	}
	leader := fetch(0)
	if err := leader.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond) // the leader is announcing
	var wg sync.WaitGroup
	for i := 1; i < len(nodes); i++ {
		cmd := fetch(i)
		wg.Add(1)
		go func() { defer wg.Done(); nodes[i].err = cmd.Run() }()
	}
	nodes[0].err = leader.Wait()
	wg.Wait()
	for i, n := range nodes[:2] {
		if n.err != nil {
			t.Errorf("node %d: shoal fetch: %v\nstderr: %s", i, n.err, n.errOut.String())
			continue
		}
		t.Logf("node %d: %s", i, n.out.String())
		checkPartitions(t, src, n.target)
		if out := testdisk.Run(t, "sgdisk", "-v", n.target); !strings.Contains(out, "No problems found") {
			t.Errorf("sgdisk -v on node %d's target:\n%s", i, out)
		}
	}
	var st session.Status
	if b, err := os.ReadFile(filepath.Join(dir, "t1.img.json")); err != nil {
		t.Error(err)
	} else if err := json.Unmarshal(b, &st); err != nil {
		t.Error(err)
	} else if st.BytesFromPeers == 0 || st.BytesFromServer != 0 {
		t.Errorf("node 1: %+v: want the image from the leader, nothing from the server", st)
	}
	for i, n := range nodes[2:] {
		t.Logf("node %d: %v\n%s", 2+i, n.err, n.errOut.String())
	}
	if n := nodes[2]; n.err == nil || !strings.Contains(n.errOut.String(), "signature") {
		t.Errorf("node with the wrong key: err %v, stderr %q; want a signature error", n.err, n.errOut.String())
	}
	if _, err := os.Stat(nodes[2].target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("node with the wrong key left a target: %v", err)
	}
	if n := nodes[3]; n.err == nil || !strings.Contains(n.errOut.String(), "small") {
		t.Errorf("node with a small target: err %v, stderr %q; want a size error", n.err, n.errOut.String())
	}
	if got, _ := os.ReadFile(small); !bytes.Equal(got, smallData) {
		t.Errorf("the too small target was written")
	}
}
