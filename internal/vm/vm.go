// Package vm runs QEMU machines for shoal's lab and tests: SeaBIOS or OVMF
// firmware, virtio or USB disks, tap or user-mode NICs, the serial console
// in a file that callers watch for markers.
//
// Machines run under the accelerator the caller chose (Config.Accel). KVM
// is never trusted because /dev/kvm opens: Resolve proves it by booting a
// guest to a marker within a few seconds (some hosts have a /dev/kvm on
// which QEMU aborts or the guest hangs), and falls back to TCG. TCG runs
// with -cpu max (the guest's getrandom would otherwise block for minutes).
// A Machine reports why it cannot run: QEMU's exit status and last line
// of stderr, or how long its console has been silent and its last line.
package vm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Firmware paths (Debian packages qemu-system-x86 and ovmf).
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS.fd"
)

// Disk is a raw disk image attached to a machine.
type Disk struct {
	Path string
	USB  bool // attach as a USB stick (usb-storage) rather than virtio
}

// NIC is a network card: on a tap (Tap set) or QEMU's user-mode network.
type NIC struct {
	Tap string
	MAC string
	// NoROM leaves out QEMU's iPXE option ROM, so that the firmware's own
	// PXE client boots (as on a real UEFI machine).
	NoROM bool
}

// Config describes a machine.
type Config struct {
	Name     string // SMBIOS serial, shown by the sample OS
	Firmware string // "bios" (SeaBIOS, default) or "uefi" (OVMF)
	MemMiB   int    // default 512
	Disks    []Disk
	NICs     []NIC
	// Kernel, Initrd and Append boot a kernel directly (-kernel).
	Kernel, Initrd, Append string
	// Boot is QEMU's -boot order ("n" network first, "c" disk; default
	// "nc" when a NIC is present).
	Boot string
	// Dir holds the serial log and OVMF's variable store (required). The
	// variable store (Dir/OVMF_VARS.fd) is the machine's own NVRAM: made
	// from OVMF's template on the first start, kept on later ones.
	Dir string
	// Reboot lets the guest reboot; by default a reboot ends QEMU.
	Reboot bool
	// Accel is the accelerator (AccelTCG when empty). AccelAuto is not
	// allowed here: Resolve it once first.
	Accel Accel
	// Extra is appended to QEMU's arguments (tests inject faults with it).
	Extra []string
}

// VarsFile is the name of a UEFI machine's variable store in its Dir.
const VarsFile = "OVMF_VARS.fd"

// Args returns QEMU's arguments for c. For UEFI it makes the machine's
// variable store in c.Dir from OVMF's template unless one is there.
func (c Config) Args() ([]string, error) {
	if c.Dir == "" {
		return nil, errors.New("vm: Dir is required")
	}
	mem := c.MemMiB
	if mem == 0 {
		mem = 512
	}
	serial := filepath.Join(c.Dir, "serial.log")
	cpu, err := CPUArgs(c.Accel)
	if err != nil {
		return nil, err
	}
	args := append(cpu, "-m", fmt.Sprint(mem), "-smp", "1",
		"-display", "none", "-monitor", "none", "-serial", "file:"+serial)
	if !c.Reboot {
		args = append(args, "-no-reboot")
	}
	if c.Name != "" {
		args = append(args, "-smbios", "type=1,serial="+c.Name)
	}
	switch c.Firmware {
	case "", "bios":
		args = append(args, "-machine", "pc,graphics=off")
	case "uefi":
		vars := filepath.Join(c.Dir, VarsFile)
		if err := ensureVars(vars); err != nil {
			return nil, err
		}
		args = append(args, "-machine", "pc",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+OVMFCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
	default:
		return nil, fmt.Errorf("vm: firmware %q: want bios or uefi", c.Firmware)
	}
	usb := false
	for i, d := range c.Disks {
		id := fmt.Sprintf("d%d", i)
		args = append(args, "-drive", "if=none,format=raw,id="+id+",file="+d.Path)
		if d.USB {
			if !usb {
				args = append(args, "-device", "qemu-xhci,id=xhci")
				usb = true
			}
			// A stick boots first, before the NICs and the other disks.
			args = append(args, "-device", "usb-storage,bus=xhci.0,drive="+id+",bootindex=0")
		} else {
			args = append(args, "-device", "virtio-blk-pci,drive="+id)
		}
	}
	for i, n := range c.NICs {
		id := fmt.Sprintf("n%d", i)
		if n.Tap != "" {
			args = append(args, "-netdev", "tap,id="+id+",ifname="+n.Tap+",script=no,downscript=no")
		} else {
			args = append(args, "-netdev", "user,id="+id)
		}
		dev := "virtio-net-pci,netdev=" + id
		if n.MAC != "" {
			dev += ",mac=" + n.MAC
		}
		if n.NoROM {
			dev += ",romfile="
		}
		args = append(args, "-device", dev)
	}
	boot := c.Boot
	if boot == "" && len(c.NICs) > 0 && c.Kernel == "" {
		boot = "nc"
	}
	if boot != "" {
		args = append(args, "-boot", boot)
	}
	if c.Kernel != "" {
		args = append(args, "-kernel", c.Kernel)
		if c.Initrd != "" {
			args = append(args, "-initrd", c.Initrd)
		}
		if c.Append != "" {
			args = append(args, "-append", c.Append)
		}
	}
	return append(args, c.Extra...), nil
}

// ensureVars copies OVMF's variable-store template to path unless a store
// is there already.
func ensureVars(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	b, err := os.ReadFile(OVMFVars)
	if err != nil {
		return fmt.Errorf("vm: OVMF (apt-get install ovmf): %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("vm: variable store: %w", err)
	}
	return nil
}
