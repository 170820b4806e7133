package kmod

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-project/shoal/internal/testdisk"
)

func names(ms []Module) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

func TestOrder(t *testing.T) {
	ms := []Module{
		{Name: "virtio_net", Depends: []string{"virtio_ring", "net_failover", "virtio"}},
		{Name: "net_failover", Depends: []string{"failover"}},
		{Name: "failover"},
		{Name: "virtio", Depends: []string{"virtio_ring"}},
		{Name: "virtio_ring"},
		{Name: "e1000"},
		{Name: "loop_a", Depends: []string{"loop_b"}},
		{Name: "loop_b", Depends: []string{"loop_a"}},
	}
	got := names(Order(ms))
	want := []string{"e1000", "failover", "loop_b", "loop_a", "net_failover", "virtio_ring", "virtio", "virtio_net"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Order (-want +got):\n%s", diff)
	}
}

func TestParseModinfo(t *testing.T) {
	m := parseModinfo([]byte("license=GPL\x00depends=virtio,virtio-ring,\x00name=virtio_net\x00vermagic=6.1.0\x00"))
	want := Module{Name: "virtio_net", Depends: []string{"virtio", "virtio_ring"}}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Errorf("parseModinfo (-want +got):\n%s", diff)
	}
}

// kernelModules returns the module tree that build/deps.d/kernel.sh caches.
func kernelModules(t *testing.T) string {
	cache := os.Getenv("SHOAL_KERNEL_CACHE")
	if cache == "" {
		cache = "/var/cache/shoal/kernel"
	}
	dir := filepath.Join(cache, "modules")
	if _, err := os.Stat(dir); err != nil {
		testdisk.Missing(t, "%s missing (run build/deps.d/kernel.sh)", dir)
	}
	return dir
}

// TestResolveDebianKernel resolves the appliance's virtio modules from
// Debian's kernel and checks the order against the one measured by hand
// (docs/design.md, "Facts this design rests on"): each module after everything it depends on.
func TestResolveDebianKernel(t *testing.T) {
	root := kernelModules(t)
	ms, err := Resolve(root, []string{"virtio_pci", "virtio_net", "virtio-blk", "e1000"})
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, m := range ms {
		pos[m.Name] = i
	}
	for _, n := range []string{"virtio_ring", "virtio", "virtio_pci", "failover", "net_failover", "virtio_net", "virtio_blk", "e1000"} {
		if _, ok := pos[n]; !ok {
			t.Errorf("Resolve lacks %s: got %v", n, names(ms))
		}
	}
	for _, m := range ms {
		for _, d := range m.Depends {
			if pos[d] >= pos[m.Name] {
				t.Errorf("%s (at %d) comes before its dependency %s (at %d)", m.Name, pos[m.Name], d, pos[d])
			}
		}
	}
	if _, err := Resolve(root, []string{"no_such_module"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve(no_such_module) = %v, want ErrNotFound", err)
	}
}

// FuzzModinfo: any .modinfo bytes parse, and Order keeps every module.
func FuzzModinfo(f *testing.F) {
	f.Add([]byte("depends=a,b\x00name=c\x00"))
	f.Add([]byte("depends=c\x00name=c\x00"))
	f.Add([]byte("=\x00name=\x00depends=,,"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m := parseModinfo(b)
		ms := []Module{m, {Name: "a", Depends: []string{m.Name}}, {Name: "b"}}
		if got := Order(ms); len(got) > len(ms) {
			t.Errorf("Order returned %d modules from %d", len(got), len(ms))
		}
	})
}
