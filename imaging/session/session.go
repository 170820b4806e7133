// Package session is the peer session, the method of US patent 8,281,025
// ("Contemporaneous peer-to-peer multicast data distribution"): a node that
// needs an image listens for another node already downloading it; if it hears
// one it requests the image from that node (the leader), which multicasts it
// to everyone who asked; if it hears none it becomes the leader itself. When
// the leader dies the followers elect one of them to take over; when the
// multicast does not complete a follower fetches what it misses from the
// server. Run is the one state machine; docs/session.md describes it, its
// timers, its messages and how each rule maps to the patent's claims.
//
// Control messages (announce, request, takeover) go by subnet broadcast (or
// a control multicast group); the data goes through imaging/mcast on the
// multicast group the leader names. Every chunk is verified against the
// manifest before it is written (imaging.Writer), whoever sent it.
package session

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/imaging/mcast/fresh"
)

// ErrOtherImage is wrapped when a peer offers an image whose ID is not the
// one of this node's manifest.
var ErrOtherImage = errors.New("peer offers another image")

// ErrServer is wrapped when the server cannot give what a node needs.
var ErrServer = errors.New("image server unavailable")

// node is one Run.
type node struct {
	staleEnds int // data sessions that ended before their manifest came (follower.go)
	cfg       Config
	log       *slog.Logger
	conn      net.PacketConn // control messages
	dst       *net.UDPAddr   // where control messages go
	start     time.Time
	stamps    *fresh.Stamper // this node's nonce and sequence numbers
	guard     *fresh.Guard   // freshness of the messages heard

	fromServer, fromPeers, toPeers atomic.Int64
	refused                        atomic.Int64

	openMu sync.Mutex // one Config.Open at a time, outside mu (openWriter)

	mu        sync.Mutex
	img       *imaging.Image
	w         *imaging.Writer
	peers              // what was heard of the other nodes (peers.go)
	leadState *leading // while leading: what requests are answered with
	changed   chan struct{}
	cache     map[int][]byte // stored bytes of chunks downloaded lately
	cacheFIFO []int
	finished  bool
	finishErr error
	st        Status
}

// Run fetches the image cfg names onto the target cfg.Open returns, from a
// peer when one on the LAN is downloading it and from the server otherwise,
// and relays it to the peers that ask. It returns when the image is on the
// target and its partition table written (and any lingering as leader is
// over), or with an error; the Status says how it went.
func Run(ctx context.Context, cfg Config) (Status, error) {
	if err := cfg.defaults(); err != nil {
		return Status{}, err
	}
	n := newNode(cfg)
	if cfg.Key == nil {
		n.log.Warn("INSECURE: no session key: control messages are not authenticated; anyone on the LAN can stall or mislead this node (not write to its disk: every chunk is checked against the manifest)")
	}
	if err := n.openControl(ctx); err != nil {
		return n.status(), err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); n.readControl(ctx) }()
	go func() { defer wg.Done(); n.progressLoop(ctx) }()
	err := n.run(ctx)
	// The final role keeps the last epoch and leader, for the report.
	n.mu.Lock()
	if err != nil {
		n.st.LastError = err.Error()
		n.st.Role = RoleFailed
	} else {
		n.st.Role = RoleDone
	}
	n.mu.Unlock()
	cancel()
	n.conn.Close()
	wg.Wait()
	st := n.status()
	if cfg.Progress != nil {
		cfg.Progress(st)
	}
	return st, err
}

// newNode is the node of a Run of cfg (its defaults given), before its
// control socket is open.
func newNode(cfg Config) *node {
	return &node{
		cfg: cfg, log: cfg.Logger.With("node", cfg.NodeID), start: time.Now(),
		stamps: fresh.NewStamper(cfg.Clock), guard: fresh.NewGuard(cfg.Clock, maxSenders),
		peers:   newPeers(),
		changed: make(chan struct{}), cache: make(map[int][]byte),
		st: Status{Role: RoleListening, Node: cfg.NodeID},
	}
}

// state is a state of the machine; next says where to go.
type state int

const (
	stListen state = iota
	stLead
	stFollow
	stElect
	stFallback
	stDone
)

type next struct {
	state  state
	leader leaderInfo // stFollow: whom; stElect: the leader gone
	epoch  uint32     // stLead: which epoch
	// takeover: stLead after winning an election.
	takeover bool
	why      string
}

// run is the state machine: listen -> leader | follower -> takeover /
// fallback -> done | failed. Each state is one method returning the next.
func (n *node) run(ctx context.Context) error {
	if err := n.loadManifest(ctx); err != nil {
		if !errors.Is(err, ErrServer) {
			return err // a bad manifest or signature: nothing to wait for
		}
		// A node without the manifest can still follow a peer (the
		// manifest comes with the data, checked by its signature).
		n.log.Warn("manifest from the server failed; will look for a peer", "err", err)
		n.setErr(err)
	} else if err := n.openWriter(n.image()); err != nil {
		// As `shoal image apply`: the manifest, then the target's
		// checks, before anything else.
		return err
	}
	nx := next{state: stListen}
	attempts := 0 // failed data sessions in a row with a live leader
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		switch nx.state {
		case stListen:
			nx, err = n.listen(ctx)
		case stLead:
			nx, err = n.lead(ctx, nx.epoch, nx.takeover, false)
			attempts = 0
			if err == nil && nx.state == stDone {
				return n.finish() // it lingered for late requests already
			}
		case stFollow:
			var failed bool
			nx, failed, err = n.follow(ctx, nx.leader)
			if failed {
				attempts++
				if attempts >= n.cfg.MaxAttempts && nx.state == stFollow {
					nx = next{state: stFallback, why: fmt.Sprintf("%d data sessions failed", attempts)}
				}
			} else if nx.state != stFollow {
				attempts = 0
			}
		case stElect:
			nx, err = n.elect(ctx, nx.leader)
		case stFallback:
			nx, err = n.fallback(ctx, nx.why)
		case stDone:
			return n.done(ctx)
		}
		if err != nil {
			return err
		}
	}
}

// done finishes the target and, when nobody else leads and a peer still
// asks for the image, leads for it (a node holding the whole image).
func (n *node) done(ctx context.Context) error {
	if err := n.finish(); err != nil {
		return err
	}
	now := time.Now()
	if _, ok := n.bestLeader(now); ok || !n.anyRequestSince(now.Add(-n.cfg.Linger)) {
		return nil
	}
	// The requests heard may be replays: lead as a probe, which ends
	// after a few announces unless a requester echoes one.
	epoch := n.maxAnnounced() + 1
	n.log.Info("image complete and peers may still ask: leading for them", "epoch", epoch)
	nx, err := n.lead(ctx, epoch, false, true)
	if err != nil || nx.state == stDone {
		return err
	}
	// Another leader appeared; the image is here anyway.
	return nil
}

// listen waits ListenWindow (plus jitter) for a leader of the image,
// requesting it meanwhile; it follows a leader heard, or leads.
func (n *node) listen(ctx context.Context) (next, error) {
	n.setRole(RoleListening, 0, 0)
	start := time.Now()
	window := n.cfg.ListenWindow + time.Duration(mrand.Int64N(int64(n.cfg.ListenWindow/4)+1))
	deadline := start.Add(window)
	extended := false
	tick := time.NewTicker(n.cfg.AnnounceInterval / 4)
	defer tick.Stop()
	var lastReq time.Time
	for {
		now := time.Now()
		if l, ok := n.bestLeader(now); ok {
			n.log.Info("heard a leader", "leader", l.node, "epoch", l.epoch, "group", l.group)
			return next{state: stFollow, leader: l}, nil
		}
		if n.complete() {
			return next{state: stDone}, nil
		}
		if now.Sub(lastReq) >= n.cfg.AnnounceInterval {
			lastReq = now
			en, es := n.listenerEcho(start, now)
			n.send(Msg{Type: TypeRequest, EchoNonce: en, EchoSeq: es})
		}
		if !now.Before(deadline) {
			if n.image() == nil {
				if err := n.loadManifest(ctx); err != nil {
					if !errors.Is(err, ErrServer) || time.Since(n.start) > n.cfg.ServerTimeout {
						return next{}, fmt.Errorf("no peer leads image %q and the server does not answer: %w", n.cfg.Name, err)
					}
					deadline = now.Add(n.cfg.ServerRetry)
					continue
				}
			}
			// Simultaneous start: a listener with a lower node ID
			// that can lead will; give it one more window.
			if !extended && n.lowerListener(start) {
				n.log.Info("another node started at the same time and leads; waiting for its announce")
				extended = true
				deadline = now.Add(n.cfg.ListenWindow)
				continue
			}
			epoch := n.maxAnnounced() + 1
			n.log.Info("no leader heard: leading", "window", window, "epoch", epoch)
			return next{state: stLead, epoch: epoch}, nil
		}
		select {
		case <-ctx.Done():
			return next{}, ctx.Err()
		case <-tick.C:
		}
	}
}

// elect runs a takeover election for the epoch after the highest one
// announced: candidates claim with the chunks they hold; the one holding
// most (ties: lowest node ID) leads; the others follow it.
func (n *node) elect(ctx context.Context, gone leaderInfo) (next, error) {
	epoch := n.maxAnnounced() + 1
	n.setRole(RoleElection, epoch, 0)
	start := time.Now()
	canLead := n.image() != nil
	n.log.Info("leader gone: takeover election", "epoch", epoch, "held", n.held())
	tick := time.NewTicker(n.cfg.AnnounceInterval / 4)
	defer tick.Stop()
	var lastClaim time.Time
	deadline := start.Add(n.cfg.ElectionWindow)
	firstClaim := start.Add(n.claimDelay())
	decided := false
	for {
		now := time.Now()
		if l, ok := n.bestLeader(now); ok && l.lastSeen.After(start) {
			n.log.Info("following the new leader", "leader", l.node, "epoch", l.epoch)
			return next{state: stFollow, leader: l}, nil
		}
		if n.complete() {
			return next{state: stDone}, nil
		}
		if e := n.maxClaim(start, gone.nonce); e > epoch {
			epoch = e
		}
		// A node claims once its delay is over, and again every interval,
		// while no claim heard beats its own: a better one silences it.
		if !decided && canLead && !now.Before(firstClaim) && now.Sub(lastClaim) >= n.cfg.AnnounceInterval {
			if w, _ := n.winner(start, epoch, gone.nonce, true); w == n.cfg.NodeID {
				lastClaim = now
				n.send(Msg{Type: TypeTakeover, Epoch: epoch, EchoNonce: gone.nonce, EchoSeq: gone.seq})
			}
		}
		if !decided && !now.Before(deadline) {
			winner, held := n.winner(start, epoch, gone.nonce, canLead)
			if winner == n.cfg.NodeID {
				n.log.Info("won the takeover election", "epoch", epoch, "held", held)
				n.mu.Lock()
				n.st.Takeovers++
				n.mu.Unlock()
				return next{state: stLead, epoch: epoch, takeover: true}, nil
			}
			n.log.Info("lost the takeover election; waiting for the winner", "winner", winner, "held", held)
			decided = true
			// The winner must announce within a few intervals.
			deadline = now.Add(n.cfg.LeaderTimeout + n.cfg.ElectionWindow)
		} else if decided && !now.Before(deadline) {
			n.log.Warn("the election's winner never announced; listening again")
			return next{state: stListen}, nil
		}
		select {
		case <-ctx.Done():
			return next{}, ctx.Err()
		case <-tick.C:
		}
	}
}

// claimDelay is how long a node waits, into an election, before its
// first takeover claim: up to half the ElectionWindow, less the more of
// the image it holds, and half of it at random. The nodes holding most
// claim first and the others, hearing them, never do (elect): an
// election among N followers sends a few claims, not N each interval.
func (n *node) claimDelay() time.Duration {
	missing := 1.0
	if img := n.image(); img != nil && len(img.Chunks) > 0 {
		missing = 1 - float64(n.held())/float64(len(img.Chunks))
	}
	return time.Duration((0.5*missing + 0.5*mrand.Float64()) * float64(n.cfg.ElectionWindow/2))
}

// fallback fetches the missing chunks from the server itself.
func (n *node) fallback(ctx context.Context, why string) (next, error) {
	n.setRole(RoleFallback, 0, 0)
	n.mu.Lock()
	n.st.Fallbacks++
	n.mu.Unlock()
	n.setErr(errors.New(why))
	n.log.Warn("falling back to the server", "why", why, "missing", n.missing())
	if n.image() == nil {
		if err := n.loadManifest(ctx); err != nil {
			return next{}, fmt.Errorf("fall back to the server (%s): %w", why, err)
		}
	}
	if err := n.openWriter(n.image()); err != nil {
		return next{}, err
	}
	if err := n.download(ctx); err != nil {
		return next{}, fmt.Errorf("fall back to the server (%s): %w", why, err)
	}
	return next{state: stDone}, nil
}

// groupFor picks the data session's transport control group of an epoch:
// one address of DataGroups from the image ID and epoch, never the one of
// the epoch before.
func (n *node) groupFor(id imaging.ID, epoch uint32) netip.AddrPort {
	pick := func(e uint32) uint32 {
		h := sha256.New()
		h.Write(id[:])
		h.Write(binary.BigEndian.AppendUint32(nil, e))
		sum := h.Sum(nil)
		size := uint32(1) << (32 - n.cfg.DataGroups.Bits())
		return 1 + binary.BigEndian.Uint32(sum)%(size-2) // not .0 nor the last
	}
	off := pick(epoch)
	size := uint32(1) << (32 - n.cfg.DataGroups.Bits())
	if epoch > 0 && off == pick(epoch-1) {
		off = 1 + off%(size-2)
	}
	base := n.cfg.DataGroups.Masked().Addr().As4()
	a := binary.BigEndian.Uint32(base[:]) + off
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, a))), uint16(n.cfg.DataPort))
}

// dataGroup is the transport's data group of a session whose control group
// is g.
func dataGroup(g netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(g.Addr(), g.Port()+1)
}
