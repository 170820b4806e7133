// Package lab is `shoal lab`, the virtual lab that shows the whole product
// work on one machine: a private network of namespaces, `shoal serve` as
// the DHCP, TFTP and HTTP server with an image in its repository, and N
// QEMU machines that PXE-boot the appliance, reimage their blank disks
// (one leader from the server, the others from it by multicast), reboot
// and come up in the new OS from their own disks. It shows a live table of
// the machines and ends with a summary; it removes everything it made.
//
// Files: lab.go (configuration and the run's steps), repo.go (the image
// and the disks), server.go (shoal serve and its API), node.go (one
// machine's state), watch.go (the watch loop), table.go (the live table
// and the summary).
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/shoal-project/shoal/internal/sampleos"
	"github.com/shoal-project/shoal/internal/vm"
)

// Config configures a lab run.
type Config struct {
	// Nodes is the number of machines (default 3). Their firmware
	// alternates SeaBIOS, OVMF, SeaBIOS, ... unless Firmware is set:
	// "bios" (SeaBIOS, PXE with QEMU's iPXE ROM), "uefi" (OVMF's own PXE
	// client) or "usb" (OVMF booting a copy of Out/shoal-usb.img, its
	// shoal.conf pointed at the lab's server, as a USB stick).
	Nodes    int
	Firmware []string
	// Image is the source disk image (default Out/sample-os.img, built
	// when missing).
	Image string
	// BootCheck is a regular expression matched on each machine's serial
	// console after the appliance's reboot: a match means the machine
	// booted its new OS from its own disk (default: the sample OS's
	// marker with the machine's name for the sample OS, DefaultBootCheck,
	// a login prompt, for any other image).
	BootCheck string
	// ChunkSizeBytes is the image's chunk size (default: 1 MiB for the
	// sample OS, so that its 20 MiB make 20 chunks and progress moves
	// smoothly; shoal image create's default otherwise).
	ChunkSizeBytes int64
	// Out holds the boot files: vmlinuz, shoal-initramfs.cpio.zst,
	// undionly.kpxe, ipxe.efi (default "out").
	Out string
	// Shoal is the shoal binary that runs `shoal serve` and `shoal image
	// create` (default: this program).
	Shoal string
	// State is the state directory whose signing key signs the lab's
	// image: the key ./build.sh baked into Out's initramfs (default: the
	// shoal binary's own default, $SHOAL_STATE or sitekeys.DefaultDir()).
	State string
	// Accel is QEMU's accelerator (default auto: KVM once a probe guest
	// has booted under it, else TCG; kvm that cannot run a guest is an
	// error before any machine starts).
	Accel vm.Accel
	// MemMiB is each machine's memory (default 512).
	MemMiB int
	// Stagger is the delay between machine starts (default 1 s).
	Stagger time.Duration
	// Timeout bounds the whole run (default 15 min).
	Timeout time.Duration
	// Silence is how long a machine's console may print nothing before
	// the machine is taken for stuck, stopped and counted failed (default
	// 3 min).
	Silence time.Duration
	// Dashboard is the host address the dashboard is proxied to (default
	// 127.0.0.1:8088; "off" for none).
	Dashboard string
	// Cmdline is extra kernel arguments for the appliance.
	Cmdline string
	// RateBitsPerSec is the leaders' multicast rate (shoal.rate=; default
	// 20 Mbit/s: a TCG-emulated machine takes no more).
	RateBitsPerSec int64
	// ServerRateBitsPerSec limits the server's link (tc tbf), as a slow
	// or distant image server would be (0: unlimited).
	ServerRateBitsPerSec int64
	// Table gets the live table and the summary (nil: none).
	Table  io.Writer
	Logger *slog.Logger
	// Keep keeps the work directory (disks, logs) for inspection.
	Keep bool
	// Faults injects failures, for the end-to-end tests.
	Faults Faults
}

// DefaultBootCheck matches a login prompt on a serial console, such as
// Debian's "shoal-debian login: ".
const DefaultBootCheck = `(?m)^\S+ login: *$`

// Faults are failures a lab run injects.
type Faults struct {
	// KillLeaderAt kills the QEMU of the machine that reports the leader
	// role once a follower has received this fraction of the image from
	// it (0: never).
	KillLeaderAt float64
	// TinyDisk gives machine number TinyDisk (1-based) a disk too small
	// for the image (0: none).
	TinyDisk int
	// QEMUArgs adds arguments to the QEMU of machine number N (1-based):
	// "-device x" that does not exist makes QEMU exit at once, "-S"
	// leaves the guest's CPU stopped (a hung guest).
	QEMUArgs map[int][]string
}

// ErrNodesFailed means the run ended with at least one machine that was
// not reimaged and booted into its new OS.
var ErrNodesFailed = errors.New("lab: some machines failed")

func (c *Config) defaults() error {
	if c.Nodes <= 0 {
		c.Nodes = 3
	}
	if c.Nodes > 200 {
		return fmt.Errorf("lab: %d machines: at most 200", c.Nodes)
	}
	if len(c.Firmware) == 0 {
		c.Firmware = []string{"bios", "uefi"}
	}
	for _, f := range c.Firmware {
		if f != "bios" && f != "uefi" && f != "usb" {
			return fmt.Errorf("lab: firmware %q: want bios, uefi or usb", f)
		}
	}
	if c.Out == "" {
		c.Out = "out"
	}
	if c.Shoal == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		c.Shoal = exe
	}
	if c.Accel == "" {
		c.Accel = vm.AccelAuto
	}
	if _, err := vm.ParseAccel(string(c.Accel)); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if c.BootCheck != "" {
		if _, err := regexp.Compile(c.BootCheck); err != nil {
			return fmt.Errorf("lab: boot check: %w", err)
		}
	}
	if c.MemMiB == 0 {
		c.MemMiB = 512
	}
	if c.Stagger == 0 {
		c.Stagger = time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 15 * time.Minute
	}
	if c.Silence == 0 {
		c.Silence = 3 * time.Minute
	}
	if c.RateBitsPerSec == 0 {
		c.RateBitsPerSec = 20e6
	}
	if c.Dashboard == "" {
		c.Dashboard = "127.0.0.1:8088"
	}
	if c.Table == nil {
		c.Table = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// BootFiles are the files Out must hold.
var BootFiles = []string{"vmlinuz", "shoal-initramfs.cpio.zst", "undionly.kpxe", "ipxe.efi"}

// USBStick is the stick image in Out that "usb" machines boot.
const USBStick = "shoal-usb.img"

// lab is one run.
type lab struct {
	cfg    Config
	log    *slog.Logger
	start  time.Time
	work   string
	sample bool // the image is the sample OS
	accel  vm.Accel
	nodes  []*node
	sum    Summary
}

// Run runs the lab and returns its summary. The error wraps
// ErrNodesFailed when any machine failed.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	if err := cfg.defaults(); err != nil {
		return Summary{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	l := &lab{cfg: cfg, log: cfg.Logger, start: time.Now()}
	if err := l.check(ctx); err != nil {
		return l.sum, err
	}
	work, err := os.MkdirTemp("", "shoal-lab-")
	if err != nil {
		return l.sum, err
	}
	l.work = work
	l.log.Info("work directory", "path", work, "keep", cfg.Keep)
	if cfg.Keep {
		fmt.Fprintf(cfg.Table, "work directory (kept): %s\n", work)
	} else {
		defer os.RemoveAll(work)
	}
	repo, err := l.makeRepo(ctx)
	if err != nil {
		return l.sum, err
	}
	lan, err := l.makeNetwork(ctx, repo)
	if err != nil {
		return l.sum, err
	}
	defer lan.Close()
	srv, err := l.startServer(ctx, lan.Nodes[0], repo)
	if err != nil {
		return l.sum, err
	}
	defer srv.stop()
	if cfg.Dashboard != "off" {
		stop, addr, err := proxyDashboard(cfg.Dashboard, srv.base, srv.api.Transport)
		if err != nil {
			l.log.Warn("dashboard proxy", "err", err)
		} else {
			defer stop()
			fmt.Fprintf(cfg.Table, "dashboard: http://%s/\n", addr)
		}
	}
	defer l.killMachines()
	if err := l.startMachines(ctx, lan); err != nil {
		return l.sum, err
	}
	runErr := l.watch(ctx, lan, srv)
	return l.finish(ctx, repo, srv, runErr)
}

// check resolves the accelerator and checks the boot files and the image
// before anything is made.
func (l *lab) check(ctx context.Context) error {
	cfg := &l.cfg
	for _, f := range BootFiles {
		if _, err := os.Stat(filepath.Join(cfg.Out, f)); err != nil {
			return fmt.Errorf("lab: boot file %s missing in %s (run ./build.sh): %w", f, cfg.Out, err)
		}
	}
	for _, f := range cfg.Firmware {
		if f == "usb" {
			if _, err := os.Stat(filepath.Join(cfg.Out, USBStick)); err != nil {
				return fmt.Errorf("lab: USB stick %s missing in %s (run ./build.sh): %w", USBStick, cfg.Out, err)
			}
		}
	}
	accel, why, err := vm.Resolve(ctx, cfg.Accel, vm.Probe{Kernel: filepath.Join(cfg.Out, "vmlinuz")})
	if err != nil {
		return fmt.Errorf("lab: accelerator %s: %w", cfg.Accel, err)
	}
	l.accel, l.sum.Accel = accel, string(accel)
	if cfg.Accel == vm.AccelAuto && accel == vm.AccelTCG {
		l.log.Warn("machines run under TCG", "why", why)
	} else {
		l.log.Info("machines", "accelerator", accel, "why", why)
	}
	l.sample = cfg.Image == ""
	if l.sample {
		if cfg.ChunkSizeBytes == 0 {
			cfg.ChunkSizeBytes = 1 << 20
		}
		cfg.Image = filepath.Join(cfg.Out, "sample-os.img")
		if _, err := os.Stat(cfg.Image); err != nil {
			l.log.Info("building the sample OS disk", "path", cfg.Image)
			if err := sampleos.Build(ctx, sampleos.Options{Kernel: filepath.Join(cfg.Out, "vmlinuz"), Out: cfg.Image}); err != nil {
				return err
			}
		}
	}
	if _, err := os.Stat(cfg.Image); err != nil {
		return fmt.Errorf("lab: image: %w", err)
	}
	return nil
}

// bootCheck is the expression that proves node name booted its new OS.
func (l *lab) bootCheck(name string) *regexp.Regexp {
	switch {
	case l.cfg.BootCheck != "":
		return regexp.MustCompile(l.cfg.BootCheck) // checked by defaults
	case l.sample:
		return regexp.MustCompile(regexp.QuoteMeta(fmt.Sprintf("%s host=%s ", sampleos.Marker, name)))
	}
	return regexp.MustCompile(DefaultBootCheck)
}
