// esp.go finds a disk's EFI system partition and reads what boots from it.
package efiboot

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"
)

var (
	// ErrNoESP means the disk has no EFI system partition.
	ErrNoESP = errors.New("no EFI system partition")
	// ErrAmbiguous means there is more than one ESP, or more than one
	// boot loader that could be the one: shoal does not guess.
	ErrAmbiguous = errors.New("ambiguous")
	// ErrFilesystem means go-diskfs failed with a panic reading a
	// filesystem: it trusts on-disk fields, and a disk may hold anything.
	ErrFilesystem = errors.New("damaged filesystem")
)

// ESP is a disk's EFI system partition.
type ESP struct {
	Disk        string
	Number      uint32 // the partition's number in its table
	Table       string // "gpt" or "mbr"
	StartLBA    uint64 // in the disk's logical blocks
	SizeLBA     uint64
	SectorBytes int64
	// GUID is the GPT partition's unique GUID (lower case); MBRSignature
	// the MBR disk signature.
	GUID         string
	MBRSignature uint32
}

// HardDrive returns the HD() node that finds e.
func (e ESP) HardDrive() (HardDrive, error) {
	h := HardDrive{PartitionNumber: e.Number, StartLBA: e.StartLBA, SizeLBA: e.SizeLBA}
	switch e.Table {
	case "gpt":
		sig, err := GUIDToEFI(e.GUID)
		if err != nil {
			return h, fmt.Errorf("%s partition %d: %w", e.Disk, e.Number, err)
		}
		h.Signature, h.Format, h.SignatureType = sig, FormatGPT, SignatureGUID
	case "mbr":
		h.Signature[0], h.Signature[1], h.Signature[2], h.Signature[3] = byte(e.MBRSignature), byte(e.MBRSignature>>8), byte(e.MBRSignature>>16), byte(e.MBRSignature>>24)
		h.Format, h.SignatureType = FormatMBR, SignatureMBR
	default:
		return h, fmt.Errorf("%s: partition table %q", e.Disk, e.Table)
	}
	return h, nil
}

// Layout is what Inspect found on a disk: its ESP and either the loader at
// the removable path or the vendor loader an entry must point at.
type Layout struct {
	ESP ESP
	// Removable is the removable path as it is spelled on the ESP
	// (\EFI\BOOT\BOOTX64.EFI), "" when there is none.
	Removable string
	// Loader is the vendor loader, when Removable is "".
	Loader Loader
}

// Inspect reads the disk (or disk image) at path in userspace: its
// partition table, its one EFI system partition, and on it the removable
// path or else the vendor loader (ChooseLoader). A panic in go-diskfs is
// an error wrapping ErrFilesystem.
func Inspect(path string) (l Layout, err error) {
	err = guard(path, func() error {
		l, err = inspect(path)
		return err
	})
	return l, err
}

func inspect(path string) (Layout, error) {
	d, err := diskfs.Open(path, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return Layout{}, fmt.Errorf("open %s: %w", path, err)
	}
	defer d.Close()
	esp, err := findESP(d, path)
	if err != nil {
		return Layout{}, err
	}
	l := Layout{ESP: esp}
	fsys, err := d.GetFilesystem(int(esp.Number))
	if err != nil {
		return l, fmt.Errorf("%s partition %d (EFI system partition): no FAT filesystem: %w", path, esp.Number, err)
	}
	if l.Removable = Removable(fsys); l.Removable != "" {
		return l, nil
	}
	if l.Loader, err = ChooseLoader(fsys); err != nil {
		return l, fmt.Errorf("%s partition %d: %w", path, esp.Number, err)
	}
	return l, nil
}

// findESP returns the disk's only EFI system partition.
func findESP(d *disk.Disk, path string) (ESP, error) {
	t, err := d.GetPartitionTable()
	if err != nil {
		return ESP{}, fmt.Errorf("%w on %s: no partition table: %v", ErrNoESP, path, err)
	}
	var found []ESP
	switch t := t.(type) {
	case *gpt.Table:
		for _, p := range t.Partitions {
			if strings.EqualFold(string(p.Type), string(gpt.EFISystemPartition)) {
				found = append(found, ESP{Disk: path, Number: uint32(p.Index), Table: "gpt", StartLBA: p.Start,
					SizeLBA: p.End - p.Start + 1, SectorBytes: d.LogicalBlocksize, GUID: strings.ToLower(p.GUID)})
			}
		}
	case *mbr.Table:
		sig, err := strconv.ParseUint(t.UUID(), 16, 32)
		if err != nil {
			return ESP{}, fmt.Errorf("%s: MBR disk signature %q: %w", path, t.UUID(), err)
		}
		for _, p := range t.Partitions {
			if p.Type == mbr.EFISystem && p.Size > 0 {
				found = append(found, ESP{Disk: path, Number: uint32(p.Index), Table: "mbr", StartLBA: uint64(p.Start),
					SizeLBA: uint64(p.Size), SectorBytes: d.LogicalBlocksize, MBRSignature: uint32(sig)})
			}
		}
	default:
		return ESP{}, fmt.Errorf("%w on %s: partition table of type %s", ErrNoESP, path, t.Type())
	}
	switch len(found) {
	case 0:
		return ESP{}, fmt.Errorf("%w on %s", ErrNoESP, path)
	case 1:
		return found[0], nil
	}
	var nums []string
	for _, e := range found {
		nums = append(nums, strconv.Itoa(int(e.Number)))
	}
	return ESP{}, fmt.Errorf("%w: %s has %d EFI system partitions (%s)", ErrAmbiguous, path, len(found), strings.Join(nums, ", "))
}

// guard runs f, turning a panic into an error that wraps ErrFilesystem.
func guard(what string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: %w: %v", what, ErrFilesystem, r)
		}
	}()
	return f()
}

// lookup returns the name of the entry of dir (a path in fsys) that equals
// name case-insensitively, as FAT does, and whether it is a directory; ok
// is false when there is none or dir cannot be read (err).
func lookup(fsys fs.FS, dir, name string) (found string, isDir, ok bool, err error) {
	ents, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return "", false, false, err
	}
	for _, e := range ents {
		if strings.EqualFold(e.Name(), name) {
			return e.Name(), e.IsDir(), true, nil
		}
	}
	return "", false, false, nil
}
