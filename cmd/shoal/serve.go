package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/shoal-project/shoal/internal/sitekeys"
	"github.com/shoal-project/shoal/netboot/serve"
)

// runServe is `shoal serve`: the netboot server (DHCP or proxyDHCP, TFTP,
// HTTP boot, image repository, inventory, status API and dashboard).
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := serve.Default()
	cfg.RegisterFlags(fs)
	config := fs.String("config", "", "config file of key = value lines; keys are these flags' names (see docs/serve.sample.conf); flags given on the command line win")
	verbose := fs.Bool("v", false, "log every request")
	state := stateFlag(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: shoal serve [--config FILE] [--iface IF] [--dhcp full|proxy|off] [--range FIRST-LAST]\n"+
			"                   [--http ADDR] [--repo DIR | --upstream URL [--cache-dir DIR] [--cache-bytes N]] [--boot DIR]\n"+
			"                   [--inventory FILE | --store etcd[s]://HOST:PORT,...] [--unknown ignore|IMAGE] [--insecure-open-api] [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("serve: unexpected argument %q", fs.Arg(0))
	}
	if *config != "" {
		if err := serve.LoadFile(fs, *config); err != nil {
			return err
		}
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	// The site's keys, made on first start as sshd makes its host keys.
	keys, made, err := sitekeys.Ensure(*state, log)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if !made {
		log.Info("site keys", "dir", *state, "pub", sitekeys.PubPath(*state))
	}
	// Credentials carry each image's session key, derived from the secret.
	cfg.SessionSecret = keys.SessionSecret
	// A repository cache (--upstream) serves the manifests the site signed.
	cfg.SigningPub = keys.SigningPub
	ls, err := serve.Listen(cfg)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	s, err := serve.New(cfg, ls, log)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	fmt.Fprintf(stdout, "shoal serve: http on %s\n", ls.HTTP.Addr())
	return s.Serve(ctx)
}
