package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/internal/testdisk"
)

// TestRun copies virtio_net and its dependencies out of Debian's module
// tree (build/deps.d/kernel.sh's cache) and prints them in load order.
func TestRun(t *testing.T) {
	cache := os.Getenv("SHOAL_KERNEL_CACHE")
	if cache == "" {
		cache = "/var/cache/shoal/kernel"
	}
	tree := filepath.Join(cache, "modules")
	if _, err := os.Stat(tree); err != nil {
		testdisk.Missing(t, "%s missing (run build/deps.d/kernel.sh)", tree)
	}
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"--tree", tree, "--out", out, "virtio_net"}, &stdout, &stderr); err != nil {
		t.Fatalf("run = %v\n%s", err, stderr.String())
	}
	got := strings.Fields(stdout.String())
	if len(got) < 4 || got[len(got)-1] != "virtio_net" {
		t.Errorf("printed %v, want virtio_net last after its dependencies", got)
	}
	for _, m := range got {
		if _, err := os.Stat(filepath.Join(out, m+".ko")); err != nil {
			t.Errorf("%s.ko not copied: %v", m, err)
		}
	}
	if err := run(context.Background(), []string{"--out", out}, &stdout, &stderr); err == nil {
		t.Error("run without --tree and names succeeded")
	}
}
