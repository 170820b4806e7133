// cache.go keeps built files in the cache directory: one builder at a time (flock), each file built beside its final name and renamed into place.
package debianimg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-project/shoal/internal/atomicfile"
)

const lockName = ".lock"

// lockDir takes an exclusive flock on dir's lock file, waiting (polling,
// so that ctx can end the wait) while another process or goroutine holds
// it. The returned function releases it.
func lockDir(ctx context.Context, dir string, log *slog.Logger) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("debianimg: cache directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("debianimg: lock: %w", err)
	}
	logged := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("debianimg: flock %s: %w", f.Name(), err)
		}
		if !logged {
			log.Info("debianimg: waiting for another build", "lock", f.Name())
			logged = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("debianimg: waiting for %s: %w", f.Name(), ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// cleanStale removes what builds that died left in dir (temporary files
// and work directories). Call it only while holding the lock.
func cleanStale(dir string, log *slog.Logger) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") || strings.HasPrefix(e.Name(), ".work-") {
			log.Info("debianimg: removing what an earlier build left", "path", e.Name())
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// buildFile builds final (in dir) by calling build with a temporary file
// beside it and a scratch directory, then renames the file into place and
// removes the scratch. Nothing is left under final's name on failure.
func buildFile(dir, final string, build func(tmp, work string) error) error {
	work, err := os.MkdirTemp(dir, ".work-")
	if err != nil {
		return fmt.Errorf("debianimg: %w", err)
	}
	defer os.RemoveAll(work)
	tmp := filepath.Join(dir, ".tmp-"+filepath.Base(work)[len(".work-"):]+"-"+filepath.Base(final))
	defer os.Remove(tmp)
	if err := build(tmp, work); err != nil {
		return err
	}
	if _, err := os.Stat(tmp); err != nil {
		return fmt.Errorf("debianimg: build of %s wrote nothing: %w", final, err)
	}
	// build streams a big file: atomicfile.Rename fsyncs it, renames it and
	// fsyncs dir, so a crash never leaves a partial file under final's name.
	if err := atomicfile.Rename(tmp, final); err != nil {
		return fmt.Errorf("debianimg: %w", err)
	}
	return nil
}

// exists reports whether path is there (a file renamed into place, so
// complete).
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
