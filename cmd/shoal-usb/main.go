// Command shoal-usb writes the appliance's USB-stick image: a GPT disk with
// an EFI system partition holding a unified kernel image (kernel,
// initramfs and command line on systemd's EFI stub) as
// EFI/BOOT/BOOTX64.EFI and shoal.conf, the file a field tech edits.
//
//	shoal-usb --kernel out/vmlinuz --initramfs out/shoal-initramfs.cpio.zst \
//	    [--conf my.conf] [--cmdline "console=tty0"] --out out/shoal-usb.img
//	shoal-usb --conf my.conf --set-conf out/shoal-usb.img   # or /dev/sdX
//
// --set-conf replaces shoal.conf on a stick made before (an image file or
// the stick itself), leaving the rest as it is.
//
// Write the image to a stick with dd (dd if=out/shoal-usb.img of=/dev/sdX
// bs=4M conv=fsync), or boot it in QEMU as a USB disk.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/shoal-project/shoal/initramfs/usb"
	"github.com/shoal-project/shoal/internal/progress"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "shoal-usb:", err)
		os.Exit(1)
	}
}

func run(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("shoal-usb", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o usb.Options
	fs.StringVar(&o.Kernel, "kernel", "", "kernel (bzImage with EFI stub)")
	fs.StringVar(&o.Initramfs, "initramfs", "", "the appliance's initramfs")
	fs.StringVar(&o.Cmdline, "cmdline", "console=tty0 console=ttyS0,115200 panic=-1", "kernel command line built into the image")
	fs.StringVar(&o.Stub, "stub", usb.DefaultStub, "systemd EFI stub")
	conf := fs.String("conf", "", "shoal.conf to put on the stick (default: a commented template)")
	out := fs.String("out", "", "image file to write")
	setConf := fs.String("set-conf", "", "replace shoal.conf (--conf) on this stick, image or device, and change nothing else")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *setConf != "" {
		if *conf == "" {
			return errors.New("--set-conf needs --conf")
		}
		b, err := os.ReadFile(*conf)
		if err != nil {
			return err
		}
		if err := usb.SetConf(*setConf, b); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "replaced shoal.conf on %s with %s\n", *setConf, *conf)
		return nil
	}
	if o.Kernel == "" || o.Initramfs == "" || *out == "" {
		fs.Usage()
		return errors.New("--kernel, --initramfs and --out are required")
	}
	if *conf != "" {
		b, err := os.ReadFile(*conf)
		if err != nil {
			return err
		}
		o.Conf = b
	}
	if err := usb.Write(o, *out); err != nil {
		return err
	}
	st, err := os.Stat(*out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%s): EFI/BOOT/BOOTX64.EFI and shoal.conf on its EFI system partition\n", *out, progress.Bytes(st.Size()))
	return nil
}
