// Package bench measures shoal's multicast transport against udpcast, uftp
// and unicast HTTP on the same LAN of network namespaces (internal/netlab):
// the same image, the same link rate, the same emulated loss, one run per
// tool, receiver count and loss rate. It drives the real programs (shoal
// send/receive, udp-sender/udp-receiver, uftp/uftpd, curl against a Go HTTP
// server) and measures time, server egress and received bytes from the
// kernel's interface counters, so every tool is measured the same way.
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
	// RateBitsPerSec is every link's rate (tc tbf).
	RateBitsPerSec int64
	Receivers      []int
	LossPermille   []int
	Tools          []string
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
	// Log, when set, gets a line per run.
	Log io.Writer
}

// Result is one run.
type Result struct {
	Tool         string  `json:"tool"`
	Receivers    int     `json:"receivers"`
	LossPermille int     `json:"lossPermille"`
	Seconds      float64 `json:"seconds"`
	// LinkFraction is the image's bits over the time and link rate.
	LinkFraction float64 `json:"linkFraction"`
	// EgressBytes is what the server sent: its interface's bytes less
	// the Ethernet, IP and UDP (or TCP) headers.
	EgressBytes int64   `json:"egressBytes"`
	EgressRatio float64 `json:"egressRatio"` // EgressBytes / image's stored size
	// DuplicateFraction is what each receiver got beyond one copy of the
	// image (averaged), less what the emulated loss dropped, over the
	// image's size; it includes the tool's own headers.
	DuplicateFraction float64 `json:"duplicateFraction"`
	// RcvbufDrops counts datagrams the receivers' kernels dropped for a
	// full socket buffer (UDP RcvbufErrors); QdiscDrops what tc dropped on
	// every link (a sender faster than the link, or a receiver link
	// carrying more than its rate).
	RcvbufDrops int64 `json:"rcvbufDrops"`
	QdiscDrops  int64 `json:"qdiscDrops"`
	// ReceiverCPUSeconds and SenderCPUSeconds are the user+system CPU
	// time of the receiving processes (summed) and of the sender process
	// (the kernel's softirq work for the bridge is not in them).
	ReceiverCPUSeconds float64 `json:"receiverCPUSeconds"`
	SenderCPUSeconds   float64 `json:"senderCPUSeconds"`
	// Detail is what the tool itself reported (shoal: the receivers'
	// summed counters).
	Detail string `json:"detail,omitempty"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
}

// LateJoinResult compares a receiver that joined half way with one that was
// there from the start.
type LateJoinResult struct {
	OnTimeSeconds float64 `json:"onTimeSeconds"`
	LateSeconds   float64 `json:"lateSeconds"` // from its start to its end
	JoinedAfter   float64 `json:"joinedAfterSeconds"`
	Ratio         float64 `json:"ratio"`
	OK            bool    `json:"ok"`
	Error         string  `json:"error,omitempty"`
}

// Report is everything a bench run measured.
type Report struct {
	SizeBytes       int64           `json:"sizeBytes"`
	StoredBytes     int64           `json:"storedBytes"`
	RateBitsPerSec  int64           `json:"rateBitsPerSec"`
	Started         time.Time       `json:"started"`
	Results         []Result        `json:"results"`
	LateJoin        *LateJoinResult `json:"lateJoin,omitempty"`
	ToolVersions    map[string]string
	srcSum          [32]byte
	src, repo, name string
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

// Run runs the bench. It needs root and the tools' programs.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.defaults()
	for _, t := range cfg.Tools {
		need, ok := Need[t]
		if !ok {
			return nil, fmt.Errorf("bench: unknown tool %q (have %s)", t, strings.Join(Tools, ", "))
		}
		for _, p := range need {
			if _, err := exec.LookPath(p); err != nil {
				return nil, fmt.Errorf("bench: tool %s needs %s: %w", t, p, err)
			}
		}
	}
	if cfg.ShoalBin == "" {
		return nil, errors.New("bench: no shoal binary")
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	r := &Report{SizeBytes: cfg.SizeBytes, RateBitsPerSec: cfg.RateBitsPerSec, Started: time.Now().UTC(), name: "bench"}
	if err := r.makeImage(ctx, cfg); err != nil {
		return nil, err
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

func (res Result) line() string {
	s := fmt.Sprintf("%-8s rx=%d loss=%.1f%%: %7.2fs  link %.3f  egress %.3f  dup %.3f  drops rcvbuf %d qdisc %d  cpu rx %.1fs tx %.1fs", res.Tool, res.Receivers,
		float64(res.LossPermille)/10, res.Seconds, res.LinkFraction, res.EgressRatio, res.DuplicateFraction, res.RcvbufDrops, res.QdiscDrops,
		res.ReceiverCPUSeconds, res.SenderCPUSeconds)
	if !res.OK {
		s += "  FAILED: " + res.Error
	}
	if res.Detail != "" {
		s += "\n    " + res.Detail
	}
	return s
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
	lan, err := netlab.New(ctx, netlab.Config{Nodes: n + 1, RateBitsPerSec: cfg.RateBitsPerSec})
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
		elapsed, err = r.runHTTP(ctx, lan, targets)
	}
	if err != nil {
		return fail(err)
	}
	rb1, qd1, err := drops(ctx, lan)
	if err != nil {
		return fail(err)
	}
	res.RcvbufDrops, res.QdiscDrops = rb1-rb0, qd1-qd0
	cpu := resetCPU()
	res.ReceiverCPUSeconds, res.SenderCPUSeconds = cpu["rx"].Seconds(), cpu["tx"].Seconds()
	res.Seconds = elapsed.Seconds()
	res.LinkFraction = float64(cfg.SizeBytes*8) / elapsed.Seconds() / float64(cfg.RateBitsPerSec)
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
