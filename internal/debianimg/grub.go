// grub.go makes the two GRUBs (i386-pc core.img and x86_64-efi) with the boot script embedded in them.
package debianimg

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// Default module trees of GRUB's Debian packages grub-pc-bin and
// grub-efi-amd64-bin.
const (
	GRUBPCDir  = "/usr/lib/grub/i386-pc"
	GRUBEFIDir = "/usr/lib/grub/x86_64-efi"
)

// BootMarker starts the line both GRUBs print on the serial console before
// they load Linux: "shoal-debian: GRUB pc" (BIOS) or "... efi" (UEFI).
const BootMarker = "shoal-debian: GRUB"

// grubModules are built into both images, so that nothing is read from
// /boot/grub at boot: the embedded script finds the root by UUID and boots
// the kernel and initrd through the /vmlinuz and /initrd.img links that
// Debian keeps pointing at /boot/vmlinuz-* and /boot/initrd.img-*.
var grubModules = []string{"part_gpt", "ext2", "linux", "boot", "normal", "search", "search_fs_uuid",
	"configfile", "serial", "terminal", "echo", "test", "sleep"}

// grubPCModules are the BIOS-only ones (biosdisk reads the disk through
// int 13h).
var grubPCModules = []string{"biosdisk"}

// grubScript is the embedded configuration for platform "pc" or "efi".
// GRUB's serial terminal is used only under BIOS: OVMF already copies its
// console to the serial port, so under UEFI the text would show twice.
func grubScript(platform string) string {
	term := ""
	if platform == "pc" {
		term = "serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\n"
	}
	return fmt.Sprintf(`set timeout=0
%secho "%s %s: root UUID %s"
search --no-floppy --fs-uuid --set=root %s
linux /vmlinuz root=UUID=%s ro console=tty0 console=ttyS0,115200
initrd /initrd.img
boot
`, term, BootMarker, platform, RootUUID, RootUUID, RootUUID)
}

// mkCoreImage builds GRUB's i386-pc core.img (not yet patched) into dir.
func mkCoreImage(ctx context.Context, dir, modDir string) (string, error) {
	cfg := filepath.Join(dir, "grub-pc.cfg")
	if err := os.WriteFile(cfg, []byte(grubScript("pc")), 0o644); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "core.img")
	args := append([]string{"-O", "i386-pc", "-d", modDir, "-o", out, "-p", "/boot/grub", "-c", cfg},
		append(append([]string(nil), grubPCModules...), grubModules...)...)
	if err := run(ctx, "grub-mkimage", args...); err != nil {
		return "", err
	}
	return out, nil
}

// mkEFIImage builds GRUB for x86_64-efi (grubx64.efi or BOOTX64.EFI) into
// dir.
func mkEFIImage(ctx context.Context, dir, modDir string) (string, error) {
	cfg := filepath.Join(dir, "grub-efi.cfg")
	if err := os.WriteFile(cfg, []byte(grubScript("efi")), 0o644); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "grubx64.efi")
	args := append([]string{"-O", "x86_64-efi", "-d", modDir, "-o", out, "-p", "/EFI/debian", "-c", cfg}, grubModules...)
	if err := run(ctx, "grub-mkimage", args...); err != nil {
		return "", err
	}
	return out, nil
}
