// Package netlabtest holds the test helpers of internal/netlab: a LAN of
// network namespaces made for a test and removed when it ends, and the
// checks for root and tools that skip a test on a laptop and fail it in CI
// (testdisk.InCI). They live apart from netlab so that the programs that use
// netlab (shoal bench, shoal lab) do not link the testing package.
package netlabtest

import (
	"context"
	"os"
	"os/exec"
	"testing"

	"github.com/shoal-project/shoal/internal/netlab"
	"github.com/shoal-project/shoal/internal/testdisk"
)

// New makes a LAN for t and removes it when t ends. Without root it skips
// the test, unless in CI (testdisk.InCI), where it fails.
func New(t testing.TB, cfg netlab.Config) *netlab.LAN {
	t.Helper()
	RequireRoot(t)
	l, err := netlab.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("netlab.New(%+v): %v", cfg, err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("netlab: close: %v", err)
		}
	})
	return l
}

// RequireRoot skips t when the process is not root, and fails it in CI.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	testdisk.Missing(t, "netlab: network namespace tests need root")
}

// RequireTool returns the path of the program name; when it is not on PATH
// it skips t, and fails it in CI.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	testdisk.Missing(t, "netlab: %s not found: %v", name, err)
	return ""
}
