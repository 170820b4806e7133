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
