// target.go: the life of one write target: open and check, the writer, Finish, close once, remove a partial file this run made, and what is left on it.
package imaging

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/shoal-project/shoal/partition"
)

// TargetOptions says how a Target is opened.
type TargetOptions struct {
	// Checks adjusts partition.OpenTarget's checks (extra boot devices,
	// the mount table).
	Checks partition.TargetOptions
	// Create makes a missing target a new sparse regular file of the
	// image's disk size. Without it a missing target is an error: the
	// appliance writes disks, never a file where a disk should be.
	Create bool
	// NoReuse writes every chunk. By default a target that was there
	// before is scanned first (Writer.Scan): the chunks it already holds,
	// hashed right in this run, are neither fetched nor written.
	NoReuse bool
	// Scan tunes the scan.
	Scan ScanOptions
	// Logger gets a line with what the scan found (default: none).
	Logger *slog.Logger
}

// Target is one write target through one run: Open checks the target
// against the image (partition.OpenTarget) and hands out the Writer on
// it, the writer's Finish writes the partition table last, and Close
// closes the target exactly once. A target whose table was not written
// is a failed run: Close then removes the file if this run created it
// (it holds nothing worth keeping) and never anything that was there
// before. Once the table is written the image is on the target, and no
// later error (closing, a stats file) removes it. Outcome says which of
// these happened, for the caller's report.
//
// Every stage is safe to call from another goroutine than the others
// (session.Run opens the target on its own goroutine).
type Target struct {
	path string
	opts TargetOptions

	mu       sync.Mutex
	t        *partition.Target // set by a successful partition.OpenTarget
	w        *Writer
	closed   bool
	closeErr error
	removed  bool
}

// NewTarget returns the target at path, not yet opened.
func NewTarget(path string, opts TargetOptions) *Target {
	return &Target{path: path, opts: opts}
}

// Open checks the target against img's requirements, opens it and returns
// the writer on it (which wipes the old partition tables first). It has
// the shape of session.Config.Open; a target opens once.
func (t *Target) Open(img *Image) (*Writer, error) { return t.open(img, nil) }

// open is Open with the writer's codec (nil: NewCodec(0)).
func (t *Target) open(img *Image, codec *Codec) (*Writer, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.t != nil || t.closed {
		return nil, fmt.Errorf("target %s: opened twice", t.path)
	}
	if !t.opts.Create {
		if _, err := os.Stat(t.path); err != nil {
			return nil, fmt.Errorf("target %s: %w", t.path, err)
		}
	}
	pt, err := partition.OpenTarget(t.path, img.Requirements(), t.opts.Checks)
	if err != nil {
		return nil, err
	}
	t.t = pt
	w, err := NewWriter(img, pt, codec)
	if err != nil {
		return nil, err
	}
	t.w = w
	if !pt.Created && !t.opts.NoReuse {
		// Bounded by the disk's read speed; not cancelled (Open has the
		// shape of session.Config.Open, which takes no context).
		st, err := w.Scan(context.Background(), t.opts.Scan)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", t.path, err)
		}
		if l := t.opts.Logger; l != nil {
			l.Info("target scanned", "path", t.path, "presentChunks", st.PresentChunks, "scannedChunks", st.ScannedChunks,
				"presentMiB", st.PresentBytes>>20, "elapsed", st.Elapsed.Round(time.Millisecond), "stoppedEarly", st.StoppedEarly)
		}
	}
	return w, nil
}

// Apply opens the target for img and writes it from repo: the chunks
// (verified) in parallel, then the partition table. On any error no
// partition table is written.
func (t *Target) Apply(ctx context.Context, img *Image, repo Repo, opts ApplyOptions) error {
	w, err := t.open(img, opts.Codec)
	if err != nil {
		return err
	}
	if err := Fetch(ctx, w, repo, img.Chunks, opts); err != nil {
		return err
	}
	return w.Finish()
}

// Scanned returns what the scan of the target found (zero when it was not
// scanned: created by this run, NoReuse, or not opened).
func (t *Target) Scanned() ScanStats {
	t.mu.Lock()
	w := t.w
	t.mu.Unlock()
	if w == nil {
		return ScanStats{}
	}
	return w.Scanned()
}

// Opened reports whether the target passed its checks and was opened
// (from then on its old partition tables may be wiped).
func (t *Target) Opened() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.t != nil
}

// Close closes the target; later calls return the first one's result. If
// the partition table was not written and this run created the target
// file, Close removes it.
func (t *Target) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return t.closeErr
	}
	t.closed = true
	if t.t == nil {
		return nil
	}
	if err := t.t.Close(); err != nil {
		t.closeErr = fmt.Errorf("close %s: %w", t.path, err)
	}
	if t.t.Created && (t.w == nil || !t.w.TableWritten()) {
		if err := os.Remove(t.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			slog.Warn("remove partial target", "target", t.path, "err", err)
		} else {
			t.removed = true
		}
	}
	return t.closeErr
}

// Outcome says what the run left on the target, for the end of an error
// message: call it after Close.
func (t *Target) Outcome() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.t == nil:
		return "the disk was not touched"
	case t.w != nil && t.w.TableWritten():
		return "the image and its partition table were written"
	case t.removed:
		return "no partition table was written; the partial file this run created was removed"
	case t.t.Created:
		return "no partition table was written"
	}
	return "no partition table was written, the old one was wiped"
}
