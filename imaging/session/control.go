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

// send broadcasts one control message about our image.
func (n *node) send(t MsgType, epoch uint32, flags uint16, group netip.AddrPort) {
	m := Msg{Type: t, Flags: flags, Epoch: epoch, Node: n.cfg.NodeID, Held: n.held(), Group: group, Name: n.cfg.Name}
	if img := n.image(); img != nil {
		m.ID = img.ID
	}
	if n.complete() {
		m.Flags |= FlagComplete
	}
	b, err := AppendMsg(nil, &m, n.cfg.Key)
	if err != nil {
		n.log.Warn("control message", "err", err)
		return
	}
	if _, err := n.conn.WriteTo(b, n.dst); err != nil {
		n.log.Debug("send control message", "type", t, "err", err)
	}
}

// readControl reads control messages until the socket is closed and
// records what they say about our image.
func (n *node) readControl(ctx context.Context) {
	buf := make([]byte, 2048)
	bad := 0
	for {
		k, _, err := n.conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				n.log.Warn("control socket", "err", err)
			}
			return
		}
		m, err := ParseMsg(buf[:k], n.cfg.Key)
		if err != nil {
			bad++
			if bad == 1 || bad%100 == 0 {
				n.log.Warn("control message dropped", "err", err, "dropped", bad)
			}
			continue
		}
		n.heard(time.Now(), m)
	}
}

// heard records message m, when it is about our image; the one place where
// messages of other images and stale epochs are told apart.
func (n *node) heard(now time.Time, m Msg) {
	if m.Node == n.cfg.NodeID {
		return // our own broadcast, looped back
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	var zero imaging.ID
	switch {
	case n.img != nil && m.ID != zero:
		if m.ID != n.img.ID {
			return // another image: a separate session
		}
	case m.Name != n.cfg.Name:
		return // no manifest on one side: match by name
	}
	switch m.Type {
	case TypeAnnounce:
		l := n.leaders[m.Node]
		if l == nil {
			l = &leaderInfo{node: m.Node}
			n.leaders[m.Node] = l
		}
		if m.Epoch < l.epoch {
			return // a stale announce of that leader
		}
		l.epoch, l.group, l.held, l.flags, l.lastSeen = m.Epoch, m.Group, m.Held, m.Flags, now
		n.maxEpoch = max(n.maxEpoch, m.Epoch)
	case TypeRequest:
		n.requests[m.Node] = msgSeen{epoch: m.Epoch, at: now, id: m.ID != zero}
	case TypeTakeover:
		n.claims[m.Node] = claim{epoch: m.Epoch, held: m.Held, lastSeen: now}
	}
}

// bestLeader returns the leader to follow: heard within LeaderTimeout,
// not leaving, highest epoch, then lowest node ID. Leaders of lower epochs
// than the highest live one are stale and never chosen.
func (n *node) bestLeader(now time.Time) (leaderInfo, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var best leaderInfo
	found := false
	for _, l := range n.leaders {
		if now.Sub(l.lastSeen) > n.cfg.LeaderTimeout || l.flags&FlagLeaving != 0 {
			continue
		}
		if !found || l.epoch > best.epoch || l.epoch == best.epoch && l.node < best.node {
			best, found = *l, true
		}
	}
	return best, found
}

// leader returns what is known of leader id.
func (n *node) leader(id uint32) (leaderInfo, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l, ok := n.leaders[id]
	if !ok {
		return leaderInfo{}, false
	}
	return *l, true
}

// askedSince reports whether a peer asked for the image since t, for
// epoch (0: any).
func (n *node) askedSince(t time.Time, epoch uint32) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range n.requests {
		if r.at.After(t) && (epoch == 0 || r.epoch == epoch) {
			return true
		}
	}
	return false
}

// lowerListener reports whether a node with a lower ID that has the
// manifest was heard listening (requesting with epoch 0) since t.
func (n *node) lowerListener(t time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for id, r := range n.requests {
		if id < n.cfg.NodeID && r.epoch == 0 && r.id && r.at.After(t) {
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

// maxClaim returns the highest epoch claimed since t.
func (n *node) maxClaim(t time.Time) uint32 {
	n.mu.Lock()
	defer n.mu.Unlock()
	var e uint32
	for _, c := range n.claims {
		if c.lastSeen.After(t) {
			e = max(e, c.epoch)
		}
	}
	return e
}

// winner returns the election's winner among the claims for epoch heard
// since t and, when we can lead, ourselves: most chunks held, then lowest
// node ID.
func (n *node) winner(t time.Time, epoch uint32, self bool) (uint32, uint32) {
	held := n.held()
	n.mu.Lock()
	defer n.mu.Unlock()
	var best, bestHeld uint32
	found := false
	if self {
		best, bestHeld, found = n.cfg.NodeID, held, true
	}
	for id, c := range n.claims {
		if c.epoch != epoch || !c.lastSeen.After(t) {
			continue
		}
		if !found || c.held > bestHeld || c.held == bestHeld && id < best {
			best, bestHeld, found = id, c.held, true
		}
	}
	return best, bestHeld
}
