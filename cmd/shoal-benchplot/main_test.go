package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"image"
	_ "image/png"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/internal/bench"
)

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRun plots the committed figures (docs/bench.json) and a report
// written by bench.Report.WriteJSON, and refuses what is not the figures
// of a shoal bench run.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	written := filepath.Join(dir, "written.json")
	rep := &bench.Report{SizeBytes: 4 << 20, StoredBytes: 4<<20 + 100, RateBitsPerSec: 100e6, Results: []bench.Result{
		{Tool: "shoal", Receivers: 1, Seconds: 0.4, OK: true},
		{Tool: "shoal", Receivers: 8, Seconds: 0.5, OK: true},
		{Tool: "http", Receivers: 1, LossPermille: 10, Seconds: 0.4, OK: true},
		{Tool: "uftp", Receivers: 8, OK: false, Error: "failed runs are left out"},
	}}
	if err := rep.WriteJSON(written); err != nil {
		t.Fatal(err)
	}
	session := filepath.Join(dir, "session.json")
	writeJSON(t, session, bench.SessionReport{SizeBytes: 1 << 30, RateBitsPerSec: 200e6, Nodes: 8,
		Results: []bench.SessionResult{{Run: "alone", Nodes: 1, Seconds: 45, OK: true}}})
	garbage := filepath.Join(dir, "garbage.json")
	if err := os.WriteFile(garbage, []byte("image 256 MiB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		out     string // the plot it must write
		wantErr string // a part of the error, or "" for none
		errIs   error
	}{
		{name: "committed figures", args: []string{"-o", filepath.Join(dir, "docs.png"), "../../docs/bench.json"}, out: filepath.Join(dir, "docs.png")},
		{name: "default output name", args: []string{written}, out: filepath.Join(dir, "written.png")},
		{name: "session figures", args: []string{session}, wantErr: "--session"},
		{name: "not JSON", args: []string{garbage}, wantErr: "garbage.json"},
		{name: "missing file", args: []string{filepath.Join(dir, "none.json")}, errIs: fs.ErrNotExist},
		{name: "no argument", args: nil, wantErr: "want one argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout bytes.Buffer
			err := run(tc.args, &stdout, io.Discard)
			switch {
			case tc.errIs != nil:
				if !errors.Is(err, tc.errIs) {
					t.Fatalf("run(%q) = %v, want %v", tc.args, err, tc.errIs)
				}
				return
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("run(%q) = %v, want an error with %q", tc.args, err, tc.wantErr)
				}
				return
			case err != nil:
				t.Fatalf("run(%q) = %v", tc.args, err)
			}
			f, err := os.Open(tc.out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			cfg, format, err := image.DecodeConfig(f)
			if err != nil || format != "png" || cfg.Width != 768 || cfg.Height != 480 {
				t.Errorf("%s: %s %dx%d, %v; want an 8x5-inch PNG (768x480)", tc.out, format, cfg.Width, cfg.Height, err)
			}
			if want := "plot: " + tc.out + "\n"; stdout.String() != want {
				t.Errorf("stdout = %q, want %q", stdout.String(), want)
			}
		})
	}
}
