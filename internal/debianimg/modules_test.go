// modules_test.go checks which kernel modules are kept and the dependency check, on the real modules of the built image.
package debianimg

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/shoal-project/shoal/internal/testdisk"
)

func TestKeepModule(t *testing.T) {
	for _, tc := range []struct {
		rel  string
		keep bool
	}{
		{"drivers/block/virtio_blk.ko", true},
		{"drivers/virtio/virtio_pci.ko", true},
		{"drivers/net/virtio_net.ko", true},
		{"fs/ext4/ext4.ko", true},
		{"fs/mbcache.ko", true},
		{"crypto/crc32c_generic.ko", true},
		{"drivers/gpu/drm/bochs/bochs.ko", false},
		{"sound/core/snd.ko", false},
		{"drivers/net/wireless/intel/iwlwifi/iwlwifi.ko", false},
		{"drivers/net/ethernet/broadcom/tg3.ko", false},
		{"drivers/infiniband/core/ib_core.ko", false},
		{"drivers/media/rc/rc-core.ko", false},
		{"drivers/staging/rtl8192e/rtllib.ko", false},
		{"lib/test_bpf.ko", false},
		{"fs/mbcache.ko.xz", false},
		{"drivers/block/virtio_blk.kox", false},
	} {
		t.Run(tc.rel, func(t *testing.T) {
			if got := keepModule(tc.rel); got != tc.keep {
				t.Errorf("keepModule(%q) = %v, want %v", tc.rel, got, tc.keep)
			}
		})
	}
}

// imageModules copies the image's lib/modules/VERSION out of its root
// filesystem with debugfs and returns the copy.
func imageModules(t *testing.T) string {
	t.Helper()
	img := builtImage(t, Removable)
	root := part(t, img, RootStartLBA, RootSectors)
	dir := t.TempDir()
	testdisk.Run(t, "debugfs", "-R", "rdump /usr/lib/modules "+dir, root)
	vers, _ := filepath.Glob(filepath.Join(dir, "modules", "*"))
	if len(vers) != 1 {
		t.Fatalf("image has kernels %v, want one", vers)
	}
	return vers[0]
}

func TestImageModules(t *testing.T) {
	mods := imageModules(t)
	kernel := filepath.Join(mods, "kernel")
	if err := checkModuleDeps(kernel); err != nil {
		t.Fatalf("the image's modules: %v", err)
	}
	n := 0
	filepath.WalkDir(kernel, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
			rel, _ := filepath.Rel(kernel, p)
			if !keepModule(rel) {
				t.Errorf("image has %s, which keepModule drops", rel)
			}
		}
		return nil
	})
	if n < 100 || n > 400 {
		t.Errorf("image has %d modules", n)
	}
	// depmod ran over the pruned tree: modules.dep names only kept files.
	dep, err := os.ReadFile(filepath.Join(mods, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"kernel/drivers/block/virtio_blk.ko:", "kernel/fs/ext4/ext4.ko:"} {
		if !strings.Contains(string(dep), m) {
			t.Errorf("modules.dep has no %s", m)
		}
	}
	if strings.Contains(string(dep), "drivers/gpu/") {
		t.Error("modules.dep still names GPU drivers")
	}
}

func TestCheckModuleDepsFindsMissing(t *testing.T) {
	mods := imageModules(t)
	kernel := filepath.Join(t.TempDir(), "kernel")
	// ext4 without jbd2 and mbcache, and none of the initrd's others.
	src := filepath.Join(mods, "kernel/fs/ext4/ext4.ko")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(kernel, "fs/ext4"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(kernel, "fs/ext4/ext4.ko"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	err = checkModuleDeps(kernel)
	var missing *MissingModulesError
	if !errors.Is(err, ErrModules) || !errors.As(err, &missing) {
		t.Fatalf("got %v, want a MissingModulesError", err)
	}
	var want []string
	for _, m := range initrdModules {
		if m != "ext4" {
			want = append(want, "the initrd needs "+m)
		}
	}
	deps, err := modinfoDepends(src)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(deps, "jbd2") || !slices.Contains(deps, "mbcache") {
		t.Fatalf("ext4 depends on %v, want jbd2 and mbcache among them", deps)
	}
	for _, d := range deps {
		want = append(want, "ext4 needs "+d)
	}
	sort.Strings(want)
	if d := cmp.Diff(want, missing.Missing); d != "" {
		t.Errorf("missing (-want +got):\n%s", d)
	}
	// A file that is not a module is an error, not a crash.
	if err := os.WriteFile(filepath.Join(kernel, "bogus.ko"), []byte("not ELF"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkModuleDeps(kernel); err == nil {
		t.Error("a bogus .ko was accepted")
	}
}
