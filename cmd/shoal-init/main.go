// Command shoal-init is the appliance's uinit: u-root's init runs it after
// boot. It reimages the machine as the kernel command line, the netboot
// server or shoal.conf on the USB stick say (see docs/appliance.md), then
// reboots, kexecs, powers off or runs a shell. On failure it prints what
// went wrong, reports it, and runs a shell on the console; it never exits
// on its own, so that init cannot reboot the machine into a loop.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/shoal-project/shoal/initramfs/appliance"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "shoal-init:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("shoal-init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := appliance.DefaultOptions()
	fs.StringVar(&o.Cmdline, "cmdline", o.Cmdline, "file holding the kernel command line")
	fs.StringVar(&o.ModulesDir, "modules", o.ModulesDir, "directory of kernel modules to load")
	fs.StringVar(&o.PubKey, "pubkey", o.PubKey, "image-signing public key (absent: the appliance refuses to reimage unless the kernel command line says shoal.insecure=unsigned)")
	fs.DurationVar(&o.ConfWait, "conf-wait", o.ConfWait, "how long to wait for a USB stick with shoal.conf")
	fs.DurationVar(&o.DiskWait, "disk-wait", o.DiskWait, "how long to wait for the target disk")
	single := fs.Bool("single-node", false, "fetch from the server only, without the peer session")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return err
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	if *single {
		o.Reimage = appliance.SingleNode
	}
	if !*verbose {
		// u-root's DHCP client logs whole packets with the log package.
		log.SetOutput(io.Discard)
	}
	o.Console = stdout
	o.Log = slog.New(slog.NewTextHandler(stdout, &slog.HandlerOptions{Level: level}))
	err := appliance.Run(ctx, o)
	// After a failure, or with shoal.after=shell: a shell on the console,
	// for good (returning would make init reboot the machine).
	return appliance.Shell(ctx, stdout, err)
}
