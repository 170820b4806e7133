package mcast

// receive_bench_test.go: the receiver's datagram path (parse, FEC assembly, hand to the sink) per byte and per datagram.

import (
	"context"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/imaging/mcast/wire"
	"github.com/shoal-project/shoal/internal/imagetest"
	"github.com/shoal-project/shoal/partition"
)

// nullSink takes every chunk and keeps nothing.
type nullSink struct{}

func (nullSink) WriteStored(int, []byte) error { return nil }
func (nullSink) Has(int) bool                  { return false }
func (nullSink) Finish() error                 { return nil }

// devNullSink is an imaging.Writer on /dev/null, made again once every
// chunk is written (a written chunk is not written again).
type devNullSink struct {
	b   *testing.B
	img *imaging.Image
	f   *os.File
	w   *imaging.Writer
}

func (s *devNullSink) WriteStored(i int, stored []byte) error {
	if s.w == nil || s.w.Remaining() <= 1 {
		w, err := imaging.NewWriter(s.img, &partition.Target{Path: os.DevNull, File: s.f, Created: true}, nil)
		if err != nil {
			s.b.Fatal(err)
		}
		s.w = w
	}
	return s.w.WriteStored(i, stored)
}
func (s *devNullSink) Has(int) bool  { return false }
func (s *devNullSink) Finish() error { return nil }

// benchReceiver is a receiver that joined img's session and verified its
// manifest, writing to sink.
func benchReceiver(b testing.TB, img *imaging.Image, hdr wire.Header, src netip.Addr, sink Sink) *receiver {
	b.Helper()
	cfg := ReceiverConfig{Open: func(*imaging.Image) (Sink, error) { return sink, nil }}
	if err := cfg.defaults(); err != nil {
		b.Fatal(err)
	}
	r := &receiver{
		cfg: cfg, log: cfg.Logger,
		partials: make(map[int]*partial), writing: make(map[int]bool), wholeDue: make(map[int]time.Time),
		cursor: groupKey{-1, 0}, writeQ: make(chan *partial, cfg.BufferChunks), finished: make(chan struct{}),
		joined: true, hdr: hdr, src: src,
		ann: wire.Announce{ID: img.ID, BlockBytes: DefaultBlockBytes, GroupBlocks: 64, Chunks: uint32(len(img.Chunks))},
		img: img, sink: sink, chunks: len(img.Chunks), written: make([]bool, len(img.Chunks)),
	}
	return r
}

// chunkDatagrams returns the data datagrams of chunk i as the first pass
// sends them, but for the data shards lost says are lost, which come as as
// many parity shards of their group instead.
func chunkDatagrams(b testing.TB, hdr wire.Header, l layout, chunk int, stored []byte, seq *uint32, lost func(g, s, k int) bool) [][]byte {
	b.Helper()
	var cs codecs
	var out [][]byte
	for g := range l.groups() {
		k := l.groupData(g)
		nlost := 0
		for s := range k {
			if lost(g, s, k) {
				nlost++
			}
		}
		var parity [][]byte
		if nlost > 0 {
			shards := groupShards(l, stored, g, make([]byte, l.blockBytes))
			enc, err := cs.get(k)
			if err != nil {
				b.Fatal(err)
			}
			parity = make([][]byte, k)
			for i := range parity {
				parity[i] = make([]byte, l.blockBytes)
			}
			if err := enc.Encode(append(shards, parity...)); err != nil {
				b.Fatal(err)
			}
		}
		for s := range k + nlost {
			if s < k && lost(g, s, k) {
				continue
			}
			d := wire.Data{Chunk: wireChunk(chunk), Group: uint16(g), Shard: uint16(s), Flags: wire.DataFirstPass, Seq: *seq}
			if s < k {
				off := l.offset(g, s)
				d.Block = stored[off : off+l.blockLen(g, s)]
			} else {
				d.Block = parity[s-k]
			}
			*seq++
			out = append(out, wire.AppendData(nil, hdr, &d))
		}
	}
	return out
}

// BenchmarkReceiveDatagrams measures the receiver's work on a chunk's data
// datagrams once they are read from the socket: parse, check, copy into
// the chunk, Reed-Solomon decode of groups that lost blocks, and the chunk
// handed to the sink (nothing, or an imaging.Writer on /dev/null: decode,
// verify, write). Bytes are the chunk's stored bytes; allocs/datagram
// counts the heap allocations per datagram handled.
func BenchmarkReceiveDatagrams(b *testing.B) {
	im := imagetest.New(b, imagetest.Options{SizeBytes: 16 << 20, ChunkBytes: imaging.DefaultChunkBytes})
	img := im.Image
	var stored [][]byte
	for _, c := range img.Chunks {
		s, err := im.Repo.Chunk(context.Background(), c.Chunk, nil)
		if err != nil {
			b.Fatal(err)
		}
		stored = append(stored, s)
	}
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	hdr := wire.Header{IDPrefix: wire.Prefix(img.ID), Session: 7}
	src := netip.MustParseAddr("10.0.0.1")
	none := func(g, s, k int) bool { return false }
	first := func(g, s, k int) bool { return s == 0 }
	for _, tc := range []struct {
		name string
		lost func(g, s, k int) bool
		sink func(b *testing.B) Sink
	}{
		{"lost=0/sink=null", none, func(*testing.B) Sink { return nullSink{} }},
		{"lost=1/sink=null", first, func(*testing.B) Sink { return nullSink{} }},
		{"lost=0/sink=writer", none, func(b *testing.B) Sink { return &devNullSink{b: b, img: img, f: f} }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := benchReceiver(b, img, hdr, src, tc.sink(b))
			var seq uint32
			// Chunk 0 lies in the writer's commit region (held in memory): not measured.
			var dgrams [][][]byte
			for i := 1; i < len(stored); i++ {
				l, _ := r.layout(i)
				dgrams = append(dgrams, chunkDatagrams(b, hdr, l, i, stored[i], &seq, tc.lost))
			}
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			var n, bytes int64
			b.ResetTimer()
			for i := range b.N {
				j := i % len(dgrams)
				now := time.Now()
				r.mu.Lock()
				for _, d := range dgrams[j] {
					r.handle(now, d, src, nil)
				}
				r.mu.Unlock()
				p := <-r.writeQ
				if err := r.sink.WriteStored(p.chunk, p.buf[:p.l.storedBytes]); err != nil {
					b.Fatal(err)
				}
				r.mu.Lock()
				delete(r.writing, p.chunk)
				r.free = append(r.free, p.buf)
				r.mu.Unlock()
				n += int64(len(dgrams[j]))
				bytes += int64(p.l.storedBytes)
			}
			b.StopTimer()
			runtime.ReadMemStats(&ms1)
			b.SetBytes(bytes / int64(b.N))
			b.ReportMetric(float64(n)/float64(b.N), "datagrams/op")
			b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(n), "allocs/datagram")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/datagram")
			if r.stats.Malformed+r.stats.Foreign+r.stats.NoRoom > 0 {
				b.Fatalf("datagrams refused: %+v", r.stats)
			}
		})
	}
}
