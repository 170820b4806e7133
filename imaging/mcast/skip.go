package mcast

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
	sk, ok := s.cfg.Source.(SkipSource)
	return ok && sk.Skip(i)
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
