// Package vm runs QEMU machines for shoal's lab and tests: SeaBIOS or OVMF
// firmware, virtio or USB disks, tap or user-mode NICs, the serial console
// in a file that callers watch for markers. Machines run under KVM where
// /dev/kvm can be opened (Config.KVM, KVMAvailable) and under TCG
// otherwise, with -cpu max (the guest's getrandom would otherwise block for
// minutes; see ../shared/notes).
package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
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
	// Dir holds the serial log and OVMF's variable store (required).
	Dir string
	// Reboot lets the guest reboot; by default a reboot ends QEMU.
	Reboot bool
	// KVM runs the machine with KVM (-accel kvm -cpu host); TCG
	// otherwise.
	KVM bool
}

// KVMAvailable reports whether this host can run machines with KVM:
// /dev/kvm opens for reading and writing.
func KVMAvailable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// Machine is a running QEMU.
type Machine struct {
	Config
	SerialPath string
	cmd        *exec.Cmd
	out        bytes.Buffer
	done       chan struct{}
	err        error
}

// Args returns QEMU's arguments for c, writing OVMF's variable store into
// c.Dir when the firmware is UEFI.
func (c Config) Args() ([]string, error) {
	if c.Dir == "" {
		return nil, errors.New("vm: Dir is required")
	}
	mem := c.MemMiB
	if mem == 0 {
		mem = 512
	}
	serial := filepath.Join(c.Dir, "serial.log")
	cpu := []string{"-cpu", "max"}
	if c.KVM {
		cpu = []string{"-accel", "kvm", "-cpu", "host"}
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
		vars := filepath.Join(c.Dir, "OVMF_VARS.fd")
		b, err := os.ReadFile(OVMFVars)
		if err != nil {
			return nil, fmt.Errorf("vm: OVMF (apt-get install ovmf): %w", err)
		}
		if err := os.WriteFile(vars, b, 0o644); err != nil {
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
	return args, nil
}

// Start starts QEMU for c. wrap, when set, makes the command (for example
// netlab's HubCommand, to run QEMU inside a namespace); nil runs it here.
// The machine is killed when ctx is done.
func Start(ctx context.Context, c Config, wrap func(ctx context.Context, name string, args ...string) *exec.Cmd) (*Machine, error) {
	args, err := c.Args()
	if err != nil {
		return nil, err
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return nil, fmt.Errorf("vm: qemu-system-x86_64 (apt-get install qemu-system-x86): %w", err)
	}
	if wrap == nil {
		wrap = exec.CommandContext
	}
	m := &Machine{Config: c, SerialPath: filepath.Join(c.Dir, "serial.log"), done: make(chan struct{})}
	m.cmd = wrap(ctx, qemu, args...)
	m.cmd.Stdout, m.cmd.Stderr = &m.out, &m.out
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("vm %s: start qemu: %w", c.Name, err)
	}
	go func() { m.err = m.cmd.Wait(); close(m.done) }()
	return m, nil
}

// PID is QEMU's process ID.
func (m *Machine) PID() int { return m.cmd.Process.Pid }

// Serial returns what the machine has printed on its serial console.
func (m *Machine) Serial() []byte {
	b, _ := os.ReadFile(m.SerialPath)
	return b
}

// Done is closed when QEMU has exited.
func (m *Machine) Done() <-chan struct{} { return m.done }

// Err is QEMU's exit error, once Done is closed.
func (m *Machine) Err() error { <-m.done; return m.err }

// QEMUOutput is what QEMU itself printed (errors).
func (m *Machine) QEMUOutput() string { <-m.done; return m.out.String() }

// ErrExited means QEMU exited before the awaited text appeared.
var ErrExited = errors.New("qemu exited")

// WaitFor waits until the serial console holds text, polling it, and
// returns the console. It fails when ctx is done or QEMU exits without it.
func (m *Machine) WaitFor(ctx context.Context, text string) ([]byte, error) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		b := m.Serial()
		if bytes.Contains(b, []byte(text)) {
			return b, nil
		}
		select {
		case <-ctx.Done():
			return b, fmt.Errorf("vm %s: waiting for %q: %w", m.Name, text, ctx.Err())
		case <-m.done:
			b = m.Serial()
			if bytes.Contains(b, []byte(text)) {
				return b, nil
			}
			return b, fmt.Errorf("vm %s: waiting for %q: %w (%v) %s", m.Name, text, ErrExited, m.err, strings.TrimSpace(m.out.String()))
		case <-tick.C:
		}
	}
}

// Kill ends QEMU (if still running) and waits for it.
func (m *Machine) Kill() {
	select {
	case <-m.done:
	default:
		m.cmd.Process.Kill()
		<-m.done
	}
}
