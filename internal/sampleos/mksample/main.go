// Command mksample builds shoal's sample OS disk (see package sampleos):
//
//	go run ./internal/sampleos/mksample -kernel out/vmlinuz -o out/sample-os.img
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/shoal-project/shoal/internal/sampleos"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mksample:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mksample", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o sampleos.Options
	fs.StringVar(&o.Kernel, "kernel", "out/vmlinuz", "kernel (bzImage with an EFI stub)")
	fs.StringVar(&o.Out, "o", "out/sample-os.img", "disk image to write")
	fs.Int64Var(&o.SizeBytes, "size", 64<<20, "disk size in bytes")
	fs.StringVar(&o.Cmdline, "cmdline", "console=ttyS0 panic=-1", "kernel command line")
	fs.BoolVar(&o.VendorLoaderOnly, "vendor-loader-only", false, `systemd-boot only at \EFI\systemd\systemd-bootx64.efi, nothing under \EFI\BOOT (UEFI boots it only through a boot entry)`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := sampleos.Build(ctx, o); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "sample OS disk: %s\n", o.Out)
	return nil
}
