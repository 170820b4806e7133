// bootcode_test.go checks the boot.img and core.img patching against the images GRUB's own tools make.
package debianimg

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/shoal-project/shoal/internal/testdisk"
)

// realBootImg returns GRUB's boot.img (grub-pc-bin).
func realBootImg(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(GRUBPCDir, "boot.img"))
	if err != nil {
		testdisk.Missing(t, "GRUB's boot.img (grub-pc-bin; ./build.sh deps): %v", err)
	}
	return b
}

// realCoreImg makes core.img with grub-mkimage, as Build does.
func realCoreImg(t *testing.T) []byte {
	t.Helper()
	testdisk.Need(t, "grub-mkimage")
	p, err := mkCoreImage(context.Background(), t.TempDir(), GRUBPCDir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// protectiveMBR lays out a small GPT disk with sgdisk and returns its
// sector 0.
func protectiveMBR(t *testing.T) []byte {
	t.Helper()
	testdisk.Need(t, "sgdisk")
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := truncate(p, 8<<20); err != nil {
		t.Fatal(err)
	}
	testdisk.Run(t, "sgdisk", "-n1:2048:4095", "-t1:ef02", "-n2:0:0", "-t2:8300", p)
	return testdisk.Bytes(t, p, 0, sectorBytes)
}

func TestPatchBootImage(t *testing.T) {
	boot := realBootImg(t)
	pmbr := protectiveMBR(t)
	for _, tc := range []struct {
		name    string
		coreLBA uint64
	}{{"bios boot partition", BIOSBootStartLBA}, {"after the GPT", 34}, {"far", 1 << 40}} {
		t.Run(tc.name, func(t *testing.T) {
			mbr, err := PatchBootImage(boot, pmbr, tc.coreLBA)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeBootSector(mbr)
			if err != nil {
				t.Fatal(err)
			}
			want := BootFields{KernelSector: tc.coreLBA, BootDrive: 0xff, DriveCheck: [2]byte{0x90, 0x90}, Signature: 0xaa55}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("boot sector fields (-want +got):\n%s", d)
			}
			// The partition table and disk signature are the disk's.
			if !bytes.Equal(mbr[bootNTMagic:bootPartEnd], pmbr[bootNTMagic:bootPartEnd]) {
				t.Error("partition table bytes 0x1b8..0x1fd differ from the protective MBR's")
			}
			if mbr[0x1be+4] != 0xee {
				t.Errorf("first partition entry type %#x, want 0xee (protective)", mbr[0x1be+4])
			}
			// Everything else is GRUB's code, unchanged.
			for i := range mbr {
				patched := i >= bootBPBStart && i < bootBPBEnd || i >= bootKernelSector && i < bootKernelSector+8 ||
					i == bootDrive || i == bootDriveCheck || i == bootDriveCheck+1 || i >= bootNTMagic && i < bootPartEnd
				if !patched && mbr[i] != boot[i] {
					t.Errorf("byte %#x: %#02x, boot.img has %#02x", i, mbr[i], boot[i])
				}
			}
		})
	}
}

func TestPatchBootImageRefuses(t *testing.T) {
	boot := realBootImg(t)
	disk := make([]byte, sectorBytes)
	noJmp := append([]byte(nil), boot...)
	noJmp[bootDriveCheck] = 0x90
	noSig := append([]byte(nil), boot...)
	noSig[bootSignature] = 0
	for _, tc := range []struct {
		name       string
		boot, disk []byte
	}{
		{"short boot.img", boot[:400], disk},
		{"short disk sector", boot, disk[:100]},
		{"drive check already patched", noJmp, disk},
		{"no signature", noSig, disk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := PatchBootImage(tc.boot, tc.disk, 2048); !errors.Is(err, ErrBootCode) {
				t.Fatalf("got %v, want ErrBootCode", err)
			}
		})
	}
}

func TestPatchCoreImage(t *testing.T) {
	core := realCoreImg(t)
	if len(core) > maxCoreBytes {
		t.Fatalf("grub-mkimage made a core.img of %d bytes, over i386-pc's %d", len(core), maxCoreBytes)
	}
	sectors := (len(core) + sectorBytes - 1) / sectorBytes
	for _, coreLBA := range []uint64{BIOSBootStartLBA, 34} {
		out, err := PatchCoreImage(core, coreLBA)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != sectors*sectorBytes {
			t.Fatalf("patched core.img is %d bytes, want %d sectors", len(out), sectors)
		}
		got, err := DecodeBlocklists(out[:sectorBytes])
		if err != nil {
			t.Fatal(err)
		}
		want := []Blocklist{{StartLBA: coreLBA + 1, Sectors: uint16(sectors - 1), Segment: 0x820}}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("blocklist (-want +got):\n%s", d)
		}
		if binary.LittleEndian.Uint64(out[0x1f4:]) != coreLBA+1 || binary.LittleEndian.Uint16(out[0x1fc:]) != uint16(sectors-1) ||
			binary.LittleEndian.Uint16(out[0x1fe:]) != 0x820 {
			t.Errorf("blocklist bytes at 0x1f4..0x1ff: % x", out[0x1f4:0x200])
		}
		if !bytes.Equal(out[:blocklistStart-blocklistBytes], core[:blocklistStart-blocklistBytes]) {
			t.Error("diskboot code before the blocklists changed")
		}
		if !bytes.Equal(out[sectorBytes:len(core)], core[sectorBytes:]) {
			t.Error("core.img after its first sector changed")
		}
		if !bytes.Equal(out[len(core):], make([]byte, len(out)-len(core))) {
			t.Error("padding is not zeros")
		}
	}
}

func TestPatchCoreImageRefuses(t *testing.T) {
	core := realCoreImg(t)
	noDefault := append([]byte(nil), core...)
	binary.LittleEndian.PutUint16(noDefault[blocklistSegment:], 0x1234)
	for _, tc := range []struct {
		name string
		core []byte
		want error
	}{
		{"tiny", core[:600], ErrBootCode},
		{"unexpected blocklist", noDefault, ErrBootCode},
		{"over the i386-pc limit", append(append([]byte(nil), core...), make([]byte, maxCoreBytes)...), ErrCoreTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := PatchCoreImage(tc.core, 2048); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func FuzzDecodeBootSector(f *testing.F) {
	sig := make([]byte, sectorBytes)
	sig[510], sig[511] = 0x55, 0xaa
	f.Add(sig)
	f.Add(make([]byte, sectorBytes))
	f.Add([]byte{0xeb, 0x63, 0x90})
	if b, err := os.ReadFile(filepath.Join(GRUBPCDir, "boot.img")); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeBootSector(b)
		if err != nil {
			return
		}
		if len(b) != sectorBytes || got.Signature != 0xaa55 {
			t.Fatalf("accepted %d bytes with signature %#x", len(b), got.Signature)
		}
		if got.KernelSector != binary.LittleEndian.Uint64(b[bootKernelSector:]) {
			t.Fatal("kernel sector misread")
		}
	})
}

func FuzzDecodeBlocklists(f *testing.F) {
	one := make([]byte, sectorBytes)
	binary.LittleEndian.PutUint64(one[0x1f4:], 2049)
	binary.LittleEndian.PutUint16(one[0x1fc:], 285)
	binary.LittleEndian.PutUint16(one[0x1fe:], 0x820)
	f.Add(one)
	f.Add(make([]byte, sectorBytes))
	f.Add(bytes.Repeat([]byte{0xff}, sectorBytes))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeBlocklists(b)
		if err != nil {
			return
		}
		for _, e := range got {
			if e.Sectors == 0 {
				t.Fatalf("returned a terminator as an entry: %+v", got)
			}
		}
		if len(got) > (blocklistStart-0x100)/blocklistBytes+1 {
			t.Fatalf("%d entries", len(got))
		}
	})
}
