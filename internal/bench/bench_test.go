package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/internal/netlabtest"
)

// TestSmoke runs every tool once on a tiny image with two receivers: each
// target must equal the image, and the table and JSON must be written (the
// plot is cmd/shoal-benchplot's, tested there on docs/bench.json).
func TestSmoke(t *testing.T) {
	netlabtest.RequireRoot(t)
	for _, tool := range Tools {
		for _, p := range Need[tool] {
			netlabtest.RequireTool(t, p)
		}
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "shoal")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/shoal-project/shoal/cmd/shoal").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var log bytes.Buffer
	cfg := Config{
		SizeBytes: 4 << 20, RateBitsPerSec: 100e6, Receivers: []int{2}, LossPermille: []int{0},
		LateJoin: true, ShoalBin: bin, Dir: filepath.Join(dir, "work"), Log: &log, RunTimeout: 90 * time.Second,
	}
	rep, err := Run(context.Background(), cfg)
	t.Logf("log:\n%s", log.String())
	if err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if len(rep.Results) != len(Tools) {
		t.Fatalf("Run() gave %d results, want %d", len(rep.Results), len(Tools))
	}
	for _, res := range rep.Results {
		if !res.OK {
			t.Errorf("%s: %s", res.Tool, res.Error)
			continue
		}
		if res.Seconds <= 0 || res.EgressBytes < rep.StoredBytes {
			t.Errorf("%s: %.2f s, egress %d bytes for an image of %d: implausible", res.Tool, res.Seconds, res.EgressBytes, rep.StoredBytes)
		}
		if res.Tool == "http" && res.EgressRatio < 1.9 {
			t.Errorf("http to 2 receivers: egress ratio %.2f, want about 2", res.EgressRatio)
		}
		if res.Tool == "shoal" && res.EgressRatio > 1.5 {
			t.Errorf("shoal to 2 receivers without loss: egress ratio %.2f, want near 1", res.EgressRatio)
		}
	}
	if rep.LateJoin == nil || !rep.LateJoin.OK {
		t.Errorf("late join: %+v", rep.LateJoin)
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, tool := range Tools {
		if !strings.Contains(table.String(), tool) {
			t.Errorf("table lacks %s:\n%s", tool, table.String())
		}
	}
	jsonPath := filepath.Join(dir, "b.json")
	if err := rep.WriteJSON(jsonPath); err != nil {
		t.Fatal(err)
	}
	var back Report
	if b, err := os.ReadFile(jsonPath); err != nil || json.Unmarshal(b, &back) != nil || len(back.Results) != len(rep.Results) {
		t.Errorf("JSON report does not read back: %v", err)
	}
}
