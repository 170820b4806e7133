// election_test.go: a takeover election among many followers sends a few claims, not one per follower per interval.
package session

import (
	"context"
	"testing"
	"time"
)

// TestElectionClaims: eight followers lose their leader half way. Each
// waits before its first claim (less the more it holds, and at random)
// and keeps quiet once it has heard a better claim, so the election sends
// a few claims; without that every follower claims every interval of the
// window (8 x 7 = 56 here). Exactly one takes over and all finish.
func TestElectionClaims(t *testing.T) {
	const followers = 8
	l := newLab(t, 1+followers, testSizeBytes, testChunkBytes, "img")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sn := l.sniff(ctx)
	l.srv.delay.Store(int64(60 * time.Millisecond))
	a := l.start(ctx, 1, "img", nil)
	a.waitFor(t, "leading", 20*time.Second, func(s Status) bool { return s.Role == RoleLeader })
	var fs []*peer
	for i := 2; i <= 1+followers; i++ {
		fs = append(fs, l.start(ctx, i, "img", nil))
	}
	for _, f := range fs {
		f.waitFor(t, "following", 20*time.Second, func(s Status) bool { return s.Role == RoleFollower })
	}
	a.waitFor(t, "half the download", 20*time.Second, func(s Status) bool { return s.ChunksDone >= s.Chunks/2 })
	a.cancel()
	a.wait(t, 10*time.Second)
	takeovers := 0
	for _, f := range fs {
		f.wait(t, 60*time.Second)
		l.checkDone(t, f, "img")
		takeovers += f.st.Takeovers
	}
	if takeovers != 1 {
		t.Errorf("%d takeovers, want exactly 1", takeovers)
	}
	claims := sn.count(func(m Msg) bool { return m.Type == TypeTakeover })
	claimers := map[uint32]bool{}
	sn.count(func(m Msg) bool {
		if m.Type == TypeTakeover {
			claimers[m.Node] = true
		}
		return false
	})
	window := testConfig().ElectionWindow / testConfig().AnnounceInterval
	t.Logf("%d claims from %d of %d followers (without suppression: %d)", claims, len(claimers), followers, followers*int(window))
	if limit := 2*int(window) + 4; claims > limit {
		t.Errorf("%d takeover claims in the election, want at most %d", claims, limit)
	}
}
