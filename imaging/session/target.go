package session

// target.go: the image and the target: the manifest from the server, the writer opened once, the partition table.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shoal-project/shoal/imaging"
)

// targetError is Config.Open's failure (the target checks): fatal, whoever
// sends the image.
type targetError struct{ err error }

func (e targetError) Error() string { return e.err.Error() }
func (e targetError) Unwrap() error { return e.err }

// loadManifest fetches and checks the manifest from the server. A server
// that does not answer wraps ErrServer; a manifest that does not pass its
// checks (signature, name) is another error, fatal to the run.
func (n *node) loadManifest(ctx context.Context) error {
	raw, sig, err := n.cfg.Server.Manifest(ctx, n.cfg.Name)
	if errors.Is(err, imaging.ErrNotFound) {
		return fmt.Errorf("image %q: %w", n.cfg.Name, err) // the server answered: no such image
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrServer, err)
	}
	img, err := imaging.ImageNamed(raw, sig, n.cfg.Pub, n.cfg.Name, n.cfg.Server)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.img != nil && n.img.ID != img.ID {
		return fmt.Errorf("%w: the server's manifest of %q changed under us", ErrOtherImage, n.cfg.Name)
	}
	if n.img == nil {
		n.img = img
		n.st.Chunks = len(img.Chunks)
	}
	return nil
}

// openWriter opens the target for img once. Open (the target's checks
// and its wipe, which may take minutes) runs outside n.mu, so that the
// control reader and the status go on meanwhile; openMu makes another
// caller wait for the first's Open and take its writer.
func (n *node) openWriter(img *imaging.Image) error {
	n.openMu.Lock()
	defer n.openMu.Unlock()
	// check is under n.mu: whether the target is open, or img not ours.
	check := func() (bool, error) {
		if n.img != nil && img.ID != n.img.ID {
			return false, fmt.Errorf("%w: image %s, ours is %s", ErrOtherImage, img.ID.String()[:16], n.img.ID.String()[:16])
		}
		return n.w != nil, nil
	}
	n.mu.Lock()
	open, err := check()
	n.mu.Unlock()
	if open || err != nil {
		return err
	}
	w, err := n.cfg.Open(img)
	if err != nil {
		return targetError{err}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	// The server's manifest may have come meanwhile.
	if _, err := check(); err != nil {
		return err
	}
	n.img, n.w = img, w
	n.st.Chunks = len(img.Chunks)
	return nil
}

// finish writes the partition table once every chunk is there.
func (n *node) finish() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.finished {
		return n.finishErr
	}
	if n.w == nil {
		return errors.New("finish: no target")
	}
	n.finished = true
	n.finishErr = n.w.Finish()
	if n.finishErr == nil {
		n.log.Info("image complete; partition table written", "elapsed", time.Since(n.start).Round(time.Millisecond))
	}
	return n.finishErr
}

func (n *node) image() *imaging.Image {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.img
}

func (n *node) writer() *imaging.Writer {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.w
}

func (n *node) complete() bool {
	w := n.writer()
	return w != nil && w.Remaining() == 0
}

func (n *node) held() uint32 {
	w := n.writer()
	if w == nil {
		return 0
	}
	return uint32(len(w.Image().Chunks) - w.Remaining())
}

func (n *node) missing() int {
	w := n.writer()
	if w == nil {
		return -1
	}
	return w.Remaining()
}
