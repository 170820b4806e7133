// Package partition reads a source disk's partition layout, checks that a
// target disk can take an image, and writes the image's partition table to
// the target (with go-diskfs), fitted to the target's real size.
package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"
)

// Table types.
const (
	TableGPT  = "gpt"
	TableMBR  = "mbr"
	TableNone = "none"
)

// BootCodeBytes is the part of sector 0 that is not the partition table: the
// boot code (440 bytes), the MBR disk signature (4) and 2 reserved bytes.
// go-diskfs writes only bytes 446-511, so these travel as image data.
const BootCodeBytes = 446

// gptEntryArrayMaxBytes is the largest partition-entry array we accept.
const gptEntryArrayMaxBytes = 1 << 20

// Layout is what an image records of its source disk's partitioning.
type Layout struct {
	Table              string `json:"type"`               // gpt, mbr or none
	LogicalSectorBytes int64  `json:"logicalSectorBytes"` // 512 or 4096
	DiskSizeBytes      int64  `json:"-"`                  // size of the source
	DiskGUID           string `json:"diskGUID,omitempty"` // GPT only
	// FirstUsableLBA and LastUsableLBA come from the source's GPT header.
	FirstUsableLBA uint64      `json:"firstUsableLBA,omitempty"`
	LastUsableLBA  uint64      `json:"lastUsableLBA,omitempty"`
	Partitions     []Partition `json:"partitions"`
}

// Partition is one entry of the table.
type Partition struct {
	Number     int    `json:"number"`             // 1-based slot in the table
	Name       string `json:"name,omitempty"`     // GPT name
	Type       string `json:"type"`               // GPT type GUID, or MBR type as 0xNN
	GUID       string `json:"guid,omitempty"`     // GPT partition GUID
	Attributes uint64 `json:"attributes"`         // GPT attribute bits
	Bootable   bool   `json:"bootable,omitempty"` // MBR active flag
	StartLBA   uint64 `json:"startLBA"`
	SizeBytes  int64  `json:"sizeBytes"`
	// Grow marks the partition that is stretched to the end of a larger
	// target. At most one partition, the last one on the disk, may grow.
	Grow bool `json:"grow,omitempty"`
}

// StartBytes returns the partition's offset on the disk.
func (p Partition) StartBytes(sectorBytes int64) int64 { return int64(p.StartLBA) * sectorBytes }

// EndBytes returns the offset just past the partition.
func (p Partition) EndBytes(sectorBytes int64) int64 {
	return p.StartBytes(sectorBytes) + p.SizeBytes
}

// Extent is a run of bytes on a disk.
type Extent struct {
	OffsetBytes int64
	SizeBytes   int64
}

// End returns the offset just past the extent.
func (e Extent) End() int64 { return e.OffsetBytes + e.SizeBytes }

// ReadLayout reads the partition table of r, a disk of sizeBytes with
// logical sectors of sectorBytes. A disk with neither a GPT nor an MBR has
// table type none.
func ReadLayout(r io.ReaderAt, sizeBytes, sectorBytes int64) (*Layout, error) {
	if sectorBytes != 512 && sectorBytes != 4096 {
		return nil, fmt.Errorf("logical sector size %d: want 512 or 4096", sectorBytes)
	}
	l := &Layout{Table: TableNone, LogicalSectorBytes: sectorBytes, DiskSizeBytes: sizeBytes}
	if sizeBytes < 2*sectorBytes {
		return l, nil
	}
	f := &readerFile{r: r, size: sizeBytes}
	hdr, hdrErr := readGPTHeader(r, sizeBytes, sectorBytes)
	if hdrErr == nil {
		t, err := gpt.Read(f, int(sectorBytes), int(sectorBytes))
		if err != nil {
			return nil, fmt.Errorf("read GPT: %w", err)
		}
		l.Table = TableGPT
		l.DiskGUID = strings.ToUpper(t.GUID)
		l.FirstUsableLBA = hdr.firstUsableLBA
		l.LastUsableLBA = hdr.lastUsableLBA
		for _, p := range t.Partitions {
			if p == nil || p.Type == gpt.Unused {
				continue
			}
			if p.End < p.Start {
				return nil, fmt.Errorf("read GPT: partition %d ends (LBA %d) before it starts (LBA %d)", p.Index, p.End, p.Start)
			}
			l.Partitions = append(l.Partitions, Partition{
				Number:     p.Index,
				Name:       p.Name,
				Type:       strings.ToUpper(string(p.Type)),
				GUID:       strings.ToUpper(p.GUID),
				Attributes: p.Attributes,
				StartLBA:   p.Start,
				SizeBytes:  int64(p.End-p.Start+1) * sectorBytes,
			})
		}
	} else if t, err := mbr.Read(f, int(sectorBytes), int(sectorBytes)); err == nil {
		l.Table = TableMBR
		for _, p := range t.Partitions {
			if p == nil || p.Type == mbr.Empty || p.Size == 0 {
				continue
			}
			if p.Type == mbr.Type(0xee) {
				return nil, fmt.Errorf("read MBR: protective MBR without a valid GPT header (%v)", hdrErr)
			}
			l.Partitions = append(l.Partitions, Partition{
				Number:    p.Index,
				Type:      fmt.Sprintf("0x%02x", byte(p.Type)),
				Bootable:  p.Bootable,
				StartLBA:  uint64(p.Start),
				SizeBytes: int64(p.Size) * sectorBytes,
			})
		}
	}
	sort.Slice(l.Partitions, func(i, j int) bool { return l.Partitions[i].StartLBA < l.Partitions[j].StartLBA })
	if err := l.check(); err != nil {
		return nil, err
	}
	return l, nil
}

// check validates a layout read from a disk or a manifest.
func (l *Layout) check() error {
	s := l.LogicalSectorBytes
	if s != 512 && s != 4096 {
		return fmt.Errorf("logical sector size %d: want 512 or 4096", s)
	}
	switch l.Table {
	case TableGPT, TableMBR:
	case TableNone:
		if len(l.Partitions) != 0 {
			return errors.New("table type none with partitions")
		}
	default:
		return fmt.Errorf("unknown table type %q", l.Table)
	}
	maxSlot := 128
	if l.Table == TableMBR {
		maxSlot = 4
	}
	seen := map[int]bool{}
	var prevEnd int64
	grow := 0
	for i, p := range l.Partitions {
		if p.Number < 1 || p.Number > maxSlot {
			return fmt.Errorf("partition %d: number out of range 1-%d", p.Number, maxSlot)
		}
		if seen[p.Number] {
			return fmt.Errorf("partition %d: listed twice", p.Number)
		}
		seen[p.Number] = true
		if p.SizeBytes <= 0 || p.SizeBytes%s != 0 {
			return fmt.Errorf("partition %d: size %d is not a positive multiple of the %d-byte sector", p.Number, p.SizeBytes, s)
		}
		if p.StartLBA == 0 || p.StartLBA > 1<<50 {
			return fmt.Errorf("partition %d: start LBA %d out of range", p.Number, p.StartLBA)
		}
		if p.StartBytes(s) < prevEnd {
			return fmt.Errorf("partition %d: overlaps the partition before it or is out of order", p.Number)
		}
		if l.Table == TableGPT && p.StartLBA < l.FirstUsableLBA {
			return fmt.Errorf("partition %d: starts at LBA %d before the first usable LBA %d", p.Number, p.StartLBA, l.FirstUsableLBA)
		}
		if l.Table == TableMBR && (p.StartLBA > 0xffffffff || p.SizeBytes/s > 0xffffffff) {
			return fmt.Errorf("partition %d: beyond MBR's 32-bit sector range", p.Number)
		}
		prevEnd = p.EndBytes(s)
		if p.Grow {
			grow++
			if i != len(l.Partitions)-1 {
				return fmt.Errorf("partition %d: only the last partition may grow", p.Number)
			}
		}
	}
	if grow > 1 {
		return errors.New("more than one partition marked to grow")
	}
	return nil
}

// Validate checks a layout that came from a manifest.
func (l *Layout) Validate() error { return l.check() }

// MinDiskBytes returns the smallest disk that holds every partition of l and
// every byte in data, plus the backup GPT.
func (l *Layout) MinDiskBytes(dataEnd int64) int64 {
	end := dataEnd
	for _, p := range l.Partitions {
		end = max(end, p.EndBytes(l.LogicalSectorBytes))
	}
	if l.Table == TableGPT {
		end = max(end, gptHeadBytes(l.LogicalSectorBytes)) + gptTailBytes(l.LogicalSectorBytes)
	}
	return roundUp(end, l.LogicalSectorBytes)
}

// gptTailBytes is what go-diskfs puts after the last usable LBA: the backup
// entry array (128 entries of 128 bytes) and the backup header.
func gptTailBytes(sectorBytes int64) int64 {
	return 128*128 + sectorBytes
}

// gptHeadBytes is the primary side: protective MBR, header and entry array.
func gptHeadBytes(sectorBytes int64) int64 {
	return 2*sectorBytes + 128*128
}

func roundUp(n, m int64) int64 { return (n + m - 1) / m * m }

// TableExtents returns the parts of a disk of sizeBytes that the partition
// table owns (and that image data must not cover): for MBR and GPT, bytes
// 446-511 of sector 0; for GPT also the primary header and entries and the
// backup entries and header of the source.
func (l *Layout) TableExtents(sizeBytes int64) []Extent {
	s := l.LogicalSectorBytes
	switch l.Table {
	case TableMBR:
		return []Extent{{BootCodeBytes, 512 - BootCodeBytes}}
	case TableGPT:
		head := Extent{BootCodeBytes, int64(l.FirstUsableLBA)*s - BootCodeBytes}
		tailStart := int64(l.LastUsableLBA+1) * s
		return []Extent{head, {tailStart, sizeBytes - tailStart}}
	}
	return nil
}

type gptHeader struct {
	firstUsableLBA, lastUsableLBA uint64
}

// readGPTHeader reads the fields go-diskfs keeps private.
func readGPTHeader(r io.ReaderAt, sizeBytes, sectorBytes int64) (gptHeader, error) {
	b := make([]byte, 92)
	if _, err := r.ReadAt(b, sectorBytes); err != nil {
		return gptHeader{}, fmt.Errorf("read GPT header: %w", err)
	}
	if string(b[0:8]) != "EFI PART" {
		return gptHeader{}, errors.New("no GPT signature")
	}
	h := gptHeader{
		firstUsableLBA: binary.LittleEndian.Uint64(b[40:48]),
		lastUsableLBA:  binary.LittleEndian.Uint64(b[48:56]),
	}
	sectors := uint64(sizeBytes / sectorBytes)
	if h.firstUsableLBA < 2 || h.lastUsableLBA < h.firstUsableLBA || h.lastUsableLBA >= sectors {
		return gptHeader{}, fmt.Errorf("GPT header: usable LBAs %d-%d make no sense on a disk of %d sectors", h.firstUsableLBA, h.lastUsableLBA, sectors)
	}
	// Bound what go-diskfs will read: the entry array must be of sane
	// size and lie before the first usable LBA.
	entriesLBA := binary.LittleEndian.Uint64(b[72:80])
	count := uint64(binary.LittleEndian.Uint32(b[80:84]))
	entryBytes := uint64(binary.LittleEndian.Uint32(b[84:88]))
	if entryBytes < 128 || entryBytes > 1024 || entryBytes%128 != 0 {
		return gptHeader{}, fmt.Errorf("GPT header: partition entry size %d", entryBytes)
	}
	if count == 0 || count*entryBytes > gptEntryArrayMaxBytes {
		return gptHeader{}, fmt.Errorf("GPT header: %d entries of %d bytes", count, entryBytes)
	}
	arraySectors := (count*entryBytes + uint64(sectorBytes) - 1) / uint64(sectorBytes)
	if entriesLBA < 2 || entriesLBA+arraySectors > h.firstUsableLBA {
		return gptHeader{}, fmt.Errorf("GPT header: entry array at LBA %d (%d sectors) overlaps the usable area at %d", entriesLBA, arraySectors, h.firstUsableLBA)
	}
	return h, nil
}

// readerFile adapts an io.ReaderAt to go-diskfs's backend.File.
type readerFile struct {
	r    io.ReaderAt
	size int64
	off  int64
}

func (f *readerFile) ReadAt(b []byte, off int64) (int, error) { return f.r.ReadAt(b, off) }
func (f *readerFile) Read(b []byte) (int, error) {
	n, err := f.r.ReadAt(b, f.off)
	f.off += int64(n)
	return n, err
}
func (f *readerFile) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		f.off = off
	case io.SeekCurrent:
		f.off += off
	case io.SeekEnd:
		f.off = f.size + off
	}
	return f.off, nil
}
func (f *readerFile) Close() error               { return nil }
func (f *readerFile) Stat() (os.FileInfo, error) { return nil, errors.New("stat not supported") }

// Type returns the table type.
func (l *Layout) Type() string { return l.Table }

// Find returns the partition with number n.
func (l *Layout) Find(n int) (Partition, bool) {
	for _, p := range l.Partitions {
		if p.Number == n {
			return p, true
		}
	}
	return Partition{}, false
}
