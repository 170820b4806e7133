// deps_test.go: the operator binary carries only what operators run (no testing, no gonum/plot).
package main

import (
	"context"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/internal/testdisk"
)

// TestDepsCarryNoTestingOrPlot lists the packages linked into shoal: the
// testing package (netlab's test helpers are in internal/netlabtest) and
// gonum/plot with its fonts (the plot is cmd/shoal-benchplot's) must not be
// among them.
func TestDepsCarryNoTestingOrPlot(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		testdisk.Missing(t, "go tool not found: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "github.com/shoal-project/shoal/cmd/shoal").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list -deps: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list -deps listed %d packages, want the whole of shoal's: %q", len(deps), deps)
	}
	var bad []string
	for _, p := range deps {
		if p == "testing" || strings.HasPrefix(p, "testing/") || strings.HasPrefix(p, "gonum.org/") {
			bad = append(bad, p)
		}
	}
	if len(bad) != 0 {
		t.Errorf("shoal links %q; the operator binary must carry neither testing nor gonum", bad)
	}
}

// TestBenchPlotFlagIsGone: --plot, which the plot's move out of shoal took
// away, is a usage error naming the command that draws it now.
func TestBenchPlotFlagIsGone(t *testing.T) {
	err := runBench(context.Background(), []string{"--plot", "bench.png"}, io.Discard, io.Discard)
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "go run ./cmd/shoal-benchplot -o bench.png") {
		t.Errorf("runBench(--plot bench.png) = %v, want a usage error naming cmd/shoal-benchplot", err)
	}
}
