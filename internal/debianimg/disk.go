// disk.go lays out the GPT disk and writes the BIOS boot code, the ESP and the root filesystem into it.
package debianimg

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

// The disk's layout (512-byte sectors). The root partition ends at the
// last usable LBA, so that `shoal image create` stretches it on a larger
// target disk.
const (
	DiskBytes = 512 << 20

	BIOSBootStartLBA = 2048
	BIOSBootSectors  = 2048 // 1 MiB: GRUB's core.img
	ESPStartLBA      = BIOSBootStartLBA + BIOSBootSectors
	ESPSectors       = 40 << 20 / sectorBytes // FAT32 needs at least ~33 MiB
	RootStartLBA     = ESPStartLBA + ESPSectors

	// gptSectors is what a GPT takes at each end of the disk: the
	// header and 128 entries of 128 bytes (the backup has no MBR).
	gptSectors = 33
	// RootSectors fills the disk up to the backup GPT.
	RootSectors = DiskBytes/sectorBytes - gptSectors - 1 - RootStartLBA + 1
)

// Fixed GUIDs, so that two builds of one recipe lay out the same disk.
const (
	diskGUID     = "5b0a1000-0000-4000-8000-000000000000"
	biosBootGUID = "5b0a1000-0000-4000-8000-000000000001"
	espGUID      = "5b0a1000-0000-4000-8000-000000000002"
	rootPartGUID = "5b0a1000-0000-4000-8000-000000000003"
	espVolumeID  = "5b0ae5c0"
	espLabel     = "SHOAL-ESP"
)

// sgdiskArgs lay out path.
func sgdiskArgs(path string) []string {
	part := func(n int, start, sectors int64, typ, name, guid string) []string {
		end := strconv.FormatInt(start+sectors-1, 10)
		return []string{"-n", fmt.Sprintf("%d:%d:%s", n, start, end), "-t", fmt.Sprintf("%d:%s", n, typ),
			"-c", fmt.Sprintf("%d:%s", n, name), "-u", fmt.Sprintf("%d:%s", n, guid)}
	}
	args := []string{"-U", diskGUID}
	args = append(args, part(1, BIOSBootStartLBA, BIOSBootSectors, "ef02", "BIOS boot", biosBootGUID)...)
	args = append(args, part(2, ESPStartLBA, ESPSectors, "ef00", "EFI system", espGUID)...)
	args = append(args, part(3, RootStartLBA, RootSectors, "8300", "root", rootPartGUID)...)
	return append(args, path)
}

// efiPaths is where each variant puts GRUB on the ESP: the removable path
// that any UEFI firmware boots, or only the vendor path that needs a
// firmware boot entry.
func efiPaths(v Variant) (dirs []string, file string) {
	if v == VendorOnly {
		return []string{"::/EFI", "::/EFI/debian"}, "::/EFI/debian/grubx64.efi"
	}
	return []string{"::/EFI", "::/EFI/BOOT"}, "::/EFI/BOOT/BOOTX64.EFI"
}

// mkESP makes the FAT EFI system partition holding efiImage at path.
func mkESP(ctx context.Context, path, efiImage string, v Variant) error {
	if err := truncate(path, ESPSectors*sectorBytes); err != nil {
		return err
	}
	if err := run(ctx, "mkfs.vfat", "-F", "32", "-n", espLabel, "-i", espVolumeID, path); err != nil {
		return err
	}
	dirs, file := efiPaths(v)
	if err := run(ctx, "mmd", append([]string{"-i", path}, dirs...)...); err != nil {
		return err
	}
	return run(ctx, "mcopy", "-i", path, efiImage, file)
}

// assembleDisk writes the image at out from its parts: the layout, GRUB's
// boot.img patched to load core.img from the BIOS boot partition, the ESP
// and the root filesystem.
func assembleDisk(ctx context.Context, out, bootImgPath, coreImgPath, esp, rootfs string) error {
	if err := truncate(out, DiskBytes); err != nil {
		return err
	}
	if err := run(ctx, "sgdisk", sgdiskArgs(out)...); err != nil {
		return err
	}
	core, err := os.ReadFile(coreImgPath)
	if err != nil {
		return err
	}
	core, err = PatchCoreImage(core, BIOSBootStartLBA)
	if err != nil {
		return fmt.Errorf("%s: %w", coreImgPath, err)
	}
	if len(core) > BIOSBootSectors*sectorBytes {
		return fmt.Errorf("core.img of %d bytes does not fit the %d-byte BIOS boot partition", len(core), BIOSBootSectors*sectorBytes)
	}
	bootImg, err := os.ReadFile(bootImgPath)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(out, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	pmbr := make([]byte, sectorBytes)
	if _, err := f.ReadAt(pmbr, 0); err != nil {
		return fmt.Errorf("read %s's protective MBR: %w", out, err)
	}
	mbr, err := PatchBootImage(bootImg, pmbr, BIOSBootStartLBA)
	if err != nil {
		return fmt.Errorf("%s: %w", bootImgPath, err)
	}
	if _, err := f.WriteAt(mbr, 0); err != nil {
		return fmt.Errorf("write MBR: %w", err)
	}
	if _, err := f.WriteAt(core, BIOSBootStartLBA*sectorBytes); err != nil {
		return fmt.Errorf("write core.img: %w", err)
	}
	for _, p := range []struct {
		path     string
		startLBA int64
		sectors  int64
	}{{esp, ESPStartLBA, ESPSectors}, {rootfs, RootStartLBA, RootSectors}} {
		if err := copySparse(f, p.path, p.startLBA*sectorBytes, p.sectors*sectorBytes); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return run(ctx, "sgdisk", "-v", out)
}

// copySparse copies the partition image at src into dst at off (dd
// conv=notrunc), leaving zero blocks as holes; src must fit in maxBytes.
func copySparse(dst *os.File, src string, off, maxBytes int64) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() > maxBytes {
		return fmt.Errorf("%s is %d bytes, larger than its partition (%d)", filepath.Base(src), st.Size(), maxBytes)
	}
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	for pos := int64(0); ; {
		n, err := io.ReadFull(f, buf)
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			if _, werr := dst.WriteAt(buf[:n], off+pos); werr != nil {
				return fmt.Errorf("write %s at %d: %w", filepath.Base(src), off+pos, werr)
			}
		}
		pos += int64(n)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", src, err)
		}
	}
}
