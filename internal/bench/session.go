package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/shoal-project/shoal/internal/httpcount"
	"github.com/shoal-project/shoal/internal/netlab"
)

// SessionConfig configures the peer-session bench (`shoal bench
// --session`): nodes running `shoal fetch` from a plain HTTP server,
// against one node alone and against every node downloading from the
// server itself (`shoal image apply`, unicast).
type SessionConfig struct {
	SizeBytes      int64 // default 1 GiB
	RateBitsPerSec int64 // default 200 Mbit/s
	Nodes          int   // default 8
	// Spread is the time over which the nodes start, evenly (default
	// 10 s): node 0 at 0, the last at Spread.
	Spread time.Duration
	// KillLeaderAt kills node 0 (the first to start, so the leader) once
	// the server has sent this fraction of the image (default 0.5).
	KillLeaderAt float64
	// DeltaPercent, when above 0, adds the delta run: every node's disk
	// holds v1, which differs from the image in this percent of its
	// chunks, and fetches the image over it.
	DeltaPercent float64
	// Runs picks the runs: alone, session, unicast, leader-killed, delta
	// (default all; delta only with DeltaPercent).
	Runs     []string
	ShoalBin string
	Dir      string
	Log      io.Writer
}

// SessionRuns are the session bench's runs, in order.
var SessionRuns = []string{"alone", "session", "unicast", "leader-killed"}

// RunDelta is the delta run's name (SessionConfig.DeltaPercent).
const RunDelta = "delta"

// SessionResult is one run of the session bench.
type SessionResult struct {
	Run   string `json:"run"`
	Nodes int    `json:"nodes"`
	// Seconds is from the first node's start to the last node's end.
	Seconds float64 `json:"seconds"`
	// EgressBytes is what the HTTP server sent (response bodies);
	// EgressRatio that over the image's stored size.
	EgressBytes int64   `json:"egressBytes"`
	EgressRatio float64 `json:"egressRatio"`
	// NodeSeconds is each node's time from its start to its end.
	NodeSeconds []float64 `json:"nodeSeconds"`
	// MulticastBytes is what the nodes multicast to peers (their
	// --stats' BytesToPeers summed), MulticastRatio that over the image's
	// stored size.
	MulticastBytes int64   `json:"multicastBytes"`
	MulticastRatio float64 `json:"multicastRatio"`
	OK             bool    `json:"ok"`
	Error          string  `json:"error,omitempty"`
}

// SessionReport is what the session bench measured.
type SessionReport struct {
	SizeBytes      int64           `json:"sizeBytes"`
	StoredBytes    int64           `json:"storedBytes"`
	RateBitsPerSec int64           `json:"rateBitsPerSec"`
	Nodes          int             `json:"nodes"`
	SpreadSeconds  float64         `json:"spreadSeconds"`
	Results        []SessionResult `json:"results"`
	// DeltaPercent and ChangedChunks describe v1 of the delta run.
	DeltaPercent  float64 `json:"deltaPercent,omitempty"`
	ChangedChunks int     `json:"changedChunks,omitempty"`
	v1            string
	r             *Report
	keyFile       string // the session key every node's fetch is given
}

func (c *SessionConfig) defaults() {
	if c.SizeBytes <= 0 {
		c.SizeBytes = 1 << 30
	}
	if c.RateBitsPerSec <= 0 {
		c.RateBitsPerSec = 200e6
	}
	if c.Nodes <= 0 {
		c.Nodes = 8
	}
	if c.Spread == 0 {
		c.Spread = 10 * time.Second
	}
	if c.KillLeaderAt == 0 {
		c.KillLeaderAt = 0.5
	}
	if len(c.Runs) == 0 {
		c.Runs = append([]string(nil), SessionRuns...)
		if c.DeltaPercent > 0 {
			c.Runs = append(c.Runs, RunDelta)
		}
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// RunSession runs the session bench. It needs root.
func RunSession(ctx context.Context, cfg SessionConfig) (*SessionReport, error) {
	cfg.defaults()
	if cfg.ShoalBin == "" {
		return nil, fmt.Errorf("bench: no shoal binary")
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	r := &Report{SizeBytes: cfg.SizeBytes, RateBitsPerSec: cfg.RateBitsPerSec, Started: time.Now().UTC(), name: "bench"}
	if err := r.makeImage(ctx, Config{SizeBytes: cfg.SizeBytes, Dir: cfg.Dir}); err != nil {
		return nil, err
	}
	rep := &SessionReport{SizeBytes: cfg.SizeBytes, StoredBytes: r.StoredBytes, RateBitsPerSec: cfg.RateBitsPerSec,
		Nodes: cfg.Nodes, SpreadSeconds: cfg.Spread.Seconds(), r: r, keyFile: filepath.Join(cfg.Dir, "session.key")}
	// The nodes authenticate their control messages, as a site's would.
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.WriteFile(rep.keyFile, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("bench: session key: %w", err)
	}
	if slices.Contains(cfg.Runs, RunDelta) {
		if cfg.DeltaPercent <= 0 || cfg.DeltaPercent > 100 {
			return nil, fmt.Errorf("bench: the delta run needs a --delta percent in (0, 100], not %v", cfg.DeltaPercent)
		}
		var err error
		if rep.v1, rep.ChangedChunks, err = rep.makeV1(cfg.Dir, cfg.DeltaPercent); err != nil {
			return nil, fmt.Errorf("bench: v1: %w", err)
		}
		rep.DeltaPercent = cfg.DeltaPercent
		fmt.Fprintf(cfg.Log, "delta: v1 differs from the image in %d of its 4 MiB chunks\n", rep.ChangedChunks)
	}
	for _, run := range cfg.Runs {
		res := rep.runSession(ctx, cfg, run)
		fmt.Fprintf(cfg.Log, "%-13s nodes=%d %8.2fs egress %.3f ok=%v %s\n", res.Run, res.Nodes, res.Seconds, res.EgressRatio, res.OK, res.Error)
		rep.Results = append(rep.Results, res)
		if err := ctx.Err(); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func (rep *SessionReport) runSession(ctx context.Context, cfg SessionConfig, run string) (res SessionResult) {
	n := cfg.Nodes
	if run == "alone" {
		n = 1
	}
	res = SessionResult{Run: run, Nodes: n}
	fail := func(err error) SessionResult {
		res.OK, res.Error = false, err.Error()
		return res
	}
	linkTime := time.Duration(float64(cfg.SizeBytes*8) / float64(cfg.RateBitsPerSec) * float64(time.Second))
	timeout := max(2*time.Minute, 4*linkTime+cfg.Spread)
	if run == "unicast" {
		timeout = max(2*time.Minute, time.Duration(n+2)*linkTime+cfg.Spread)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	lan, err := netlab.New(ctx, netlab.Config{Nodes: n + 1, RateBitsPerSec: cfg.RateBitsPerSec})
	if err != nil {
		return fail(err)
	}
	defer lan.Close()

	srvNode := lan.Nodes[0]
	var ln net.Listener
	if err := srvNode.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", net.JoinHostPort(srvNode.IP.String(), "8080"))
		return err
	}); err != nil {
		return fail(err)
	}
	cs := &httpcount.Handler{H: http.FileServer(http.Dir(rep.r.repo))}
	srv := &http.Server{Handler: cs, ReadHeaderTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(ln) }()
	defer func() { srv.Close(); wg.Wait() }()
	url := fmt.Sprintf("http://%s:8080/", srvNode.IP)

	runDir := filepath.Join(cfg.Dir, "run")
	os.RemoveAll(runDir)
	defer os.RemoveAll(runDir)
	targets := make([]string, n)
	for i := range targets {
		d := filepath.Join(runDir, fmt.Sprintf("node%d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fail(err)
		}
		targets[i] = filepath.Join(d, "disk.raw")
		if run == RunDelta {
			if err := copyFile(targets[i], rep.v1); err != nil {
				return fail(err)
			}
			continue
		}
		if err := os.WriteFile(targets[i], nil, 0o644); err != nil {
			return fail(err)
		}
		if err := os.Truncate(targets[i], cfg.SizeBytes); err != nil {
			return fail(err)
		}
	}

	procs := make([]*proc, n)
	defer func() {
		for _, p := range procs {
			if p != nil {
				p.stop()
			}
		}
	}()
	t0 := time.Now()
	for i := range targets {
		if i > 0 && n > 1 {
			at := t0.Add(cfg.Spread * time.Duration(i) / time.Duration(n-1))
			select {
			case <-ctx.Done():
				return fail(ctx.Err())
			case <-time.After(time.Until(at)):
			}
		}
		args := []string{"fetch", "--insecure-unsigned", "--key-file", rep.keyFile, "--repo", url, "--name", rep.r.name, "--iface", "eth0",
			"--rate", fmt.Sprint(cfg.RateBitsPerSec), "--stats", targets[i] + ".stats.json", targets[i]}
		if run == "unicast" {
			args = []string{"image", "apply", "--insecure-unsigned", "--repo", url, "--name", rep.r.name, targets[i]}
		}
		p, err := start(lan.Nodes[1+i].Command(ctx, cfg.ShoalBin, args...), fmt.Sprintf("%s node %d", args[0], i))
		if err != nil {
			return fail(err)
		}
		procs[i] = p
	}
	killed := -1
	if run == "leader-killed" {
		limit := int64(cfg.KillLeaderAt * float64(rep.StoredBytes))
		tick := time.NewTicker(20 * time.Millisecond)
	wait:
		for {
			select {
			case <-ctx.Done():
				tick.Stop()
				return fail(fmt.Errorf("waiting for the server to send %d bytes: %w", limit, ctx.Err()))
			case <-procs[0].done:
				tick.Stop()
				return fail(fmt.Errorf("node 0 ended before it was killed: %v", procs[0].err))
			case <-tick.C:
				if cs.Sent.Load() >= limit {
					break wait
				}
			}
		}
		tick.Stop()
		procs[0].stop() // SIGKILL by PID
		killed = 0
		fmt.Fprintf(cfg.Log, "leader-killed: node 0 killed at %.1fs, server had sent %.2f of the image\n",
			time.Since(t0).Seconds(), float64(cs.Sent.Load())/float64(rep.StoredBytes))
	}
	var last time.Time
	for i, p := range procs {
		if i == killed {
			res.NodeSeconds = append(res.NodeSeconds, 0)
			continue
		}
		if err := p.wait(ctx); err != nil {
			return fail(err)
		}
		res.NodeSeconds = append(res.NodeSeconds, p.end.Sub(p.start).Seconds())
		if p.end.After(last) {
			last = p.end
		}
	}
	res.Seconds = last.Sub(t0).Seconds()
	res.EgressBytes = cs.Sent.Load()
	res.EgressRatio = float64(res.EgressBytes) / float64(rep.StoredBytes)
	if run != "unicast" {
		var stats []string
		for i, t := range targets {
			if i != killed {
				stats = append(stats, t+".stats.json")
			}
		}
		if res.MulticastBytes, err = multicastBytes(stats); err != nil {
			return fail(err)
		}
		res.MulticastRatio = float64(res.MulticastBytes) / float64(rep.StoredBytes)
	}
	for i, t := range targets {
		if i == killed {
			continue
		}
		if err := rep.r.check(t); err != nil {
			return fail(fmt.Errorf("node %d: %w", i, err))
		}
	}
	res.OK = true
	return res
}

// WriteTable prints the session bench's table and its ratios.
func (rep *SessionReport) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "image %d MiB (%d bytes stored), links %d Mbit/s, %d nodes started over %.0f s\n\n",
		rep.SizeBytes>>20, rep.StoredBytes, rep.RateBitsPerSec/1e6, rep.Nodes, rep.SpreadSeconds)
	fmt.Fprintf(w, "%-14s %5s %9s %12s %15s  %s\n", "run", "nodes", "seconds", "egress/size", "multicast/size", "ok")
	by := map[string]SessionResult{}
	for _, r := range rep.Results {
		by[r.Run] = r
		ok := "yes"
		if !r.OK {
			ok = "no: " + r.Error
		}
		fmt.Fprintf(w, "%-14s %5d %9.2f %12.3f %15.3f  %s\n", r.Run, r.Nodes, r.Seconds, r.EgressRatio, r.MulticastRatio, ok)
	}
	alone, sess, killed, delta := by["alone"], by["session"], by["leader-killed"], by[RunDelta]
	if alone.OK && sess.OK {
		fmt.Fprintf(w, "\nsession time / one node alone: %.3f (target <= 1.3)\n", sess.Seconds/alone.Seconds)
		fmt.Fprintf(w, "session server egress / image: %.3f (target <= 1.05)\n", sess.EgressRatio)
	}
	if sess.OK && killed.OK {
		fmt.Fprintf(w, "leader killed: time / fault-free: %.3f (target <= 1.3), egress %.3f (target <= 1.6)\n",
			killed.Seconds/sess.Seconds, killed.EgressRatio)
	}
	if delta.OK {
		fmt.Fprintf(w, "delta (v1 on every disk, %d chunks differ, %.1f%%): server egress %.3f and multicast %.3f of the image (target <= 0.07 each)",
			rep.ChangedChunks, rep.DeltaPercent, delta.EgressRatio, delta.MulticastRatio)
		if sess.OK {
			fmt.Fprintf(w, ", time / full session %.3f (target <= 0.2)", delta.Seconds/sess.Seconds)
			// The last node starts at the spread in both runs: what the
			// fleet takes once every machine is there.
			if sp := rep.SpreadSeconds; sp > 0 && sess.Seconds > sp && delta.Seconds > sp {
				fmt.Fprintf(w, "; from the last node's start %.3f", (delta.Seconds-sp)/(sess.Seconds-sp))
			}
		}
		fmt.Fprintln(w)
	}
	_, err := fmt.Fprintln(w)
	return err
}
