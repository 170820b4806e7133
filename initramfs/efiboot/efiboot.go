// efiboot.go is Ensure: from a written disk to the firmware boot entry it needs, or nothing.
package efiboot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
)

// DefaultFirmwareDir exists when the kernel was booted by UEFI.
const DefaultFirmwareDir = "/sys/firmware/efi"

// Options say which disk and which firmware; the zero paths are the real
// machine's.
type Options struct {
	Disk string // the written disk (a block device or an image file)
	// FirmwareDir is DefaultFirmwareDir; when it does not exist the machine
	// did not boot by UEFI and Ensure does nothing.
	FirmwareDir string
	// Vars are the firmware's variables; nil opens efivarfs at VarsDir
	// (default DefaultVarsDir), mounting it if needed.
	Vars    Vars
	VarsDir string
	Log     *slog.Logger
}

// Result is what Ensure found and did.
type Result struct {
	Action      Action
	Disk        string
	Partition   uint32 // the ESP's number
	Path        string // the loader (or the removable path) on the ESP
	Description string // the entry's
	Number      uint16 // Boot#### (created, updated, unchanged)
	BootOrder   []uint16
	HardDrive   HardDrive // the entry's HD() node
}

// String is a short line for a status report.
func (r Result) String() string {
	switch r.Action {
	case ActionNotUEFI:
		return "not booted by UEFI"
	case ActionRemovable:
		return "removable path " + r.Path
	case ActionCreated, ActionUpdated, ActionUnchanged:
		return fmt.Sprintf("%s %s %q %s", BootVarName(r.Number), r.Action, r.Description, r.Path)
	}
	return string(r.Action)
}

// Ensure makes sure that the machine's UEFI firmware can boot o.Disk: on a
// machine booted by UEFI, when the disk's ESP has no loader at the
// removable path, it writes a boot entry for the vendor loader
// (ChooseLoader) and puts it first in BootOrder (Install). Errors wrap
// ErrNoESP, ErrNoLoader, ErrAmbiguous, ErrFilesystem (the disk) or ErrVars
// (the firmware's variables).
func Ensure(ctx context.Context, o Options) (Result, error) {
	if o.FirmwareDir == "" {
		o.FirmwareDir = DefaultFirmwareDir
	}
	if o.VarsDir == "" {
		o.VarsDir = DefaultVarsDir
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	r := Result{Disk: o.Disk}
	if _, err := os.Stat(o.FirmwareDir); errors.Is(err, os.ErrNotExist) {
		r.Action = ActionNotUEFI
		o.Log.Debug("not booted by UEFI: no boot entry to make", "missing", o.FirmwareDir)
		return r, nil
	}
	if err := ctx.Err(); err != nil {
		return r, err
	}
	l, err := Inspect(o.Disk)
	r.Partition = l.ESP.Number
	if err != nil {
		return r, err
	}
	if l.Removable != "" {
		r.Action, r.Path = ActionRemovable, l.Removable
		return r, nil
	}
	r.Path, r.Description = l.Loader.Path, l.Loader.Vendor
	if r.HardDrive, err = l.ESP.HardDrive(); err != nil {
		return r, err
	}
	file, err := FilePathNode(l.Loader.Path)
	if err != nil {
		return r, err
	}
	opt := LoadOption{Attributes: LoadOptionActive, Description: l.Loader.Vendor, FilePath: []Node{r.HardDrive.Node(), file}}
	v := o.Vars
	if v == nil {
		if v, err = OpenEFIVarFS(o.VarsDir); err != nil {
			return r, err
		}
	}
	in, err := Install(v, opt, o.Log)
	if err != nil {
		return r, err
	}
	r.Action, r.Number, r.BootOrder = in.Action, in.Number, in.BootOrder
	o.Log.Debug("boot entry", "var", BootVarName(in.Number), "action", in.Action, "device_path", r.HardDrive.String()+"/File("+r.Path+")", "boot_order", in.BootOrder)
	return r, nil
}
