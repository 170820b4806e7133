package session

// loopback_test.go: one node's control reader on loopback sockets (no LAN fixture): it answers while the target opens.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/imaging/mcast/fresh"
	"github.com/shoal-project/shoal/partition"
)

// loopPeer is the other end of a loopback node's control socket: the
// node sends to it, and it sends to the node.
type loopPeer struct {
	conn   net.PacketConn
	node   net.Addr // the node's control socket
	stamps *fresh.Stamper
}

// loopbackNode makes the node of a Run of image "img" (never started)
// whose control socket is on 127.0.0.1 and sends to the peer's socket.
// open is its Config.Open (nil: one that fails); log its logger (nil:
// the test's).
func loopbackNode(t *testing.T, open func(*imaging.Image) (*imaging.Writer, error), log *slog.Logger) (*node, *loopPeer) {
	t.Helper()
	if open == nil {
		open = func(*imaging.Image) (*imaging.Writer, error) { return nil, errors.New("no target in this test") }
	}
	if log == nil {
		log = testLogger(t, "n")
	}
	cfg := Config{Server: imaging.DirRepo(t.TempDir()), Name: "img", Open: open, Key: trustKey, Logger: log, NodeID: 1}
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	n := newNode(cfg)
	var conns [2]net.PacketConn
	for i := range conns {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	n.conn, n.dst = conns[0], conns[1].LocalAddr().(*net.UDPAddr)
	return n, &loopPeer{conn: conns[1], node: conns[0].LocalAddr(), stamps: fresh.NewStamper(time.Now)}
}

// startReading runs n.readControl until ctx ends (or the test does, which
// closes the socket); the channel is closed when it returns.
func startReading(t *testing.T, ctx context.Context, n *node) <-chan struct{} {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); n.readControl(ctx) }()
	t.Cleanup(func() {
		cancel()
		n.conn.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("readControl did not return after the context ended and the socket closed")
		}
	})
	return done
}

// announce sends the announce of an unproven leader of "img" to the node
// and returns its nonce: a node missing chunks asks such a leader back
// with a request echoing it.
func (p *loopPeer) announce(t *testing.T) uint64 {
	t.Helper()
	err := p.stamps.Do(func(st fresh.Stamp) error {
		m := Msg{Type: TypeAnnounce, Name: "img", Node: 7, Epoch: 1, Group: netip.MustParseAddrPort("239.255.78.7:7711"), Stamp: st}
		b, err := AppendMsg(nil, &m, trustKey)
		if err != nil {
			return err
		}
		_, err = p.conn.WriteTo(b, p.node)
		return err
	})
	if err != nil {
		t.Fatalf("send announce: %v", err)
	}
	return p.stamps.Nonce()
}

// answered waits up to timeout for the node's request echoing nonce.
func (p *loopPeer) answered(nonce uint64, timeout time.Duration) error {
	if err := p.conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	buf := make([]byte, 2048)
	for {
		k, _, err := p.conn.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("no request echoing the announce: %w", err)
		}
		if m, err := ParseMsg(buf[:k], trustKey); err == nil && m.Type == TypeRequest && m.EchoNonce == nonce {
			return nil
		}
	}
}

// While Config.Open runs (it wipes the target: it may take minutes), the
// node's lock is free: its status is taken and its control reader
// answers; a second opener waits for the first and Open runs once.
func TestOpenOutsideLock(t *testing.T) {
	ti := makeImage(t, filepath.Join(t.TempDir(), "repo"), "img", 1<<20, 64<<10)
	entered, release := make(chan struct{}), make(chan struct{})
	var opens atomic.Int32
	open := func(img *imaging.Image) (*imaging.Writer, error) {
		if opens.Add(1) == 1 {
			close(entered)
		}
		<-release
		tg, err := partition.OpenTarget(filepath.Join(t.TempDir(), "target.img"), img.Requirements(), partition.TargetOptions{})
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { tg.Close() })
		return imaging.NewWriter(img, tg, nil)
	}
	n, p := loopbackNode(t, open, nil)
	startReading(t, context.Background(), n)
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the reader's cleanup: it may wait for the lock

	opened := make(chan error, 2)
	for range 2 {
		go func() { opened <- n.openWriter(ti.img) }()
	}
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("Open not called")
	}
	got := make(chan Status, 1)
	go func() { got <- n.status() }()
	select {
	case st := <-got:
		if st.Role != RoleListening {
			t.Errorf("status while the target opens: role %q, want %q", st.Role, RoleListening)
		}
	case <-time.After(2 * time.Second):
		t.Error("status blocked while the target opens")
	}
	if err := p.answered(p.announce(t), 3*time.Second); err != nil {
		t.Errorf("control reader while the target opens: %v", err)
	}
	unblock()
	for range 2 {
		if err := <-opened; err != nil {
			t.Errorf("openWriter: %v", err)
		}
	}
	if k := opens.Load(); k != 1 {
		t.Errorf("Open called %d times, want 1", k)
	}
	if n.writer() == nil {
		t.Error("no writer after Open returned")
	}
}
