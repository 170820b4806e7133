package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-project/shoal/internal/bench"
	"github.com/shoal-project/shoal/internal/netlab"
	"github.com/shoal-project/shoal/internal/units"
)

const benchUsage = `shoal bench [--size 256MiB] [--rate 200Mbit] [--receivers 1,8] [--loss 0,1] [--tools shoal,udpcast,uftp,http] [--json bench.json]
            [--unlimited] [--mtu 1500|9000] [--shaping htb|tbf]
shoal bench --session [--size 1GiB] [--rate 200Mbit] [--nodes 8] [--spread 10s] [--runs alone,session,unicast,leader-killed] [--delta 5]

Builds a LAN of network namespaces (a bridge, one veth per node, tc htb at
--rate on every link, nftables random loss on the receivers' links), makes an
image of random (incompressible) data, and runs each tool on it for each
receiver count and loss rate: shoal send/receive, udpcast
(udp-sender/udp-receiver), uftp (uftp/uftpd) and unicast HTTP (curl from a Go
file server). It prints a table (seconds until every receiver is done,
fraction of link rate, server egress over the image's stored size, duplicate
data per receiver, CPU seconds per GiB of the sender and of the receivers,
from each process's own rusage) and writes the raw figures as JSON (--json,
default bench.json); the plot of time against receivers is drawn from them by
"go run ./cmd/shoal-benchplot bench.json" (bench.png). Every target is
checked byte for byte. Needs root; run it by hand, it takes minutes.

--unlimited puts no tc on the links (--rate is then only the nominal link
rate the fractions are of, and shoal send's --rate; default 10Gbit, what a
veth reports) and first measures the platform's ceiling for each receiver
count: iperf2 blasting UDP multicast datagrams of MTU-28 bytes with no
protocol through the same namespaces; every tool is then also printed as a
fraction of it. --mtu sets every link's and the bridge's MTU; --shaping
picks the qdisc that holds the links to --rate (htb, the default, or tbf).

With --session it measures the peer session instead: --nodes nodes started
evenly over --spread run shoal fetch from a plain HTTP server, against one
node alone, against every node downloading from the server (shoal image
apply), and with the leader (the first node) killed once the server has
sent half the image; with --delta P, also with every node's disk holding a
v1 that differs from the image in P percent of its chunks (only what
differs should move). It prints time, server egress and multicast data for
each (and writes them as JSON with --json; there is no plot of them).`

func splitInts(s string, scale float64) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("%q: want comma-separated numbers", s)
		}
		out = append(out, int(v*scale+0.5))
	}
	return out, nil
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", stderr, benchUsage)
	size := int64(256 << 20)
	fs.Var(bytesFlag{&size}, "size", "image size (random data)")
	rate := fs.String("rate", "200Mbit", "link rate")
	receivers := fs.String("receivers", "1,8", "receiver counts, comma-separated")
	loss := fs.String("loss", "0,1", "loss rates in percent on each receiver's link, comma-separated")
	tools := fs.String("tools", strings.Join(bench.Tools, ","), "tools to run, comma-separated")
	lateJoin := fs.Bool("late-join", true, "also measure a shoal receiver that joins half way")
	dir := fs.String("dir", "", "work directory (default: a new temporary directory, removed at the end)")
	plotPath := fs.String("plot", "", "gone: cmd/shoal-benchplot draws the plot from --json's file")
	jsonPath := fs.String("json", "", "write the raw figures as JSON here (default bench.json; with --session none)")
	shoalBin := fs.String("shoal", "", "shoal binary to run (default: this one)")
	session := fs.Bool("session", false, "measure the peer session (shoal fetch) instead of send/receive")
	nodes := fs.Int("nodes", 8, "--session: number of nodes")
	spread := fs.Duration("spread", 10*time.Second, "--session: nodes start evenly over this time")
	runs := fs.String("runs", strings.Join(bench.SessionRuns, ","), "--session: runs, comma-separated (and delta, with --delta)")
	delta := fs.Float64("delta", 0, "--session: also the delta run, every disk holding a v1 that differs from the image in this percent of its chunks")
	unlimited := fs.Bool("unlimited", false, "no rate limit on the links; measure the platform's ceiling (iperf2) too")
	mtu := fs.Int("mtu", 1500, "MTU of every link and the bridge (1500, or 9000 for jumbo frames)")
	shaping := fs.String("shaping", "htb", "qdisc holding the links to --rate: htb or tbf")
	gro := fs.Bool("gro", false, "generic receive offload on the receivers' interfaces, as real NICs have it (with --loss 0 only)")
	profileDir := fs.String("profile-dir", "", "write a CPU profile of every shoal sender and receiver into this directory")
	httpRoot := fs.String("http-root", "", "internal: serve this directory over HTTP (the bench's HTTP sender) and nothing else")
	httpListen := fs.String("http-listen", "", "internal: with --http-root, the address to listen on")
	blast := fs.String("blast", "", "internal: blast UDP multicast to this GROUP:PORT with UDP_SEGMENT (the ceiling's sender) and nothing else")
	sink := fs.String("sink", "", "internal: count the UDP multicast arriving on this GROUP:PORT (the ceiling's receiver) and nothing else")
	blastIface := fs.String("blast-iface", "eth0", "internal: with --blast or --sink, the interface")
	blastFor := fs.Duration("blast-for", 5*time.Second, "internal: with --blast or --sink, how long")
	blastBytes := fs.Int("blast-bytes", 1472, "internal: with --blast, the datagram size")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		fs.Usage()
		return usageErr("bench: no arguments expected")
	}
	if *httpRoot != "" {
		return bench.ServeFiles(ctx, *httpListen, *httpRoot)
	}
	if *blast != "" || *sink != "" {
		g, err := netip.ParseAddrPort(*blast + *sink)
		if err != nil || *blast != "" && *sink != "" {
			return usageErr("bench: --blast or --sink GROUP:PORT: %q %q", *blast, *sink)
		}
		if *blast != "" {
			return bench.Blast(ctx, *blastIface, g, *blastBytes, *blastFor, stdout)
		}
		return bench.Sink(ctx, *blastIface, g, *blastFor, stdout)
	}
	if *mtu < 576 || *mtu > 9000 {
		return usageErr("bench: --mtu %d: want 576 to 9000 (1500, or 9000 for jumbo frames)", *mtu)
	}
	if *shaping != netlab.ShapingTBF && *shaping != netlab.ShapingHTB {
		return usageErr("bench: --shaping %q: want %s or %s", *shaping, netlab.ShapingTBF, netlab.ShapingHTB)
	}
	if *plotPath != "" {
		return usageErr("bench: --plot is gone (the shoal binary carries no plotting library): the figures go to --json FILE (default bench.json); draw them with: go run ./cmd/shoal-benchplot -o %s FILE", *plotPath)
	}
	if *session {
		if !isSet(fs, "size") {
			size = 1 << 30
		}
		runList := strings.Split(*runs, ",")
		if *delta > 0 && !isSet(fs, "runs") {
			runList = append(runList, bench.RunDelta)
		}
		return runSessionBench(ctx, bench.SessionConfig{SizeBytes: size, Nodes: *nodes, Spread: *spread, DeltaPercent: *delta,
			Runs: runList, ShoalBin: *shoalBin, Dir: *dir, Log: stderr}, *rate, *jsonPath, stdout)
	}
	if !isSet(fs, "json") {
		*jsonPath = "bench.json"
	}
	cfg := bench.Config{SizeBytes: size, LateJoin: *lateJoin, Log: stderr, ShoalBin: *shoalBin, Tools: strings.Split(*tools, ","),
		Unlimited: *unlimited, MTU: *mtu, Shaping: *shaping, ProfileDir: *profileDir, GRO: *gro}
	if *unlimited && !isSet(fs, "rate") {
		*rate = "10Gbit"
	}
	if cfg.RateBitsPerSec, err = units.ParseRate(*rate); err != nil {
		return usageErr("bench: %v", err)
	}
	if cfg.Receivers, err = splitInts(*receivers, 1); err != nil {
		return usageErr("bench: --receivers %v", err)
	}
	if cfg.LossPermille, err = splitInts(*loss, 10); err != nil {
		return usageErr("bench: --loss %v", err)
	}
	if *gro && slices.ContainsFunc(cfg.LossPermille, func(l int) bool { return l > 0 }) {
		return usageErr("bench: --gro with a --loss above 0: the emulated loss acts where frames arrive, and with GRO it would drop whole runs of them")
	}
	if cfg.ShoalBin == "" {
		if cfg.ShoalBin, err = os.Executable(); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	cfg.Dir = *dir
	if cfg.Dir == "" {
		if cfg.Dir, err = os.MkdirTemp("", "shoal-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(cfg.Dir)
	}
	rep, err := bench.Run(ctx, cfg)
	if rep != nil {
		fmt.Fprintln(stdout)
		if terr := rep.WriteTable(stdout); terr != nil && err == nil {
			err = terr
		}
		if *jsonPath != "" {
			if jerr := rep.WriteJSON(*jsonPath); jerr != nil && err == nil {
				err = jerr
			} else if jerr == nil {
				fmt.Fprintf(stdout, "figures: %s (plot them: go run ./cmd/shoal-benchplot %s)\n", *jsonPath, *jsonPath)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

// isSet reports whether the flag called name was given.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func runSessionBench(ctx context.Context, cfg bench.SessionConfig, rate, jsonPath string, stdout io.Writer) error {
	var err error
	if cfg.RateBitsPerSec, err = units.ParseRate(rate); err != nil {
		return usageErr("bench: %v", err)
	}
	if cfg.ShoalBin == "" {
		if cfg.ShoalBin, err = os.Executable(); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	if cfg.Dir == "" {
		if cfg.Dir, err = os.MkdirTemp("", "shoal-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(cfg.Dir)
	}
	rep, err := bench.RunSession(ctx, cfg)
	if rep != nil {
		fmt.Fprintln(stdout)
		if terr := rep.WriteTable(stdout); terr != nil && err == nil {
			err = terr
		}
		if jsonPath != "" {
			b, jerr := json.MarshalIndent(rep, "", "  ")
			if jerr == nil {
				jerr = os.WriteFile(jsonPath, append(b, '\n'), 0o644)
			}
			if jerr != nil && err == nil {
				err = jerr
			}
		}
	}
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}
