package mcast

// skip.go: what the first pass need not send: what the source says to skip, and what every receiver said it holds.

import "github.com/shoal-project/shoal/imaging/mcast/wire"

// SkipSource is a Source that may tell the sender's first pass to skip
// chunks: the peer session's leader after a takeover, whose receivers hold
// most chunks already. A skipped chunk is still sent when a receiver asks
// for it (the first pass has passed it, so receivers that miss it ask for it
// whole).
type SkipSource interface {
	Source
	// Skip reports whether the first pass skips chunk i. It is called with
	// the sender's lock held and must not block.
	Skip(i int) bool
}

// skips reports whether the first pass skips chunk i.
func (s *sender) skips(i int) bool {
	if sk, ok := s.cfg.Source.(SkipSource); ok && sk.Skip(i) {
		return true
	}
	if s.everyoneHolds(i) {
		s.stats.HeldChunks++
		return true
	}
	return false
}

// everyoneHolds reports whether every receiver the sender knows of said
// that its target holds chunk i (a have), and there is one at least; s.mu
// is held. A receiver still joining (no manifest yet, so no scan) does not
// count: when it lacks the chunk it asks for it whole, as any late joiner
// does, rather than make the first pass send to everyone what only it
// might need. Its have comes before its first receiving status.
func (s *sender) everyoneHolds(i int) bool {
	n := 0
	for _, r := range s.rx {
		if r.state == wire.StateFailed || (r.state == wire.StateJoining && r.have == nil) {
			continue
		}
		if !r.holds(i) {
			return false
		}
		n++
	}
	return n > 0
}

// ReadySource is a Source that says whether a chunk is available without
// blocking: the peer session's leader, still downloading. While the first
// pass's next chunk is not ready, the sender serves the whole chunks
// receivers asked for (late joiners catch up while the leader downloads).
type ReadySource interface {
	Source
	// Ready reports whether Chunk(i) would return at once. It is called
	// with the sender's lock held and must not block.
	Ready(i int) bool
}

// ready reports whether the first pass may load chunk i now.
func (s *sender) ready(i int) bool {
	rs, ok := s.cfg.Source.(ReadySource)
	return i < 0 || !ok || rs.Ready(i)
}
