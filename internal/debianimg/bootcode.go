// bootcode.go patches GRUB's i386-pc boot.img and core.img the way grub-bios-setup does for a core embedded in a GPT BIOS boot partition.
package debianimg

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Offsets in GRUB 2.06's boot.img (include/grub/i386/pc/boot.h) and in the
// first sector of core.img (diskboot.img; the last blocklist entry of
// struct grub_pc_bios_boot_blocklist {u64 start; u16 len; u16 segment}).
const (
	sectorBytes = 512

	bootBPBStart     = 0x03  // GRUB_BOOT_MACHINE_BPB_START
	bootBPBEnd       = 0x5a  // GRUB_BOOT_MACHINE_BPB_END
	bootKernelSector = 0x5c  // GRUB_BOOT_MACHINE_KERNEL_SECTOR, le64
	bootDrive        = 0x64  // GRUB_BOOT_MACHINE_BOOT_DRIVE
	bootDriveCheck   = 0x66  // GRUB_BOOT_MACHINE_DRIVE_CHECK: a 2-byte jmp
	bootNTMagic      = 0x1b8 // GRUB_BOOT_MACHINE_WINDOWS_NT_MAGIC
	bootPartEnd      = 0x1fe // GRUB_BOOT_MACHINE_PART_END
	bootSignature    = 0x1fe // 0x55 0xaa

	blocklistBytes   = 12                           // GRUB_BOOT_MACHINE_LIST_SIZE
	blocklistStart   = sectorBytes - blocklistBytes // 0x1f4, le64
	blocklistLen     = blocklistStart + 8           // 0x1fc, le16
	blocklistSegment = blocklistStart + 10          // 0x1fe, le16

	// kernelSegment is GRUB_BOOT_I386_PC_KERNEL_SEG: diskboot loads the
	// rest of core.img just after its own first sector, at 0x8200.
	kernelSegment = 0x800
	// maxCoreBytes is the largest core.img that fits below 0x78000 when
	// loaded at GRUB_KERNEL_I386_PC_LINK_ADDR (0x9000), as util/setup.c
	// checks.
	maxCoreBytes = 0x78000 - 0x9000
)

// ErrBootCode means a boot.img or core.img is not what GRUB's i386-pc
// tools make.
var ErrBootCode = errors.New("not a GRUB i386-pc image")

// ErrCoreTooLarge means core.img is larger than i386-pc's limit.
var ErrCoreTooLarge = errors.New("core.img too large")

// BootFields are the fields grub-bios-setup writes into boot.img.
type BootFields struct {
	KernelSector uint64  // LBA of core.img's first sector
	BootDrive    uint8   // 0xff: use the drive the BIOS passed in DL
	DriveCheck   [2]byte // 0x90 0x90 on a hard disk (the jmp skipped)
	Signature    uint16  // 0xaa55
}

// Blocklist is one entry of core.img's first-sector blocklist: where the
// rest of core.img lies and where it is loaded.
type Blocklist struct {
	StartLBA uint64
	Sectors  uint16
	Segment  uint16
}

// DecodeBootSector reads the fields GRUB's boot.img carries in a sector.
func DecodeBootSector(b []byte) (BootFields, error) {
	if len(b) != sectorBytes {
		return BootFields{}, fmt.Errorf("boot sector of %d bytes, want %d: %w", len(b), sectorBytes, ErrBootCode)
	}
	f := BootFields{
		KernelSector: binary.LittleEndian.Uint64(b[bootKernelSector:]),
		BootDrive:    b[bootDrive],
		DriveCheck:   [2]byte{b[bootDriveCheck], b[bootDriveCheck+1]},
		Signature:    binary.LittleEndian.Uint16(b[bootSignature:]),
	}
	if f.Signature != 0xaa55 {
		return f, fmt.Errorf("boot sector signature %#04x: %w", f.Signature, ErrBootCode)
	}
	return f, nil
}

// DecodeBlocklists reads the blocklist of core.img's first sector, from the
// end backwards, up to the terminator (an entry of length 0).
func DecodeBlocklists(firstSector []byte) ([]Blocklist, error) {
	if len(firstSector) < sectorBytes {
		return nil, fmt.Errorf("core.img first sector of %d bytes: %w", len(firstSector), ErrBootCode)
	}
	var out []Blocklist
	// diskboot.img's code takes the first part of the sector; GRUB stops
	// at its terminator long before, so stop at 0x100 as a bound.
	for off := blocklistStart; off >= 0x100; off -= blocklistBytes {
		e := Blocklist{
			StartLBA: binary.LittleEndian.Uint64(firstSector[off:]),
			Sectors:  binary.LittleEndian.Uint16(firstSector[off+8:]),
			Segment:  binary.LittleEndian.Uint16(firstSector[off+10:]),
		}
		if e.Sectors == 0 {
			return out, nil
		}
		out = append(out, e)
	}
	return nil, fmt.Errorf("core.img blocklist has no terminator: %w", ErrBootCode)
}

// PatchBootImage returns the MBR for a disk whose current sector 0 is
// disk (a protective MBR written by sgdisk): GRUB's boot.img with the BPB
// area and the partition table (0x1b8..0x1fd: disk signature and the four
// entries) kept from disk, the kernel sector pointing at coreLBA, the boot
// drive 0xff and the floppy check replaced by two NOPs (a hard disk), as
// grub-bios-setup does.
func PatchBootImage(bootImg, disk []byte, coreLBA uint64) ([]byte, error) {
	if len(bootImg) != sectorBytes || len(disk) != sectorBytes {
		return nil, fmt.Errorf("boot.img of %d bytes and disk sector of %d, want %d: %w", len(bootImg), len(disk), sectorBytes, ErrBootCode)
	}
	if bootImg[bootDriveCheck] != 0xeb {
		return nil, fmt.Errorf("boot.img has %#02x at the drive check, want a short jmp (0xeb): %w", bootImg[bootDriveCheck], ErrBootCode)
	}
	if binary.LittleEndian.Uint16(bootImg[bootSignature:]) != 0xaa55 {
		return nil, fmt.Errorf("boot.img has no 0xaa55 signature: %w", ErrBootCode)
	}
	out := append([]byte(nil), bootImg...)
	copy(out[bootBPBStart:bootBPBEnd], disk[bootBPBStart:bootBPBEnd])
	copy(out[bootNTMagic:bootPartEnd], disk[bootNTMagic:bootPartEnd])
	binary.LittleEndian.PutUint64(out[bootKernelSector:], coreLBA)
	out[bootDrive] = 0xff
	out[bootDriveCheck], out[bootDriveCheck+1] = 0x90, 0x90
	return out, nil
}

// PatchCoreImage returns core.img padded to whole sectors, with its
// first-sector blocklist saying that the rest of it lies contiguously from
// coreLBA+1, loaded at segment 0x820, followed by a terminator.
func PatchCoreImage(coreImg []byte, coreLBA uint64) ([]byte, error) {
	if len(coreImg) < 2*sectorBytes {
		return nil, fmt.Errorf("core.img of %d bytes is too small: %w", len(coreImg), ErrBootCode)
	}
	if len(coreImg) > maxCoreBytes {
		return nil, fmt.Errorf("core.img of %d bytes, larger than i386-pc's limit of %d (0x78000-0x9000; build in fewer modules): %w", len(coreImg), maxCoreBytes, ErrCoreTooLarge)
	}
	// grub-mkimage leaves one default entry (start 2, the core's length):
	// check it is there, so that a different layout is not patched blindly.
	def, err := DecodeBlocklists(coreImg[:sectorBytes])
	if err != nil {
		return nil, err
	}
	if len(def) != 1 || def[0].Segment != kernelSegment+sectorBytes>>4 {
		return nil, fmt.Errorf("core.img's default blocklist is %+v, want one entry at segment %#x: %w", def, kernelSegment+sectorBytes>>4, ErrBootCode)
	}
	sectors := (len(coreImg) + sectorBytes - 1) / sectorBytes
	out := make([]byte, sectors*sectorBytes)
	copy(out, coreImg)
	binary.LittleEndian.PutUint64(out[blocklistStart:], coreLBA+1)
	binary.LittleEndian.PutUint16(out[blocklistLen:], uint16(sectors-1))
	binary.LittleEndian.PutUint16(out[blocklistSegment:], kernelSegment+sectorBytes>>4)
	// The terminator: the entry before it (towards the code) is all zeros.
	clear(out[blocklistStart-blocklistBytes : blocklistStart])
	return out, nil
}
