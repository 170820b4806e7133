package mcast

// receiver_repair.go: what to ask the sender for, and when (requests, suppressed by other receivers').

import (
	"context"
	mrand "math/rand/v2"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/imaging/mcast/fresh"
	"github.com/shoal-project/shoal/imaging/mcast/wire"
)

// advance moves the first pass cursor up to k; r.mu is held.
func (r *receiver) advance(k groupKey) {
	if before(r.cursor, k) {
		r.cursor = k
	}
}

// passed reports whether the first pass is past group k: its data went
// past it, or it ended a while ago, or it ended and no data is coming.
func (r *receiver) passed(now time.Time, k groupKey) bool {
	if before(k, r.cursor) {
		return true
	}
	return !r.fpDoneAt.IsZero() && !r.backlog && (now.Sub(r.fpDoneAt) > 25*r.cfg.Retry || r.idle(now))
}

// idle reports whether no data came for a while and none waits in the
// socket (a receiver not scheduled for a while has data waiting).
func (r *receiver) idle(now time.Time) bool { return !r.backlog && now.Sub(r.lastData) > r.cfg.Retry }

// waiting reports whether datagrams wait in the data socket.
func (r *receiver) waiting() bool {
	if r.dataRaw == nil {
		return false
	}
	n := 0
	if err := r.dataRaw.Control(func(fd uintptr) {
		n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	}); err != nil {
		return false
	}
	return n > 0
}

// suppress records needs other receivers asked for; r.mu is held.
func (r *receiver) suppress(now time.Time, needs []wire.Need) {
	for _, n := range needs {
		chunk := chunkIndex(n.Chunk)
		if n.Group == wire.WholeChunk {
			if _, ok := r.wholeDue[chunk]; ok {
				r.wholeDue[chunk] = now.Add(r.wholeRetry())
				r.stats.Suppressed++
			}
			continue
		}
		p := r.partials[chunk]
		g := int(n.Group)
		if p == nil || g >= len(p.done) || p.done[g] {
			continue
		}
		k := p.l.groupData(g)
		if int(n.Need) >= k-p.count[g] {
			p.due[g] = now.Add(r.cfg.Retry)
			p.reqSeq[g] = r.seq
			r.stats.Suppressed++
		}
	}
}

func (r *receiver) wholeRetry() time.Duration { return 25 * r.cfg.Retry }

func (r *receiver) backoff() time.Duration {
	return r.cfg.Backoff/2 + time.Duration(mrand.Int64N(int64(r.cfg.Backoff/2)+1))
}

// collectNeeds returns the requests due now; r.mu is held.
func (r *receiver) collectNeeds(now time.Time, needs []wire.Need) []wire.Need {
	// The manifest first.
	if r.img == nil {
		p := r.partials[-1]
		if p == nil {
			due, ok := r.wholeDue[-1]
			switch {
			case !ok:
				r.wholeDue[-1] = now.Add(r.cfg.Retry + r.backoff())
			case !now.Before(due):
				needs = append(needs, wire.Need{Chunk: wire.ManifestChunk, Group: wire.WholeChunk})
				r.wholeDue[-1] = now.Add(r.cfg.Retry * 5)
			}
			return needs
		}
	}
	idle := r.idle(now)
	for _, p := range r.partials {
		for g := range p.done {
			// Ask once the sender has moved past the group: the first
			// pass is beyond it, this chunk's stream is at a later
			// group, or the chunk's stream has stopped.
			// Groups beyond the highest seen may just not be sent yet
			// (a sender that was not scheduled for a while): only a long
			// silence makes them due.
			moved := p.firstPass && before(groupKey{p.chunk, g}, r.cursor) || g < p.maxGroup ||
				r.seq-p.lastSeq > int64(2*p.l.groupBlocks) ||
				idle && g == p.maxGroup && now.Sub(r.lastData) > 2*r.cfg.Retry ||
				idle && now.Sub(r.lastData) > 10*r.cfg.Retry
			if p.done[g] || !moved {
				continue
			}
			k := p.l.groupData(g)
			if p.due[g].IsZero() {
				// The receiver missing the most asks first; the others
				// then hear they need not ask.
				p.due[g] = now.Add(r.backoff() / time.Duration(k-p.count[g]))
			}
			if now.Before(p.due[g]) || now.Sub(p.last[g]) < r.cfg.Backoff {
				continue
			}
			if p.reqSeq[g] != 0 && r.seq-p.reqSeq[g] < int64(4*p.l.groupBlocks) && !idle {
				continue // asked already; the answer may be in the socket
			}
			needs = append(needs, wire.Need{Chunk: wireChunk(p.chunk), Group: uint16(g), Need: uint16(k - p.count[g])})
			p.due[g] = now.Add(r.cfg.Retry)
			p.reqSeq[g] = max(r.seq, 1)
		}
	}
	if r.img == nil {
		return needs
	}
	// Whole chunks the first pass has passed, as far as there is room.
	room := r.cfg.BufferChunks - len(r.partials) - len(r.writing)
	for c := 0; c < r.chunks && room > 0; c++ {
		if r.written[c] || r.writing[c] || r.partials[c] != nil || !r.passed(now, groupKey{c, 1 << 30}) {
			continue
		}
		due, ok := r.wholeDue[c]
		switch {
		case !ok:
			r.wholeDue[c] = now.Add(r.backoff())
		case !now.Before(due):
			needs = append(needs, wire.Need{Chunk: uint32(c), Group: wire.WholeChunk})
			r.wholeDue[c] = now.Add(r.wholeRetry())
		}
		room--
	}
	return needs
}

// sendRequests sends needs to the sender, as many requests as they take.
func (r *receiver) sendRequests(ctx context.Context, needs []wire.Need) {
	for len(needs) > 0 {
		n := min(len(needs), wire.MaxRequestEntries)
		err := r.stamps.Do(func(st fresh.Stamp) error {
			b, err := wire.AppendRequest(nil, r.hdr, &wire.Request{Receiver: r.cfg.ID, Needs: needs[:n]}, st, r.cfg.Key)
			if err == nil {
				_, err = r.ctrl.WriteTo(b, nil, udpAddr(r.cfg.Control))
			}
			return err
		})
		if err != nil && ctx.Err() == nil {
			r.log.Warn("request", "err", err)
		}
		r.mu.Lock()
		r.stats.Requests++
		r.mu.Unlock()
		needs = needs[n:]
	}
}
