package session

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Sizes of the test images: 8 MiB in 64 chunks of 128 KiB.
const (
	testSizeBytes  = 8 << 20
	testChunkBytes = 128 << 10
)

// within checks that got is at most factor times want.
func within(t *testing.T, what string, got, want int64, factor float64) {
	t.Helper()
	if float64(got) > factor*float64(want) {
		t.Errorf("%s = %d bytes, want at most %.2f x %d", what, got, factor, want)
	}
}

// Rule 1: a node that hears no announce within the listening window leads:
// it downloads from the server and repeatedly announces the image (ID,
// data group, epoch).
func TestLeader(t *testing.T) {
	l := newLab(t, 1, testSizeBytes, testChunkBytes, "img")
	ti := l.images["img"]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sn := l.sniff(ctx)
	l.srv.delay.Store(int64(20 * time.Millisecond))
	a := l.start(ctx, 1, "img", nil)
	a.wait(t, 30*time.Second)
	l.checkDone(t, a, "img")
	if a.st.Led != 1 || a.st.BytesFromPeers != 0 {
		t.Errorf("status %+v: want Led 1 and nothing from peers", a.st)
	}
	if got, want := a.st.BytesFromServer, ti.storedBytes(); got != want {
		t.Errorf("BytesFromServer = %d, want %d (the image's stored size)", got, want)
	}
	if got, want := l.srv.served.Load(), ti.storedBytes(); got != want {
		t.Errorf("server served %d chunk bytes, want %d", got, want)
	}
	anns := sn.count(func(m Msg) bool {
		return m.Type == TypeAnnounce && m.ID == ti.img.ID && m.Node == a.id && m.Epoch == 1 &&
			m.Group.IsValid() && m.Name == "img" && m.Flags&FlagLeaving == 0
	})
	// 64 chunks at 20 ms, 2 at a time: about 0.6 s of download, then 1 s
	// of linger, at 100 ms per announce.
	if anns < 8 {
		t.Errorf("heard %d announces of the image by node %d at epoch 1, want at least 8", anns, a.id)
	}
	if n := sn.count(func(m Msg) bool { return m.Type == TypeAnnounce && m.Flags&FlagLeaving != 0 }); n == 0 {
		t.Errorf("no leaving announce heard")
	}
}

// Rule 2: a node that starts during a download detects it from the announce
// and requests the image, repeating until data flows; the leader answers
// with the data session's group. The follower gets nothing from the server.
func TestFollowerRequests(t *testing.T) {
	l := newLab(t, 2, testSizeBytes, testChunkBytes, "img")
	ti := l.images["img"]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sn := l.sniff(ctx)
	l.srv.delay.Store(int64(40 * time.Millisecond))
	a := l.start(ctx, 1, "img", nil)
	a.waitFor(t, "leading and downloading", 10*time.Second, func(s Status) bool { return s.Role == RoleLeader && s.ChunksDone > 4 })
	b := l.start(ctx, 2, "img", nil)
	b.waitFor(t, "following", 10*time.Second, func(s Status) bool { return s.Role == RoleFollower })
	if s := b.last(); s.Leader != a.id || s.Epoch != 1 {
		t.Errorf("follower status %+v: want leader %d at epoch 1", s, a.id)
	}
	a.wait(t, 30*time.Second)
	b.wait(t, 30*time.Second)
	l.checkDone(t, a, "img")
	l.checkDone(t, b, "img")
	if b.st.BytesFromServer != 0 || b.st.BytesFromPeers != ti.storedBytes() || b.st.Led != 0 {
		t.Errorf("follower %+v: want everything (%d bytes) from the peer, nothing from the server", b.st, ti.storedBytes())
	}
	if got, want := l.srv.served.Load(), ti.storedBytes(); got != want {
		t.Errorf("server served %d chunk bytes, want %d (once)", got, want)
	}
	reqs := sn.count(func(m Msg) bool { return m.Type == TypeRequest && m.Node == b.id && m.Epoch == 1 && m.ID == ti.img.ID })
	if reqs == 0 {
		t.Errorf("no request of node %d for epoch 1 heard", b.id)
	}
	if a.st.BytesToPeers < ti.storedBytes() {
		t.Errorf("leader multicast %d bytes, want at least %d", a.st.BytesToPeers, ti.storedBytes())
	}
}

// relayRun runs a leader and two followers that start during its download,
// with relay mode relay, and returns them once all are done.
func relayRun(t *testing.T, relay string) (l *lab, a *peer, followers []*peer) {
	l = newLab(t, 3, testSizeBytes, testChunkBytes, "img")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	l.srv.delay.Store(int64(40 * time.Millisecond))
	mod := func(c *Config) { c.Relay = relay }
	a = l.start(ctx, 1, "img", mod)
	a.waitFor(t, "leading", 10*time.Second, func(s Status) bool { return s.Role == RoleLeader && s.ChunksDone > 2 })
	followers = append(followers, l.start(ctx, 2, "img", mod))
	a.waitFor(t, "a third of the download", 10*time.Second, func(s Status) bool { return s.ChunksDone > s.Chunks/3 })
	followers = append(followers, l.start(ctx, 3, "img", mod))
	a.wait(t, 30*time.Second)
	l.checkDone(t, a, "img")
	for _, f := range followers {
		f.wait(t, 30*time.Second)
		l.checkDone(t, f, "img")
		if f.st.BytesFromServer != 0 {
			t.Errorf("follower %d fetched %d bytes from the server, want 0", f.id, f.st.BytesFromServer)
		}
	}
	if got, want := l.srv.served.Load(), l.images["img"].storedBytes(); got != want {
		t.Errorf("server served %d chunk bytes, want %d (once)", got, want)
	}
	return l, a, followers
}

// completedAt returns when p's progress first showed the whole image.
func (p *peer) completedAt() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range p.history {
		if h.st.Chunks > 0 && h.st.ChunksDone == h.st.Chunks {
			return h.at
		}
	}
	return time.Time{}
}

// firstFromPeers returns when p's progress first showed bytes from peers.
func (p *peer) firstFromPeers() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range p.history {
		if h.st.BytesFromPeers > 0 {
			return h.at
		}
	}
	return time.Time{}
}

// Rule 3, default relay: each chunk is multicast once the leader verified
// it, so the followers (one joined at the start, one a third of the way)
// get data during the leader's download and finish about when it does.
func TestRelayStream(t *testing.T) {
	_, a, fs := relayRun(t, RelayStream)
	leaderDone := a.completedAt()
	for _, f := range fs {
		if first := f.firstFromPeers(); first.IsZero() || !first.Before(leaderDone) {
			t.Errorf("follower %d: first bytes from the leader at %v, want before the leader's download ended (%v)", f.id, first, leaderDone)
		}
		if done := f.completedAt(); done.Sub(leaderDone) > 1500*time.Millisecond {
			t.Errorf("follower %d finished %v after the leader, want within 1.5 s", f.id, done.Sub(leaderDone))
		}
	}
}

// Rule 3, --relay after (the patent's method): the multicast starts only
// once the leader's own download succeeded; requests made during the
// download are served then.
func TestRelayAfter(t *testing.T) {
	_, a, fs := relayRun(t, RelayAfter)
	leaderDone := a.completedAt()
	a.mu.Lock()
	for _, h := range a.history {
		if h.st.BytesToPeers > 0 && h.st.ChunksDone < h.st.Chunks {
			t.Errorf("leader multicast %d bytes at %v while holding %d of %d chunks", h.st.BytesToPeers, h.at, h.st.ChunksDone, h.st.Chunks)
			break
		}
	}
	a.mu.Unlock()
	for _, f := range fs {
		if first := f.firstFromPeers(); first.Before(leaderDone) {
			t.Errorf("follower %d: bytes from the leader at %v, before its download ended (%v)", f.id, first, leaderDone)
		}
	}
}

// Rule 4: the leader is killed half way: exactly one follower takes over
// (the election), downloads only what is still missing, announces a
// higher epoch and multicasts to the others; nobody starts again from
// zero; announces of the old epoch are ignored.
func TestTakeover(t *testing.T) {
	l := newLab(t, 5, testSizeBytes, testChunkBytes, "img")
	ti := l.images["img"]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l.srv.delay.Store(int64(60 * time.Millisecond))
	a := l.start(ctx, 1, "img", nil)
	a.waitFor(t, "leading", 10*time.Second, func(s Status) bool { return s.Role == RoleLeader })
	var fs []*peer
	for i := 2; i <= 4; i++ {
		fs = append(fs, l.start(ctx, i, "img", nil))
	}
	a.waitFor(t, "half the download", 20*time.Second, func(s Status) bool { return s.ChunksDone >= s.Chunks/2 })
	killedAt := time.Now()
	a.cancel() // killed: its context ends and its sockets close
	a.wait(t, 10*time.Second)
	t.Logf("leader %d killed holding %d chunks", a.id, a.last().ChunksDone)

	// A stale leader: node 5 announces the old epoch as the old leader
	// until the end, with a data group where nothing is sent.
	stale := Msg{Type: TypeAnnounce, ID: ti.img.ID, Epoch: 1, Node: a.id, Held: uint32(len(ti.img.Chunks)), Name: "img",
		Group: netip.MustParseAddrPort("239.255.78.250:7711")}
	var newEpochAt time.Time
	for time.Since(killedAt) < 10*time.Second && newEpochAt.IsZero() {
		for _, f := range fs {
			if s := f.last(); s.Role == RoleLeader && s.Epoch == 2 {
				newEpochAt = time.Now()
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if newEpochAt.IsZero() {
		t.Fatal("no follower leads epoch 2 within 10 s of the kill")
	}
	staleCtx, staleStop := context.WithCancel(ctx)
	go l.broadcast(staleCtx, 5, stale, nil, 50*time.Millisecond)
	takeovers := 0
	for _, f := range fs {
		f.wait(t, 30*time.Second)
		l.checkDone(t, f, "img")
		takeovers += f.st.Takeovers
		if f.st.Takeovers == 0 && f.st.BytesFromServer != 0 {
			t.Errorf("follower %d fetched %d bytes from the server, want 0", f.id, f.st.BytesFromServer)
		}
		if f.st.Fallbacks != 0 {
			t.Errorf("follower %d fell back to the server", f.id)
		}
		f.mu.Lock()
		for _, h := range f.history {
			if h.at.After(newEpochAt.Add(200*time.Millisecond)) && h.st.Role == RoleFollower && h.st.Epoch < 2 {
				t.Errorf("follower %d follows epoch %d at %v, after epoch 2 began", f.id, h.st.Epoch, h.at)
				break
			}
		}
		f.mu.Unlock()
	}
	staleStop()
	if takeovers != 1 {
		t.Errorf("%d takeovers, want exactly 1", takeovers)
	}
	// The killed leader's download plus what the new one misses, and the
	// chunks in flight at the kill: never a second whole download.
	within(t, "server egress", l.srv.served.Load(), ti.storedBytes(), 1.3)
}

// broadcast sends m (with key, when set) every interval from node i until
// ctx ends.
func (l *lab) broadcast(ctx context.Context, i int, m Msg, key []byte, interval time.Duration) {
	n := l.lan.Nodes[i]
	var c net.PacketConn
	var dst *net.UDPAddr
	if err := n.Do(func() error {
		var err error
		c, err = net.ListenPacket("udp4", ":0")
		if err != nil {
			return err
		}
		ifi, err := net.InterfaceByName(n.Iface)
		if err != nil {
			return err
		}
		b, err := broadcastAddr(ifi)
		dst = net.UDPAddrFromAddrPort(netip.AddrPortFrom(b, DefaultControlPort))
		if err == nil {
			err = setBroadcast(c)
		}
		return err
	}); err != nil {
		l.t.Errorf("broadcast from node %d: %v", i, err)
		return
	}
	defer c.Close()
	b, err := AppendMsg(nil, &m, key)
	if err != nil {
		l.t.Error(err)
		return
	}
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		if _, err := c.WriteTo(b, dst); err != nil {
			l.t.Errorf("broadcast: %v", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

func setBroadcast(c net.PacketConn) error {
	rc, err := c.(*net.UDPConn).SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
	}); err != nil {
		return err
	}
	return serr
}
