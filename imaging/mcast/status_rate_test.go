// status_rate_test.go: the receivers' statuses share a budget per LAN, however many receivers.
package mcast

import (
	"testing"

	"github.com/shoal-project/shoal/internal/netlabtest"
)

// TestStatusBudget: eight receivers of a session of a few seconds, with a
// budget of 8 statuses a second for the LAN. Each hears the others'
// statuses and stretches its interval, so that the sender hears about the
// budget (plus each receiver's changes of state, sent at once), where the
// default budget lets each send 4 a second.
func TestStatusBudget(t *testing.T) {
	netlabtest.RequireRoot(t)
	src, repo, img := testImage(t, 8<<20, 512<<10)
	const receivers = 8
	run := func(budget int) (SenderStats, float64) {
		rx := make([]rxSpec, receivers)
		st, res := runSession(t, img, repo, sessionSpec{rateBitsPerSec: 16e6, src: src, rx: rx, statusesPerSec: budget})
		checkAll(t, src, res)
		return st, float64(st.Statuses) / st.Elapsed.Seconds()
	}
	const budget = 8
	tight, tightRate := run(budget)
	free, freeRate := run(0)
	t.Logf("budget %d/s: %d statuses in %v (%.1f/s); default: %d in %v (%.1f/s)",
		budget, tight.Statuses, tight.Elapsed, tightRate, free.Statuses, free.Elapsed, freeRate)
	// Each receiver sends its joining and receiving statuses at once
	// (the first before it has heard the others), and its done three
	// times.
	allowed := 1.3*budget*tight.Elapsed.Seconds() + 5*receivers
	if float64(tight.Statuses) > allowed {
		t.Errorf("with a budget of %d/s the sender heard %d statuses in %v, want at most %.0f", budget, tight.Statuses, tight.Elapsed, allowed)
	}
	if float64(free.Statuses) < 1.5*allowed {
		t.Errorf("with the default budget the sender heard %d statuses (%.1f/s), less than 1.5 x %.0f: the test no longer shows the budget", free.Statuses, freeRate, allowed)
	}
}
