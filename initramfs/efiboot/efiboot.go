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

// RemovableDescription is the description of an entry for the removable
// path (edk2 names its own such entries "UEFI OS").
const RemovableDescription = "UEFI OS"

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
	Path        string // the loader on the ESP
	Removable   bool   // Path is the removable path \EFI\BOOT\BOOTX64.EFI
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
	case ActionCreated, ActionUpdated, ActionUnchanged:
		return fmt.Sprintf("%s %s %q %s", BootVarName(r.Number), r.Action, r.Description, r.Path)
	}
	return string(r.Action)
}

// Ensure makes sure that the machine's UEFI firmware can boot o.Disk: on a
// machine booted by UEFI, it writes a boot entry for the disk's loader
// (the removable path when the ESP has it, else ChooseLoader's vendor
// loader) and puts it first in BootOrder, or after the network entry the
// machine booted from (Install). An entry even for the removable path:
// firmware that keeps its variables (every real machine) may try stale
// entries, or its shell, before it looks at a disk that was blank when it
// last enumerated its devices. Errors wrap
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
	r.Path, r.Description = l.Loader.Path, l.Loader.Vendor
	if l.Removable != "" {
		r.Path, r.Description, r.Removable = l.Removable, RemovableDescription, true
	}
	if r.HardDrive, err = l.ESP.HardDrive(); err != nil {
		return r, err
	}
	file, err := FilePathNode(r.Path)
	if err != nil {
		return r, err
	}
	opt := LoadOption{Attributes: LoadOptionActive, Description: r.Description, FilePath: []Node{r.HardDrive.Node(), file}}
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
