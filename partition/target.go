package partition

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"
	"golang.org/x/sys/unix"
)

// Problems a target can have. Check them with errors.Is.
var (
	ErrTooSmall   = errors.New("target is too small")
	ErrSectorSize = errors.New("target's logical sector size differs from the image's")
	ErrMounted    = errors.New("target is in use (mounted, swap or held by another device)")
	ErrBootDevice = errors.New("target is the device the system booted from")
	ErrNotADisk   = errors.New("target is neither a block device nor a regular file")
)

// TargetError says which check a target failed.
type TargetError struct {
	Path   string
	Err    error  // one of the Err* sentinels
	Detail string // what was found
}

func (e *TargetError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("target %s: %v", e.Path, e.Err)
	}
	return fmt.Sprintf("target %s: %v: %s", e.Path, e.Err, e.Detail)
}

func (e *TargetError) Unwrap() error { return e.Err }

// Requirements is what an image needs of its target.
type Requirements struct {
	MinSizeBytes       int64
	LogicalSectorBytes int64
	// CreateSizeBytes is the size of a missing target file when it is made.
	CreateSizeBytes int64
}

// TargetOptions adjusts the checks.
type TargetOptions struct {
	// BootDevices are extra devices that must never be written (for
	// example the appliance's USB stick); the disk holding / always is.
	BootDevices []string
	// Mountinfo is the path of the mount table (default /proc/self/mountinfo).
	Mountinfo string
}

// Target is a checked, open target disk.
type Target struct {
	Path        string
	File        *os.File
	SizeBytes   int64
	SectorBytes int64
	IsDevice    bool
	// Created is true when the target file did not exist and was made.
	Created bool
}

type targetInfo struct {
	exists, device bool
	sizeBytes      int64
	sectorBytes    int64
	rdev           uint64
}

func inspect(path string, req Requirements, opts TargetOptions) (targetInfo, error) {
	var ti targetInfo
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		if req.CreateSizeBytes < req.MinSizeBytes {
			return ti, &TargetError{path, ErrTooSmall, "cannot create"}
		}
		return ti, nil
	}
	if err != nil {
		return ti, fmt.Errorf("target %s: %w", path, err)
	}
	ti.exists = true
	switch {
	case st.Mode().IsRegular():
		ti.sizeBytes = st.Size()
		ti.sectorBytes = req.LogicalSectorBytes
	case st.Mode()&fs.ModeDevice != 0 && st.Mode()&fs.ModeCharDevice == 0:
		ti.device = true
		var sys unix.Stat_t
		if err := unix.Stat(path, &sys); err != nil {
			return ti, fmt.Errorf("target %s: %w", path, err)
		}
		ti.rdev = sys.Rdev
		f, err := os.Open(path)
		if err != nil {
			return ti, fmt.Errorf("target %s: %w", path, err)
		}
		defer f.Close()
		size, err := unix.IoctlGetUint64(int(f.Fd()), unix.BLKGETSIZE64)
		if err != nil {
			return ti, fmt.Errorf("target %s: size: %w", path, err)
		}
		ssz, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET)
		if err != nil {
			return ti, fmt.Errorf("target %s: sector size: %w", path, err)
		}
		ti.sizeBytes, ti.sectorBytes = int64(size), int64(ssz)
	default:
		return ti, &TargetError{path, ErrNotADisk, st.Mode().String()}
	}
	if ti.device {
		if err := checkInUse(path, ti.rdev, opts); err != nil {
			return ti, err
		}
	}
	if ti.sectorBytes != req.LogicalSectorBytes {
		return ti, &TargetError{path, ErrSectorSize, fmt.Sprintf("target has %d-byte sectors, image needs %d", ti.sectorBytes, req.LogicalSectorBytes)}
	}
	if ti.sizeBytes < req.MinSizeBytes {
		return ti, &TargetError{path, ErrTooSmall, fmt.Sprintf("%d bytes, image needs at least %d", ti.sizeBytes, req.MinSizeBytes)}
	}
	return ti, nil
}

// OpenTarget checks path against req and opens it for writing. Nothing is
// written to an existing target; a missing file is created (sparse) at
// req.CreateSizeBytes. A block device is opened O_EXCL, which the kernel
// refuses while the device or one of its partitions is mounted.
func OpenTarget(path string, req Requirements, opts TargetOptions) (*Target, error) {
	ti, err := inspect(path, req, opts)
	if err != nil {
		return nil, err
	}
	t := &Target{Path: path, SectorBytes: req.LogicalSectorBytes, IsDevice: ti.device}
	if !ti.exists {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return nil, fmt.Errorf("create target %s: %w", path, err)
		}
		if err := f.Truncate(req.CreateSizeBytes); err != nil {
			f.Close()
			os.Remove(path)
			return nil, fmt.Errorf("create target %s: %w", path, err)
		}
		t.File, t.SizeBytes, t.Created = f, req.CreateSizeBytes, true
		return t, nil
	}
	flags := os.O_RDWR
	if ti.device {
		flags |= unix.O_EXCL
	}
	f, err := os.OpenFile(path, flags, 0)
	if errors.Is(err, unix.EBUSY) {
		return nil, &TargetError{path, ErrMounted, "the kernel refused exclusive access"}
	}
	if err != nil {
		return nil, fmt.Errorf("open target %s: %w", path, err)
	}
	t.File, t.SizeBytes, t.SectorBytes = f, ti.sizeBytes, ti.sectorBytes
	return t, nil
}

// Close closes the target.
func (t *Target) Close() error { return t.File.Close() }

// Wipe zeroes the partition-table areas at both ends of the target, so that
// a half-written target has no table that points at half-written data.
func (t *Target) Wipe() error {
	n := min(int64(64<<10), t.SizeBytes/2)
	zero := make([]byte, n)
	if _, err := t.File.WriteAt(zero, 0); err != nil {
		return fmt.Errorf("wipe start of %s: %w", t.Path, err)
	}
	if _, err := t.File.WriteAt(zero, t.SizeBytes-n); err != nil {
		return fmt.Errorf("wipe end of %s: %w", t.Path, err)
	}
	if err := t.File.Sync(); err != nil {
		return fmt.Errorf("wipe %s: sync: %w", t.Path, err)
	}
	return nil
}

// Zero makes the extent read as zeros: it punches a hole in a file and
// issues BLKZEROOUT on a block device; where neither works it writes zeros.
func (t *Target) Zero(e Extent) error {
	if e.SizeBytes <= 0 {
		return nil
	}
	if t.IsDevice {
		r := [2]uint64{uint64(e.OffsetBytes), uint64(e.SizeBytes)}
		if e.OffsetBytes%512 == 0 && e.SizeBytes%512 == 0 {
			if err := ioctlRange(t.File, unix.BLKZEROOUT, &r); err == nil {
				return nil
			}
		}
	} else if err := unix.Fallocate(int(t.File.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, e.OffsetBytes, e.SizeBytes); err == nil {
		return nil
	}
	buf := make([]byte, min(e.SizeBytes, 1<<20))
	for off := e.OffsetBytes; off < e.End(); off += int64(len(buf)) {
		n := min(int64(len(buf)), e.End()-off)
		if _, err := t.File.WriteAt(buf[:n], off); err != nil {
			return fmt.Errorf("zero %s at %d: %w", t.Path, off, err)
		}
	}
	return nil
}

// Discard tells a block device that the extent's contents are no longer
// needed (BLKDISCARD), and reports whether it did. It is best effort: on a
// regular file, or a device that cannot discard, the extent is left as it
// is. What a discarded extent reads as afterwards is the device's choice.
func (t *Target) Discard(e Extent) bool {
	if !t.IsDevice || e.SizeBytes <= 0 || e.OffsetBytes%512 != 0 || e.SizeBytes%512 != 0 {
		return false
	}
	r := [2]uint64{uint64(e.OffsetBytes), uint64(e.SizeBytes)}
	return ioctlRange(t.File, unix.BLKDISCARD, &r) == nil
}

// WriteTable writes l's partition table to the target with go-diskfs, fitted
// to the target's size (the growing partition stretched to the end, the GPT
// backup at the real end of the disk), then flushes the target.
func (t *Target) WriteTable(l *Layout) error {
	if err := WriteTable(t.File, t.SizeBytes, l); err != nil {
		return fmt.Errorf("target %s: %w", t.Path, err)
	}
	if err := t.File.Sync(); err != nil {
		return fmt.Errorf("target %s: sync: %w", t.Path, err)
	}
	if t.IsDevice {
		// Ask the kernel to re-read the table; a failure only means the
		// kernel's view is stale until the next boot.
		if err := unix.IoctlSetInt(int(t.File.Fd()), unix.BLKRRPART, 0); err != nil {
			slog.Warn("re-read partition table", "target", t.Path, "err", err)
		}
	}
	return nil
}

// alignBytes is the alignment of a grown partition's end.
const alignBytes = 1 << 20

// WriteTable writes l's table to f, a disk of sizeBytes.
func WriteTable(f *os.File, sizeBytes int64, l *Layout) error {
	s := l.LogicalSectorBytes
	switch l.Table {
	case TableNone:
		return nil
	case TableGPT:
		// go-diskfs: 128 entries of 128 bytes on each side.
		lastUsable := uint64((sizeBytes-gptTailBytes(s))/s) - 1
		tbl := &gpt.Table{
			LogicalSectorSize:  int(s),
			PhysicalSectorSize: int(s),
			GUID:               l.DiskGUID,
			ProtectiveMBR:      true,
		}
		for _, p := range l.Partitions {
			end := p.StartLBA + uint64(p.SizeBytes/s) - 1
			if p.Grow {
				// Stretch to the last usable LBA, ending on a 1 MiB
				// boundary when that still leaves the partition no smaller.
				grown := lastUsable
				step := uint64(alignBytes / s)
				if aligned := (lastUsable + 1) / step * step; aligned > end+1 {
					grown = aligned - 1
				}
				end = max(end, grown)
			}
			if end > lastUsable {
				return fmt.Errorf("write GPT: partition %d ends at LBA %d past the last usable LBA %d", p.Number, end, lastUsable)
			}
			tbl.Partitions = append(tbl.Partitions, &gpt.Partition{
				Index:      p.Number,
				Start:      p.StartLBA,
				End:        end,
				Size:       (end - p.StartLBA + 1) * uint64(s),
				Type:       gpt.Type(p.Type),
				Name:       p.Name,
				GUID:       p.GUID,
				Attributes: p.Attributes,
			})
		}
		if err := tbl.Write(f, sizeBytes); err != nil {
			return fmt.Errorf("write GPT: %w", err)
		}
		return nil
	case TableMBR:
		tbl := &mbr.Table{LogicalSectorSize: int(s), PhysicalSectorSize: int(s)}
		slots := make([]*mbr.Partition, 4)
		for i := range slots {
			slots[i] = &mbr.Partition{Index: i + 1, Type: mbr.Empty}
		}
		for _, p := range l.Partitions {
			var typ byte
			if _, err := fmt.Sscanf(p.Type, "0x%02x", &typ); err != nil {
				return fmt.Errorf("write MBR: partition %d: type %q: %w", p.Number, p.Type, err)
			}
			sectors := uint64(p.SizeBytes / s)
			if p.Grow {
				sectors = min(uint64(sizeBytes/s)-p.StartLBA, 0xffffffff)
			}
			mp := &mbr.Partition{
				Index:    p.Number,
				Bootable: p.Bootable,
				Type:     mbr.Type(typ),
				Start:    uint32(p.StartLBA),
				Size:     uint32(sectors),
			}
			mp.StartCylinder, mp.StartHead, mp.StartSector = chs(p.StartLBA)
			mp.EndCylinder, mp.EndHead, mp.EndSector = chs(p.StartLBA + sectors - 1)
			slots[p.Number-1] = mp
		}
		tbl.Partitions = slots
		if err := tbl.Write(f, sizeBytes); err != nil {
			return fmt.Errorf("write MBR: %w", err)
		}
		return nil
	}
	return fmt.Errorf("write table: unknown type %q", l.Table)
}

// checkInUse refuses a block device that is mounted, used as swap, held by
// another device (LVM, md, dm) or that holds the root filesystem or one of
// opts.BootDevices.
func checkInUse(path string, rdev uint64, opts TargetOptions) error {
	disk := devKey(rdev)
	// The device and its partitions.
	devs := map[string]bool{disk: true}
	sysDir := "/sys/dev/block/" + disk
	if ents, err := os.ReadDir(sysDir); err == nil {
		for _, e := range ents {
			if b, err := os.ReadFile(filepath.Join(sysDir, e.Name(), "dev")); err == nil {
				devs[strings.TrimSpace(string(b))] = true
			}
			if e.Name() == "holders" {
				if hs, _ := os.ReadDir(filepath.Join(sysDir, "holders")); len(hs) > 0 {
					return &TargetError{path, ErrMounted, "held by " + hs[0].Name()}
				}
			}
		}
	}
	mi := opts.Mountinfo
	if mi == "" {
		mi = "/proc/self/mountinfo"
	}
	if f, err := os.Open(mi); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 5 {
				continue
			}
			if devs[fields[2]] {
				if fields[4] == "/" {
					return &TargetError{path, ErrBootDevice, "it holds the root filesystem"}
				}
				return &TargetError{path, ErrMounted, "mounted on " + fields[4]}
			}
		}
	}
	if b, err := os.ReadFile("/proc/swaps"); err == nil {
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) == 0 {
				continue
			}
			var st unix.Stat_t
			if unix.Stat(fields[0], &st) == nil && devs[devKey(st.Rdev)] {
				return &TargetError{path, ErrMounted, "used as swap (" + fields[0] + ")"}
			}
		}
	}
	for _, b := range opts.BootDevices {
		var st unix.Stat_t
		if unix.Stat(b, &st) == nil && devs[devKey(st.Rdev)] {
			return &TargetError{path, ErrBootDevice, "it is the boot medium " + b}
		}
	}
	return nil
}

func devKey(rdev uint64) string {
	return fmt.Sprintf("%d:%d", unix.Major(rdev), unix.Minor(rdev))
}

// chs encodes an LBA as the MBR's cylinder, head and sector bytes with the
// 255-head, 63-sector geometry that fdisk and sfdisk use; LBAs past
// cylinder 1023 get the customary 1023/254/63.
func chs(lba uint64) (cyl, head, sector byte) {
	const heads, sectors = 255, 63
	c := lba / (heads * sectors)
	h := (lba / sectors) % heads
	s := lba%sectors + 1
	if c > 1023 {
		c, h, s = 1023, 254, 63
	}
	return byte(c), byte(h), byte(s) | byte((c>>8)<<6)
}
