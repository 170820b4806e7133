// Package bench measures shoal's multicast transport against udpcast, uftp
// and unicast HTTP on the same LAN of network namespaces (internal/netlab):
// the same image, the same link rate, the same emulated loss, one run per
// tool, receiver count and loss rate. It drives the real programs (shoal
// send/receive, udp-sender/udp-receiver, uftp/uftpd, curl against a Go HTTP
// server) and measures time, server egress and received bytes from the
// kernel's interface counters, so every tool is measured the same way, and
// each process's CPU time from its own rusage. Unlimited runs (no tc) also
// measure the platform's ceiling, a raw UDP multicast blast (iperf2).
package bench

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/internal/netlab"
)

// Tools the bench knows, in the order it runs them.
var Tools = []string{"shoal", "udpcast", "uftp", "http"}

// Config describes a bench run.
type Config struct {
	// SizeBytes is the image size (random, incompressible data).
	SizeBytes int64
	// RateBitsPerSec is every link's rate (tc, see Shaping). With
	// Unlimited it is the nominal rate the link fractions are of and
	// shoal's --rate (default 10 Gbit/s, what a veth reports), and no tc
	// holds the links to it.
	RateBitsPerSec int64
	// Unlimited puts no rate limit on the links, and adds a ceiling run
	// (CeilingResult) for each receiver count.
	Unlimited bool
	// Shaping is the qdisc holding the links to the rate: netlab.ShapingHTB
	// (the default: uftp at 1 Gbit/s took 6.3 s on average over 4 runs
	// with it, 8.1 s with tbf; at 200 Mbit/s no tool differed) or
	// netlab.ShapingTBF.
	Shaping string
	// GRO turns on generic receive offload on the nodes' interfaces, as a
	// real NIC has it (netlab.Config.GRO); only loss 0 may be asked for.
	GRO bool
	// MTU is every link's MTU (default 1500).
	MTU int
	// CeilingDuration is how long each ceiling blast lasts (default 5 s).
	CeilingDuration time.Duration
	Receivers       []int
	LossPermille    []int
	Tools           []string
	// LateJoin adds a shoal run with one receiver from the start and one
	// started when the first pass is half way.
	LateJoin bool
	// ShoalBin is the shoal binary to run.
	ShoalBin string
	// Dir holds the image, repository and targets (removed after each run).
	Dir string
	// RunTimeout bounds one run (default: 20x the image's time on the link,
	// at least 60 s).
	RunTimeout time.Duration
	// ProfileDir, when set, gets a CPU profile of every shoal sender and
	// receiver (tx-RUN.pprof, rxN-RUN.pprof), for finding where the cost is.
	ProfileDir string
	// Log, when set, gets a line per run.
	Log io.Writer
}

// Need lists the programs each tool needs on PATH.
var Need = map[string][]string{
	"shoal":   nil,
	"udpcast": {"udp-sender", "udp-receiver"},
	"uftp":    {"uftp", "uftpd"},
	"http":    {"curl"},
}

func (c *Config) defaults() {
	if c.SizeBytes <= 0 {
		c.SizeBytes = 256 << 20
	}
	if c.RateBitsPerSec <= 0 {
		c.RateBitsPerSec = 200e6
		if c.Unlimited {
			c.RateBitsPerSec = 10e9
		}
	}
	if c.MTU <= 0 {
		c.MTU = 1500
	}
	if c.Shaping == "" {
		c.Shaping = netlab.ShapingHTB
	}
	if c.CeilingDuration <= 0 {
		c.CeilingDuration = 5 * time.Second
	}
	if len(c.Receivers) == 0 {
		c.Receivers = []int{1, 8}
	}
	if len(c.LossPermille) == 0 {
		c.LossPermille = []int{0, 10}
	}
	if len(c.Tools) == 0 {
		c.Tools = Tools
	}
	if c.RunTimeout <= 0 {
		c.RunTimeout = max(60*time.Second, 20*c.linkTime())
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

func (c *Config) linkTime() time.Duration {
	return time.Duration(float64(c.SizeBytes*8) / float64(c.RateBitsPerSec) * float64(time.Second))
}

// lanConfig is the LAN of a run with nodes nodes.
func (c *Config) lanConfig(nodes int) netlab.Config {
	lc := netlab.Config{Nodes: nodes, RateBitsPerSec: c.RateBitsPerSec, Shaping: c.Shaping, MTU: c.MTU, GRO: c.GRO}
	if c.Unlimited {
		lc.RateBitsPerSec = 0
	}
	return lc
}

// needs lists the programs a run of cfg needs, by what needs them.
func (c *Config) needs() (map[string][]string, error) {
	need := map[string][]string{}
	for _, t := range c.Tools {
		n, ok := Need[t]
		if !ok {
			return nil, fmt.Errorf("bench: unknown tool %q (have %s)", t, strings.Join(Tools, ", "))
		}
		need[t] = n
	}
	if c.Unlimited {
		need["the ceiling"] = CeilingNeed
	}
	return need, nil
}

// Run runs the bench. It needs root and the tools' programs.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.defaults()
	needs, err := cfg.needs()
	if err != nil {
		return nil, err
	}
	for t, need := range needs {
		for _, p := range need {
			if _, err := exec.LookPath(p); err != nil {
				return nil, fmt.Errorf("bench: %s needs %s: %w", t, p, err)
			}
		}
	}
	if cfg.ShoalBin == "" {
		return nil, errors.New("bench: no shoal binary")
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	r := &Report{SizeBytes: cfg.SizeBytes, RateBitsPerSec: cfg.RateBitsPerSec, Unlimited: cfg.Unlimited, MTU: cfg.MTU,
		Shaping: cfg.Shaping, Started: time.Now().UTC(), name: "bench"}
	if cfg.Unlimited {
		r.Shaping = "" // nothing shapes
	}
	if err := r.makeImage(ctx, cfg); err != nil {
		return nil, err
	}
	wb := r.writeBaseline(ctx, cfg.Dir)
	r.Write = &wb
	fmt.Fprintf(cfg.Log, "write baseline: dd of the image to a new file in %s: %.2fs, cpu s/GiB %.2f %s\n", cfg.Dir, wb.Seconds, wb.CPUSecondsPerGiB, wb.Error)
	if cfg.Unlimited {
		for _, n := range cfg.Receivers {
			for _, c := range []CeilingResult{r.ceiling(ctx, cfg, n), r.ceilingGSO(ctx, cfg, n)} {
				fmt.Fprintf(cfg.Log, "ceiling %s rx=%d: %d-byte datagrams, sent %.3f Gbit/s, slowest receiver %.3f Gbit/s, lost %.3f, cpu s/GiB tx %.2f rx mean %.2f max %.2f %s\n",
					c.Method, n, c.DatagramBytes, c.SentBitsPerSec/1e9, c.BitsPerSec/1e9, c.LossFraction,
					c.SenderCPUSecondsPerGiB, c.ReceiverCPUSecondsPerGiBMean, c.ReceiverCPUSecondsPerGiBMax, c.Error)
				r.Ceilings = append(r.Ceilings, c)
			}
			if err := ctx.Err(); err != nil {
				return r, err
			}
		}
	}
	for _, tool := range cfg.Tools {
		for _, n := range cfg.Receivers {
			for _, loss := range cfg.LossPermille {
				res := r.runOne(ctx, cfg, tool, n, loss)
				fmt.Fprintf(cfg.Log, "%s\n", res.line())
				r.Results = append(r.Results, res)
				if err := ctx.Err(); err != nil {
					return r, err
				}
			}
		}
	}
	if cfg.LateJoin {
		lj := r.lateJoin(ctx, cfg)
		r.LateJoin = &lj
		fmt.Fprintf(cfg.Log, "late join: on time %.2fs, joined after %.2fs and took %.2fs: %.3fx %s\n", lj.OnTimeSeconds, lj.JoinedAfter, lj.LateSeconds, lj.Ratio, lj.Error)
	}
	return r, ctx.Err()
}

func (r *Report) makeImage(ctx context.Context, cfg Config) error {
	r.src = filepath.Join(cfg.Dir, "disk.raw")
	f, err := os.Create(r.src)
	if err != nil {
		return err
	}
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, cfg.SizeBytes); err != nil {
		f.Close()
		return fmt.Errorf("bench: write image: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	copy(r.srcSum[:], h.Sum(nil))
	r.repo = filepath.Join(cfg.Dir, "repo")
	os.RemoveAll(r.repo)
	img, _, err := imaging.Create(ctx, r.src, r.repo, r.name, imaging.CreateOptions{})
	if err != nil {
		return fmt.Errorf("bench: create image: %w", err)
	}
	r.StoredBytes = img.Manifest.StoredBytes
	return nil
}

// runOne runs one tool with n receivers at loss.
func (r *Report) runOne(ctx context.Context, cfg Config, tool string, n, loss int) (res Result) {
	res = Result{Tool: tool, Receivers: n, LossPermille: loss}
	fail := func(err error) Result {
		res.OK, res.Error = false, err.Error()
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.RunTimeout)
	defer cancel()
	lan, err := netlab.New(ctx, cfg.lanConfig(n+1))
	if err != nil {
		return fail(err)
	}
	defer lan.Close()
	for _, node := range lan.Nodes[1:] {
		if err := node.SetLoss(loss); err != nil {
			return fail(err)
		}
	}
	runDir := filepath.Join(cfg.Dir, "run")
	os.RemoveAll(runDir)
	defer os.RemoveAll(runDir)
	targets := make([]string, n)
	for i := range targets {
		d := filepath.Join(runDir, fmt.Sprintf("rx%d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fail(err)
		}
		targets[i] = filepath.Join(d, "disk.raw")
	}
	before := make([]counters, n+1)
	for i, node := range lan.Nodes {
		if before[i], err = readCounters(ctx, node); err != nil {
			return fail(err)
		}
	}
	rb0, qd0, err := drops(ctx, lan)
	if err != nil {
		return fail(err)
	}
	resetCPU()
	var elapsed time.Duration
	switch tool {
	case "shoal":
		elapsed, err = r.runShoal(ctx, cfg, lan, targets, runDir, &res.Detail)
	case "udpcast":
		elapsed, err = r.runUDPCast(ctx, cfg, lan, targets)
	case "uftp":
		elapsed, err = r.runUFTP(ctx, cfg, lan, targets, runDir)
	case "http":
		elapsed, err = r.runHTTP(ctx, cfg, lan, targets)
	}
	if err != nil {
		return fail(err)
	}
	// Every process of the tool has ended: one still in a namespace
	// forked away from the PID we measure.
	if err := strays(ctx, lan); err != nil {
		return fail(err)
	}
	rb1, qd1, err := drops(ctx, lan)
	if err != nil {
		return fail(err)
	}
	res.RcvbufDrops, res.QdiscDrops = rb1-rb0, qd1-qd0
	cpu := costOf(resetCPU())
	res.ReceiverCPUSeconds, res.SenderCPUSeconds = cpu.rxSum.Seconds(), cpu.tx.Seconds()
	res.SenderCPUSecondsPerGiB = perGiB(cpu.tx, cfg.SizeBytes)
	res.ReceiverCPUSecondsPerGiBMean = perGiB(cpu.rxMean, cfg.SizeBytes)
	res.ReceiverCPUSecondsPerGiBMax = perGiB(cpu.rxMax, cfg.SizeBytes)
	res.Seconds = elapsed.Seconds()
	res.BitsPerSec = float64(cfg.SizeBytes*8) / elapsed.Seconds()
	res.LinkFraction = res.BitsPerSec / float64(cfg.RateBitsPerSec)
	if c := r.ceilingFor(n); c > 0 {
		res.CeilingFraction = res.BitsPerSec / c
	}
	hdr := int64(42)
	if tool == "http" {
		hdr = 66
	}
	var rxPayload int64
	for i, node := range lan.Nodes {
		after, err := readCounters(ctx, node)
		if err != nil {
			return fail(err)
		}
		if i == 0 {
			res.EgressBytes = (after.txBytes - before[0].txBytes) - hdr*(after.txPackets-before[0].txPackets)
			continue
		}
		rxPayload += (after.rxBytes - before[i].rxBytes) - hdr*(after.rxPackets-before[i].rxPackets)
	}
	res.EgressRatio = float64(res.EgressBytes) / float64(r.StoredBytes)
	perRx := float64(rxPayload) / float64(n) * (1 - float64(loss)/1000)
	res.DuplicateFraction = perRx/float64(cfg.SizeBytes) - 1
	for i, t := range targets {
		if err := r.check(t); err != nil {
			return fail(fmt.Errorf("receiver %d: %w", i, err))
		}
	}
	res.OK = true
	return res
}

// check compares a target's first SizeBytes with the image.
func (r *Report) check(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, f, r.SizeBytes); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if [32]byte(h.Sum(nil)) != r.srcSum {
		return fmt.Errorf("%s differs from the image", path)
	}
	return nil
}

// ceilingFor is the platform's ceiling for n receivers: the faster of the
// blasts that succeeded (0: none).
func (r *Report) ceilingFor(n int) float64 {
	var best float64
	for _, c := range r.Ceilings {
		if c.Receivers == n && c.OK {
			best = max(best, c.BitsPerSec)
		}
	}
	return best
}
