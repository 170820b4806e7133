// tools.go: one run of each tool (shoal, udpcast, uftp, HTTP) on a LAN.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-project/shoal/internal/netlab"
)

// payloadRate is the rate of UDP payload that fills a link of rate: full
// frames carry MTU-28 bytes of payload in MTU+14 bytes that tc counts
// (1472 in 1514 at MTU 1500).
func payloadRate(rate int64, mtu int) int64 { return rate * int64(mtu-28) / int64(mtu+14) }

// profile is the --cpuprofile flag for one shoal process (who) of a run
// with n receivers, if cfg.ProfileDir is set.
func (c Config) profile(who string, n int) []string {
	if c.ProfileDir == "" {
		return nil
	}
	return []string{"--cpuprofile", filepath.Join(c.ProfileDir, fmt.Sprintf("%s-%drx.pprof", who, n))}
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
		args := append([]string{"receive", "--insecure-unsigned", "--name", r.name, "--iface", "eth0",
			"--timeout", "60s", "--stats", filepath.Join(dir, fmt.Sprintf("rx%d.json", i))}, cfg.profile(fmt.Sprintf("rx%d", i), len(targets))...)
		p, err := start(lan.Nodes[1+i].Command(ctx, cfg.ShoalBin, append(args, t)...), fmt.Sprintf("shoal receive %d", i))
		if err != nil {
			return 0, err
		}
		rx = append(rx, p)
	}
	time.Sleep(200 * time.Millisecond) // let the receivers listen
	t0 := time.Now()
	txArgs := append([]string{"send", "--repo", r.repo, "--name", r.name, "--iface", "eth0",
		"--rate", strconv.FormatInt(cfg.RateBitsPerSec, 10), "--min-receivers", strconv.Itoa(len(targets)),
		"--max-wait", "30s", "--linger", "200ms", "--stats", filepath.Join(dir, "tx.json")}, cfg.profile("tx", len(targets))...)
	tx, err := start(lan.Nodes[0].Command(ctx, cfg.ShoalBin, txArgs...), "shoal send")
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
	// Its --blocksize is at most 1456 (its default), whatever the MTU;
	// without --max-bitrate it sends as fast as its receivers keep up.
	args := []string{"--interface", "eth0", "--file", r.src, "--nokbd", "--min-receivers", strconv.Itoa(len(targets))}
	if !cfg.Unlimited {
		args = append(args, "--max-bitrate", strconv.FormatInt(payloadRate(cfg.RateBitsPerSec, cfg.MTU)/1000, 10)+"k")
	}
	tx, err := start(lan.Nodes[0].Command(ctx, "udp-sender", args...), "udp-sender")
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
	// uftp's rate is in Kbit/s of payload (-1: as fast as the interface
	// takes); it ends when every client is done. Its blocks (-b, default
	// 1300) fill jumbo frames less the 200 bytes its manual leaves for
	// headers, at most 8800. A relative name: uftpd refuses absolute paths
	// outside its -D.
	rate := strconv.FormatInt(payloadRate(cfg.RateBitsPerSec, cfg.MTU)/1000, 10)
	if cfg.Unlimited {
		rate = "-1"
	}
	args := []string{"-I", "eth0", "-R", rate, "-L", filepath.Join(dir, "uftp.log")}
	if cfg.MTU > 1500 {
		args = append(args, "-b", strconv.Itoa(min(8800, cfg.MTU-200)))
	}
	cmd := lan.Nodes[0].Command(ctx, "uftp", append(args, filepath.Base(r.src))...)
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

// ServeFiles serves dir's files over HTTP on addr (Go's file server) until
// ctx is done: the bench's HTTP sender, run as `shoal bench --http-root DIR
// --http-listen ADDR` in the sender's namespace so that its CPU is its own.
func ServeFiles(ctx context.Context, addr, dir string) error {
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		return fmt.Errorf("bench: http sender: %w", err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir)), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("bench: http sender: %w", err)
	}
	return nil
}

func (r *Report) runHTTP(ctx context.Context, cfg Config, lan *netlab.LAN, targets []string) (time.Duration, error) {
	addr := net.JoinHostPort(lan.Nodes[0].IP.String(), "8080")
	srv, err := start(lan.Nodes[0].Command(ctx, cfg.ShoalBin, "bench", "--http-root", filepath.Dir(r.src), "--http-listen", addr), "http server")
	if err != nil {
		return 0, err
	}
	defer srv.stop()
	if err := awaitListen(ctx, lan.Nodes[0], addr, srv); err != nil {
		return 0, err
	}
	url := fmt.Sprintf("http://%s/%s", addr, filepath.Base(r.src))
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

// awaitListen waits until addr takes connections from inside node, or p ends.
func awaitListen(ctx context.Context, node *netlab.Node, addr string, p *proc) error {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		err := node.Do(func() error {
			c, err := net.DialTimeout("tcp4", addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s ended before listening on %s: %v: %s", p.name, addr, p.err, lastLines(p.out.String(), 3))
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening on %s: %w", p.name, addr, err)
		}
	}
}
