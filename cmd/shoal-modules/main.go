// Command shoal-modules copies kernel modules, and every module they depend
// on (from each module's own modinfo depends=), out of a kernel's module
// tree into one flat directory for the appliance's initramfs:
//
//	shoal-modules --tree /lib/modules/6.1.0-56-amd64 --out DIR virtio_net nvme ...
//
// It prints the modules in load order. build/build.d/initramfs.sh runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/shoal-project/shoal/initramfs/kmod"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "shoal-modules:", err)
		os.Exit(1)
	}
}

func run(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("shoal-modules", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tree := fs.String("tree", "", "the kernel's module tree (lib/modules/VERSION)")
	out := fs.String("out", "", "directory to copy the .ko files into")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *tree == "" || *out == "" || fs.NArg() == 0 {
		fs.Usage()
		return errors.New("--tree, --out and module names are required")
	}
	ms, err := kmod.Resolve(*tree, fs.Args())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for _, m := range ms {
		b, err := os.ReadFile(m.Path)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(*out, m.Name+".ko"), b, 0o644); err != nil {
			return err
		}
		fmt.Fprintln(stdout, m.Name)
	}
	return nil
}
