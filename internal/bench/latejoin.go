// latejoin.go: the late-join case (a shoal receiver that starts half way through the first pass).
package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/shoal-project/shoal/internal/netlab"
)

// lateJoin runs shoal with one receiver from the start and one that starts
// when the first pass is half way.
func (r *Report) lateJoin(ctx context.Context, cfg Config) LateJoinResult {
	var res LateJoinResult
	ctx, cancel := context.WithTimeout(ctx, cfg.RunTimeout)
	defer cancel()
	err := func() error {
		lan, err := netlab.New(ctx, cfg.lanConfig(3))
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
