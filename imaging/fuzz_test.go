package imaging

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-project/shoal/partition"
)

// seedManifest builds a valid GPT manifest without touching a disk.
func seedManifest(t testing.TB) []byte {
	c1 := bytes.Repeat([]byte("a"), 4096)
	c2 := bytes.Repeat([]byte("b"), 1000)
	m := &Manifest{
		Version:        FormatVersion,
		Name:           "seed",
		DiskSizeBytes:  64 << 20,
		ChunkSizeBytes: MinChunkBytes,
		Target:         TargetRequirements{MinSizeBytes: 64 << 20, LogicalSectorBytes: 512, Table: partition.TableGPT},
		Table: partition.Layout{
			Table: partition.TableGPT, LogicalSectorBytes: 512, DiskGUID: "0D9C9F0E-53B4-4B1E-9C8A-1F3A2B4C5D6E",
			FirstUsableLBA: 34, LastUsableLBA: 131038,
			Partitions: []partition.Partition{
				{Number: 1, Name: "EFI", Type: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", GUID: "1D9C9F0E-53B4-4B1E-9C8A-1F3A2B4C5D6E", StartLBA: 2048, SizeBytes: 16 << 20},
				{Number: 2, Name: "root", Type: "0FC63DAF-8483-4772-8E79-3D69D8477DE4", GUID: "2D9C9F0E-53B4-4B1E-9C8A-1F3A2B4C5D6E", StartLBA: 34816, SizeBytes: 131039*512 - 34816*512, Grow: true},
			},
		},
		Regions: []Region{
			{Kind: RegionBoot, OffsetBytes: 0, SizeBytes: partition.BootCodeBytes, Chunks: []Chunk{{OffsetBytes: 0, SizeBytes: 446, StoredBytes: 20, Hash: sha256.Sum256(make([]byte, 446))}}},
			{Kind: RegionPartition, Partition: 1, OffsetBytes: 2048 * 512, SizeBytes: 16 << 20, Chunks: []Chunk{{OffsetBytes: 2048 * 512, SizeBytes: 4096, StoredBytes: 30, Hash: sha256.Sum256(c1)}}},
			{Kind: RegionPartition, Partition: 2, OffsetBytes: 34816 * 512, SizeBytes: 131039*512 - 34816*512, Chunks: []Chunk{{OffsetBytes: 34816*512 + MinChunkBytes, SizeBytes: 1000, StoredBytes: 25, Hash: sha256.Sum256(c2)}}},
		},
	}
	b := sealManifest(t, m)
	if _, err := ParseManifest(b); err != nil {
		t.Fatalf("seed manifest does not parse: %v", err)
	}
	return b
}

// sealManifest sets m's totals and content hash from its chunks and
// returns its bytes.
func sealManifest(t testing.TB, m *Manifest) []byte {
	t.Helper()
	m.DataBytes, m.StoredBytes = 0, 0
	for _, r := range m.Regions {
		for _, c := range r.Chunks {
			m.DataBytes += c.SizeBytes
			m.StoredBytes += c.StoredBytes
		}
	}
	m.ContentHash = m.ComputeContentHash()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzParseManifest(f *testing.F) {
	good := seedManifest(f)
	f.Add(good)
	f.Add([]byte("{}"))
	f.Add([]byte(`{"version": 1}`))
	f.Add(bytes.Replace(good, []byte(`"version": 1`), []byte(`"version": 3`), 1))
	f.Add(mutated(f, withFree))
	f.Add(bytes.Replace(good, []byte(`"kind": "boot"`), []byte(`"kind": "disk"`), 1))
	f.Add(bytes.Replace(good, []byte(`"sizeBytes": 4096`), []byte(`"sizeBytes": -4096`), 1))
	f.Add(good[:len(good)/2])
	f.Add(append(bytes.Clone(good), good...))
	// A chunk at 2^63-1000: offset+size wraps past the largest int64.
	f.Add(mutated(f, overflowChunk))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return
		}
		// What parses must survive a round trip and describe chunks that
		// lie on the disk.
		again, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		m2, err := ParseManifest(again)
		if err != nil {
			t.Fatalf("re-encoded manifest does not parse: %v", err)
		}
		if diff := cmp.Diff(m, m2); diff != "" {
			t.Fatalf("round trip changed the manifest (-first +second):\n%s", diff)
		}
		for _, c := range m.Chunks() {
			// Written without a sum that could wrap past the largest int64.
			if c.OffsetBytes < 0 || c.SizeBytes <= 0 || c.OffsetBytes > m.Target.MinSizeBytes || c.SizeBytes > m.Target.MinSizeBytes-c.OffsetBytes {
				t.Fatalf("chunk %d at %d+%d lies outside the %d-byte minimum disk", c.Index, c.OffsetBytes, c.SizeBytes, m.Target.MinSizeBytes)
			}
		}
	})
}

func FuzzDecodeChunk(f *testing.F) {
	codec := NewCodec(0)
	plain := bytes.Repeat([]byte("chunk data "), 500)
	stored, err := codec.Compress(nil, plain)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(stored, int64(len(plain)))
	f.Add(stored[:len(stored)-1], int64(len(plain)))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0}, int64(10))
	f.Add([]byte("not zstd at all"), int64(1))
	want := Hash(sha256.Sum256(plain))
	f.Fuzz(func(t *testing.T, b []byte, size int64) {
		if size <= 0 || size > MaxChunkBytes {
			return
		}
		c := Chunk{SizeBytes: size, StoredBytes: int64(len(b)), Hash: want}
		out, err := codec.Decode(nil, b, c)
		if err != nil {
			return
		}
		if !bytes.Equal(out, plain) {
			t.Fatalf("Decode accepted bytes that are not the chunk")
		}
	})
}
