package mcast

// sender_repair.go: the repair queues, and the order in which jobs are sent (repairs, the first pass, whole chunks).

import (
	"time"

	"github.com/shoal-project/shoal/imaging/mcast/wire"
)

// request queues one need; s.mu is held.
func (s *sender) request(n wire.Need) {
	chunk := int(n.Chunk)
	if n.Chunk == wire.ManifestChunk {
		chunk = -1
	} else if chunk >= s.chunks {
		s.stats.Malformed++
		return
	}
	if n.Group == wire.WholeChunk {
		if chunk < 0 {
			// The manifest is small and everyone needs it first: ask
			// for every group, ahead of the first pass.
			l := s.layout(-1)
			for g := 0; g < l.groups(); g++ {
				s.request(wire.Need{Chunk: n.Chunk, Group: uint16(g), Need: uint16(l.groupData(g))})
			}
			return
		}
		if !s.loSet[chunk] {
			s.log.Debug("whole chunk asked", "chunk", chunk)
			s.loSet[chunk] = true
			s.lo = append(s.lo, chunk)
		}
		return
	}
	l := s.layout(chunk)
	g := int(n.Group)
	if g >= l.groups() || n.Need == 0 {
		s.stats.Malformed++
		return
	}
	k := groupKey{chunk, g}
	need := min(int(n.Need), l.groupData(g))
	if old, ok := s.hiNeed[k]; ok {
		s.hiNeed[k] = max(old, need)
		return
	}
	s.hiNeed[k] = need
	s.hi = append(s.hi, k)
}

// job is a run of shards of one group to send.
type job struct {
	key       groupKey
	shards    []int
	firstPass bool
}

// sendPos is where the sending goroutine is: the first pass's next group,
// and the whole chunk being sent.
type sendPos struct {
	cur           groupKey // first pass position: the next group
	firstPassDone bool
	loCur         int // chunk being sent for the low-priority queue (-2: none)
	loGroup       int
}

// nextJob picks the next job: repairs, then the first pass, then whole
// chunks. A job without shards: nothing to send now.
func (s *sender) nextJob(pos *sendPos, start time.Time) job {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case len(s.hi) > 0:
		k := s.hi[0]
		s.hi = s.hi[1:]
		need := s.hiNeed[k]
		delete(s.hiNeed, k)
		return job{key: k, shards: s.repairShards(k, need)}
	case !pos.firstPassDone && (pos.cur.group > 0 || s.ready(pos.cur.chunk)) && !s.holding(time.Now(), pos):
		return s.firstPassJob(pos, start)
	case pos.loCur != -2 || len(s.lo) > 0:
		return s.loJob(pos)
	}
	return job{}
}

// firstPassJob returns the first pass's next group and moves the first
// pass on; s.mu is held.
func (s *sender) firstPassJob(pos *sendPos, start time.Time) job {
	if pos.cur.group == 0 && pos.cur.chunk >= 0 && s.skips(pos.cur.chunk) {
		// Not skipped when the pass came to it, but every receiver has
		// said since that it holds it (a have comes after the manifest
		// blob, or during a gather).
		s.advance(pos, start)
		return job{} // the next call sends it, once it is ready
	}
	l := s.layout(pos.cur.chunk)
	j := job{key: pos.cur, shards: s.groupShards(l, pos.cur.group), firstPass: true}
	s.stats.Chunk = max(pos.cur.chunk, 0)
	pos.cur.group++
	if pos.cur.group >= l.groups() {
		s.advance(pos, start)
	}
	return j
}

// advance moves the first pass to the next chunk it does not skip, and
// reports whether the pass is done; s.mu is held.
func (s *sender) advance(pos *sendPos, start time.Time) bool {
	pos.cur = groupKey{pos.cur.chunk + 1, 0}
	for pos.cur.chunk < s.chunks && s.skips(pos.cur.chunk) {
		pos.cur.chunk++
	}
	if pos.cur.chunk >= s.chunks {
		pos.firstPassDone = true
		s.stats.FirstPassDone = true
		s.annFlags |= wire.FlagFirstPassDone
		s.stats.Chunk = s.chunks
		s.log.Info("first pass done", "elapsed", time.Since(start))
	}
	return pos.firstPassDone
}

// loJob returns the next group of the whole-chunk queue; s.mu is held.
func (s *sender) loJob(pos *sendPos) job {
	if pos.loCur == -2 {
		pos.loCur = s.lo[0]
		s.lo = s.lo[1:]
		delete(s.loSet, pos.loCur)
		pos.loGroup = 0
	}
	l := s.layout(pos.loCur)
	j := job{key: groupKey{pos.loCur, pos.loGroup}, shards: s.groupShards(l, pos.loGroup)}
	pos.loGroup++
	if pos.loGroup >= l.groups() {
		pos.loCur = -2
	}
	return j
}

// groupShards returns the shards a pass sends of group g: its data blocks
// and ParityBlocks parity blocks (at most as many as data blocks).
func (s *sender) groupShards(l layout, g int) []int {
	var shards []int
	k := l.groupData(g)
	for i := 0; i < k+min(s.cfg.ParityBlocks, k); i++ {
		shards = append(shards, i)
	}
	return shards
}

// repairShards picks need shards of group k that were not sent lately:
// fresh parity blocks first, then data and parity again in turn.
func (s *sender) repairShards(k groupKey, need int) []int {
	kd := s.layout(k.chunk).groupData(k.group)
	next, ok := s.nextRepair[k]
	if !ok {
		next = min(s.cfg.ParityBlocks, kd)
	}
	out := make([]int, 0, need)
	for range need {
		var shard int
		if next < kd {
			shard = kd + next
		} else {
			q := (next - kd) % (2 * kd)
			shard = q // data q, then parity q-kd
		}
		out = append(out, shard)
		next++
	}
	s.nextRepair[k] = next
	return out
}
