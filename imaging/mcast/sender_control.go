package mcast

// sender_control.go: hearing the receivers: their requests, statuses and haves, and the table of receivers.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/shoal-project/shoal/imaging/mcast/wire"
)

// readControl reads requests, statuses and haves until conn is closed. It
// returns nil for the shutdown (ctx done), else the socket's error.
func (s *sender) readControl(ctx context.Context, conn net.PacketConn) error {
	br := newBatchReader(conn, 16, false)
	var needs []wire.Need
	var now time.Time
	handle := func(b []byte, _ netip.Addr) { needs = s.handleControl(now, b, needs) }
	for {
		n, err := br.read()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read control: %w", err)
		}
		now = time.Now()
		s.mu.Lock()
		br.each(n, handle)
		s.mu.Unlock()
		s.poke()
	}
}

// handleControl handles one control datagram; s.mu is held.
func (s *sender) handleControl(now time.Time, b []byte, needs []wire.Need) []wire.Need {
	h, body, st, err := wire.ParseControl(b, s.cfg.Key)
	switch {
	case errors.Is(err, wire.ErrUnauthenticated):
		s.stats.Refused++
		return needs
	case err != nil:
		s.stats.Malformed++
		return needs
	}
	if h.IDPrefix != s.hdr.IDPrefix || h.Session != s.hdr.Session {
		return needs // another session's traffic
	}
	if st.Nonce == s.stamps.Nonce() {
		return needs // our own announce
	}
	if h.Type != wire.TypeRequest && h.Type != wire.TypeStatus && h.Type != wire.TypeHave {
		return needs
	}
	if err := s.guard.Check(st); err != nil {
		s.stats.Refused++ // another run's, or a replay of this one's
		return needs
	}
	switch h.Type {
	case wire.TypeRequest:
		r, err := wire.ParseRequest(body, needs)
		if err != nil {
			s.stats.Malformed++
			return needs
		}
		s.stats.Requests++
		s.lastHeard, s.lastAsk = now, now
		s.seen(r.Receiver, now)
		for _, n := range r.Needs {
			s.request(n)
		}
		return r.Needs
	case wire.TypeHave:
		hv, err := wire.ParseHave(body)
		if err != nil {
			s.stats.Malformed++
			return needs
		}
		s.lastHeard = now
		r := s.seen(hv.Receiver, now)
		if r.have == nil {
			var n uint64
			for _, rg := range hv.Ranges {
				n += uint64(rg.Count)
			}
			s.log.Info("receiver holds chunks already", "receiver", hv.Receiver, "chunks", n)
			s.joined(now)
		}
		r.have = hv.Ranges
	case wire.TypeStatus:
		st, err := wire.ParseStatus(body)
		if err != nil {
			s.stats.Malformed++
			return needs
		}
		s.lastHeard = now
		s.stats.Statuses++
		r := s.seen(st.Receiver, now)
		if r.state != st.State && st.State == wire.StateDone {
			s.log.Info("receiver done", "receiver", st.Receiver)
		}
		if r.state == wire.StateJoining && st.State != wire.StateJoining {
			s.joined(now)
		}
		r.state, r.loss, r.status = st.State, int(st.LossPermille), st
	}
	return needs
}

func (s *sender) seen(id uint32, now time.Time) *rxInfo {
	r := s.rx[id]
	if r == nil {
		if len(s.rx) >= s.cfg.MaxReceivers {
			s.forgetOldest()
		}
		r = &rxInfo{state: wire.StateJoining}
		s.rx[id] = r
		s.joined(now)
		s.log.Info("receiver joined", "receiver", id)
	}
	r.lastSeen = now
	return r
}

// forgetOldest makes room in the receiver table, down to half of it: done
// receivers first, then those heard from longest ago; s.mu is held. Only
// a flood of receivers (forged, without a key) gets here, once per half a
// table of new receivers.
func (s *sender) forgetOldest() {
	type aged struct {
		id   uint32
		done bool
		at   time.Time
	}
	all := make([]aged, 0, len(s.rx))
	for id, r := range s.rx {
		all = append(all, aged{id, r.state == wire.StateDone, r.lastSeen})
	}
	slices.SortFunc(all, func(a, b aged) int {
		if a.done != b.done {
			if a.done {
				return -1
			}
			return 1
		}
		return a.at.Compare(b.at)
	})
	for _, a := range all[:len(all)-s.cfg.MaxReceivers/2] {
		delete(s.rx, a.id)
		s.dropped++
	}
}
