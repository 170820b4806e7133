package mcast

// sender_rate.go: AIMD rate control from the loss the receivers report.

import (
	"time"

	"github.com/shoal-project/shoal/imaging/mcast/wire"
)

// rateHold is how long the rate stays put after a decrease: about two
// status intervals, so that the reports reflect the new rate.
const rateHold = 500 * time.Millisecond

// aimd adapts the rate to the loss the receivers report.
func (s *sender) aimd(now time.Time, out *output) {
	s.mu.Lock()
	defer s.mu.Unlock()
	worst := 0
	for _, r := range s.rx {
		if r.state == wire.StateReceiving && now.Sub(r.lastSeen) < time.Second {
			worst = max(worst, r.loss)
		}
	}
	maxRate := float64(s.cfg.RateBitsPerSec) / 8
	s.log.Debug("aimd", "worstLossPermille", worst, "rateBitsPerSec", int64(out.rate*8))
	if now.Sub(s.lastDecrease) < rateHold {
		// Reports still describe the rate before the last decrease.
		return
	}
	if worst > s.cfg.LossThresholdPermille {
		// What got through, a little less: congestion loss says how
		// much the path carries. Never below 1 Mbit/s.
		out.rate = max(out.rate*(1-float64(worst)/1000)*0.9, 125e3)
		s.lastDecrease = now
		for _, r := range s.rx {
			r.loss = 0 // one decrease per report
		}
	} else {
		// Up by a twentieth of the maximum, but by no more than a tenth
		// of the rate: on a fast link whose receivers take a fraction of
		// it, a fixed step overshoots on every probe.
		out.rate = min(out.rate+min(maxRate/20, out.rate/10), maxRate)
	}
	s.stats.RateBitsPerSec = int64(out.rate * 8)
	s.annRate = s.stats.RateBitsPerSec
}
