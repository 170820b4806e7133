package main

import (
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"io"

	"github.com/shoal-project/shoal/imaging/sign"
)

func runKey(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "gen" {
		fmt.Fprintln(stderr, "usage: shoal key gen --out PREFIX")
		return usageErr("key: want subcommand gen")
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
