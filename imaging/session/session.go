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
	"crypto/ed25519"
	"crypto/rand"
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
)

// Roles reported in Status.Role.
const (
	RoleListening = "listening"
	RoleLeader    = "leader"
	RoleFollower  = "follower"
	RoleElection  = "election"
	RoleFallback  = "fallback"
	RoleDone      = "done"
	RoleFailed    = "failed"
)

// Relay modes.
const (
	// RelayStream multicasts each chunk as soon as the leader has
	// verified it (the default).
	RelayStream = "stream"
	// RelayAfter starts the multicast once the leader's own download has
	// succeeded (the patent's literal method).
	RelayAfter = "after"
)

// Default ports and groups.
const (
	// DefaultControlPort is the UDP port of announces, requests and
	// takeovers (sent to the subnet's broadcast address by default).
	DefaultControlPort = 7710
	// DefaultDataPort is the port of a data session's transport control
	// group; its data group uses the next port.
	DefaultDataPort = 7711
)

// DefaultDataGroups is where data sessions' groups are picked, one address
// per image and epoch.
var DefaultDataGroups = netip.MustParsePrefix("239.255.78.0/24")

// Config configures Run. Zero values take the documented defaults.
type Config struct {
	Server imaging.Repo      // the image server (HTTP repo)
	Name   string            // image name
	Pub    ed25519.PublicKey // nil: unsigned accepted
	Iface  *net.Interface
	Relay  string // "stream" (default) or "after"
	Key    []byte // site key for HMAC; nil = none
	// Open opens the target for img (the target checks happen here).
	// Run calls the writer's Finish (the partition table) when every
	// chunk is written; closing the target is the caller's.
	Open func(img *imaging.Image) (*imaging.Writer, error)
	// Progress, when set, is called about every 250 ms and at the end.
	Progress func(Status)
	Logger   *slog.Logger

	// Control, when a multicast group, carries the control messages
	// instead of subnet broadcast to ControlPort.
	Control netip.AddrPort
	// ControlPort is the broadcast port (default DefaultControlPort).
	ControlPort int
	// DataGroups is the range data sessions' groups are picked from
	// (default DefaultDataGroups); DataPort their port (default
	// DefaultDataPort; the data group uses DataPort+1).
	DataGroups netip.Prefix
	DataPort   int
	// RateBitsPerSec is the leader's highest multicast rate (default
	// 100 Mbit/s; the transport lowers it when receivers lose data).
	RateBitsPerSec int64

	// AnnounceInterval is the time between a leader's announces, and
	// between a node's requests or takeover claims (default 200 ms).
	AnnounceInterval time.Duration
	// ListenWindow is how long a new node listens for a leader before it
	// leads itself (default 1 s, plus up to a quarter more at random).
	ListenWindow time.Duration
	// LeaderTimeout: a leader not heard for that long is gone (default
	// 5 announce intervals, 1 s).
	LeaderTimeout time.Duration
	// ElectionWindow is how long takeover claims are collected (default
	// 1 s).
	ElectionWindow time.Duration
	// DataTimeout: a follower whose data stops (or never comes while the
	// leader says it is sending) for that long falls back to the server
	// (default 5 s).
	DataTimeout time.Duration
	// Linger is how long a leader that holds the whole image stays while
	// nobody asks (default 2 s).
	Linger time.Duration
	// ServerTimeout: fetching from the server may fail for that long
	// before the node gives up (default 60 s); ServerRetry is the wait
	// between tries (default 1 s).
	ServerTimeout, ServerRetry time.Duration
	// Workers is the number of chunks fetched from the server at once
	// (default 4).
	Workers int
	// CacheChunks is how many downloaded chunks a leader keeps in memory
	// for the multicast (default 16); older ones are read back from the
	// target.
	CacheChunks int
	// MaxAttempts is how many data sessions with a live leader may fail
	// before the follower falls back to the server (default 2).
	MaxAttempts int
	// NodeID names this node (random when 0).
	NodeID uint32
	// Netns, when set, runs each function that opens a socket (tests:
	// netlab's Node.Do, so that sockets are made in the node's network
	// namespace). Nil runs it directly.
	Netns func(func() error) error
}

// Status is what a node is doing.
type Status struct {
	Role   string
	Epoch  uint32 // the epoch of the session the node leads or follows
	Node   uint32 // this node's ID
	Leader uint32 // the node followed (0: none)
	Chunks int
	// ChunksDone counts the chunks verified on the target.
	ChunksDone      int
	BytesFromServer int64 // stored bytes fetched from the server
	BytesFromPeers  int64 // stored bytes received by multicast and written
	BytesToPeers    int64 // block bytes multicast while leading
	Elapsed         time.Duration
	// Led counts the epochs this node led; Takeovers the elections it
	// won; Fallbacks the times it fell back to the server.
	Led, Takeovers, Fallbacks int
	// LastError is the last thing that went wrong (empty: nothing).
	LastError string
}

func (c *Config) defaults() error {
	if c.Server == nil || c.Name == "" || c.Open == nil {
		return errors.New("session: Server, Name and Open are required")
	}
	switch c.Relay {
	case "":
		c.Relay = RelayStream
	case RelayStream, RelayAfter:
	default:
		return fmt.Errorf("session: relay %q: want %q or %q", c.Relay, RelayStream, RelayAfter)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ControlPort <= 0 {
		c.ControlPort = DefaultControlPort
	}
	if !c.DataGroups.IsValid() {
		c.DataGroups = DefaultDataGroups
	}
	if !c.DataGroups.Addr().Is4() || !c.DataGroups.Addr().IsMulticast() || c.DataGroups.Bits() > 30 {
		return fmt.Errorf("session: data groups %v: want an IPv4 multicast range of /30 or larger", c.DataGroups)
	}
	if c.DataPort <= 0 {
		c.DataPort = DefaultDataPort
	}
	if c.Control.IsValid() && (!c.Control.Addr().Is4() || !c.Control.Addr().IsMulticast()) {
		return fmt.Errorf("session: control %v: want an IPv4 multicast group", c.Control)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.AnnounceInterval, 200*time.Millisecond)
	def(&c.ListenWindow, time.Second)
	def(&c.LeaderTimeout, 5*c.AnnounceInterval)
	def(&c.ElectionWindow, time.Second)
	def(&c.DataTimeout, 5*time.Second)
	def(&c.Linger, 2*time.Second)
	def(&c.ServerTimeout, 60*time.Second)
	def(&c.ServerRetry, time.Second)
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.CacheChunks <= 0 {
		c.CacheChunks = 16
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 2
	}
	for c.NodeID == 0 {
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.NodeID = binary.BigEndian.Uint32(b[:])
	}
	if c.Netns == nil {
		c.Netns = func(f func() error) error { return f() }
	}
	return nil
}

// ErrOtherImage is wrapped when a peer offers an image whose ID is not the
// one of this node's manifest.
var ErrOtherImage = errors.New("peer offers another image")

// ErrServer is wrapped when the server cannot give what a node needs.
var ErrServer = errors.New("image server unavailable")

// targetError is Config.Open's failure (the target checks): fatal, whoever
// sends the image.
type targetError struct{ err error }

func (e targetError) Error() string { return e.err.Error() }
func (e targetError) Unwrap() error { return e.err }

// leaderInfo is what a node knows of a leader, from its announces.
type leaderInfo struct {
	node     uint32
	epoch    uint32
	group    netip.AddrPort
	held     uint32
	flags    uint16
	lastSeen time.Time
}

func (l leaderInfo) sending() bool { return l.flags&FlagSending != 0 }

// claim is a takeover claim heard.
type claim struct {
	epoch    uint32
	held     uint32
	lastSeen time.Time
}

// node is one Run.
type node struct {
	cfg   Config
	log   *slog.Logger
	conn  net.PacketConn // control messages
	dst   *net.UDPAddr   // where control messages go
	start time.Time

	fromServer, fromPeers, toPeers atomic.Int64

	mu        sync.Mutex
	img       *imaging.Image
	w         *imaging.Writer
	leaders   map[uint32]*leaderInfo
	requests  map[uint32]msgSeen // by node
	claims    map[uint32]claim
	maxEpoch  uint32 // highest epoch announced
	changed   chan struct{}
	cache     map[int][]byte // stored bytes of chunks downloaded lately
	cacheFIFO []int
	finished  bool
	finishErr error
	st        Status
}

// msgSeen is a request heard.
type msgSeen struct {
	epoch uint32
	at    time.Time
	id    bool // the requester has a manifest (can lead)
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
	n := &node{
		cfg: cfg, log: cfg.Logger.With("node", cfg.NodeID), start: time.Now(),
		leaders: make(map[uint32]*leaderInfo), requests: make(map[uint32]msgSeen),
		claims: make(map[uint32]claim), changed: make(chan struct{}), cache: make(map[int][]byte),
	}
	n.st = Status{Role: RoleListening, Node: cfg.NodeID}
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
	leader leaderInfo // stFollow: whom
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
			nx, err = n.lead(ctx, nx.epoch, nx.takeover)
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
			nx, err = n.elect(ctx)
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
	if _, ok := n.bestLeader(now); ok || !n.askedSince(now.Add(-n.cfg.Linger), 0) {
		return nil
	}
	epoch := n.maxAnnounced() + 1
	n.log.Info("image complete and peers still ask: leading for them", "epoch", epoch)
	nx, err := n.lead(ctx, epoch, false)
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
			n.send(TypeRequest, 0, 0, netip.AddrPort{})
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
func (n *node) elect(ctx context.Context) (next, error) {
	epoch := n.maxAnnounced() + 1
	n.setRole(RoleElection, epoch, 0)
	start := time.Now()
	canLead := n.image() != nil
	n.log.Info("leader gone: takeover election", "epoch", epoch, "held", n.held())
	tick := time.NewTicker(n.cfg.AnnounceInterval / 4)
	defer tick.Stop()
	var lastClaim time.Time
	deadline := start.Add(n.cfg.ElectionWindow)
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
		if e := n.maxClaim(start); e > epoch {
			epoch = e
		}
		if !decided && canLead && now.Sub(lastClaim) >= n.cfg.AnnounceInterval {
			lastClaim = now
			n.send(TypeTakeover, epoch, 0, netip.AddrPort{})
		}
		if !decided && !now.Before(deadline) {
			winner, held := n.winner(start, epoch, canLead)
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

// loadManifest fetches and checks the manifest from the server. A server
// that does not answer wraps ErrServer; a manifest that does not pass its
// checks (signature, name) is another error, fatal to the run.
func (n *node) loadManifest(ctx context.Context) error {
	raw, sig, err := n.cfg.Server.Manifest(ctx, n.cfg.Name)
	if errors.Is(err, imaging.ErrNotFound) {
		return fmt.Errorf("image %q: %w", n.cfg.Name, err) // the server answered: no such image
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrServer, err)
	}
	img, err := imaging.ImageNamed(raw, sig, n.cfg.Pub, n.cfg.Name, n.cfg.Server)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.img != nil && n.img.ID != img.ID {
		return fmt.Errorf("%w: the server's manifest of %q changed under us", ErrOtherImage, n.cfg.Name)
	}
	if n.img == nil {
		n.img = img
		n.st.Chunks = len(img.Chunks)
	}
	return nil
}

// openWriter opens the target for img once.
func (n *node) openWriter(img *imaging.Image) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.img != nil && img.ID != n.img.ID {
		return fmt.Errorf("%w: image %s, ours is %s", ErrOtherImage, img.ID.String()[:16], n.img.ID.String()[:16])
	}
	if n.w != nil {
		return nil
	}
	w, err := n.cfg.Open(img)
	if err != nil {
		return targetError{err}
	}
	n.img, n.w = img, w
	n.st.Chunks = len(img.Chunks)
	return nil
}

// finish writes the partition table once every chunk is there.
func (n *node) finish() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.finished {
		return n.finishErr
	}
	if n.w == nil {
		return errors.New("finish: no target")
	}
	n.finished = true
	n.finishErr = n.w.Finish()
	if n.finishErr == nil {
		n.log.Info("image complete; partition table written", "elapsed", time.Since(n.start).Round(time.Millisecond))
	}
	return n.finishErr
}

func (n *node) image() *imaging.Image {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.img
}

func (n *node) writer() *imaging.Writer {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.w
}

func (n *node) complete() bool {
	w := n.writer()
	return w != nil && w.Remaining() == 0
}

func (n *node) held() uint32 {
	w := n.writer()
	if w == nil {
		return 0
	}
	return uint32(len(w.Image().Chunks) - w.Remaining())
}

func (n *node) missing() int {
	w := n.writer()
	if w == nil {
		return -1
	}
	return w.Remaining()
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

func (n *node) setRole(role string, epoch, leader uint32) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.st.Role, n.st.Epoch, n.st.Leader = role, epoch, leader
}

func (n *node) setErr(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.st.LastError = err.Error()
}

func (n *node) status() Status {
	n.mu.Lock()
	st := n.st
	w := n.w
	n.mu.Unlock()
	if w != nil {
		st.ChunksDone = len(w.Image().Chunks) - w.Remaining()
	}
	st.BytesFromServer = n.fromServer.Load()
	st.BytesFromPeers = n.fromPeers.Load()
	st.BytesToPeers = n.toPeers.Load()
	st.Elapsed = time.Since(n.start)
	return st
}

func (n *node) progressLoop(ctx context.Context) {
	if n.cfg.Progress == nil {
		return
	}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.cfg.Progress(n.status())
		}
	}
}
