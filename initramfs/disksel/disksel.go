// Package disksel finds the appliance's target disk. shoal.disk= is a
// path (/dev/vda, /dev/disk/by-id/...), a selector of size, model and
// serial (size=500G,model=Samsung*), or auto: the only non-removable disk
// that is not the boot medium. No match, or more than one, is an error
// that lists the disks seen; the appliance never guesses.
package disksel

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/shoal-project/shoal/internal/progress"
	"github.com/shoal-project/shoal/internal/units"
)

var (
	// ErrNoDisk is wrapped when no disk matches.
	ErrNoDisk = errors.New("no matching disk")
	// ErrAmbiguous is wrapped when more than one disk matches.
	ErrAmbiguous = errors.New("more than one disk matches")
	// ErrBootMedium is wrapped when the chosen disk is the boot medium.
	ErrBootMedium = errors.New("disk is the boot medium")
	// ErrSelector is wrapped when a selector cannot be parsed.
	ErrSelector = errors.New("bad disk selector")
)

// Disk is a whole block device.
type Disk struct {
	Name      string // kernel name: vda, sda, nvme0n1
	Path      string // /dev/NAME
	SizeBytes int64
	Model     string
	Serial    string
	Removable bool
}

func (d Disk) String() string {
	s := fmt.Sprintf("%s (%s", d.Path, progress.Bytes(d.SizeBytes))
	if d.Model != "" {
		s += ", model " + d.Model
	}
	if d.Serial != "" {
		s += ", serial " + d.Serial
	}
	if d.Removable {
		s += ", removable"
	}
	return s + ")"
}

// virtual block devices that are never targets.
var skipPrefixes = []string{"loop", "ram", "zram", "dm-", "md", "sr", "nbd", "fd"}

// List returns the disks under sysBlock (normally /sys/block): devices
// backed by hardware (with a device entry), of non-zero size, sorted by
// name. devDir is where their nodes are (normally /dev).
func List(sysBlock, devDir string) ([]Disk, error) {
	ents, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil, fmt.Errorf("list disks: %w", err)
	}
	var out []Disk
	for _, e := range ents {
		name := e.Name()
		skip := false
		for _, p := range skipPrefixes {
			skip = skip || strings.HasPrefix(name, p)
		}
		dir := filepath.Join(sysBlock, name)
		if _, err := os.Stat(filepath.Join(dir, "device")); skip || err != nil {
			continue
		}
		sectors, err := strconv.ParseInt(read(dir, "size"), 10, 64)
		if err != nil || sectors <= 0 {
			continue
		}
		d := Disk{
			Name:      name,
			Path:      filepath.Join(devDir, name),
			SizeBytes: sectors * 512, // /sys/block/*/size counts 512-byte units
			Model:     read(dir, "device/model"),
			Serial:    read(dir, "serial"),
			Removable: read(dir, "removable") == "1",
		}
		if d.Serial == "" {
			d.Serial = read(dir, "device/serial")
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func read(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Select picks the disk that sel names among disks. boot lists the boot
// medium's device paths (the USB stick), which are never chosen. resolve,
// when not nil, maps a path selector to the device it points at (for
// /dev/disk/by-id/... links); nil uses the path as is.
func Select(disks []Disk, sel string, boot []string, resolve func(string) (string, error)) (Disk, error) {
	isBoot := func(d Disk) bool {
		for _, b := range boot {
			if b == d.Path {
				return true
			}
		}
		return false
	}
	sel = strings.TrimSpace(sel)
	switch {
	case sel == "" || sel == "auto":
		var c []Disk
		for _, d := range disks {
			if !d.Removable && !isBoot(d) {
				c = append(c, d)
			}
		}
		return one(c, "auto (the only non-removable disk that is not the boot medium)", disks)
	case strings.HasPrefix(sel, "/"):
		p := sel
		if resolve != nil {
			r, err := resolve(sel)
			if err != nil {
				return Disk{}, fmt.Errorf("%w: %s: %v; disks: %s", ErrNoDisk, sel, err, list(disks))
			}
			p = r
		}
		for _, d := range disks {
			if d.Path == p {
				if isBoot(d) {
					return Disk{}, fmt.Errorf("%s: %w", d, ErrBootMedium)
				}
				return d, nil
			}
		}
		return Disk{}, fmt.Errorf("%w: %s is not a disk here; disks: %s", ErrNoDisk, sel, list(disks))
	}
	m, err := parseSelector(sel)
	if err != nil {
		return Disk{}, err
	}
	var c []Disk
	for _, d := range disks {
		if !isBoot(d) && m(d) {
			c = append(c, d)
		}
	}
	return one(c, sel, disks)
}

func one(c []Disk, sel string, all []Disk) (Disk, error) {
	switch len(c) {
	case 1:
		return c[0], nil
	case 0:
		return Disk{}, fmt.Errorf("%w for %s; disks: %s", ErrNoDisk, sel, list(all))
	}
	return Disk{}, fmt.Errorf("%w: %s matches %s; name one with shoal.disk=/dev/NAME or a model, serial or size selector", ErrAmbiguous, sel, list(c))
}

func list(ds []Disk) string {
	if len(ds) == 0 {
		return "none"
	}
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = d.String()
	}
	return strings.Join(s, "; ")
}

// parseSelector parses "key=value[,key=value...]" with keys size (within
// 10%), minsize (or size>=), maxsize (or size<=), model and serial (globs,
// case-insensitive).
func parseSelector(sel string) (func(Disk) bool, error) {
	var tests []func(Disk) bool
	for _, term := range strings.Split(sel, ",") {
		term = strings.TrimSpace(term)
		// size>=N and size<=N are minsize=N and maxsize=N.
		term = strings.Replace(strings.Replace(term, "size>=", "minsize=", 1), "size<=", "maxsize=", 1)
		k, v, ok := strings.Cut(term, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if !ok || v == "" {
			return nil, fmt.Errorf("%w: %q: want /dev/NAME, auto, or key=value terms (size, minsize, maxsize, model, serial) separated by commas", ErrSelector, sel)
		}
		switch k {
		case "size", "minsize", "maxsize":
			n, err := units.ParseBytes(v)
			if err != nil {
				return nil, fmt.Errorf("%w: %q: %v", ErrSelector, term, err)
			}
			if n == 0 {
				return nil, fmt.Errorf("%w: %q: want a size above 0", ErrSelector, term)
			}
			switch k {
			case "size":
				tests = append(tests, func(d Disk) bool { return d.SizeBytes >= n-n/10 && d.SizeBytes <= n+n/10 })
			case "minsize":
				tests = append(tests, func(d Disk) bool { return d.SizeBytes >= n })
			case "maxsize":
				tests = append(tests, func(d Disk) bool { return d.SizeBytes <= n })
			}
		case "model", "serial":
			pat := strings.ToLower(v)
			if _, err := path.Match(pat, ""); err != nil {
				return nil, fmt.Errorf("%w: %q: %v", ErrSelector, term, err)
			}
			tests = append(tests, func(d Disk) bool {
				s := d.Model
				if k == "serial" {
					s = d.Serial
				}
				ok, _ := path.Match(pat, strings.ToLower(s))
				return ok
			})
		default:
			return nil, fmt.Errorf("%w: unknown key %q in %q (known: size, minsize, maxsize, model, serial)", ErrSelector, k, sel)
		}
	}
	return func(d Disk) bool {
		for _, t := range tests {
			if !t(d) {
				return false
			}
		}
		return true
	}, nil
}
