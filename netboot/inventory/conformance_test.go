package inventory_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/shoal-project/shoal/netboot/api"
	"github.com/shoal-project/shoal/netboot/inventory"
	"github.com/shoal-project/shoal/netboot/inventory/inventorytest"
)

// TestConformance runs the Backend suite against the file Store: a
// machines file in t.TempDir(), edits as an operator's (the file written
// anew and renamed over), a reopening as a restart.
func TestConformance(t *testing.T) {
	inventorytest.Run(t, openFile)
}

func openFile(t *testing.T, setup inventorytest.Setup) inventorytest.Fixture {
	path := filepath.Join(t.TempDir(), "machines")
	var mu sync.Mutex
	lines := map[string]string{}
	write := func() {
		var out []string
		for _, l := range lines {
			out = append(out, l)
		}
		sort.Strings(out)
		tmp := path + ".edit"
		if err := os.WriteFile(tmp, []byte(strings.Join(out, "")), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	line := func(m api.Machine) string {
		disk := m.Disk
		if disk == "" {
			disk = "-"
		}
		return fmt.Sprintf("%s %s %s %s\n", m.MAC, m.Action, m.Image, disk)
	}
	for _, m := range setup.Machines {
		lines[m.MAC] = line(m)
	}
	write()
	s, err := inventory.Open(path, setup.Unknown)
	if err != nil {
		t.Fatal(err)
	}
	return inventorytest.Fixture{
		Backend: s,
		Edit: func(t *testing.T, m api.Machine) {
			mu.Lock()
			defer mu.Unlock()
			// The store's own writes first: the file as it is now.
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			lines = map[string]string{}
			for _, l := range strings.SplitAfter(string(b), "\n") {
				if f := strings.Fields(l); len(f) > 0 && !strings.HasPrefix(f[0], "#") {
					lines[f[0]] = strings.Join(f, " ") + "\n"
				}
			}
			lines[m.MAC] = line(m)
			write()
		},
		Reopen: func(t *testing.T) inventory.Backend {
			again, err := inventory.Open(path, setup.Unknown)
			if err != nil {
				t.Fatal(err)
			}
			return again
		},
	}
}
