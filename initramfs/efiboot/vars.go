// vars.go reaches the firmware's variables: the Vars interface and its efivarfs implementation.
package efiboot

import (
	"errors"
	"fmt"
	"os"

	"github.com/google/uuid"
	"github.com/u-root/u-root/pkg/efivarfs"
	"golang.org/x/sys/unix"
)

// GlobalGUID is EFI_GLOBAL_VARIABLE, the vendor GUID of Boot#### and
// BootOrder.
var GlobalGUID = uuid.MustParse("8be4df61-93ca-11d2-aa0d-00e098032b8c")

// BootVarAttributes are the attributes of Boot#### and BootOrder:
// non-volatile, boot service and runtime access.
const BootVarAttributes = uint32(efivarfs.AttributeNonVolatile | efivarfs.AttributeBootserviceAccess | efivarfs.AttributeRuntimeAccess)

// DefaultVarsDir is where efivarfs is mounted.
const DefaultVarsDir = "/sys/firmware/efi/efivars"

// ErrVars is wrapped when the firmware's variables cannot be read or
// written: efivarfs missing or not mountable, a write refused.
var ErrVars = errors.New("UEFI variables not writable")

// Vars are the firmware's variables in the EFI global GUID. Get of a
// variable that does not exist returns an error wrapping os.ErrNotExist.
type Vars interface {
	Get(name string) (attributes uint32, data []byte, err error)
	Set(name string, attributes uint32, data []byte) error
	List() ([]string, error)
}

// EFIVarFS is Vars on the kernel's efivarfs (u-root's pkg/efivarfs,
// which writes the 4-byte attribute prefix and lifts the immutable flag).
type EFIVarFS struct {
	fs *efivarfs.EFIVarFS
}

// OpenEFIVarFS returns the variables under dir (DefaultVarsDir on a
// machine), mounting efivarfs there first when it is not mounted (the
// appliance runs in an initramfs whose init mounted it before the
// efivarfs module was loaded). Errors wrap ErrVars.
func OpenEFIVarFS(dir string) (*EFIVarFS, error) {
	if v, err := efivarfs.NewPath(dir); err == nil {
		return &EFIVarFS{fs: v}, nil
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("%w: %s: %v (the kernel offers no EFI runtime variables)", ErrVars, dir, err)
	}
	if err := unix.Mount("efivarfs", dir, "efivarfs", 0, ""); err != nil {
		hint := ""
		if errors.Is(err, unix.ENODEV) {
			hint = " (the efivarfs kernel module is not loaded)"
		}
		return nil, fmt.Errorf("%w: mount efivarfs on %s: %v%s", ErrVars, dir, err, hint)
	}
	v, err := efivarfs.NewPath(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: efivarfs on %s: %v", ErrVars, dir, err)
	}
	return &EFIVarFS{fs: v}, nil
}

func desc(name string) efivarfs.VariableDescriptor {
	return efivarfs.VariableDescriptor{Name: name, GUID: GlobalGUID}
}

// Get reads a variable.
func (e *EFIVarFS) Get(name string) (uint32, []byte, error) {
	a, b, err := e.fs.Get(desc(name))
	if err != nil {
		return 0, nil, fmt.Errorf("read %s: %w", name, err)
	}
	return uint32(a), b, nil
}

// Set writes a variable.
func (e *EFIVarFS) Set(name string, attributes uint32, data []byte) error {
	if err := e.fs.Set(desc(name), efivarfs.VariableAttributes(attributes), data); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// List returns the names of the variables in the global GUID.
func (e *EFIVarFS) List() ([]string, error) {
	ds, err := e.fs.List()
	if err != nil {
		return nil, fmt.Errorf("list variables: %w", err)
	}
	var names []string
	for _, d := range ds {
		if d.GUID == GlobalGUID {
			names = append(names, d.Name)
		}
	}
	return names, nil
}
