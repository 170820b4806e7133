// devicepath.go builds and reads the two device path nodes of a disk boot entry: HD() and File().
package efiboot

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// HardDrive partition formats and signature types (UEFI 2.10 §10.3.5.1).
const (
	FormatMBR     uint8 = 0x01
	FormatGPT     uint8 = 0x02
	SignatureMBR  uint8 = 0x01 // 32-bit MBR disk signature in the first 4 bytes
	SignatureGUID uint8 = 0x02 // the GPT partition's unique GUID
)

// hardDriveBytes is the length of a HardDrive node's data (the node is 42
// bytes with its header).
const hardDriveBytes = 38

// HardDrive is the Hard Drive media device path node: a partition, found
// by the firmware through its signature, wherever the disk is attached.
// StartLBA and SizeLBA count the disk's logical blocks.
type HardDrive struct {
	PartitionNumber uint32
	StartLBA        uint64
	SizeLBA         uint64
	Signature       [16]byte
	Format          uint8 // FormatMBR or FormatGPT
	SignatureType   uint8 // SignatureMBR or SignatureGUID
}

// Node returns h as a device path node.
func (h HardDrive) Node() Node {
	d := make([]byte, hardDriveBytes)
	binary.LittleEndian.PutUint32(d[0:4], h.PartitionNumber)
	binary.LittleEndian.PutUint64(d[4:12], h.StartLBA)
	binary.LittleEndian.PutUint64(d[12:20], h.SizeLBA)
	copy(d[20:36], h.Signature[:])
	d[36], d[37] = h.Format, h.SignatureType
	return Node{Type: TypeMedia, SubType: SubTypeHardDrive, Data: d}
}

// String shows h as the UEFI shell and efibootmgr do.
func (h HardDrive) String() string {
	switch h.SignatureType {
	case SignatureGUID:
		return fmt.Sprintf("HD(%d,GPT,%s,%#x,%#x)", h.PartitionNumber, GUIDFromEFI(h.Signature), h.StartLBA, h.SizeLBA)
	case SignatureMBR:
		return fmt.Sprintf("HD(%d,MBR,%#08x,%#x,%#x)", h.PartitionNumber, binary.LittleEndian.Uint32(h.Signature[:4]), h.StartLBA, h.SizeLBA)
	}
	return fmt.Sprintf("HD(%d,%d,%d)", h.PartitionNumber, h.Format, h.SignatureType)
}

// ParseHardDrive reads a HardDrive node; ok is false for any other node.
func ParseHardDrive(n Node) (h HardDrive, ok bool) {
	if n.Type != TypeMedia || n.SubType != SubTypeHardDrive || len(n.Data) != hardDriveBytes {
		return h, false
	}
	d := n.Data
	h.PartitionNumber = binary.LittleEndian.Uint32(d[0:4])
	h.StartLBA = binary.LittleEndian.Uint64(d[4:12])
	h.SizeLBA = binary.LittleEndian.Uint64(d[12:20])
	copy(h.Signature[:], d[20:36])
	h.Format, h.SignatureType = d[36], d[37]
	return h, true
}

// FilePathNode returns the File Path media node for path, a path in the
// partition's filesystem with backslashes (\EFI\debian\shimx64.efi).
func FilePathNode(path string) (Node, error) {
	d, err := encodeUCS2(path)
	if err != nil {
		return Node{}, fmt.Errorf("file path %q: %w", path, err)
	}
	return Node{Type: TypeMedia, SubType: SubTypeFilePath, Data: d}, nil
}

// ParseFilePath reads a File Path node; ok is false for any other node or
// one that is not a NUL-terminated UCS-2 string.
func ParseFilePath(n Node) (path string, ok bool) {
	if n.Type != TypeMedia || n.SubType != SubTypeFilePath {
		return "", false
	}
	s, used, err := decodeUCS2(n.Data)
	if err != nil || used != len(n.Data) {
		return "", false
	}
	return s, true
}

// GUIDToEFI returns a GUID (in its usual text form) as EFI stores it: the
// first three fields little-endian, the last two as written (the "mixed
// endian" of GPT entries and of HD() nodes).
func GUIDToEFI(s string) ([16]byte, error) {
	var b [16]byte
	u, err := uuid.Parse(s)
	if err != nil {
		return b, fmt.Errorf("GUID %q: %w", s, err)
	}
	copy(b[:], u[:])
	b[0], b[1], b[2], b[3] = u[3], u[2], u[1], u[0]
	b[4], b[5] = u[5], u[4]
	b[6], b[7] = u[7], u[6]
	return b, nil
}

// GUIDFromEFI is the inverse of GUIDToEFI, in lower case.
func GUIDFromEFI(b [16]byte) string {
	var u uuid.UUID
	copy(u[:], b[:])
	u[0], u[1], u[2], u[3] = b[3], b[2], b[1], b[0]
	u[4], u[5] = b[5], b[4]
	u[6], u[7] = b[7], b[6]
	return u.String()
}

// bootTarget is what a boot entry points at: its partition and the file,
// when its device path has an HD() node followed by File() nodes.
type bootTarget struct {
	hd   HardDrive
	path string
}

// targetOf finds the HD() node in o's device path (a short-form path
// starts with it, a full one has the disk's hardware path first) and joins
// the File() nodes after it.
func targetOf(o LoadOption) (bootTarget, bool) {
	for i, n := range o.FilePath {
		hd, ok := ParseHardDrive(n)
		if !ok {
			continue
		}
		var parts []string
		for _, f := range o.FilePath[i+1:] {
			p, ok := ParseFilePath(f)
			if !ok {
				break
			}
			parts = append(parts, p)
		}
		if len(parts) == 0 {
			return bootTarget{}, false
		}
		return bootTarget{hd: hd, path: strings.Join(parts, "")}, true
	}
	return bootTarget{}, false
}

// sameTarget reports whether a and b boot the same file of the same
// partition: the firmware finds a partition by its signature, so start
// and size do not matter; FAT names are case-insensitive.
func sameTarget(a, b bootTarget) bool {
	norm := func(p string) string { return strings.ToLower(strings.ReplaceAll(p, "/", `\`)) }
	return a.hd.SignatureType == b.hd.SignatureType && a.hd.Signature == b.hd.Signature &&
		a.hd.PartitionNumber == b.hd.PartitionNumber && norm(a.path) == norm(b.path)
}
