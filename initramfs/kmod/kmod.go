// Package kmod resolves and loads the appliance's kernel modules from their
// own metadata: the depends= field of each module's .modinfo ELF section.
// No modules.dep is needed. At build time Resolve picks the listed modules
// and everything they depend on out of a kernel's module tree; at boot
// LoadDir loads a flat directory of them in dependency order.
package kmod

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNotFound is wrapped when a wanted module or dependency is not in the tree.
var ErrNotFound = errors.New("module not found")

// Module is a kernel module file and what its .modinfo says.
type Module struct {
	Name    string   // normalized: '-' becomes '_'
	Path    string   // the .ko file
	Depends []string // normalized names
}

// Normalize turns a module name or file name into the kernel's form:
// no directory, no .ko suffix, '_' for '-'.
func Normalize(name string) string {
	name = filepath.Base(name)
	name = strings.TrimSuffix(name, ".ko")
	return strings.ReplaceAll(name, "-", "_")
}

// Info reads the .modinfo section of the uncompressed module at path.
func Info(path string) (Module, error) {
	f, err := elf.Open(path)
	if err != nil {
		return Module{}, fmt.Errorf("module %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return Module{}, fmt.Errorf("module %s: no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return Module{}, fmt.Errorf("module %s: .modinfo: %w", path, err)
	}
	m := parseModinfo(data)
	m.Path = path
	if m.Name == "" {
		m.Name = Normalize(path)
	}
	return m, nil
}

// parseModinfo reads NUL-separated key=value strings.
func parseModinfo(data []byte) Module {
	var m Module
	for _, kv := range strings.Split(string(data), "\x00") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			m.Name = Normalize(v)
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d = strings.TrimSpace(d); d != "" {
					m.Depends = append(m.Depends, Normalize(d))
				}
			}
		}
	}
	return m
}

// Resolve finds the modules named in want, and the modules they depend on,
// in the module tree at root (a kernel's lib/modules/VERSION). Names that
// root/modules.builtin lists are built into the kernel and skipped. The
// result is in load order.
func Resolve(root string, want []string) ([]Module, error) {
	index := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			index[Normalize(p)] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("module tree %s: %w", root, err)
	}
	builtin := map[string]bool{}
	if f, err := os.Open(filepath.Join(root, "modules.builtin")); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			builtin[Normalize(sc.Text())] = true
		}
		f.Close()
	}
	got := map[string]Module{}
	var visit func(name, from string) error
	visit = func(name, from string) error {
		name = Normalize(name)
		if _, ok := got[name]; ok || builtin[name] {
			return nil
		}
		p, ok := index[name]
		if !ok {
			if from != "" {
				return fmt.Errorf("%w: %s (needed by %s) in %s", ErrNotFound, name, from, root)
			}
			return fmt.Errorf("%w: %s in %s", ErrNotFound, name, root)
		}
		m, err := Info(p)
		if err != nil {
			return err
		}
		got[name] = m
		for _, d := range m.Depends {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		return nil
	}
	for _, w := range want {
		if err := visit(w, ""); err != nil {
			return nil, err
		}
	}
	ms := make([]Module, 0, len(got))
	for _, m := range got {
		ms = append(ms, m)
	}
	return Order(ms), nil
}

// Order sorts modules so that each comes after the modules it depends on
// (dependencies outside the set are ignored), by name where free.
func Order(ms []Module) []Module {
	byName := map[string]Module{}
	names := make([]string, 0, len(ms))
	for _, m := range ms {
		byName[m.Name] = m
		names = append(names, m.Name)
	}
	sort.Strings(names)
	done := map[string]bool{}
	out := make([]Module, 0, len(ms))
	var visit func(string, int)
	visit = func(n string, depth int) {
		m, ok := byName[n]
		if !ok || done[n] || depth > len(ms) { // depth bounds a dependency cycle
			return
		}
		done[n] = true
		deps := append([]string(nil), m.Depends...)
		sort.Strings(deps)
		for _, d := range deps {
			visit(d, depth+1)
		}
		out = append(out, m)
	}
	for _, n := range names {
		visit(n, 0)
	}
	return out
}

// LoadDir loads every .ko file in dir in dependency order. A module that
// is already loaded is fine; one that fails is logged and skipped (a NIC
// driver for absent hardware must not stop the others). It returns the
// names loaded.
func LoadDir(dir string, log *slog.Logger) ([]string, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.ko"))
	if err != nil {
		return nil, err
	}
	var ms []Module
	for _, p := range paths {
		m, err := Info(p)
		if err != nil {
			log.Warn("module unreadable", "path", p, "err", err)
			continue
		}
		ms = append(ms, m)
	}
	var loaded []string
	for _, m := range Order(ms) {
		if err := load(m.Path); err != nil {
			log.Warn("module not loaded", "module", m.Name, "err", err)
			continue
		}
		loaded = append(loaded, m.Name)
	}
	return loaded, nil
}

func load(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if err == nil || errors.Is(err, unix.EEXIST) {
		return nil
	}
	return fmt.Errorf("finit_module %s: %w", path, err)
}
