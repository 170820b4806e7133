package main

import (
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/shoal-project/shoal/imaging/sign"
	"github.com/shoal-project/shoal/internal/sitekeys"
)

const keyUsage = `usage:
  shoal key gen --out PREFIX       write PREFIX.key (private, 0600) and PREFIX.pub
  shoal key ensure [--state DIR]   make the site's keys in DIR if missing (never replaced); print DIR/signing.pub`

func runKey(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "gen" && args[0] != "ensure") {
		fmt.Fprintln(stderr, keyUsage)
		return usageErr("key: want subcommand gen or ensure")
	}
	if args[0] == "ensure" {
		return runKeyEnsure(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("key gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "write PREFIX.key (private, mode 0600) and PREFIX.pub")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *out == "" || fs.NArg() != 0 {
		fs.Usage()
		return usageErr("key gen: --out PREFIX is required")
	}
	pub, err := sign.Generate(*out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s.key and %s.pub (ed25519 %s)\n", *out, *out, base64.StdEncoding.EncodeToString(pub))
	return nil
}

// runKeyEnsure is `shoal key ensure`: what shoal serve does at start, for
// scripts (build/build.d/initramfs.sh bakes the printed key in).
func runKeyEnsure(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("key ensure", stderr, "shoal key ensure [--state DIR]")
	state := stateFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return usageErr("key ensure: unexpected argument %q", fs.Arg(0))
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if _, _, err := sitekeys.Ensure(*state, log); err != nil {
		return fmt.Errorf("key ensure: %w", err)
	}
	fmt.Fprintln(stdout, sitekeys.PubPath(*state))
	return nil
}
