// Command mkdebian builds (once, then from the cache) the small Debian 12
// disk image of package debianimg and prints its path:
//
//	go run ./internal/debianimg/mkdebian [-variant removable|vendor] [-cache DIR]
//
// The first build takes minutes and needs root; progress goes to stderr.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"

	"github.com/shoal-project/shoal/internal/debianimg"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mkdebian:", err)
		if err == flag.ErrHelp {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mkdebian", flag.ContinueOnError)
	fs.SetOutput(stderr)
	variant := fs.String("variant", string(debianimg.Removable), "removable (\\EFI\\BOOT\\BOOTX64.EFI) or vendor (\\EFI\\debian\\grubx64.efi only)")
	cache := fs.String("cache", debianimg.DefaultCacheDir, "cache directory")
	mirror := fs.String("mirror", debianimg.DefaultMirror, "Debian archive")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	v, err := debianimg.ParseVariant(*variant)
	if err != nil {
		return err
	}
	path, err := debianimg.Build(ctx, debianimg.Options{Variant: v, CacheDir: *cache, Mirror: *mirror,
		Logger: slog.New(slog.NewTextHandler(stderr, nil))})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, path)
	return nil
}
