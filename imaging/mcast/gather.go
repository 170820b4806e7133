package mcast

// gather.go: holding a short first pass while receivers keep joining, so that one pass serves them all.

import (
	"time"

	"github.com/shoal-project/shoal/imaging/mcast/wire"
)

// gatherFraction is the largest first pass, as a fraction of the image's
// stored bytes, that the sender holds for more receivers: beyond it a late
// receiver costs less (it takes the rest of the pass, then what it missed)
// than a wait costs everyone.
const gatherFraction = 0.25

// gatherState is the sender's hold before the first pass's first chunk
// (SenderConfig.GatherQuiet); s.mu guards it.
type gatherState struct {
	over       bool
	since      time.Time     // the hold began (the manifest blob was sent)
	lastJoin   time.Time     // a receiver joined, or told what it holds
	joins      int           // such events
	maxGap     time.Duration // the longest time between two of them
	checkedAt  time.Time
	shortPass  bool // the last estimate: the pass is short enough to hold
	passBytes  int64
	imageBytes int64
}

// holding reports whether the first pass waits before its next group;
// s.mu is held. It holds only once, at the first chunk after the manifest
// blob, and only while:
//   - GatherQuiet is set;
//   - the first pass would send at most gatherFraction of the image (what
//     no receiver past joining lacks is skipped), or no receiver has got
//     past joining yet to say;
//   - a receiver joined, or left joining, within the quiet (gatherQuiet:
//     GatherQuiet, or less at the receivers' pace), or one is still
//     joining;
//   - for at most GatherMax in all.
//
// A delta session (every node holds most of the image) thus sends its
// few chunks once to the receivers arriving over a few seconds, instead of
// once to the first and again, whole, to each wave of late ones.
func (s *sender) holding(now time.Time, pos *sendPos) bool {
	g := &s.gather
	if g.over || s.cfg.GatherQuiet <= 0 || pos.firstPassDone || pos.cur.chunk < 0 || pos.cur.group != 0 {
		return false
	}
	if g.since.IsZero() {
		g.since = now
		if g.lastJoin.IsZero() {
			g.lastJoin = now
		}
	}
	s.annFlags |= wire.FlagGathering
	end := func(why string) bool {
		g.over = true
		s.annFlags &^= wire.FlagGathering
		s.log.Info("first pass: gathering over", "why", why, "waited", now.Sub(g.since).Round(time.Millisecond),
			"receivers", len(s.rx), "passBytes", g.passBytes, "imageBytes", g.imageBytes)
		return false
	}
	if now.Sub(g.since) >= s.cfg.GatherMax {
		return end("longest wait")
	}
	known, joining := 0, 0
	for _, r := range s.rx {
		switch {
		case r.state == wire.StateFailed:
		case r.state == wire.StateJoining && r.have == nil:
			joining++
		default:
			known++
		}
	}
	if known == 0 {
		return true // nobody can say yet what the pass is
	}
	if now.Sub(g.checkedAt) >= 100*time.Millisecond {
		g.checkedAt = now
		g.passBytes, g.imageBytes = s.passEstimate(pos.cur.chunk)
		g.shortPass = float64(g.passBytes) <= gatherFraction*float64(g.imageBytes)
	}
	if !g.shortPass {
		return end("long pass")
	}
	if quiet := s.gatherQuiet(); joining == 0 && now.Sub(g.lastJoin) >= quiet {
		return end("no receiver joined for " + quiet.String())
	}
	return true
}

// gatherQuiet is how long no receiver may join before the gather ends:
// GatherQuiet, until receivers have come often enough to show their pace;
// then twice the longest gap between them, from a quarter of GatherQuiet
// up to GatherQuiet. Receivers that arrive close together are not kept
// waiting for the quiet that receivers arriving far apart need; s.mu is
// held.
func (s *sender) gatherQuiet() time.Duration {
	g := &s.gather
	if g.joins < minPaceJoins {
		return s.cfg.GatherQuiet
	}
	return min(s.cfg.GatherQuiet, max(s.cfg.GatherQuiet/4, 2*g.maxGap))
}

// minPaceJoins is how many join events (a receiver heard of, its have, its
// first status past joining) show the receivers' pace: three receivers'.
const minPaceJoins = 9

// joined notes, for the gather, that a receiver joined or said what it
// holds; s.mu is held.
func (s *sender) joined(now time.Time) {
	g := &s.gather
	if !g.lastJoin.IsZero() {
		g.maxGap = max(g.maxGap, now.Sub(g.lastJoin))
	}
	g.lastJoin = now
	g.joins++
}

// passEstimate is what the first pass would send from chunk from on,
// given what the receivers said they hold, and the image's stored bytes;
// s.mu is held. Past estimateChunks chunks it looks at that many, evenly
// spread, and scales: the check runs every 100 ms of a gather, with up to
// MaxReceivers receivers each.
func (s *sender) passEstimate(from int) (passBytes, imageBytes int64) {
	sk, _ := s.cfg.Source.(SkipSource)
	chunks := s.cfg.Image.Chunks
	stride := max(1, len(chunks)/estimateChunks)
	var seenBytes int64
	for i := 0; i < len(chunks); i += stride {
		c := chunks[i]
		seenBytes += c.StoredBytes
		if i < from || sk != nil && sk.Skip(i) || s.everyoneHolds(i) {
			continue
		}
		passBytes += c.StoredBytes
	}
	for _, c := range chunks {
		imageBytes += c.StoredBytes
	}
	if seenBytes > 0 && stride > 1 {
		passBytes = int64(float64(passBytes) * float64(imageBytes) / float64(seenBytes))
	}
	return passBytes, imageBytes
}

// estimateChunks bounds the chunks passEstimate looks at.
const estimateChunks = 1024
