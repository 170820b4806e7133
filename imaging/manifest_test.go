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

// withFree makes the seed a version 2 manifest whose root partition has
// a free extent on each side of its chunk (at region start + MinChunkBytes).
func withFree(m *Manifest) {
	m.Version = FormatVersion
	r := &m.Regions[2]
	r.Free = []Extent{{OffsetBytes: r.OffsetBytes, SizeBytes: MinChunkBytes}, {OffsetBytes: r.OffsetBytes + 2*MinChunkBytes, SizeBytes: 1 << 20}}
}

func TestParseManifestFree(t *testing.T) {
	m, err := ParseManifest(mutated(t, withFree))
	if err != nil {
		t.Fatalf("ParseManifest(version 2 with free extents) = %v", err)
	}
	if got, want := m.Regions[2].FreeBytes(), int64(MinChunkBytes+1<<20); got != want {
		t.Errorf("FreeBytes = %d, want %d", got, want)
	}
	// The free extents are part of the content: the hash differs from the
	// same manifest without them.
	plain, err := ParseManifest(mutated(t, func(m *Manifest) { m.Version = FormatVersion }))
	if err != nil {
		t.Fatal(err)
	}
	if plain.ContentHash == m.ContentHash {
		t.Error("free extents do not change the content hash")
	}
	for _, tc := range []struct {
		name string
		f    func(r *Region)
	}{
		{"overlaps a chunk", func(r *Region) { r.Free[1].OffsetBytes = r.Chunks[0].OffsetBytes + 512 }},
		{"out of order", func(r *Region) { r.Free[0], r.Free[1] = r.Free[1], r.Free[0] }},
		{"overlapping", func(r *Region) { r.Free[0].SizeBytes = 3 * MinChunkBytes }},
		{"unaligned", func(r *Region) { r.Free[1].SizeBytes = 1000 }},
		{"past the region", func(r *Region) { r.Free[1].SizeBytes = r.SizeBytes }},
		{"before the region", func(r *Region) { r.Free[0].OffsetBytes -= 512 }},
		{"empty", func(r *Region) { r.Free[1].SizeBytes = 0 }},
		{"offset+size overflows", func(r *Region) { r.Free[1].SizeBytes = math.MaxInt64 - 511 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := mutated(t, func(m *Manifest) { withFree(m); tc.f(&m.Regions[2]) })
			if _, err := ParseManifest(b); !errors.Is(err, ErrBadManifest) {
				t.Errorf("ParseManifest = %v, want %v", err, ErrBadManifest)
			}
		})
	}
	t.Run("in a version 1 manifest", func(t *testing.T) {
		b := mutated(t, func(m *Manifest) { withFree(m); m.Version = MinFormatVersion })
		if _, err := ParseManifest(b); !errors.Is(err, ErrBadManifest) {
			t.Errorf("ParseManifest = %v, want %v", err, ErrBadManifest)
		}
	})
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
