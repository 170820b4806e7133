// target_test.go: what shoal fetch and shoal receive leave on their target when only the stats JSON fails.
package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/internal/netlab"
	"github.com/shoal-project/shoal/internal/netlabtest"
	"github.com/shoal-project/shoal/internal/testdisk"
)

// TestStatsFailureKeepsTarget: once the partition table is written the
// image is on the target, so a --stats file that cannot be written is
// reported but never removes the disk this run created, and the error
// does not claim that no partition table was written. fetch once removed
// the complete disk; receive closed the target twice, the second time on
// the path that removed it.
func TestStatsFailureKeepsTarget(t *testing.T) {
	netlabtest.RequireRoot(t)
	dir, src, repo, bin := signedImageFixture(t)
	badStats := filepath.Join(dir, "no-such-dir", "stats.json")
	lan := netlabtest.New(t, netlab.Config{Nodes: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	command := func(n *netlab.Node, out, errOut *bytes.Buffer, args ...string) *exec.Cmd {
		cmd := n.Command(ctx, bin, args...)
		cmd.Stdout, cmd.Stderr = out, errOut
		return cmd
	}
	for _, tc := range []struct {
		name string
		// run runs the command under test writing target and returns
		// its stderr and error.
		run func(t *testing.T, target string) (string, error)
	}{
		{"fetch", func(t *testing.T, target string) (string, error) {
			var out, errOut bytes.Buffer
			err := command(lan.Nodes[0], &out, &errOut, "fetch", "--repo", repo, "--name", "debian-12", "--pub", filepath.Join(dir, "site.pub"),
				"--insecure-no-key", "--iface", "eth0", "--announce-interval", "100ms", "--listen", "300ms", "--linger", "100ms",
				"--stats", badStats, target).Run()
			return errOut.String(), err
		}},
		{"receive", func(t *testing.T, target string) (string, error) {
			var out, errOut, txOut, txErr bytes.Buffer
			rx := command(lan.Nodes[1], &out, &errOut, "receive", "--name", "debian-12", "--iface", "eth0", "--pub", filepath.Join(dir, "site.pub"),
				"--timeout", "30s", "--stats", badStats, target)
			if err := rx.Start(); err != nil {
				t.Fatal(err)
			}
			tx := command(lan.Nodes[0], &txOut, &txErr, "send", "--repo", repo, "--name", "debian-12", "--iface", "eth0", "--rate", "300Mbit",
				"--min-receivers", "1", "--max-wait", "20s", "--linger", "300ms").Run()
			err := rx.Wait()
			if tx != nil {
				t.Errorf("shoal send: %v\nstderr: %s", tx, txErr.String())
			}
			return errOut.String(), err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := filepath.Join(dir, tc.name+".img")
			stderr, err := tc.run(t, target)
			t.Logf("shoal %s: %v\nstderr: %s", tc.name, err, stderr)
			if err == nil || !strings.Contains(stderr, badStats) {
				t.Errorf("shoal %s with an unwritable --stats: err %v; want an error naming %s on stderr", tc.name, err, badStats)
			}
			if strings.Contains(stderr, "no partition table was written") {
				t.Errorf("shoal %s says no partition table was written after writing it", tc.name)
			}
			if _, serr := os.Stat(target); serr != nil {
				t.Fatalf("shoal %s removed the complete target: %v", tc.name, serr)
			}
			checkPartitions(t, src, target)
			if out := testdisk.Run(t, "sgdisk", "-v", target); !strings.Contains(out, "No problems found") {
				t.Errorf("sgdisk -v on the target of shoal %s:\n%s", tc.name, out)
			}
		})
	}
}
