package session

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/imaging/mcast"
)

// follow receives the image from leader l's data session (imaging/mcast's
// receiver on the group l names), requesting it (echoing l's announce)
// until data flows. The receiver starts once l's announce names its data
// session, and takes announces and data of that session only, from l's
// address and of our image ID. It goes to the election when l stops
// announcing or leaves before we are complete, to a leader of a higher
// epoch when one appears, to another leader or the server when l's data
// is bad (a bad peer, counted), and to the server when the data does not
// come: while l says it sends more than we hold, for DataTimeout; in any
// case once neither data nor l's progress came for 2 DataTimeout (a
// leader that never sends is not waited on for ever). failed reports a
// data session that failed while l still leads (run counts them against
// MaxAttempts).
func (n *node) follow(ctx context.Context, l leaderInfo) (nx next, failed bool, err error) {
	n.setRole(RoleFollower, l.epoch, l.node)
	n.log.Info("following", "leader", l.node, "epoch", l.epoch, "group", l.group, "held", n.held())
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var conn net.PacketConn
	if err := n.cfg.Netns(func() error {
		var err error
		conn, err = mcast.ListenGroup(fctx, n.cfg.Iface, l.group, mcast.GroupOptions{})
		return err
	}); err != nil {
		return next{state: stFallback, why: fmt.Sprintf("cannot join the leader's group %v: %v", l.group, err)}, false, nil
	}
	defer conn.Close()
	type result struct {
		st  mcast.ReceiverStats
		err error
	}
	var done chan result // nil until the receiver runs
	var rxBytes atomic.Int64
	var rxStats atomic.Pointer[mcast.ReceiverStats]
	var rxSession uint32
	startRx := func(cur leaderInfo) {
		done = make(chan result, 1)
		rxSession = cur.session
		cfg := mcast.ReceiverConfig{
			Name: n.cfg.Name, Pub: n.cfg.Pub, Open: n.openSink,
			Session: cur.session, Source: cur.src,
			Key: n.cfg.Key, Quiet: true, Clock: n.cfg.Clock,
			OpenData: func(ctx context.Context, g netip.AddrPort) (net.PacketConn, error) {
				var c net.PacketConn
				err := n.cfg.Netns(func() error {
					var err error
					c, err = mcast.ListenGroup(ctx, n.cfg.Iface, g, mcast.GroupOptions{})
					return err
				})
				return c, err
			},
			Iface: n.cfg.Iface, Control: l.group,
			// The session layer watches the leader and the data (the
			// leader may wait for the server, which is no reason to
			// leave it); the transport's own timeout is a last resort.
			JoinTimeout: 0, SenderTimeout: n.cfg.ServerTimeout,
			Logger: n.log.With("part", "receiver"),
			ID:     n.cfg.NodeID,
			Progress: func(s mcast.ReceiverStats) {
				rxBytes.Store(s.ReceivedBytes)
				rxStats.Store(&s)
			},
		}
		if img := n.image(); img != nil {
			cfg.ImageID = img.ID
		}
		go func() {
			st, err := mcast.Receive(fctx, conn, cfg)
			done <- result{st, err}
		}()
	}
	stop := func() {
		cancel()
		if done != nil {
			<-done
		}
	}
	start := time.Now()
	var lastReq, sendingSince, gatherSince time.Time
	lastRx, lastRxAt := int64(0), start
	lastHeld, lastProgress := l.held, start
	tick := time.NewTicker(n.cfg.AnnounceInterval / 4)
	defer tick.Stop()
	for {
		now := time.Now()
		rx := rxBytes.Load()
		if rx != lastRx {
			lastRx, lastRxAt, lastProgress = rx, now, now
		}
		cur, ok := n.leader(l.nonce)
		if ok && cur.held != lastHeld {
			lastHeld, lastProgress = cur.held, now
		}
		// A leader gathering receivers for its first pass sends no data
		// yet: that is progress, for as long as its gather may last.
		if p := rxStats.Load(); p != nil && p.SenderGathering {
			if gatherSince.IsZero() {
				gatherSince = now
			}
			if now.Sub(gatherSince) < n.cfg.GatherMax+n.cfg.DataTimeout {
				lastRxAt, lastProgress = now, now
			}
		}
		// Request until data flows, echoing the leader's last announce.
		if rx == 0 && now.Sub(lastReq) >= n.cfg.AnnounceInterval {
			lastReq = now
			n.send(Msg{Type: TypeRequest, Epoch: l.epoch, EchoNonce: l.nonce, EchoSeq: cur.seq})
		}
		if done == nil && ok && cur.session != 0 {
			startRx(cur)
		} else if done != nil && rx == 0 && ok && cur.session != 0 && cur.session != rxSession {
			// The leader started another data session before ours
			// brought anything: join that one.
			stop()
			return next{state: stFollow, leader: cur}, false, nil
		}
		if b, ok := n.bestLeader(now); ok && b.epoch > l.epoch {
			stop()
			n.log.Info("a leader of a higher epoch: following it", "leader", b.node, "epoch", b.epoch)
			return next{state: stFollow, leader: b}, false, nil
		}
		// The leader lives while its announces or its data come (a busy
		// leader's announces may be late; its data says it is there).
		silent := now.Sub(cur.lastSeen) > n.cfg.LeaderTimeout && now.Sub(lastRxAt) > n.cfg.LeaderTimeout
		if img := n.image(); img != nil && cur.id != img.ID {
			// Heard before our manifest came, matched by name: it
			// leads another image.
			stop()
			n.markBad(l.nonce)
			return next{state: stListen}, false, nil
		}
		if !ok || cur.epoch != l.epoch || silent || cur.flags&FlagLeaving != 0 {
			stop()
			if n.complete() {
				return next{state: stDone}, false, nil
			}
			why := "stopped announcing"
			if ok && cur.flags&FlagLeaving != 0 {
				why = "left"
			}
			n.log.Warn("leader gone", "leader", l.node, "epoch", l.epoch, "why", why, "missing", n.missing())
			return next{state: stElect, leader: l}, false, nil
		}
		// Announces heard, the leader sending and holding more than we
		// do, and no data: multicast does not reach us (a switch
		// dropping the group, a firewall) or the session stalls. A
		// leader holding no more than we do waits for the server: so do
		// we, while it makes progress.
		if cur.sending() && cur.held > n.held() {
			if sendingSince.IsZero() {
				sendingSince = now
			}
		} else {
			sendingSince = time.Time{}
		}
		stalled := now.Sub(lastProgress) > 2*n.cfg.DataTimeout
		if stalled || !sendingSince.IsZero() && now.Sub(sendingSince) > n.cfg.DataTimeout && now.Sub(lastRxAt) > n.cfg.DataTimeout {
			stop()
			var st mcast.ReceiverStats
			if p := rxStats.Load(); p != nil {
				st = *p
			}
			if stalled {
				return next{state: stFallback, why: fmt.Sprintf("leader %d (epoch %d) brought neither data nor progress for %v", l.node, l.epoch, 2*n.cfg.DataTimeout)}, false, nil
			}
			return next{state: stFallback, why: fmt.Sprintf("%v: leader %d multicasts (session group %v), but no data reached this node for %v (is multicast forwarded to this port?); datagrams %d, malformed %d, foreign %d",
				mcast.ErrNoData, l.node, l.group, n.cfg.DataTimeout, st.Datagrams, st.Malformed, st.Foreign)}, false, nil
		}
		select {
		case <-ctx.Done():
			stop()
			return next{}, false, ctx.Err()
		case r := <-done:
			done = nil
			if r.err == nil || n.complete() {
				return next{state: stDone}, false, nil
			}
			if ctx.Err() != nil {
				return next{}, false, ctx.Err()
			}
			if errors.As(r.err, new(targetError)) {
				return next{}, false, r.err // the target is unfit: nothing to retry
			}
			n.setErr(r.err)
			n.log.Warn("data session failed", "leader", l.node, "epoch", l.epoch, "err", r.err, "missing", n.missing())
			if errors.Is(r.err, mcast.ErrBadSender) || errors.Is(r.err, ErrOtherImage) {
				// A bad peer: counted and left, for another leader
				// or the server.
				n.markBad(l.nonce)
				if b, ok := n.bestLeader(time.Now()); ok {
					return next{state: stFollow, leader: b}, false, nil
				}
				return next{state: stFallback, why: "bad peer: " + r.err.Error()}, false, nil
			}
			if errors.Is(r.err, mcast.ErrNoData) {
				return next{state: stFallback, why: r.err.Error()}, false, nil
			}
			if errors.Is(r.err, mcast.ErrSenderGone) && n.missing() < 0 && n.staleEnds < maxStaleEnds {
				// Joined as the leader's previous data session ended,
				// before any manifest came (a late node right after
				// another's session): not a failure; the leader starts
				// a new session for this node's next request.
				n.staleEnds++
				return next{state: stFollow, leader: cur}, false, nil
			}
			return next{state: stFollow, leader: cur}, true, nil
		case <-tick.C:
		}
	}
}

// maxStaleEnds bounds the data sessions a node may see end before their
// manifest without counting them failed (Config.MaxAttempts counts the
// rest).
const maxStaleEnds = 3

// openSink is the receiver's Open: the manifest that came with the data
// must be the one of our image (when we have it from the server), and the
// target is opened once for all the sessions the node takes part in.
func (n *node) openSink(img *imaging.Image) (mcast.Sink, error) {
	if err := n.openWriter(img); err != nil {
		return nil, err
	}
	return peerSink{n: n, w: n.writer()}, nil
}

// peerSink writes what the multicast brings (the writer verifies each
// chunk) and counts it; Finish is the session's, not the transport's.
type peerSink struct {
	n *node
	w *imaging.Writer
}

func (s peerSink) WriteStored(i int, stored []byte) error {
	if s.w.Has(i) {
		return nil
	}
	if err := s.w.WriteStored(i, stored); err != nil {
		return err
	}
	s.n.fromPeers.Add(int64(len(stored)))
	return nil
}

func (s peerSink) Has(i int) bool { return s.w.Has(i) }

func (s peerSink) Finish() error { return nil }
