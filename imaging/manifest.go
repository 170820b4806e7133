// Package imaging is shoal's image format: the manifest that names an image,
// the content-addressed zstd chunks that hold its data, the repositories
// that serve both (a directory or any static HTTP server), and the pipelines
// that create an image from a disk and apply it to one, verifying every
// chunk against the manifest before it reaches the disk.
package imaging

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/shoal-project/shoal/partition"
)

// FormatVersion is the newest manifest version this package reads and
// writes. Version 2 adds the regions' free extents; a manifest without any
// is written as version 1 (MinFormatVersion), which older shoal reads too.
const (
	FormatVersion    = 2
	MinFormatVersion = 1
)

// Chunk size limits and default.
const (
	DefaultChunkBytes = 4 << 20
	MinChunkBytes     = 64 << 10
	MaxChunkBytes     = 64 << 20
)

// MaxManifestBytes bounds a manifest read from a repository or the network.
const MaxManifestBytes = 64 << 20

// Hash is the SHA-256 of a chunk's uncompressed bytes.
type Hash [sha256.Size]byte

// String returns the hash in lower-case hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText implements encoding.TextMarshaler.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *Hash) UnmarshalText(b []byte) error {
	if len(b) != 2*sha256.Size {
		return fmt.Errorf("hash %q: want %d hex digits", b, 2*sha256.Size)
	}
	if _, err := hex.Decode(h[:], b); err != nil {
		return fmt.Errorf("hash %q: %w", b, err)
	}
	return nil
}

// ID names an image: the SHA-256 of its manifest's exact bytes.
type ID = Hash

// ImageID returns the ID of a manifest's bytes.
func ImageID(manifest []byte) ID { return sha256.Sum256(manifest) }

// Manifest describes an image. Its JSON form is documented in
// docs/image-format.md.
type Manifest struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	// Serial orders the manifests of one image name: image create gives
	// each one more than the highest in the repository (from 1). It is
	// under the signature, so a machine that has seen serial n can refuse
	// an older signed manifest (CheckNotOlder). Manifests made before
	// serials have none: 0.
	Serial uint64 `json:"serial,omitempty"`
	// ContentHash is the SHA-256 of the canonical encoding of the layout
	// and the chunk list (see ComputeContentHash): images that put the same
	// bytes on a disk have the same content hash.
	ContentHash    Hash  `json:"contentHash"`
	DiskSizeBytes  int64 `json:"diskSizeBytes"`
	ChunkSizeBytes int64 `json:"chunkSizeBytes"`
	// DataBytes is the sum of the chunks' uncompressed sizes; StoredBytes
	// the sum of their compressed sizes.
	DataBytes   int64 `json:"dataBytes"`
	StoredBytes int64 `json:"storedBytes"`
	// Target is what a disk must be to take the image.
	Target  TargetRequirements `json:"target"`
	Table   partition.Layout   `json:"table"`
	Regions []Region           `json:"regions"`
}

// TargetRequirements says what a target disk must be.
type TargetRequirements struct {
	MinSizeBytes       int64  `json:"minSizeBytes"`
	LogicalSectorBytes int64  `json:"logicalSectorBytes"`
	Table              string `json:"table"`
}

// Region kinds.
const (
	RegionPartition = "partition" // the extent of a partition
	RegionBoot      = "boot"      // boot code and disk signature: bytes 0-445 of sector 0
	RegionGap       = "gap"       // data outside partitions and the table
	RegionDisk      = "disk"      // a disk without a partition table, whole
)

// Region is an extent of the disk that the image defines: on apply, its
// bytes are the chunks' bytes, whatever the target holds in its free
// extents, and zeros everywhere else.
type Region struct {
	Kind        string  `json:"kind"`
	Partition   int     `json:"partition,omitempty"` // partition number, for kind partition
	OffsetBytes int64   `json:"offsetBytes"`
	SizeBytes   int64   `json:"sizeBytes"`
	Chunks      []Chunk `json:"chunks"`
	// Free lists, in order, the extents (offsets on the disk) that the
	// region's file system does not use: no chunk lies in them, and apply
	// neither writes nor zeroes them (it discards them where the target
	// can). Version 2 only.
	Free []Extent `json:"free,omitempty"`
}

// Extent is a run of bytes on the disk.
type Extent struct {
	OffsetBytes int64 `json:"offsetBytes"`
	SizeBytes   int64 `json:"sizeBytes"`
}

// End returns the offset just past the extent.
func (e Extent) End() int64 { return e.OffsetBytes + e.SizeBytes }

// FreeBytes returns the sum of the region's free extents.
func (r Region) FreeBytes() int64 {
	var n int64
	for _, e := range r.Free {
		n += e.SizeBytes
	}
	return n
}

// End returns the offset just past the region.
func (r Region) End() int64 { return r.OffsetBytes + r.SizeBytes }

// Chunk is one stored run of a region. Runs of zeros are not stored.
type Chunk struct {
	OffsetBytes int64 `json:"offsetBytes"` // on the disk
	SizeBytes   int64 `json:"sizeBytes"`   // uncompressed
	StoredBytes int64 `json:"storedBytes"` // compressed, as in the repository
	Hash        Hash  `json:"hash"`        // SHA-256 of the uncompressed bytes
}

// ChunkRef is a chunk with its index in the image's flat chunk list, the
// numbering the transport uses on the wire.
type ChunkRef struct {
	Index int
	Chunk
}

// Chunks returns every stored chunk of the image in disk order.
func (m *Manifest) Chunks() []ChunkRef {
	var refs []ChunkRef
	for _, r := range m.Regions {
		for _, c := range r.Chunks {
			refs = append(refs, ChunkRef{Index: len(refs), Chunk: c})
		}
	}
	return refs
}

// Marshal encodes the manifest as indented JSON ending in a newline. The
// bytes are what is signed and what the image ID hashes.
func (m *Manifest) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return append(b, '\n'), nil
}

// ErrBadManifest is wrapped by every error about a manifest's content.
var ErrBadManifest = errors.New("bad manifest")

func badf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBadManifest, fmt.Sprintf(format, a...))
}

// ParseManifest decodes and validates a manifest. Unknown fields, a version
// other than FormatVersion, overlapping or out-of-range regions and chunks,
// and a content hash that does not match are errors.
func ParseManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestBytes {
		return nil, badf("%d bytes, more than the %d allowed", len(b), MaxManifestBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, badf("decode: %v", err)
	}
	if dec.More() {
		return nil, badf("trailing data after the manifest")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidName reports whether name can name an image in a repository: letters,
// digits, '.', '_' and '-', not starting with a punctuation mark.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("image name %q: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

// Validate checks the manifest's internal consistency.
func (m *Manifest) Validate() error {
	if m.Version < MinFormatVersion || m.Version > FormatVersion {
		return badf("version %d, this shoal reads versions %d to %d", m.Version, MinFormatVersion, FormatVersion)
	}
	if err := ValidName(m.Name); err != nil {
		return badf("%v", err)
	}
	if m.ChunkSizeBytes < MinChunkBytes || m.ChunkSizeBytes > MaxChunkBytes {
		return badf("chunk size %d out of range %d-%d", m.ChunkSizeBytes, MinChunkBytes, MaxChunkBytes)
	}
	if m.DiskSizeBytes <= 0 || m.DiskSizeBytes > 1<<56 {
		return badf("disk size %d out of range", m.DiskSizeBytes)
	}
	t := m.Target
	if t.LogicalSectorBytes != m.Table.LogicalSectorBytes || t.Table != m.Table.Type() {
		return badf("target requirements (%d-byte sectors, %s) disagree with the table (%d, %s)", t.LogicalSectorBytes, t.Table, m.Table.LogicalSectorBytes, m.Table.Type())
	}
	if err := m.Table.Validate(); err != nil {
		return badf("table: %v", err)
	}
	if t.MinSizeBytes <= 0 || t.MinSizeBytes > m.DiskSizeBytes {
		return badf("minimum disk size %d out of range (disk size %d)", t.MinSizeBytes, m.DiskSizeBytes)
	}
	var prevEnd, data, stored int64
	for i, r := range m.Regions {
		// No sum here may wrap past the largest int64: every bound is
		// checked by subtraction from a value already known to be sane.
		if r.OffsetBytes < prevEnd || r.OffsetBytes < 0 || r.SizeBytes <= 0 || r.OffsetBytes > t.MinSizeBytes || r.SizeBytes > t.MinSizeBytes-r.OffsetBytes {
			return badf("region %d (%s at %d, %d bytes) overlaps, is empty or lies past the minimum disk size %d", i, r.Kind, r.OffsetBytes, r.SizeBytes, t.MinSizeBytes)
		}
		prevEnd = r.End()
		switch r.Kind {
		case RegionPartition:
			p, ok := m.Table.Find(r.Partition)
			if !ok {
				return badf("region %d: no partition %d in the table", i, r.Partition)
			}
			s := m.Table.LogicalSectorBytes
			if r.OffsetBytes != p.StartBytes(s) || r.SizeBytes != p.SizeBytes {
				return badf("region %d: does not match partition %d's extent", i, r.Partition)
			}
		case RegionBoot:
			if r.OffsetBytes != 0 || r.SizeBytes != partition.BootCodeBytes || m.Table.Table == partition.TableNone {
				return badf("region %d: boot region must be bytes 0-%d of a partitioned disk", i, partition.BootCodeBytes-1)
			}
		case RegionGap:
		case RegionDisk:
			if m.Table.Table != partition.TableNone || len(m.Regions) != 1 {
				return badf("region %d: a disk region is the only region of an unpartitioned image", i)
			}
		default:
			return badf("region %d: unknown kind %q", i, r.Kind)
		}
		for _, te := range m.Table.TableExtents(m.DiskSizeBytes) {
			if r.OffsetBytes < te.End() && te.OffsetBytes < r.End() {
				return badf("region %d (%s at %d) overlaps the partition table at %d", i, r.Kind, r.OffsetBytes, te.OffsetBytes)
			}
		}
		if err := m.validateFree(i, r); err != nil {
			return err
		}
		next := r.OffsetBytes
		for j, c := range r.Chunks {
			if c.OffsetBytes < next || c.OffsetBytes > r.End() || c.SizeBytes <= 0 || c.SizeBytes > m.ChunkSizeBytes || c.SizeBytes > r.End()-c.OffsetBytes {
				return badf("region %d chunk %d (at %d, %d bytes): out of order, overlapping or outside the region", i, j, c.OffsetBytes, c.SizeBytes)
			}
			if c.StoredBytes <= 0 || c.StoredBytes > MaxStoredBytes(c.SizeBytes) {
				return badf("region %d chunk %d: stored size %d out of range for %d bytes", i, j, c.StoredBytes, c.SizeBytes)
			}
			next = c.OffsetBytes + c.SizeBytes
			data += c.SizeBytes
			stored += c.StoredBytes
		}
	}
	if data != m.DataBytes || stored != m.StoredBytes {
		return badf("totals (%d data, %d stored bytes) do not match the chunks (%d, %d)", m.DataBytes, m.StoredBytes, data, stored)
	}
	if got := m.ComputeContentHash(); got != m.ContentHash {
		return badf("content hash %s does not match the content (%s)", m.ContentHash, got)
	}
	return nil
}

// validateFree checks region i's free extents: version 2, in order,
// sector-aligned, inside the region and apart from every chunk.
func (m *Manifest) validateFree(i int, r Region) error {
	if len(r.Free) == 0 {
		return nil
	}
	if m.Version < 2 {
		return badf("region %d: free extents in a version %d manifest", i, m.Version)
	}
	next, k := r.OffsetBytes, 0
	for j, e := range r.Free {
		if e.OffsetBytes < next || e.SizeBytes <= 0 || e.OffsetBytes > r.End() || e.SizeBytes > r.End()-e.OffsetBytes || e.OffsetBytes%512 != 0 || e.SizeBytes%512 != 0 {
			return badf("region %d free extent %d (at %d, %d bytes): out of order, overlapping, unaligned or outside the region", i, j, e.OffsetBytes, e.SizeBytes)
		}
		next = e.End()
		// The chunks are in order too: skip those wholly before e.
		for k < len(r.Chunks) && r.Chunks[k].OffsetBytes+r.Chunks[k].SizeBytes <= e.OffsetBytes {
			k++
		}
		if k < len(r.Chunks) && r.Chunks[k].OffsetBytes < e.End() {
			return badf("region %d free extent %d (at %d, %d bytes) overlaps chunk %d", i, j, e.OffsetBytes, e.SizeBytes, k)
		}
	}
	return nil
}

// MaxStoredBytes bounds the compressed size of a chunk of n bytes (zstd's
// worst case plus frame overhead).
func MaxStoredBytes(n int64) int64 { return n + n/128 + 1024 }

// ComputeContentHash hashes what the image puts on a disk: its target
// requirements, its table and every region's extent and chunks. Names and
// sizes of the repository's files do not enter it.
func (m *Manifest) ComputeContentHash() Hash {
	h := sha256.New()
	h.Write([]byte("shoal content v1\n"))
	meta, _ := json.Marshal(struct {
		DiskSizeBytes int64
		Target        TargetRequirements
		Table         partition.Layout
	}{m.DiskSizeBytes, m.Target, m.Table})
	h.Write(meta)
	var b [8]byte
	put := func(v int64) {
		binary.BigEndian.PutUint64(b[:], uint64(v))
		h.Write(b[:])
	}
	for _, r := range m.Regions {
		h.Write([]byte(r.Kind))
		put(int64(r.Partition))
		put(r.OffsetBytes)
		put(r.SizeBytes)
		put(int64(len(r.Chunks)))
		for _, c := range r.Chunks {
			put(c.OffsetBytes)
			put(c.SizeBytes)
			h.Write(c.Hash[:])
		}
		if len(r.Free) > 0 { // version 2: a version 1 hash is unchanged
			h.Write([]byte("free"))
			put(int64(len(r.Free)))
			for _, e := range r.Free {
				put(e.OffsetBytes)
				put(e.SizeBytes)
			}
		}
	}
	var out Hash
	h.Sum(out[:0])
	return out
}
