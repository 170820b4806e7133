// Package fresh tells a fresh control message from a replayed one. Every
// control message of the peer session and of the multicast transport
// carries a Stamp under its HMAC: the sender's estimate of the image
// server's clock, a random nonce drawn once per sender and run, and a
// sequence number that the sender raises with every message. A receiver's
// Guard drops a message whose time is more than Window from its own
// estimate of the server's clock (a message from an earlier run), and one
// whose sequence number is not above the last it accepted from that nonce
// (a message from earlier in this run). Its table of senders is bounded
// whatever arrives. ServerClock learns the server's clock from the Date
// (or X-Shoal-Time) header of the HTTP responses a node gets anyway.
package fresh

import (
	"cmp"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Window is how far a message's time may be from the receiver's estimate
// of the server's clock. Two nodes that learnt the clock from the Date
// header (1 s resolution) of one server agree to within about 1 s plus
// the requests' round trip; a node that drifts at 100 ppm moves 0.4 s an
// hour between resynchronisations. 10 s leaves room for a slow or busy
// network and the odd late resynchronisation, and makes everything
// recorded more than 10 s ago worthless.
const Window = 10 * time.Second

// evictMargin keeps a sender's entry a little longer than Window, so that
// an entry is only forgotten once each message it had accepted is stale.
const evictMargin = time.Second

// Stamp is a control message's freshness.
type Stamp struct {
	// TimeMs is the sender's estimate of the server's clock when it sent
	// the message, in milliseconds since the Unix epoch.
	TimeMs int64
	// Nonce is random, drawn once per sender and run; never 0.
	Nonce uint64
	// Seq counts the sender's messages, from 1.
	Seq uint32
}

// Bytes is the size of an encoded Stamp.
const Bytes = 8 + 8 + 4

// Append appends s's encoding (time, nonce, seq; big endian).
func (s Stamp) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(s.TimeMs))
	dst = binary.BigEndian.AppendUint64(dst, s.Nonce)
	return binary.BigEndian.AppendUint32(dst, s.Seq)
}

// Decode decodes a Stamp from the first Bytes bytes of b.
func Decode(b []byte) (Stamp, error) {
	if len(b) < Bytes {
		return Stamp{}, fmt.Errorf("stamp of %d bytes, want %d", len(b), Bytes)
	}
	return Stamp{
		TimeMs: int64(binary.BigEndian.Uint64(b)),
		Nonce:  binary.BigEndian.Uint64(b[8:]),
		Seq:    binary.BigEndian.Uint32(b[16:]),
	}, nil
}

// NewNonce returns a random nonzero nonce.
func NewNonce() uint64 {
	for {
		var b [8]byte
		_, _ = rand.Read(b[:])
		if n := binary.BigEndian.Uint64(b[:]); n != 0 {
			return n
		}
	}
}

// Stamper issues the stamps of one sender.
type Stamper struct {
	clock func() time.Time
	nonce uint64
	mu    sync.Mutex
	seq   uint32
}

// NewStamper returns a Stamper with a fresh nonce whose times come from
// clock (nil: the local clock).
func NewStamper(clock func() time.Time) *Stamper {
	if clock == nil {
		clock = time.Now
	}
	return &Stamper{clock: clock, nonce: NewNonce()}
}

// Nonce is the sender's nonce.
func (s *Stamper) Nonce() uint64 { return s.nonce }

// Seq is the last sequence number issued.
func (s *Stamper) Seq() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seq
}

// Do calls send with the next stamp, holding the Stamper's lock, so that
// messages leave in the order of their sequence numbers (a receiver drops
// one that comes after a higher one).
func (s *Stamper) Do(send func(Stamp) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	return send(Stamp{TimeMs: s.clock().UnixMilli(), Nonce: s.nonce, Seq: s.seq})
}

// ErrStale is wrapped when a message's time is outside the window.
var ErrStale = errors.New("message time outside the window")

// ErrReplay is wrapped when a message's sequence number is not above the
// last one accepted from its sender.
var ErrReplay = errors.New("message replayed")

// Guard checks the stamps of the messages a receiver gets.
type Guard struct {
	clock  func() time.Time
	window time.Duration
	max    int

	mu sync.Mutex
	m  map[uint64]*sender
}

type sender struct {
	seq    uint32
	timeMs int64 // of the last message accepted
	marked bool
}

// NewGuard returns a Guard that judges times against clock (nil: the
// local clock) with Window, and remembers at most maxSenders senders
// (default 4096).
func NewGuard(clock func() time.Time, maxSenders int) *Guard {
	if clock == nil {
		clock = time.Now
	}
	if maxSenders <= 0 {
		maxSenders = 4096
	}
	return &Guard{clock: clock, window: Window, max: maxSenders, m: make(map[uint64]*sender)}
}

// Check accepts s when its time is within the window and its sequence
// number above the last accepted from its nonce, and records it.
func (g *Guard) Check(s Stamp) error {
	now := g.clock().UnixMilli()
	if d := s.TimeMs - now; d > g.window.Milliseconds() || -d > g.window.Milliseconds() {
		return fmt.Errorf("%w: %v off this node's estimate of the server's clock", ErrStale, time.Duration(d)*time.Millisecond)
	}
	if s.Nonce == 0 {
		return fmt.Errorf("%w: nonce 0", ErrReplay)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if e := g.m[s.Nonce]; e != nil {
		if s.Seq <= e.seq {
			return fmt.Errorf("%w: sequence %d, already at %d", ErrReplay, s.Seq, e.seq)
		}
		e.seq, e.timeMs = s.Seq, max(e.timeMs, s.TimeMs)
		return nil
	}
	if len(g.m) >= g.max {
		g.evict(now)
	}
	g.m[s.Nonce] = &sender{seq: s.Seq, timeMs: s.TimeMs}
	return nil
}

// Mark marks a sender (the peer session: one that proved it lives in this
// run); marked senders are forgotten last when the table is full.
func (g *Guard) Mark(nonce uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if e := g.m[nonce]; e != nil {
		e.marked = true
	}
}

// Marked reports whether the sender was marked.
func (g *Guard) Marked(nonce uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.m[nonce]
	return e != nil && e.marked
}

// Len is the number of senders remembered.
func (g *Guard) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.m)
}

// evict makes room; g.mu is held. Senders whose last message is stale go
// first: forgetting them is safe, each message of theirs being stale. If
// that is not enough (a flood of fresh senders), unmarked senders go
// oldest first, then marked ones, down to half the table: a flood can
// then reopen the replay of a forgotten sender's last few seconds, which
// needs the key when there is one.
func (g *Guard) evict(nowMs int64) {
	limit := nowMs - (g.window + evictMargin).Milliseconds()
	for n, e := range g.m {
		if e.timeMs < limit {
			delete(g.m, n)
		}
	}
	if len(g.m) <= g.max*3/4 {
		return
	}
	type aged struct {
		nonce  uint64
		timeMs int64
		marked bool
	}
	all := make([]aged, 0, len(g.m))
	for n, e := range g.m {
		all = append(all, aged{n, e.timeMs, e.marked})
	}
	slices.SortFunc(all, func(a, b aged) int {
		if a.marked != b.marked {
			if a.marked {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.timeMs, b.timeMs)
	})
	for _, a := range all[:len(all)-g.max/2] {
		delete(g.m, a.nonce)
	}
}
