// loader.go chooses, on an ESP's filesystem, the boot loader a boot entry points at.
package efiboot

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// RemovablePath is where UEFI firmware looks for a loader on a disk that
// has no boot entry (x86-64).
const RemovablePath = `\EFI\BOOT\BOOTX64.EFI`

// ErrNoLoader means the ESP has no loader to point an entry at.
var ErrNoLoader = errors.New("no UEFI boot loader")

// preferred are loaders chosen over the others in a vendor directory, in
// order: shim (which then loads grubx64.efi, and which Secure Boot
// machines need), then GRUB.
var preferred = []string{"shimx64.efi", "grubx64.efi"}

// known are the loaders of vendors that keep them in a subdirectory.
var known = map[string]string{
	"microsoft": "Boot/bootmgfw.efi",
}

// notVendors are directories under \EFI that hold no vendor's loader:
// BOOT is the removable path's, Linux holds unified kernel images that
// systemd-boot lists.
var notVendors = []string{"BOOT", "Linux"}

// Loader is the loader a boot entry points at.
type Loader struct {
	Vendor string // the vendor directory's name, as on disk: the entry's description
	Path   string // in the ESP, with backslashes: \EFI\debian\shimx64.efi
}

// Removable returns the removable path as it is spelled in fsys (an ESP),
// or "" when it has none. FAT names are matched case-insensitively.
func Removable(fsys fs.FS) string {
	efi, dir, ok, _ := lookup(fsys, ".", "EFI")
	if !ok || !dir {
		return ""
	}
	boot, dir, ok, _ := lookup(fsys, efi, "BOOT")
	if !ok || !dir {
		return ""
	}
	f, dir, ok, _ := lookup(fsys, path.Join(efi, boot), "BOOTX64.EFI")
	if !ok || dir {
		return ""
	}
	return `\` + efi + `\` + boot + `\` + f
}

// ChooseLoader returns the one vendor loader on fsys (an ESP): in each
// directory \EFI\<vendor>\ (not BOOT nor Linux), shimx64.efi, else
// grubx64.efi, else the vendor's known loader (Microsoft's
// Boot\bootmgfw.efi), else its only .efi file. A vendor with several .efi
// files and none of those, or more than one vendor with a loader, is an
// error wrapping ErrAmbiguous; none at all wraps ErrNoLoader.
func ChooseLoader(fsys fs.FS) (Loader, error) {
	efi, dir, ok, err := lookup(fsys, ".", "EFI")
	if err != nil {
		return Loader{}, fmt.Errorf("read the root directory: %w", err)
	}
	if !ok || !dir {
		return Loader{}, fmt.Errorf("%w: no \\EFI directory", ErrNoLoader)
	}
	vendors, err := fs.ReadDir(fsys, efi)
	if err != nil {
		return Loader{}, fmt.Errorf("read \\%s: %w", efi, err)
	}
	var found []Loader
	var problems []string
	for _, v := range vendors {
		if !v.IsDir() || isNotVendor(v.Name()) {
			continue
		}
		l, err := vendorLoader(fsys, efi, v.Name())
		switch {
		case err != nil:
			problems = append(problems, err.Error())
		case l.Path != "":
			found = append(found, l)
		}
	}
	if len(problems) > 0 {
		return Loader{}, fmt.Errorf("%w: %s", ErrAmbiguous, strings.Join(problems, "; "))
	}
	switch len(found) {
	case 0:
		return Loader{}, fmt.Errorf("%w: nothing at %s nor under \\EFI\\<vendor>\\", ErrNoLoader, RemovablePath)
	case 1:
		return found[0], nil
	}
	var names []string
	for _, l := range found {
		names = append(names, l.Path)
	}
	return Loader{}, fmt.Errorf("%w: boot loaders of %d vendors (%s): which one boots is not shoal's guess", ErrAmbiguous, len(found), strings.Join(names, ", "))
}

func isNotVendor(name string) bool {
	for _, n := range notVendors {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// vendorLoader chooses the loader in \EFI\vendor\; a zero Loader when the
// directory has none.
func vendorLoader(fsys fs.FS, efi, vendor string) (Loader, error) {
	dir := path.Join(efi, vendor)
	ents, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return Loader{}, fmt.Errorf("read \\%s\\%s: %v", efi, vendor, err)
	}
	var efis []string
	for _, e := range ents {
		if !e.IsDir() && strings.EqualFold(path.Ext(e.Name()), ".efi") {
			efis = append(efis, e.Name())
		}
	}
	sort.Strings(efis)
	mk := func(rel ...string) Loader {
		return Loader{Vendor: vendor, Path: `\` + strings.Join(append([]string{efi, vendor}, rel...), `\`)}
	}
	for _, p := range preferred {
		for _, f := range efis {
			if strings.EqualFold(f, p) {
				return mk(f), nil
			}
		}
	}
	if rel, ok := known[strings.ToLower(vendor)]; ok {
		if names, ok := lookupPath(fsys, dir, rel); ok {
			return mk(names...), nil
		}
	}
	switch len(efis) {
	case 0:
		return Loader{}, nil
	case 1:
		return mk(efis[0]), nil
	}
	return Loader{}, fmt.Errorf("\\%s\\%s has %d loaders (%s) and no shimx64.efi or grubx64.efi", efi, vendor, len(efis), strings.Join(efis, ", "))
}

// lookupPath finds rel (slash-separated) under dir case-insensitively and
// returns its elements as spelled on disk; the last must be a file.
func lookupPath(fsys fs.FS, dir, rel string) ([]string, bool) {
	parts := strings.Split(rel, "/")
	var names []string
	for i, p := range parts {
		name, isDir, ok, _ := lookup(fsys, dir, p)
		if !ok || isDir != (i < len(parts)-1) {
			return nil, false
		}
		names = append(names, name)
		dir = path.Join(dir, name)
	}
	return names, true
}
