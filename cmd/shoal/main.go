// Command shoal is the operator's tool: it builds, inspects, verifies and
// applies disk images, serves them to netbooting machines, sends and
// receives them by multicast and through the peer session, and runs the
// virtual lab and the benchmarks.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one subcommand of shoal.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands lists shoal's subcommands in the order `shoal help` prints them.
func commands() []command {
	return []command{
		{"key", "manage signing keys (key gen --out PREFIX; key ensure --state DIR)", runKey},
		{"image", "create, inspect, verify and apply images", runImage},
		{"serve", "netboot server: DHCP/proxyDHCP, TFTP, HTTP boot, repository, inventory, dashboard", runServe},
		{"send", "multicast an image to receivers on the LAN (send --repo DIR|URL --name NAME)", runSend},
		{"receive", "receive a multicast image onto a target (receive --name NAME TARGET)", runReceive},
		{"fetch", "fetch an image from a peer on the LAN or the server, relaying it to peers (fetch --repo URL --name NAME TARGET)", runFetch},
		{"lab", "the virtual lab: QEMU machines PXE-boot and are reimaged by multicast on a namespace LAN (needs root)", runLab},
		{"bench", "measure send/receive against udpcast, uftp and HTTP on a namespace LAN (needs root)", runBench},
	}
}

// errUsage marks an error in how shoal was called; main exits 2 for it.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "shoal:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "shoal:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stderr)
		if len(args) == 0 {
			return fmt.Errorf("%w: no command given", errUsage)
		}
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	usage(stderr)
	return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: shoal COMMAND [flags] [args]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'shoal COMMAND -h' for a command's flags.")
}

// usageErr wraps a message as a usage error.
func usageErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}
