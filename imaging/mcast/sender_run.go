package mcast

// sender_run.go: the sending goroutine: waiting for receivers, the sending loop and the end of the session.

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/shoal-project/shoal/imaging/mcast/wire"
)

// run is the sending goroutine: it waits for the receivers, then sends
// until the session is over.
func (s *sender) run(ctx context.Context, p *ipv4.PacketConn) error {
	start := time.Now()
	s.mu.Lock()
	s.lastHeard, s.lastAsk = start, start
	s.annSent, s.annRate = groupKey{-1, 0}, s.cfg.RateBitsPerSec
	s.mu.Unlock()
	out := &output{p: p, dst: udpAddr(s.cfg.Data), rate: float64(s.cfg.RateBitsPerSec) / 8, log: s.log}
	stopAnn := s.startAnnouncing(ctx, p)
	defer stopAnn()
	if err := s.waitReceivers(ctx, start); err != nil {
		return err
	}
	s.log.Info("first pass", "chunks", s.chunks, "rateBitsPerSec", s.cfg.RateBitsPerSec)
	s.mu.Lock()
	s.annFlags |= wire.FlagSending
	s.mu.Unlock()
	return s.sendLoop(ctx, p, out, start, stopAnn)
}

// waitReceivers waits for MinReceivers receivers, up to MaxWait after start.
func (s *sender) waitReceivers(ctx context.Context, start time.Time) error {
	waitUntil := start.Add(s.cfg.MaxWait)
	for s.cfg.MinReceivers > 0 {
		s.mu.Lock()
		n := len(s.rx)
		s.mu.Unlock()
		if n >= s.cfg.MinReceivers {
			break
		}
		if time.Now().After(waitUntil) {
			s.log.Warn("starting without all receivers", "heard", n, "want", s.cfg.MinReceivers)
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.wake:
		case <-time.After(s.cfg.AnnounceInterval):
		}
		if err := s.announceErr(); err != nil {
			return err
		}
	}
	return nil
}

// sendLoop sends the jobs nextJob picks, adapts the rate and reports
// progress, until the session is over; stopAnn stops the announces.
func (s *sender) sendLoop(ctx context.Context, p *ipv4.PacketConn, out *output, start time.Time, stopAnn func() error) error {
	var (
		cache    chunkCache
		pos      = sendPos{cur: groupKey{-1, 0}, loCur: -2}
		lastAIMD = time.Now()
		lastProg = time.Now()
	)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		now := time.Now()
		if err := s.announceErr(); err != nil {
			return err
		}
		if now.Sub(lastAIMD) >= 200*time.Millisecond {
			lastAIMD = now
			s.aimd(now, out)
		}
		if s.cfg.Progress != nil && now.Sub(lastProg) >= 250*time.Millisecond {
			lastProg = now
			s.cfg.Progress(s.snapshot())
		}
		j := s.nextJob(&pos, start)
		if j.shards == nil {
			if pos.firstPassDone {
				if done, why := s.finished(now, start); done {
					return s.end(p, start, why, stopAnn)
				}
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-s.wake:
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		b, err := s.load(ctx, &cache, j.key.chunk)
		if err != nil {
			return err
		}
		if err := s.sendJob(ctx, out, j, b); err != nil {
			return err
		}
		if j.firstPass {
			// The announce names the last group the first pass sent
			// completely.
			s.mu.Lock()
			s.annSent = j.key
			s.mu.Unlock()
		}
	}
}

// end ends the session: the announces stop, then three more say it ends.
func (s *sender) end(p *ipv4.PacketConn, start time.Time, why string, stopAnn func() error) error {
	s.log.Info("session over", "why", why)
	if err := stopAnn(); err != nil {
		return err
	}
	s.mu.Lock()
	s.annFlags |= wire.FlagEnding
	s.mu.Unlock()
	for range 3 {
		if err := s.announce(p); err != nil {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.mu.Lock()
	s.stats.Elapsed = time.Since(start)
	s.mu.Unlock()
	return nil
}

// finished reports whether the session is over.
func (s *sender) finished(now, start time.Time) (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, r := range s.rx {
		if r.state != wire.StateDone && now.Sub(r.lastSeen) > s.cfg.ReceiverTimeout {
			s.log.Warn("receiver gone", "receiver", id, "silentFor", now.Sub(r.lastSeen))
			delete(s.rx, id)
			s.dropped++
		} else if r.state == wire.StateFailed {
			s.log.Warn("receiver failed", "receiver", id)
			delete(s.rx, id)
			s.dropped++
		}
	}
	if now.Sub(s.lastHeard) > s.cfg.MaxWait {
		return true, fmt.Sprintf("nothing heard for %v", s.cfg.MaxWait)
	}
	for _, r := range s.rx {
		if r.state != wire.StateDone {
			return false, ""
		}
	}
	if len(s.rx)+s.dropped < s.cfg.MinReceivers && now.Sub(start) < s.cfg.MaxWait {
		return false, ""
	}
	if now.Sub(s.lastAsk) < s.cfg.Linger {
		return false, ""
	}
	return true, fmt.Sprintf("%d receivers done", len(s.rx))
}
