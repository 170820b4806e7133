// bootentry.go makes the written disk bootable by this machine's UEFI firmware: the boot entry its image needs.
package appliance

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/shoal-project/shoal/initramfs/efiboot"
)

// StepBootEntry is the step that makes the UEFI boot entry.
const StepBootEntry Step = "UEFI boot entry"

// bootEntry runs efiboot.Ensure on the written disk and says what it did
// in one console line. It returns the short result for the done report
// ("" on a BIOS machine). Every written disk gets its entry, even one with
// the removable path (efiboot.Ensure says why). An image with no ESP or no loader at all is a
// warning (it may boot by legacy BIOS); an entry the disk needs that
// cannot be made is a *Failure.
func (r *run) bootEntry(ctx context.Context) (string, error) {
	res, err := efiboot.Ensure(ctx, efiboot.Options{
		Disk:        r.disk,
		FirmwareDir: r.o.EFIFirmware,
		VarsDir:     filepath.Join(r.o.EFIFirmware, "efivars"),
		Vars:        r.o.EFIVars,
		Log:         r.log,
	})
	switch {
	case errors.Is(err, efiboot.ErrNoESP), errors.Is(err, efiboot.ErrNoLoader):
		r.say("warning: UEFI boot: %v: no boot entry made; this machine booted by UEFI and will not boot the disk unless its firmware also boots legacy BIOS disks", err)
		return "none: " + err.Error(), nil
	case err != nil:
		what := r.disk
		if res.Partition > 0 {
			what = fmt.Sprintf("%s partition %d", r.disk, res.Partition)
		}
		if res.Path != "" {
			what += ", " + res.Path
		}
		return "", &Failure{Step: StepBootEntry, Image: r.cfg.Image, Disk: r.disk,
			Err: fmt.Errorf("the disk is written and verified, but the firmware boot entry it needs (%s) could not be made: %w", what, err)}
	}
	switch res.Action {
	case efiboot.ActionNotUEFI:
		return "", nil
	}
	did := map[efiboot.Action]string{efiboot.ActionCreated: "created", efiboot.ActionUpdated: "updated", efiboot.ActionUnchanged: "already there"}[res.Action]
	where := "first in BootOrder"
	if len(res.BootOrder) > 0 && res.BootOrder[0] != res.Number {
		where = "in BootOrder after the network entry this machine booted from"
	}
	path := res.Path
	if res.Removable {
		path += " (the removable path)"
	}
	r.say("UEFI boot entry %s %q %s, %s: %s partition %d, %s", efiboot.BootVarName(res.Number), res.Description, did, where, r.disk, res.Partition, path)
	return res.String(), nil
}

// bootEntryHint is what to do when the boot entry failed, "" for another
// failure.
func bootEntryHint(f *Failure) string {
	if f.Step != StepBootEntry {
		return ""
	}
	switch {
	case errors.Is(f.Err, efiboot.ErrVars):
		return "the image's boot loader is only at \\EFI\\<vendor>\\, so this machine's firmware needs a boot entry for it, and writing one failed. " +
			"Check that efivarfs works (lsmod; mount; the initramfs needs the efivarfs module, see MODULES_LIST) and that the firmware setup does not lock its boot entries; " +
			"or add the entry in the firmware's boot menu by hand (the file above), or give the image \\EFI\\BOOT\\BOOTX64.EFI. The disk itself is complete."
	case errors.Is(f.Err, efiboot.ErrAmbiguous):
		return "the disk's EFI system partition holds boot loaders that could each be the one (or several ESPs): shoal does not guess. " +
			"Make the image with one vendor directory under \\EFI, or with \\EFI\\BOOT\\BOOTX64.EFI, or add the entry in the firmware's boot menu by hand. The disk itself is complete."
	}
	return "the disk is complete, but its EFI system partition could not be read to make the boot entry: check the image's ESP (fsck.vfat) or add the entry in the firmware's boot menu by hand"
}
