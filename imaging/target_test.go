// target_test.go: Target's life cycle (what Close keeps or removes, closing once) and the helpers that open test targets.
package imaging

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/partition"
)

// newTestWriter opens a target file at dst for img and a writer on it.
func newTestWriter(t *testing.T, img *Image, dst string) *Writer {
	t.Helper()
	tg, err := partition.OpenTarget(dst, img.Requirements(), partition.TargetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	w, err := NewWriter(img, tg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// writePlain verifies chunk i's uncompressed bytes against the manifest and
// writes them through w, as WriteStored does with stored bytes.
func writePlain(w *Writer, i int, plain []byte) error {
	ref, err := w.ref(i)
	if err != nil {
		return err
	}
	if int64(len(plain)) != ref.SizeBytes || Hash(sha256.Sum256(plain)) != ref.Hash {
		return fmt.Errorf("chunk %d (%s): %w", i, ref.Hash, ErrCorrupt)
	}
	if w.Has(i) {
		return nil
	}
	return w.write(ref, plain)
}

// TestTargetLifeCycle: Close removes a file only when this run created it
// and the partition table was never written; a target that was there
// before is never removed, nor one whose table was written, whatever
// fails afterwards; the target is closed exactly once.
func TestTargetLifeCycle(t *testing.T) {
	data := testData(512 << 10)
	repoDir, img := rawImage(t, data, 64<<10)
	repo := DirRepo(repoDir)
	old := bytes.Repeat([]byte{0xa5}, len(data))
	// half writes every other chunk and stops: a run cut off midway.
	half := func(t *testing.T, tg *Target) error {
		w, err := tg.Open(img)
		if err != nil {
			return err
		}
		for i := 0; i < len(img.Chunks); i += 2 {
			c := img.Chunks[i]
			if err := writePlain(w, i, data[c.OffsetBytes:c.OffsetBytes+c.SizeBytes]); err != nil {
				t.Fatal(err)
			}
		}
		return w.Finish()
	}
	apply := func(t *testing.T, tg *Target) error {
		return tg.Apply(context.Background(), img, repo, ApplyOptions{Workers: 2})
	}
	for _, tc := range []struct {
		name     string
		existing []byte // the target's content before the run; nil: none
		create   bool
		run      func(t *testing.T, tg *Target) error
		// afterRun, when set, runs between the run and Close.
		afterRun     func(t *testing.T, tg *Target)
		wantRunErr   error // checked with errors.Is; nil: success
		wantCloseErr error
		kept         bool   // the target exists after Close
		want         []byte // when set, the target's content after Close
		wantOutcome  string
	}{
		{
			name: "created file, cut off before Finish, is removed", create: true, run: half,
			wantRunErr: ErrIncomplete, wantOutcome: "the partial file this run created was removed",
		},
		{
			name: "created file, open but nothing written, is removed", create: true,
			run:         func(t *testing.T, tg *Target) error { _, err := tg.Open(img); return err },
			wantOutcome: "the partial file this run created was removed",
		},
		{
			name: "pre-existing file, cut off before Finish, is kept", existing: old, create: true, run: half,
			wantRunErr: ErrIncomplete, kept: true, wantOutcome: "the old one was wiped",
		},
		{
			name: "created file, complete, is kept", create: true, run: apply,
			kept: true, want: data, wantOutcome: "partition table were written",
		},
		{
			name: "created file, error after Finish, is kept", create: true, run: apply,
			afterRun: func(t *testing.T, tg *Target) {
				// The close fails: the descriptor is gone behind the
				// Target's back.
				tg.t.File.Close()
			},
			wantCloseErr: os.ErrClosed, kept: true, want: data, wantOutcome: "partition table were written",
		},
		{
			name: "pre-existing file too small is not touched", existing: old[:4096], create: true, run: apply,
			wantRunErr: partition.ErrTooSmall, kept: true, want: old[:4096], wantOutcome: "not touched",
		},
		{
			name: "missing target without Create is not made",
			run:  apply, wantRunErr: fs.ErrNotExist, wantOutcome: "not touched",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "target.img")
			if tc.existing != nil {
				if err := os.WriteFile(dst, tc.existing, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			tg := NewTarget(dst, TargetOptions{Create: tc.create})
			t.Cleanup(func() { tg.Close() })
			err := tc.run(t, tg)
			if !errors.Is(err, tc.wantRunErr) || (err != nil) != (tc.wantRunErr != nil) {
				t.Fatalf("run = %v, want %v", err, tc.wantRunErr)
			}
			if tc.afterRun != nil {
				tc.afterRun(t, tg)
			}
			cerr := tg.Close()
			if !errors.Is(cerr, tc.wantCloseErr) || (cerr != nil) != (tc.wantCloseErr != nil) {
				t.Errorf("Close = %v, want %v", cerr, tc.wantCloseErr)
			}
			// Closed once: a second Close repeats the first's result
			// instead of closing again (which would say "file already
			// closed").
			if again := tg.Close(); !errors.Is(again, tc.wantCloseErr) || (again != nil) != (cerr != nil) {
				t.Errorf("second Close = %v, want the first one's result %v", again, cerr)
			}
			if tg.Opened() {
				if err := tg.t.File.Close(); !errors.Is(err, os.ErrClosed) {
					t.Errorf("the target's file is still open after Close (closing it: %v)", err)
				}
			}
			got, rerr := os.ReadFile(dst)
			switch {
			case !tc.kept && !errors.Is(rerr, fs.ErrNotExist):
				t.Errorf("target after Close: read %d bytes (err %v), want it removed", len(got), rerr)
			case tc.kept && rerr != nil:
				t.Errorf("target removed (%v), want it kept", rerr)
			case tc.want != nil && !bytes.Equal(got, tc.want):
				t.Errorf("target after Close holds other bytes than expected (%d bytes, want %d)", len(got), len(tc.want))
			}
			if o := tg.Outcome(); !strings.Contains(o, tc.wantOutcome) {
				t.Errorf("Outcome = %q, want it to say %q", o, tc.wantOutcome)
			}
		})
	}
}
