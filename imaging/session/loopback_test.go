package session

// loopback_test.go: one node's control reader on loopback sockets (no LAN fixture): it answers while the target opens, and after read errors.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
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

// warnings counts the warnings logged whose message starts with prefix.
type warnings struct {
	prefix string
	mu     sync.Mutex
	n      int
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler           { return w }
func (w *warnings) WithGroup(string) slog.Handler                { return w }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, w.prefix) {
		w.mu.Lock()
		w.n++
		w.mu.Unlock()
	}
	return nil
}

func (w *warnings) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// A control socket whose reads fail (here: a read deadline in the past)
// does not make the node deaf: it reads on once the reads work again,
// warning once per burst of errors, and returns when its context ends or
// the socket is closed, in a burst or not.
func TestControlReadErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		burst bool // end during a burst of errors
		end   func(n *node, cancel context.CancelFunc)
	}{
		{"context done in a burst", true, func(_ *node, cancel context.CancelFunc) { cancel() }},
		{"socket closed in a burst", true, func(n *node, _ context.CancelFunc) { n.conn.Close() }},
		{"socket closed while reading", false, func(n *node, _ context.CancelFunc) { n.conn.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			warned := &warnings{prefix: "control socket"}
			n, p := loopbackNode(t, nil, slog.New(warned))
			fail := func() {
				t.Helper()
				if err := n.conn.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
					t.Fatal(err)
				}
			}
			fail()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := startReading(t, ctx, n)
			time.Sleep(300 * time.Millisecond) // a burst of failed reads
			select {
			case <-done:
				t.Fatal("readControl returned at a read error: the node is deaf")
			default:
			}
			if k := warned.count(); k != 1 {
				t.Errorf("%d warnings in a burst of read errors, want 1", k)
			}
			if err := n.conn.SetReadDeadline(time.Time{}); err != nil {
				t.Fatal(err)
			}
			if err := p.answered(p.announce(t), 3*time.Second); err != nil {
				t.Fatalf("after read errors: %v", err)
			}
			if tc.burst {
				fail()
				time.Sleep(100 * time.Millisecond)
				if k := warned.count(); k != 2 {
					t.Errorf("%d warnings after two bursts of read errors, want 2", k)
				}
			}
			tc.end(n, cancel)
			select {
			case <-done:
			case <-time.After(2 * time.Second):
				t.Fatal("readControl did not return")
			}
		})
	}
}
