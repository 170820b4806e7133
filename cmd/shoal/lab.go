package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/shoal-project/shoal/internal/lab"
	"github.com/shoal-project/shoal/internal/units"
	"github.com/shoal-project/shoal/internal/vm"
)

// envOr is the environment variable key, or def when it is unset.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

const labUsage = `shoal lab [--nodes 3] [--image DISK.img [--boot-check REGEX]] [--summary FILE.json] [--firmware bios,uefi,usb] [--accel auto|kvm|tcg] [--rate 20Mbit] [--server-rate RATE] [--out out] [--keep]

The virtual lab: builds a private network of namespaces, runs shoal serve
(DHCP, TFTP, HTTP) with the image in its repository, and boots --nodes QEMU
machines with blank disks that PXE-boot the appliance from --out, reimage
their disks (one leader from the server, the others by multicast from it),
reboot and come up in the new OS from their own disks. Without --image the
image is shoal's sample OS (out/sample-os.img, built when missing). Each
machine must boot its new OS from its own disk: --boot-check is matched on
its serial console after the appliance's reboot (default: the sample OS's
marker, or a login prompt for any other image). Machines run under KVM
only once a probe guest has booted under it (--accel auto; $SHOAL_ACCEL
sets the default), else under TCG. Shows a live table and a
dashboard URL, then a summary; --summary writes it as JSON. Removes
everything it made, on exit or Ctrl-C, and exits non-zero if any machine
failed. Needs root, QEMU and the files ./build.sh puts in out/.`

func runLab(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("lab", stderr, labUsage)
	var cfg lab.Config
	fs.IntVar(&cfg.Nodes, "nodes", 3, "number of machines")
	fs.StringVar(&cfg.Image, "image", "", "disk image to reimage the machines with (default: the sample OS)")
	fs.StringVar(&cfg.BootCheck, "boot-check", "", "regular expression that proves a machine booted its new OS, matched on its serial console after the reboot (default: the sample OS's marker; a login prompt, "+lab.DefaultBootCheck+", for --image)")
	accel := fs.String("accel", envOr(vm.EnvAccel, "auto"), "QEMU accelerator: auto (KVM once a probe guest boots under it, else TCG), kvm (an error if it cannot run a guest), tcg")
	fs.DurationVar(&cfg.Silence, "silence", 0, "a machine whose console prints nothing this long is stopped and counted failed (default 3m)")
	fs.StringVar(&cfg.Out, "out", "out", "directory with vmlinuz, shoal-initramfs.cpio.zst, undionly.kpxe, ipxe.efi")
	fs.StringVar(&cfg.State, "state", defaultState(), "state directory whose signing key signs the lab's image: the key ./build.sh baked into --out's initramfs")
	summary := fs.String("summary", "", "write the summary as JSON to this file")
	firmware := fs.String("firmware", "bios,uefi", "firmware of the machines, in turn: bios (SeaBIOS PXE), uefi (OVMF PXE), usb (OVMF booting out/shoal-usb.img)")
	fs.Var(bytesFlag{&cfg.ChunkSizeBytes}, "chunk-size", "the image's chunk size (default 1MiB for the sample OS, else 4MiB)")
	fs.IntVar(&cfg.MemMiB, "mem", 512, "memory of each machine in MiB")
	fs.DurationVar(&cfg.Timeout, "timeout", 0, "bound on the whole run (default 15m)")
	fs.DurationVar(&cfg.Stagger, "stagger", 0, "delay between machine starts (default 1s)")
	fs.StringVar(&cfg.Dashboard, "dashboard", "127.0.0.1:8088", `host address of the dashboard ("off": none)`)
	fs.StringVar(&cfg.Cmdline, "cmdline", "", "extra kernel arguments for the appliance")
	rate := fs.String("rate", "20Mbit", "the leaders' multicast rate (shoal.rate=; QEMU's emulated machines take little more)")
	serverRate := fs.String("server-rate", "", "limit the server's link to this rate, e.g. 50Mbit (default: unlimited)")
	fs.Float64Var(&cfg.Faults.KillLeaderAt, "kill-leader-at", 0, "kill the leader's machine once a follower has this fraction of the image (shows a takeover)")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the work directory (disks, serial logs, server log)")
	verbose := fs.Bool("v", false, "log each event")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		fs.Usage()
		return usageErr("lab: no arguments expected")
	}
	if cfg.Nodes < 1 {
		return usageErr("lab: --nodes %d: want at least 1", cfg.Nodes)
	}
	cfg.Firmware = strings.Split(*firmware, ",")
	a, err := vm.ParseAccel(*accel)
	if err != nil {
		return usageErr("lab: --accel: %v", err)
	}
	cfg.Accel = a
	if cfg.RateBitsPerSec, err = units.ParseRate(*rate); err != nil {
		return usageErr("lab: --rate: %v", err)
	}
	if *serverRate != "" {
		if cfg.ServerRateBitsPerSec, err = units.ParseRate(*serverRate); err != nil {
			return usageErr("lab: --server-rate: %v", err)
		}
	}
	cfg.Table = stdout
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	sum, err := lab.Run(ctx, cfg)
	if *summary != "" && (err == nil || errors.Is(err, lab.ErrNodesFailed)) {
		b, jerr := json.MarshalIndent(sum, "", "  ")
		if jerr == nil {
			jerr = os.WriteFile(*summary, append(b, '\n'), 0o644)
		}
		if jerr != nil {
			return errors.Join(err, fmt.Errorf("lab: summary: %w", jerr))
		}
	}
	return err
}
