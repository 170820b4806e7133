// tools.go: one run of each tool (shoal, udpcast, uftp, HTTP) on a LAN.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoal-project/shoal/internal/netlab"
)

// payloadRate is the rate of UDP payload that fills a link of rate: full
// 1500-byte frames carry 1472 bytes of payload in 1514 bytes that tc counts.
func payloadRate(rate int64) int64 { return rate * 1472 / 1514 }

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
