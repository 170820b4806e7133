// gather_test.go: the gather's estimate of the first pass.
package mcast

import (
	"math"
	"testing"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/imaging/mcast/wire"
)

// TestPassEstimate: the estimate of what the first pass would send, for
// images small enough to be looked at whole and large enough to be
// sampled (estimateChunks), against the exact sum, with receivers that
// hold all but 5% of the chunks or hold nothing.
func TestPassEstimate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		chunks int
		from   int
		lacks  func(i int) bool
	}{
		{"small delta", 300, 0, func(i int) bool { return i%20 == 0 }},
		{"small, from the middle", 300, 150, func(i int) bool { return i%20 == 0 }},
		// A have names at most 160 ranges: a large delta in few runs.
		{"large delta (sampled)", 250_000, 0, func(i int) bool { return i >= 100_000 && i < 112_500 || i%50_000 == 3 }},
		{"large, nothing held (sampled)", 250_000, 0, func(int) bool { return true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := &imaging.Image{}
			for i := range tc.chunks {
				img.Chunks = append(img.Chunks, imaging.ChunkRef{Index: i, Chunk: imaging.Chunk{StoredBytes: int64(1000 + i%7*100)}})
			}
			s := &sender{cfg: SenderConfig{Image: img}, rx: map[uint32]*rxInfo{}}
			for id := range uint32(3) {
				s.rx[id] = &rxInfo{state: wire.StateReceiving, have: wire.HaveRanges(tc.chunks, func(i int) bool { return !tc.lacks(i) })}
			}
			var want, total int64
			for i, c := range img.Chunks {
				total += c.StoredBytes
				if i >= tc.from && tc.lacks(i) {
					want += c.StoredBytes
				}
			}
			got, gotTotal := s.passEstimate(tc.from)
			if gotTotal != total {
				t.Errorf("image bytes %d, want %d", gotTotal, total)
			}
			if tc.chunks <= estimateChunks && got != want {
				t.Errorf("estimate %d, want exactly %d", got, want)
			}
			if rel := math.Abs(float64(got-want)) / float64(total); rel > 0.01 {
				t.Errorf("estimate %d, want %d within 1%% of the image (%d)", got, want, total)
			}
		})
	}
}
