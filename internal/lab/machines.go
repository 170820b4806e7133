// machines.go makes the lab's network and machines: disks, taps, the
// inventory, and the QEMUs.

package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/shoal-project/shoal/initramfs/usb"
	"github.com/shoal-project/shoal/internal/netlab"
	"github.com/shoal-project/shoal/internal/vm"
)

// makeNetwork makes the LAN (the server's namespace is its only node),
// each machine's blank disk and tap, and the inventory that lists them.
func (l *lab) makeNetwork(ctx context.Context, r repository) (_ *netlab.LAN, err error) {
	cfg := l.cfg
	lan, err := netlab.New(ctx, netlab.Config{Nodes: 1, RateBitsPerSec: cfg.ServerRateBitsPerSec})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lan.Close()
		}
	}()
	srv := lan.Nodes[0]
	l.log.Info("network", "hub", lan.Hub, "server", srv.Name, "ip", srv.IP)
	l.nodes = make([]*node, cfg.Nodes)
	var inv strings.Builder
	for i := range l.nodes {
		n := &node{index: i}
		n.Name = fmt.Sprintf("node%d", i+1)
		n.MAC = fmt.Sprintf("52:54:00:5e:%02x:%02x", (i+1)>>8, (i+1)&0xff)
		n.Firmware = cfg.Firmware[i%len(cfg.Firmware)]
		n.sample = l.sample
		n.bootCheck = l.bootCheck(n.Name)
		n.BootCheck = n.bootCheck.String()
		n.dir = filepath.Join(l.work, n.Name)
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			return nil, err
		}
		n.disk = filepath.Join(n.dir, "disk.img")
		size := r.diskBytes
		if cfg.Faults.TinyDisk == i+1 {
			size, n.tiny = 8<<20, true
		}
		if err := makeBlank(n.disk, size); err != nil {
			return nil, err
		}
		if n.Firmware == "usb" {
			n.stick = filepath.Join(n.dir, "stick.img")
			conf := fmt.Sprintf("# shoal lab: %s\nrepo = http://%s:8080/repo/\nserver = http://%s:8080\nimage = %s\ndisk = auto\nafter = poweroff\nrate = %d\n",
				n.Name, srv.IP, srv.IP, imageName, cfg.RateBitsPerSec)
			if err := copyFile(filepath.Join(cfg.Out, USBStick), n.stick); err != nil {
				return nil, err
			}
			if err := usb.SetConf(n.stick, []byte(conf)); err != nil {
				return nil, fmt.Errorf("lab: %s: %w", n.Name, err)
			}
		}
		if err := lan.AddTap(ctx, n.tap()); err != nil {
			return nil, err
		}
		fmt.Fprintf(&inv, "%s reimage %s /dev/vda\n", n.MAC, imageName)
		l.nodes[i] = n
	}
	if err := os.WriteFile(filepath.Join(l.work, "machines"), []byte(inv.String()), 0o644); err != nil {
		return nil, err
	}
	return lan, nil
}

// startMachines starts every machine's QEMU, Stagger apart.
func (l *lab) startMachines(ctx context.Context, lan *netlab.LAN) error {
	for i, n := range l.nodes {
		if i > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("lab: %w", ctx.Err())
			case <-time.After(l.cfg.Stagger):
			}
		}
		m, err := vm.Start(ctx, l.vmConfig(n), lan.HubCommand)
		if err != nil {
			return err
		}
		n.m, n.started = m, time.Now()
		l.log.Info("machine started", "name", n.Name, "mac", n.MAC, "firmware", n.Firmware, "pid", m.PID())
	}
	return nil
}

// restartFromDisk starts a USB machine again that powered off done, from
// its disk alone: the stick pulled.
func (l *lab) restartFromDisk(ctx context.Context, lan *netlab.LAN, n *node) error {
	n.fromDisk = true
	// Keep the appliance's console: the new QEMU writes its own.
	if err := os.Rename(filepath.Join(n.dir, "serial.log"), filepath.Join(n.dir, "serial-usb.log")); err != nil {
		l.log.Warn("keep the USB boot's console", "name", n.Name, "err", err)
	}
	m, err := vm.Start(ctx, l.vmConfig(n), lan.HubCommand)
	if err != nil {
		return fmt.Errorf("lab: start %s again from its disk: %w", n.Name, err)
	}
	n.m = m
	l.log.Info("machine started again from its disk, the USB stick pulled", "name", n.Name, "pid", m.PID())
	return nil
}

// killMachines ends every QEMU this run started.
func (l *lab) killMachines() {
	for _, n := range l.nodes {
		if n.m != nil {
			n.m.Kill()
		}
	}
}

// vmConfig is the QEMU machine for n.
func (l *lab) vmConfig(n *node) vm.Config {
	c := vm.Config{Name: n.Name, Firmware: n.Firmware, MemMiB: l.cfg.MemMiB, Dir: n.dir, Accel: l.accel,
		Disks:  []vm.Disk{{Path: n.disk}},
		NICs:   []vm.NIC{{Tap: n.tap(), MAC: n.MAC, NoROM: n.Firmware != "bios"}},
		Reboot: true,
		Extra:  l.cfg.Faults.QEMUArgs[n.index+1],
	}
	if n.stick != "" {
		c.Firmware = "uefi"
		if n.fromDisk {
			c.Boot = "c"
		} else {
			// The appliance powers off when done; the lab starts the
			// machine again without the stick.
			c.Disks = append(c.Disks, vm.Disk{Path: n.stick, USB: true})
			c.Reboot = false
		}
	}
	return c
}
