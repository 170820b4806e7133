// watch.go follows the machines until every one is over: it polls the
// server, reads the consoles, restarts USB machines from their disks,
// kills the leader when asked to, and stops stuck machines.

package lab

import (
	"context"
	"fmt"
	"time"

	"github.com/shoal-project/shoal/internal/netlab"
	"github.com/shoal-project/shoal/netboot/api"
)

// watch runs until every machine is over or ctx is done.
func (l *lab) watch(ctx context.Context, lan *netlab.LAN, srv *server) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	killed := false
	var lastSig string
	var lastTable time.Time
	for {
		machines, err := srv.machines(ctx)
		if err != nil {
			l.log.Debug("machines", "err", err)
		}
		for _, n := range l.nodes {
			n.update(machines[n.MAC])
			// A USB machine powers off once reimaged: pull the stick and
			// start it again from its disk.
			if n.stick != "" && !n.fromDisk && n.State == api.StateDone && n.exited() {
				if err := l.restartFromDisk(ctx, lan, n); err != nil {
					return err
				}
			}
			if !n.over() {
				n.health(l.cfg.Silence)
				if n.MachineError != "" {
					l.log.Warn("machine cannot go on", "name", n.Name, "why", n.MachineError)
				}
			}
		}
		if at := l.cfg.Faults.KillLeaderAt; at > 0 && !killed {
			if ld, followed := killTarget(l.nodes, at); ld != nil {
				l.log.Info("killing the leader", "name", ld.Name, "followers' progress", followed, "pid", ld.m.PID())
				fmt.Fprintf(l.cfg.Table, "killing the leader %s: every other machine follows it, one has %.0f%% of the image\n", ld.Name, 100*followed)
				ld.m.Kill()
				ld.Killed, killed = true, true
				l.sum.KilledLeaderAt = followed
			}
		}
		allOver := true
		for _, n := range l.nodes {
			allOver = allOver && n.over()
		}
		// A table when something changed, else every 15 s.
		if sig := tableSignature(l.nodes); sig != lastSig || time.Since(lastTable) >= 15*time.Second || allOver {
			printTable(l.cfg.Table, l.nodes, time.Since(l.start))
			lastSig, lastTable = sig, time.Now()
		}
		if allOver {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// killTarget returns the leader to kill for Faults.KillLeaderAt, and the
// most a follower has of the image: a leader still writing, once every
// other machine still at work follows it (machines boot tens of seconds
// apart under TCG; a kill before the last one joined would test less) and
// a follower has the fraction at of the image. Nil: not yet (or never: a
// leader that completed is not killed).
func killTarget(nodes []*node, at float64) (*node, float64) {
	var leader *node
	followed := 0.0
	for _, n := range nodes {
		if n.tiny || n.Killed || n.over() || n.started.IsZero() || (n.State == api.StateDone && n.Role != api.RoleLeader) {
			continue // out of the run, or a follower already complete
		}
		switch {
		case n.Role == api.RoleLeader && n.State != api.StateDone && leader == nil:
			leader = n
		case n.Role == api.RoleFollower:
			followed = max(followed, n.Progress)
		default:
			return nil, 0 // still booting or listening, or a leader done
		}
	}
	if leader == nil || followed < at {
		return nil, followed
	}
	return leader, followed
}
