package session

// What a node knows of the other nodes, from their control messages: the
// leaders, requests and takeover claims heard. Every table is keyed by
// the sender's nonce (drawn once per run), bounded (maxLeaders,
// maxRequests, maxClaims) and forgets entries not heard for peerExpiry.
// A leader is followed, waited on or yielded to only once it is proven:
// one of its announces echoed a message of this node's nonce, which no
// message recorded before this run (or this node's start) can do. The
// node's queries of the tables follow them.

import (
	"net/netip"
	"time"
)

// Bounds of the peer tables. A LAN segment has at most a few hundred
// nodes imaging one image; beyond these, the entry heard from longest
// ago (an unproven one first) is forgotten.
const (
	maxLeaders  = 64
	maxRequests = 512
	maxClaims   = 512
	// maxChallenges bounds the requests sent to unproven leaders per
	// AnnounceInterval.
	maxChallenges = 8
	// maxSenders bounds the freshness guard's table of nonces.
	maxSenders = 4096
	// peerExpiry: an entry not heard for that long is forgotten.
	peerExpiry = 30 * time.Second
)

// leaderInfo is what a node knows of a leader, from its announces.
type leaderInfo struct {
	node     uint32
	id       [32]byte // the image it announces (zeros: none)
	nonce    uint64   // the leader's run
	seq      uint32   // of its last announce
	epoch    uint32
	group    netip.AddrPort
	session  uint32 // its data session's transport session number (0: none)
	src      netip.Addr
	held     uint32
	flags    uint16
	lastSeen time.Time
	// proven: an announce of this nonce echoed one of our messages.
	proven bool
	// bad: its data session brought bad data or a bad manifest.
	bad          bool
	challengedAt time.Time
}

func (l leaderInfo) sending() bool { return l.flags&FlagSending != 0 }

// beats reports whether leader l wins over a leader of epoch and node:
// the higher epoch, then the lower node ID.
func (l leaderInfo) beats(epoch, node uint32) bool {
	return l.epoch > epoch || l.epoch == epoch && l.node < node
}

// reqSeen is a request heard.
type reqSeen struct {
	node     uint32
	epoch    uint32
	seq      uint32
	at       time.Time
	id       bool // the requester has a manifest (can lead)
	echoedUs bool // it echoed one of our messages: it lives in this run
	echoedAt time.Time
	// answeredAt: when a leader last answered it (at most 4 times an
	// interval).
	answeredAt time.Time
}

// claim is a takeover claim heard.
type claim struct {
	node     uint32
	epoch    uint32
	held     uint32
	echo     uint64 // the leader gone, by nonce
	lastSeen time.Time
}

// peers is the node's tables; node.mu guards them.
type peers struct {
	leaders  map[uint64]*leaderInfo
	requests map[uint64]*reqSeen
	claims   map[uint64]*claim
	maxEpoch uint32 // highest epoch of a proven announce
	// challenges counts the requests sent to unproven leaders since
	// challengeAt.
	challenges  int
	challengeAt time.Time
}

func newPeers() peers {
	return peers{leaders: make(map[uint64]*leaderInfo), requests: make(map[uint64]*reqSeen), claims: make(map[uint64]*claim)}
}

// room makes room for one more entry in m, whose entries say when they
// were last heard (at) and whether they are worth keeping (keep); it
// reports whether there is room. Entries older than peerExpiry go first,
// then the oldest one not kept; kept entries are never evicted by a
// flood, which is then refused.
func room[T any](m map[uint64]*T, limit int, now time.Time, at func(*T) time.Time, keep func(*T) bool) bool {
	if len(m) < limit {
		return true
	}
	var oldest uint64
	var oldestAt time.Time
	found := false
	for k, e := range m {
		t := at(e)
		if now.Sub(t) > peerExpiry {
			delete(m, k)
			continue
		}
		if !keep(e) && (!found || t.Before(oldestAt)) {
			oldest, oldestAt, found = k, t, true
		}
	}
	if len(m) < limit {
		return true
	}
	if found {
		delete(m, oldest)
		return true
	}
	return false
}

// bestLeader returns the leader to follow: proven, of our image ID (once
// we have the manifest: one heard before it came was matched by name),
// heard within LeaderTimeout, not leaving, not bad, highest epoch, then
// lowest node ID. Leaders of lower epochs than the highest live one are stale and
// never chosen.
func (n *node) bestLeader(now time.Time) (leaderInfo, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var best leaderInfo
	found := false
	for _, l := range n.leaders {
		if !l.proven || l.bad || now.Sub(l.lastSeen) > n.cfg.LeaderTimeout || l.flags&FlagLeaving != 0 ||
			n.img != nil && l.id != n.img.ID {
			continue
		}
		if !found || l.beats(best.epoch, best.node) {
			best, found = *l, true
		}
	}
	return best, found
}

// leader returns what is known of the leader of nonce.
func (n *node) leader(nonce uint64) (leaderInfo, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l, ok := n.leaders[nonce]
	if !ok {
		return leaderInfo{}, false
	}
	return *l, true
}

// markBad excludes the leader of nonce: its data session was bad.
func (n *node) markBad(nonce uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if l := n.leaders[nonce]; l != nil {
		l.bad = true
	}
	n.st.BadPeers++
}

// askedSince reports whether a peer of this run asked for the image since
// t, for epoch: a request that echoed one of our messages (a follower
// echoes our announce).
func (n *node) askedSince(t time.Time, epoch uint32) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range n.requests {
		if r.at.After(t) && r.echoedUs && r.epoch == epoch {
			return true
		}
	}
	return false
}

// anyRequestSince reports whether any request was heard since t, proven
// or not (a complete node probes with announces whether its sender
// lives).
func (n *node) anyRequestSince(t time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range n.requests {
		if r.at.After(t) {
			return true
		}
	}
	return false
}

// listenerEcho picks the listener (a request of epoch 0) heard since t
// that this node echoed longest ago, for its next request to echo: so
// that the listeners of a simultaneous start prove themselves to each
// other.
func (n *node) listenerEcho(t, now time.Time) (uint64, uint32) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var pick *reqSeen
	var nonce uint64
	for k, r := range n.requests {
		if r.epoch != 0 || !r.at.After(t) {
			continue
		}
		if pick == nil || r.echoedAt.Before(pick.echoedAt) {
			pick, nonce = r, k
		}
	}
	if pick == nil {
		return 0, 0
	}
	pick.echoedAt = now
	return nonce, pick.seq
}

// lowerListener reports whether a node with a lower ID that has the
// manifest was heard listening (requesting with epoch 0, echoing us)
// since t.
func (n *node) lowerListener(t time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range n.requests {
		if r.node < n.cfg.NodeID && r.epoch == 0 && r.id && r.echoedUs && r.at.After(t) {
			return true
		}
	}
	return false
}

func (n *node) maxAnnounced() uint32 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.maxEpoch
}

// maxClaim returns the highest epoch claimed since t by followers of the
// leader gone (its nonce).
func (n *node) maxClaim(t time.Time, gone uint64) uint32 {
	n.mu.Lock()
	defer n.mu.Unlock()
	var e uint32
	for _, c := range n.claims {
		if c.lastSeen.After(t) && c.echo == gone {
			e = max(e, c.epoch)
		}
	}
	return e
}

// winner returns the election's winner among the claims for epoch heard
// since t from followers of the leader gone and, when we can lead,
// ourselves: most chunks held, then lowest node ID.
func (n *node) winner(t time.Time, epoch uint32, gone uint64, self bool) (uint32, uint32) {
	held := n.held()
	n.mu.Lock()
	defer n.mu.Unlock()
	var best, bestHeld uint32
	found := false
	if self {
		best, bestHeld, found = n.cfg.NodeID, held, true
	}
	for _, c := range n.claims {
		if c.epoch != epoch || !c.lastSeen.After(t) || c.echo != gone {
			continue
		}
		if !found || c.held > bestHeld || c.held == bestHeld && c.node < best {
			best, bestHeld, found = c.node, c.held, true
		}
	}
	return best, bestHeld
}
