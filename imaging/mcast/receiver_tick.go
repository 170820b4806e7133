package mcast

// receiver_tick.go: the receiver's periodic loop: requests and statuses out, loss counted, the end watched for.

import (
	"context"
	"fmt"
	"time"

	"github.com/shoal-project/shoal/imaging/mcast/fresh"
	"github.com/shoal-project/shoal/imaging/mcast/wire"
)

// tickLoop sends requests and statuses, and watches for the end.
func (r *receiver) tickLoop(ctx context.Context, start time.Time) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var nextStatus time.Time
	lastState := uint8(0)
	lastProg := time.Now()
	var needs []wire.Need
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.finished:
			return r.finish(ctx)
		case <-tick.C:
		}
		backlog := r.waiting()
		now := time.Now()
		r.mu.Lock()
		r.backlog = backlog
		if r.fatal != nil {
			err := r.fatal
			r.mu.Unlock()
			r.sendStatus(wire.StateFailed)
			return err
		}
		if now.Sub(r.heard) > r.cfg.SenderTimeout {
			r.mu.Unlock()
			return fmt.Errorf("%w: nothing heard for %v", ErrSenderGone, r.cfg.SenderTimeout)
		}
		if !r.sendingAt.IsZero() && now.Sub(r.sendingAt) > r.cfg.SenderTimeout && now.Sub(r.lastData) > r.cfg.SenderTimeout &&
			now.Sub(r.gatherHeard) > r.cfg.SenderTimeout {
			group := r.ann.Data
			r.mu.Unlock()
			r.sendStatus(wire.StateFailed)
			return fmt.Errorf("%w: the sender (session %d) is sending, but nothing came on data group %v for %v (is multicast forwarded to this port?)",
				ErrNoData, r.hdr.Session, group, r.cfg.SenderTimeout)
		}
		if r.ending && (r.img == nil || r.nwritten < r.chunks) {
			r.mu.Unlock()
			return fmt.Errorf("%w: the sender ended the session before the image was complete", ErrSenderGone)
		}
		needs = r.collectNeeds(now, needs[:0])
		r.mu.Unlock()
		r.sendRequests(ctx, needs)
		r.mu.Lock()
		state := uint8(wire.StateReceiving)
		if r.img == nil {
			state = wire.StateJoining
		}
		due := !now.Before(nextStatus) || state != lastState
		if due {
			nextStatus = now.Add(r.statusInterval(now))
		}
		r.mu.Unlock()
		if due {
			lastState = state
			r.sendHave()
			r.sendStatus(state)
		}
		if r.cfg.Progress != nil && now.Sub(lastProg) >= 250*time.Millisecond {
			lastProg = now
			r.cfg.Progress(r.snapshot(start))
		}
	}
}

// seqSeen counts loss from gaps in the sender's datagram numbers; r.mu
// is held.
func (r *receiver) seqSeen(seq uint32) {
	if !r.seqOK {
		r.seqOK, r.seqHi = true, seq
		return
	}
	d := int64(int32(seq - r.seqHi)) // wraps; negative: late or repeated
	if d <= 0 {
		return
	}
	r.seqHi = seq
	r.lossExp += d
	r.lossGot++
	r.stats.LostBlocks += d - 1
}

// haveRepeats is how many times a have is sent, one per status: the
// sender's first pass skips a chunk only once every receiver said it holds
// it, and a have may be lost.
const haveRepeats = 8

// sendHave sends what the target held when it was opened, if anything,
// with each of the first haveRepeats statuses.
func (r *receiver) sendHave() {
	r.mu.Lock()
	if len(r.have) == 0 || r.haveSent >= haveRepeats {
		r.mu.Unlock()
		return
	}
	r.haveSent++
	hv := wire.Have{Receiver: r.cfg.ID, Ranges: r.have}
	hdr := r.hdr
	r.mu.Unlock()
	if err := r.stamps.Do(func(st fresh.Stamp) error {
		b, err := wire.AppendHave(nil, hdr, &hv, st, r.cfg.Key)
		if err != nil {
			return err
		}
		_, err = r.ctrl.WriteTo(b, nil, udpAddr(r.cfg.Control))
		return err
	}); err != nil {
		r.log.Debug("have", "err", err)
	}
}

func (r *receiver) sendStatus(state uint8) {
	r.mu.Lock()
	loss := 0
	if r.lossExp > 0 {
		// Lost on the way, or dropped here for want of room: both say
		// the sender goes faster than this receiver takes.
		loss = int(min(1000, 1000*(r.lossExp-r.lossGot+r.lossNoRoom)/r.lossExp))
	}
	r.lossExp, r.lossGot, r.lossNoRoom = 0, 0, 0
	hdr := r.hdr
	status := wire.Status{
		Receiver: r.cfg.ID, State: state, LossPermille: uint16(loss),
		ChunksDone: uint32(r.nwritten), Chunks: uint32(r.chunks),
		ReceivedBytes: uint64(r.stats.ReceivedBytes), DuplicateBytes: uint64(r.stats.DuplicateBytes),
	}
	r.mu.Unlock()
	if err := r.stamps.Do(func(st fresh.Stamp) error {
		_, err := r.ctrl.WriteTo(wire.AppendStatus(nil, hdr, &status, st, r.cfg.Key), nil, udpAddr(r.cfg.Control))
		return err
	}); err != nil {
		r.log.Debug("status", "err", err)
	}
}
