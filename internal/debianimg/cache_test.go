// cache_test.go checks the cache's lock, its rename into place and its cleanup, and the recipe hash.
package debianimg

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLockSerializesBuilders(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	var inside, most, builds atomic.Int32
	var wg sync.WaitGroup
	final := filepath.Join(dir, "x.img")
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock, err := lockDir(context.Background(), dir, log)
			if err != nil {
				t.Error(err)
				return
			}
			defer unlock()
			n := inside.Add(1)
			defer inside.Add(-1)
			if n > most.Load() {
				most.Store(n)
			}
			if exists(final) {
				return
			}
			err = buildFile(dir, final, func(tmp, work string) error {
				builds.Add(1)
				time.Sleep(100 * time.Millisecond)
				return os.WriteFile(tmp, []byte("image"), 0o644)
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if most.Load() != 1 || builds.Load() != 1 {
		t.Errorf("%d holders at once, %d builds; want 1 and 1", most.Load(), builds.Load())
	}
	if b, err := os.ReadFile(final); err != nil || string(b) != "image" {
		t.Errorf("final file: %q, %v", b, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 { // .lock and x.img
		t.Errorf("cache holds %d entries, want the lock and the image", len(ents))
	}
}

func TestLockWaitEndsWithContext(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	unlock, err := lockDir(context.Background(), dir, log)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := lockDir(ctx, dir, log); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock: %v, want a deadline", err)
	}
}

func TestBuildFileFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	final := filepath.Join(dir, "x.img")
	boom := errors.New("boom")
	err := buildFile(dir, final, func(tmp, work string) error {
		os.WriteFile(tmp, []byte("half"), 0o644)
		os.WriteFile(filepath.Join(work, "part"), nil, 0o644)
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("a failed build left %v", ents)
	}
	// What a killed build left is cleaned up by the next lock holder.
	for _, n := range []string{".work-123", ".tmp-123-x.img", "keep.img"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cleanStale(dir, slog.New(slog.DiscardHandler))
	var names []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if d := cmp.Diff([]string{"keep.img"}, names); d != "" {
		t.Errorf("after cleanStale (-want +got):\n%s", d)
	}
}

func TestRecipeHash(t *testing.T) {
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	base := hash(imageRecipe(o, "grub 2.06"))
	if hash(imageRecipe(o, "grub 2.06")) != base {
		t.Fatal("hash is not stable")
	}
	vendor := o
	vendor.Variant = VendorOnly
	mirror := o
	mirror.Mirror = "http://127.0.0.1/debian"
	for name, h := range map[string]string{
		"variant":      hash(imageRecipe(vendor, "grub 2.06")),
		"mirror":       hash(imageRecipe(mirror, "grub 2.06")),
		"grub version": hash(imageRecipe(o, "grub 2.12")),
	} {
		if h == base {
			t.Errorf("changing the %s does not change the hash", name)
		}
	}
	if rootPath(o) != rootPath(vendor) {
		t.Error("the variants do not share the root filesystem")
	}
	if rootPath(o) == rootPath(mirror) {
		t.Error("another mirror shares the root filesystem")
	}
	if _, err := (Options{Variant: "bogus"}).withDefaults(); err == nil {
		t.Error("a bogus variant was accepted")
	}
}
