package mcast

import (
	"bytes"
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-project/shoal/imaging/mcast/wire"
	"github.com/shoal-project/shoal/internal/imagetest"
)

// keepSink keeps the stored bytes of every chunk handed to it.
type keepSink struct{ got map[int][]byte }

func (s *keepSink) WriteStored(i int, b []byte) error { s.got[i] = bytes.Clone(b); return nil }
func (s *keepSink) Has(int) bool                      { return false }
func (s *keepSink) Finish() error                     { return nil }

// TestDataRebuildsLostBlocks: whatever data blocks of a group are lost,
// as many parity blocks rebuild them, the short last block of the chunk
// too, and the chunk handed to the sink is the stored one.
func TestDataRebuildsLostBlocks(t *testing.T) {
	im := imagetest.New(t, imagetest.Options{SizeBytes: 2 * (256 << 10), ChunkBytes: 256 << 10})
	img := im.Image
	const chunk = 1
	stored, err := im.Repo.Chunk(context.Background(), img.Chunks[chunk].Chunk, nil)
	if err != nil {
		t.Fatal(err)
	}
	hdr := wire.Header{IDPrefix: wire.Prefix(img.ID), Session: 7}
	src := netip.MustParseAddr("10.0.0.1")
	r := benchReceiver(t, img, hdr, src, nil)
	l, ok := r.layout(chunk)
	if !ok || l.storedBytes%l.blockBytes == 0 {
		t.Fatalf("layout %+v: want one with a short last block", l)
	}
	lastG := l.groups() - 1
	for _, tc := range []struct {
		name string
		lost func(g, s, k int) bool
	}{
		{"none", func(g, s, k int) bool { return false }},
		{"the first block of each group", func(g, s, k int) bool { return s == 0 }},
		{"the short last block", func(g, s, k int) bool { return g == lastG && s == k-1 }},
		{"half of every group", func(g, s, k int) bool { return s%2 == 1 }},
		{"every data block of the last group", func(g, s, k int) bool { return g == lastG }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &keepSink{got: map[int][]byte{}}
			r := benchReceiver(t, img, hdr, src, sink)
			var seq uint32
			now := time.Now()
			r.mu.Lock()
			for _, d := range chunkDatagrams(t, hdr, l, chunk, stored, &seq, tc.lost) {
				r.handle(now, d, src, nil)
			}
			r.mu.Unlock()
			select {
			case p := <-r.writeQ:
				if err := sink.WriteStored(p.chunk, p.buf[:p.l.storedBytes]); err != nil {
					t.Fatal(err)
				}
			default:
				t.Fatalf("chunk not complete: %+v", r.stats)
			}
			if diff := cmp.Diff(stored, sink.got[chunk]); diff != "" {
				t.Errorf("chunk handed to the sink differs from the stored one (-want +got):\n%s", diff)
			}
		})
	}
}
