package imaging

import (
	"errors"
	"math"
	"testing"
)

// mutated returns the seed manifest changed by f, with its totals and
// content hash made to match again, so that only f's change can make it
// invalid.
func mutated(t testing.TB, f func(m *Manifest)) []byte {
	t.Helper()
	m, err := ParseManifest(seedManifest(t))
	if err != nil {
		t.Fatal(err)
	}
	f(m)
	return sealManifest(t, m)
}

// overflowChunk puts a chunk at offset 2^63-1000 in the root partition:
// offset+size wraps past the largest int64.
func overflowChunk(m *Manifest) {
	r := &m.Regions[2]
	r.Chunks = append(r.Chunks, Chunk{OffsetBytes: math.MaxInt64 - 1000, SizeBytes: 4096, StoredBytes: 30, Hash: r.Chunks[0].Hash})
}

func TestParseManifestRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func(m *Manifest)
	}{
		{"chunk offset+size overflows", overflowChunk},
		{"chunk past its region", func(m *Manifest) {
			r := &m.Regions[1]
			r.Chunks[0].OffsetBytes = r.End() - 100
		}},
		{"negative chunk size", func(m *Manifest) { m.Regions[1].Chunks[0].SizeBytes = -4096 }},
		{"gap region offset+size overflows", func(m *Manifest) {
			m.Regions = append(m.Regions, Region{Kind: RegionGap, OffsetBytes: math.MaxInt64 - 1000, SizeBytes: 1 << 20})
		}},
		{"negative region offset", func(m *Manifest) {
			m.Regions = append([]Region{{Kind: RegionGap, OffsetBytes: -4096, SizeBytes: 4096}}, m.Regions...)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseManifest(mutated(t, tc.f)); !errors.Is(err, ErrBadManifest) {
				t.Errorf("ParseManifest = %v, want %v", err, ErrBadManifest)
			}
		})
	}
	// The unchanged seed, through the same path, parses.
	if _, err := ParseManifest(mutated(t, func(*Manifest) {})); err != nil {
		t.Errorf("ParseManifest(seed) = %v", err)
	}
}
