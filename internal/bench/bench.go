// Package bench measures shoal's multicast transport against udpcast, uftp
// and unicast HTTP on the same LAN of network namespaces (internal/netlab):
// the same image, the same link rate, the same emulated loss, one run per
// tool, receiver count and loss rate. It drives the real programs (shoal
// send/receive, udp-sender/udp-receiver, uftp/uftpd, curl against a Go HTTP
// server) and measures time, server egress and received bytes from the
// kernel's interface counters, so every tool is measured the same way.
package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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

// udpRcvbufErrors reads RcvbufErrors from the Udp line of /proc/net/snmp
// inside the node's namespace.
func udpRcvbufErrors(ctx context.Context, n *netlab.Node) (int64, error) {
	out, err := n.Command(ctx, "cat", "/proc/net/snmp").Output()
	if err != nil {
		return 0, fmt.Errorf("snmp of %s: %w", n.Name, err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, name := range names {
			if name == "RcvbufErrors" && i < len(f) {
				return strconv.ParseInt(f[i], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("snmp of %s: no Udp RcvbufErrors", n.Name)
}

// qdiscDrops sums the drops of every qdisc in a namespace.
func qdiscDrops(ctx context.Context, ns string) (int64, error) {
	out, err := exec.CommandContext(ctx, "tc", "-n", ns, "-s", "qdisc", "show").Output()
	if err != nil {
		return 0, fmt.Errorf("tc -s qdisc in %s: %w", ns, err)
	}
	var total int64
	f := strings.Fields(string(out))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "dropped" {
			v, err := strconv.ParseInt(strings.TrimSuffix(f[i+1], ","), 10, 64)
			if err == nil {
				total += v
			}
		}
	}
	return total, nil
}

func drops(ctx context.Context, lan *netlab.LAN) (rcvbuf, qdisc int64, err error) {
	for i, n := range lan.Nodes {
		d, err := qdiscDrops(ctx, n.Name)
		if err != nil {
			return 0, 0, err
		}
		qdisc += d
		if i == 0 {
			continue
		}
		e, err := udpRcvbufErrors(ctx, n)
		if err != nil {
			return 0, 0, err
		}
		rcvbuf += e
	}
	d, err := qdiscDrops(ctx, lan.Hub)
	return rcvbuf, qdisc + d, err
}

// counters are a node's eth0 statistics.
type counters struct{ txBytes, txPackets, rxBytes, rxPackets int64 }

func readCounters(ctx context.Context, n *netlab.Node) (counters, error) {
	out, err := n.Command(ctx, "cat",
		"/sys/class/net/eth0/statistics/tx_bytes", "/sys/class/net/eth0/statistics/tx_packets",
		"/sys/class/net/eth0/statistics/rx_bytes", "/sys/class/net/eth0/statistics/rx_packets").Output()
	if err != nil {
		return counters{}, fmt.Errorf("read counters of %s: %w", n.Name, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 4 {
		return counters{}, fmt.Errorf("counters of %s: %q", n.Name, out)
	}
	var v [4]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i], 10, 64); err != nil {
			return counters{}, err
		}
	}
	return counters{v[0], v[1], v[2], v[3]}, nil
}

// proc is a started program and when it ended.
type proc struct {
	name  string
	cmd   *exec.Cmd
	out   bytes.Buffer
	start time.Time
	end   time.Time
	cpu   time.Duration
	err   error
	done  chan struct{}
}

func start(cmd *exec.Cmd, name string) (*proc, error) {
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		p.end = time.Now()
		if st := cmd.ProcessState; st != nil {
			p.cpu = st.UserTime() + st.SystemTime()
		}
		cpuMu.Lock()
		cpuByRole[p.role()] += p.cpu
		cpuMu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// CPU time of the processes of the current run, by role.
var (
	cpuMu     sync.Mutex
	cpuByRole = map[string]time.Duration{}
)

func resetCPU() map[string]time.Duration {
	cpuMu.Lock()
	defer cpuMu.Unlock()
	old := cpuByRole
	cpuByRole = map[string]time.Duration{}
	return old
}

// role is "rx" for receiving processes, "tx" for the sender.
func (p *proc) role() string {
	for _, s := range []string{"receive", "receiver", "uftpd", "curl"} {
		if strings.Contains(p.name, s) {
			return "rx"
		}
	}
	return "tx"
}

func (p *proc) wait(ctx context.Context) error {
	select {
	case <-p.done:
	case <-ctx.Done():
		<-p.done // the command's context kills it
	}
	if p.err != nil {
		return fmt.Errorf("%s: %w: %s", p.name, p.err, lastLines(p.out.String(), 5))
	}
	return nil
}

// stop kills p by its PID (the `ip netns exec` wrapper execs the program, so
// the PID is the program's) and waits for it.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

// payloadRate is the rate of UDP payload that fills a link of rate: full
// 1500-byte frames carry 1472 bytes of payload in 1514 bytes that tc counts.
func payloadRate(rate int64) int64 { return rate * 1472 / 1514 }

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

func (r *Report) runShoal(ctx context.Context, cfg Config, lan *netlab.LAN, targets []string, dir string, detailOut *string) (time.Duration, error) {
	var detail string
	defer func() { *detailOut = detail }()
	var rx []*proc
	defer func() {
		for _, p := range rx {
			p.stop()
		}
	}()
	for i, t := range targets {
		p, err := start(lan.Nodes[1+i].Command(ctx, cfg.ShoalBin, "receive", "--insecure-unsigned", "--name", r.name, "--iface", "eth0",
			"--timeout", "60s", "--stats", filepath.Join(dir, fmt.Sprintf("rx%d.json", i)), t), fmt.Sprintf("shoal receive %d", i))
		if err != nil {
			return 0, err
		}
		rx = append(rx, p)
	}
	time.Sleep(200 * time.Millisecond) // let the receivers listen
	t0 := time.Now()
	tx, err := start(lan.Nodes[0].Command(ctx, cfg.ShoalBin, "send", "--repo", r.repo, "--name", r.name, "--iface", "eth0",
		"--rate", strconv.FormatInt(cfg.RateBitsPerSec, 10), "--min-receivers", strconv.Itoa(len(targets)),
		"--max-wait", "30s", "--linger", "200ms", "--stats", filepath.Join(dir, "tx.json")), "shoal send")
	if err != nil {
		return 0, err
	}
	defer tx.stop()
	el, err := waitAll(ctx, t0, rx, tx)
	if err == nil {
		detail = shoalDetail(dir, len(targets))
	}
	return el, err
}

// shoalDetail sums the receivers' --stats files.
func shoalDetail(dir string, n int) string {
	sum := map[string]float64{}
	for i := 0; i < n; i++ {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("rx%d.json", i)))
		if err != nil {
			return err.Error()
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return err.Error()
		}
		for k, v := range m {
			if f, ok := v.(float64); ok {
				sum[k] += f
			}
		}
	}
	var parts []string
	for _, k := range []string{"LostBlocks", "NoRoom", "Requests", "Suppressed", "Corrupt", "Malformed", "Foreign", "DuplicateBytes"} {
		parts = append(parts, fmt.Sprintf("%s=%.0f", k, sum[k]))
	}
	if b, err := os.ReadFile(filepath.Join(dir, "tx.json")); err == nil {
		var m map[string]any
		if json.Unmarshal(b, &m) == nil {
			parts = append(parts, fmt.Sprintf("tx.RepairBytes=%.0f tx.Requests=%.0f", m["RepairBytes"], m["Requests"]))
		}
	}
	return strings.Join(parts, " ")
}

// waitAll waits for the receivers, then the sender, and returns the time
// from t0 to the last receiver's end.
func waitAll(ctx context.Context, t0 time.Time, rx []*proc, tx *proc) (time.Duration, error) {
	var last time.Time
	for _, p := range rx {
		if err := p.wait(ctx); err != nil {
			return 0, err
		}
		if p.end.After(last) {
			last = p.end
		}
	}
	if tx != nil {
		if err := tx.wait(ctx); err != nil {
			return 0, err
		}
	}
	return last.Sub(t0), nil
}

func (r *Report) runUDPCast(ctx context.Context, cfg Config, lan *netlab.LAN, targets []string) (time.Duration, error) {
	var rx []*proc
	defer func() {
		for _, p := range rx {
			p.stop()
		}
	}()
	for i, t := range targets {
		p, err := start(lan.Nodes[1+i].Command(ctx, "udp-receiver", "--interface", "eth0", "--file", t, "--nokbd", "--nosync"), fmt.Sprintf("udp-receiver %d", i))
		if err != nil {
			return 0, err
		}
		rx = append(rx, p)
	}
	time.Sleep(200 * time.Millisecond)
	t0 := time.Now()
	tx, err := start(lan.Nodes[0].Command(ctx, "udp-sender", "--interface", "eth0", "--file", r.src, "--nokbd",
		"--min-receivers", strconv.Itoa(len(targets)), "--max-bitrate", strconv.FormatInt(payloadRate(cfg.RateBitsPerSec)/1000, 10)+"k"), "udp-sender")
	if err != nil {
		return 0, err
	}
	defer tx.stop()
	return waitAll(ctx, t0, rx, tx)
}

func (r *Report) runUFTP(ctx context.Context, cfg Config, lan *netlab.LAN, targets []string, dir string) (time.Duration, error) {
	var rx []*proc
	defer func() {
		for _, p := range rx {
			p.stop()
		}
	}()
	for i, t := range targets {
		p, err := start(lan.Nodes[1+i].Command(ctx, "uftpd", "-d", "-I", "eth0", "-D", filepath.Dir(t),
			"-L", filepath.Join(dir, fmt.Sprintf("uftpd%d.log", i)), "-P", filepath.Join(dir, fmt.Sprintf("uftpd%d.pid", i))), fmt.Sprintf("uftpd %d", i))
		if err != nil {
			return 0, err
		}
		rx = append(rx, p)
	}
	time.Sleep(200 * time.Millisecond)
	t0 := time.Now()
	// uftp's rate is in Kbit/s of payload; it ends when every client is done.
	// A relative name: uftpd refuses absolute paths outside its -D.
	cmd := lan.Nodes[0].Command(ctx, "uftp", "-I", "eth0", "-R", strconv.FormatInt(payloadRate(cfg.RateBitsPerSec)/1000, 10),
		"-L", filepath.Join(dir, "uftp.log"), filepath.Base(r.src))
	cmd.Dir = filepath.Dir(r.src)
	tx, err := start(cmd, "uftp")
	if err != nil {
		return 0, err
	}
	defer tx.stop()
	if err := tx.wait(ctx); err != nil {
		return 0, err
	}
	return tx.end.Sub(t0), nil
}

func (r *Report) runHTTP(ctx context.Context, lan *netlab.LAN, targets []string) (time.Duration, error) {
	var ln net.Listener
	err := lan.Nodes[0].Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", net.JoinHostPort(lan.Nodes[0].IP.String(), "8080"))
		return err
	})
	if err != nil {
		return 0, err
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(filepath.Dir(r.src)))}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(ln) }()
	defer func() { srv.Close(); wg.Wait() }()
	url := fmt.Sprintf("http://%s:8080/%s", lan.Nodes[0].IP, filepath.Base(r.src))
	t0 := time.Now()
	var rx []*proc
	defer func() {
		for _, p := range rx {
			p.stop()
		}
	}()
	for i, t := range targets {
		p, err := start(lan.Nodes[1+i].Command(ctx, "curl", "-sSf", "-o", t, url), fmt.Sprintf("curl %d", i))
		if err != nil {
			return 0, err
		}
		rx = append(rx, p)
	}
	return waitAll(ctx, t0, rx, nil)
}

// lateJoin runs shoal with one receiver from the start and one that starts
// when the first pass is half way.
func (r *Report) lateJoin(ctx context.Context, cfg Config) LateJoinResult {
	var res LateJoinResult
	ctx, cancel := context.WithTimeout(ctx, cfg.RunTimeout)
	defer cancel()
	err := func() error {
		lan, err := netlab.New(ctx, netlab.Config{Nodes: 3, RateBitsPerSec: cfg.RateBitsPerSec})
		if err != nil {
			return err
		}
		defer lan.Close()
		dir := filepath.Join(cfg.Dir, "run")
		os.RemoveAll(dir)
		defer os.RemoveAll(dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		targets := []string{filepath.Join(dir, "a.raw"), filepath.Join(dir, "b.raw")}
		recv := func(i int) (*proc, error) {
			return start(lan.Nodes[1+i].Command(ctx, cfg.ShoalBin, "receive", "--insecure-unsigned", "--name", r.name, "--iface", "eth0", "--timeout", "60s", targets[i]), fmt.Sprintf("shoal receive %d", i))
		}
		a, err := recv(0)
		if err != nil {
			return err
		}
		defer a.stop()
		time.Sleep(200 * time.Millisecond)
		t0 := time.Now()
		tx, err := start(lan.Nodes[0].Command(ctx, cfg.ShoalBin, "send", "--repo", r.repo, "--name", r.name, "--iface", "eth0",
			"--rate", strconv.FormatInt(cfg.RateBitsPerSec, 10), "--min-receivers", "1", "--max-wait", "30s", "--linger", "2s"), "shoal send")
		if err != nil {
			return err
		}
		defer tx.stop()
		time.Sleep(cfg.linkTime() / 2)
		b, err := recv(1)
		if err != nil {
			return err
		}
		defer b.stop()
		if _, err := waitAll(ctx, t0, []*proc{a, b}, tx); err != nil {
			return err
		}
		res.OnTimeSeconds = a.end.Sub(t0).Seconds()
		res.LateSeconds = b.end.Sub(b.start).Seconds()
		res.JoinedAfter = b.start.Sub(t0).Seconds()
		res.Ratio = res.LateSeconds / res.OnTimeSeconds
		for _, t := range targets {
			if err := r.check(t); err != nil {
				return err
			}
		}
		return nil
	}()
	res.OK = err == nil
	if err != nil {
		res.Error = err.Error()
	}
	return res
}
