// fake_test.go is the in-memory variable store the tests use in place of efivarfs.
package efiboot

import (
	"bytes"
	"fmt"
	"os"
	"sort"
)

type memVar struct {
	attrs uint32
	data  []byte
}

// memVars is a firmware's variables in the global GUID, in memory. A
// non-nil refuse makes every Set fail with it, as a firmware that
// refuses writes does; sets counts the writes.
type memVars struct {
	vars   map[string]memVar
	refuse error
	sets   int
}

func newMemVars() *memVars { return &memVars{vars: map[string]memVar{}} }

func (m *memVars) Get(name string) (uint32, []byte, error) {
	v, ok := m.vars[name]
	if !ok {
		return 0, nil, fmt.Errorf("read %s: %w", name, os.ErrNotExist)
	}
	return v.attrs, bytes.Clone(v.data), nil
}

func (m *memVars) Set(name string, attrs uint32, data []byte) error {
	if m.refuse != nil {
		return fmt.Errorf("write %s: %w", name, m.refuse)
	}
	m.sets++
	m.vars[name] = memVar{attrs, bytes.Clone(data)}
	return nil
}

func (m *memVars) List() ([]string, error) {
	var names []string
	for n := range m.vars {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// snapshot copies the store, to compare before and after.
func (m *memVars) snapshot() map[string]memVar {
	s := map[string]memVar{}
	for k, v := range m.vars {
		s[k] = memVar{v.attrs, bytes.Clone(v.data)}
	}
	return s
}
