package session

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/imaging/mcast"
	"github.com/shoal-project/shoal/imaging/mcast/fresh"
)

// openControl opens the socket of the control messages: bound to
// ControlPort with broadcast allowed, sending to the interface's subnet
// broadcast address; or, with cfg.Control, on that multicast group.
func (n *node) openControl(ctx context.Context) error {
	return n.cfg.Netns(func() error {
		if n.cfg.Control.IsValid() {
			c, err := mcast.ListenGroup(ctx, n.cfg.Iface, n.cfg.Control, mcast.GroupOptions{})
			if err != nil {
				return fmt.Errorf("session control group: %w", err)
			}
			n.conn, n.dst = c, net.UDPAddrFromAddrPort(n.cfg.Control)
			return nil
		}
		bcast, err := broadcastAddr(n.cfg.Iface)
		if err != nil {
			return err
		}
		lc := net.ListenConfig{Control: func(network, address string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
					return
				}
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
			})
			if err != nil {
				return err
			}
			return serr
		}}
		c, err := lc.ListenPacket(ctx, "udp4", fmt.Sprintf("0.0.0.0:%d", n.cfg.ControlPort))
		if err != nil {
			return fmt.Errorf("session control port: %w", err)
		}
		n.conn, n.dst = c, net.UDPAddrFromAddrPort(netip.AddrPortFrom(bcast, uint16(n.cfg.ControlPort)))
		return nil
	})
}

// broadcastAddr returns the IPv4 broadcast address of iface's first IPv4
// subnet; with a nil iface, of the first interface that is up, not
// loopback, and has one.
func broadcastAddr(iface *net.Interface) (netip.Addr, error) {
	ifaces := []net.Interface{}
	if iface != nil {
		// Look it up again by name: the caller's copy may come from
		// another network namespace's view.
		ifi, err := net.InterfaceByName(iface.Name)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("interface %s: %w", iface.Name, err)
		}
		ifaces = append(ifaces, *ifi)
	} else {
		all, err := net.Interfaces()
		if err != nil {
			return netip.Addr{}, err
		}
		for _, ifi := range all {
			if ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagLoopback == 0 && ifi.Flags&net.FlagBroadcast != 0 {
				ifaces = append(ifaces, ifi)
			}
		}
	}
	for _, ifi := range ifaces {
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.To4() == nil {
				continue
			}
			ip, mask := ipn.IP.To4(), net.IP(ipn.Mask).To4()
			if mask == nil {
				continue
			}
			var b [4]byte
			for i := range b {
				b[i] = ip[i] | ^mask[i]
			}
			return netip.AddrFrom4(b), nil
		}
	}
	if iface != nil {
		return netip.Addr{}, fmt.Errorf("interface %s has no IPv4 address to broadcast on", iface.Name)
	}
	return netip.Addr{}, errors.New("no interface with an IPv4 address to broadcast on (use --iface)")
}

// send broadcasts one control message about our image: m's type, epoch,
// flags, group, session and echo, with this node's ID, what it holds and
// the next stamp of its nonce.
func (n *node) send(m Msg) {
	m.Node, m.Held, m.Name = n.cfg.NodeID, n.held(), n.cfg.Name
	if img := n.image(); img != nil {
		m.ID = img.ID
	}
	if n.complete() {
		m.Flags |= FlagComplete
	}
	err := n.stamps.Do(func(st fresh.Stamp) error {
		m.Stamp = st
		b, err := AppendMsg(nil, &m, n.cfg.Key)
		if err != nil {
			return err
		}
		_, err = n.conn.WriteTo(b, n.dst)
		return err
	})
	if err != nil {
		n.log.Debug("send control message", "type", m.Type, "err", err)
	}
}

// readControl reads control messages until ctx ends or the socket is
// closed and records what they say about our image; a read that fails
// otherwise is tried again (readFailed). A message that fails its HMAC,
// is stale or replayed (fresh.Guard) leaves no state.
func (n *node) readControl(ctx context.Context) {
	buf := make([]byte, 2048)
	bad, failed := 0, 0
	for {
		k, from, err := n.conn.ReadFrom(buf)
		if err != nil {
			failed++
			if !n.readFailed(ctx, err, failed) {
				return
			}
			continue
		}
		if failed > 0 {
			n.log.Info("control socket reads again", "failedReads", failed)
			failed = 0
		}
		m, err := ParseMsg(buf[:k], n.cfg.Key)
		if err == nil && m.Stamp.Nonce == n.stamps.Nonce() {
			continue // our own broadcast, looped back
		}
		if err == nil {
			err = n.guard.Check(m.Stamp)
		}
		if err != nil {
			n.refused.Add(1)
			bad++
			if bad == 1 || bad%1000 == 0 {
				n.log.Warn("control message refused", "err", err, "refused", bad)
			}
			continue
		}
		var src netip.Addr
		if u, ok := from.(*net.UDPAddr); ok {
			src, _ = netip.AddrFromSlice(u.IP)
			src = src.Unmap()
		}
		for _, out := range n.heard(time.Now(), m, src) {
			n.send(out)
		}
	}
}

// The control reader's wait after a failed read doubles from
// readBackoffFirst to readBackoffMax.
const (
	readBackoffFirst = 10 * time.Millisecond
	readBackoffMax   = time.Second
)

// readFailed waits after the failed read number failed of a burst (the
// first warns) and reports whether to read again: not once ctx ended or
// the socket is closed.
func (n *node) readFailed(ctx context.Context, err error, failed int) bool {
	if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
		return false
	}
	if failed == 1 {
		n.log.Warn("control socket read failed; reading again after a backoff", "err", err)
	}
	t := time.NewTimer(min(readBackoffFirst<<min(failed-1, 10), readBackoffMax))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// leading is what the lead loop tells the control reader, to answer
// requests at once.
type leading struct {
	epoch   uint32
	group   netip.AddrPort
	flags   uint16
	session uint32
}

// heard records message m from src, when it is about our image; the one
// place where messages of other images and stale epochs are told apart.
// It returns the messages to send in answer: an announce echoing a
// request to the epoch this node leads, a request (echoing it) to an
// unproven leader that would matter.
func (n *node) heard(now time.Time, m Msg, src netip.Addr) []Msg {
	n.mu.Lock()
	defer n.mu.Unlock()
	var zero imaging.ID
	switch {
	case n.img != nil && m.ID != zero:
		if m.ID != n.img.ID {
			return nil // another image: a separate session
		}
	case m.Name != n.cfg.Name:
		return nil // no manifest on one side: match by name
	}
	me := n.stamps.Nonce()
	nonce := m.Stamp.Nonce
	switch m.Type {
	case TypeAnnounce:
		l := n.leaders[nonce]
		if l == nil {
			if !room(n.leaders, maxLeaders, now, func(l *leaderInfo) time.Time { return l.lastSeen }, func(l *leaderInfo) bool { return l.proven }) {
				n.refused.Add(1)
				return nil
			}
			l = &leaderInfo{nonce: nonce}
			n.leaders[nonce] = l
		}
		if m.Epoch < l.epoch {
			return nil // a stale announce of that leader
		}
		l.id, l.node, l.seq, l.epoch, l.group, l.session, l.src = m.ID, m.Node, m.Stamp.Seq, m.Epoch, m.Group, m.Session, src
		l.held, l.flags, l.lastSeen = m.Held, m.Flags, now
		if m.EchoNonce == me && !l.proven {
			l.proven = true
			n.guard.Mark(nonce)
		}
		if l.proven {
			n.maxEpoch = max(n.maxEpoch, m.Epoch)
			return nil
		}
		// Unproven: ask it, echoing its announce, when following it
		// would matter (we miss chunks and it would be our best
		// leader), at most once per half interval.
		if m.Flags&FlagLeaving != 0 || n.w != nil && n.w.Remaining() == 0 || now.Sub(l.challengedAt) < n.cfg.AnnounceInterval/2 {
			return nil
		}
		if n.leadState != nil && !l.beats(n.leadState.epoch, n.cfg.NodeID) {
			return nil
		}
		if now.Sub(n.challengeAt) > n.cfg.AnnounceInterval {
			n.challengeAt, n.challenges = now, 0
		}
		if n.challenges >= maxChallenges {
			return nil // a flood of announcers: the real one is asked later
		}
		n.challenges++
		l.challengedAt = now
		return []Msg{{Type: TypeRequest, Epoch: m.Epoch, EchoNonce: nonce, EchoSeq: m.Stamp.Seq}}
	case TypeRequest:
		r := n.requests[nonce]
		if r == nil {
			if !room(n.requests, maxRequests, now, func(r *reqSeen) time.Time { return r.at }, func(r *reqSeen) bool { return r.echoedUs }) {
				n.refused.Add(1)
				return nil
			}
			r = &reqSeen{}
			n.requests[nonce] = r
		}
		r.node, r.epoch, r.seq, r.at, r.id = m.Node, m.Epoch, m.Stamp.Seq, now, m.ID != zero
		r.echoedUs = m.EchoNonce == me
		if n.leadState != nil && r.echoedUs && m.Epoch == n.leadState.epoch && now.Sub(r.answeredAt) >= n.cfg.AnnounceInterval/4 {
			r.answeredAt = now
			a := *n.leadState
			return []Msg{{Type: TypeAnnounce, Epoch: a.epoch, Group: a.group, Flags: a.flags, Session: a.session, EchoNonce: nonce, EchoSeq: m.Stamp.Seq}}
		}
	case TypeTakeover:
		c := n.claims[nonce]
		if c == nil {
			if !room(n.claims, maxClaims, now, func(c *claim) time.Time { return c.lastSeen }, func(*claim) bool { return false }) {
				n.refused.Add(1)
				return nil
			}
			c = &claim{}
			n.claims[nonce] = c
		}
		*c = claim{node: m.Node, epoch: m.Epoch, held: m.Held, echo: m.EchoNonce, lastSeen: now}
	}
	return nil
}
