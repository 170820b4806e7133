package mcast

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/imaging/mcast/fresh"
	"github.com/shoal-project/shoal/imaging/mcast/wire"
	"github.com/shoal-project/shoal/internal/imagetest"
	"github.com/shoal-project/shoal/internal/netlab"
	"github.com/shoal-project/shoal/internal/netlabtest"
	"github.com/shoal-project/shoal/internal/testlog"
	"github.com/shoal-project/shoal/partition"
)

// testImage makes an image of sizeBytes of random data (with a zero run in
// the middle, which is not a chunk) and returns its source file, repository
// and loaded image.
func testImage(t *testing.T, sizeBytes int64, chunkBytes int64) (src string, repo imaging.Repo, img *imaging.Image) {
	t.Helper()
	im := imagetest.New(t, imagetest.Options{SizeBytes: sizeBytes, ChunkBytes: chunkBytes, ZeroRun: true})
	return im.Src, im.Repo, im.Image
}

// writerSink is the real sink: target checks, imaging.Writer, table last.
type writerSink struct {
	*imaging.Writer
	t *partition.Target
	// delay, when set, slows every chunk write (a slow disk).
	delay time.Duration
}

func (s *writerSink) WriteStored(i int, b []byte) error {
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	return s.Writer.WriteStored(i, b)
}

func (s *writerSink) Finish() error {
	if err := s.Writer.Finish(); err != nil {
		s.t.Close()
		return err
	}
	return s.t.Close()
}

func openTarget(path string, delay time.Duration, scan bool) func(img *imaging.Image) (Sink, error) {
	return func(img *imaging.Image) (Sink, error) {
		t, err := partition.OpenTarget(path, img.Requirements(), partition.TargetOptions{})
		if err != nil {
			return nil, err
		}
		w, err := imaging.NewWriter(img, t, nil)
		if err != nil {
			t.Close()
			return nil, err
		}
		if scan {
			if _, err := w.Scan(context.Background(), imaging.ScanOptions{}); err != nil {
				t.Close()
				return nil, err
			}
		}
		return &writerSink{Writer: w, t: t, delay: delay}, nil
	}
}

func listenIn(n *netlab.Node, group netip.AddrPort) (net.PacketConn, *net.Interface, error) {
	var c net.PacketConn
	var ifi *net.Interface
	err := n.Do(func() error {
		var err error
		ifi, err = net.InterfaceByName(n.Iface)
		if err != nil {
			return err
		}
		c, err = ListenGroup(context.Background(), ifi, group, GroupOptions{})
		return err
	})
	return c, ifi, err
}

func testLogger(t *testing.T, name string) *slog.Logger {
	return testlog.New(t, name, slog.LevelDebug)
}

var testKey = []byte("transport key for tests")

// rxSpec describes one receiver of a session test.
type rxSpec struct {
	lossPermille int
	joinAfter    time.Duration // start late
	killAfter    time.Duration // cancel mid-way (expect failure)
	writeDelay   time.Duration // slow disk: per chunk
	bufferChunks int
	maxCorrupt   int
	// deafData joins another group than the announced one: data never
	// arrives (like a switch that does not forward the group).
	deafData bool
	// hold, when set, makes the target hold these chunks of the image
	// before the receiver starts, and the receiver scan it.
	hold func(i int) bool
}

type rxResult struct {
	stats ReceiverStats
	err   error
	path  string
}

type sessionSpec struct {
	rateBitsPerSec int64 // sender pacing
	linkBitsPerSec int64 // netlab link rate (0: none)
	fecParity      int
	rx             []rxSpec
	// source, when set, wraps the repository source.
	source func(Source) Source
	// progress, when set, gets the sender's progress.
	progress func(SenderStats)
	// garbage, when set, runs alongside in an extra node.
	garbage func(ctx context.Context, n *netlab.Node, img *imaging.Image) error
	// senderDelay delays the sender's start (a rogue speaks first).
	senderDelay time.Duration
	// pub, when set, must have signed the manifest the receivers get.
	pub ed25519.PublicKey
	// sendImage, when set, is the image the sender sends (its manifest
	// and signature) instead of img.
	sendImage *imaging.Image
	// src is the image's source disk (for rxSpec.hold).
	src string
	// mtu, when set, is every link's MTU, and the sender's blocks fill it
	// (BlockBytesForInterface).
	mtu int
	// gatherQuiet is the sender's GatherQuiet.
	gatherQuiet time.Duration
	// statusesPerSec is every receiver's StatusesPerSec.
	statusesPerSec int
}

// runSession runs a sender and receivers on a netlab LAN and returns the
// results, with the sender's stats.
func runSession(t *testing.T, img *imaging.Image, repo imaging.Repo, spec sessionSpec) (SenderStats, []rxResult) {
	t.Helper()
	nodes := 1 + len(spec.rx)
	if spec.garbage != nil {
		nodes++
	}
	lan := netlabtest.New(t, netlab.Config{Nodes: nodes, RateBitsPerSec: spec.linkBitsPerSec})
	if spec.mtu > 0 {
		setMTU(t, lan, spec.mtu)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()

	sc, sifi, err := listenIn(lan.Nodes[0], DefaultControl)
	if err != nil {
		t.Fatalf("sender socket: %v", err)
	}
	defer sc.Close()
	results := make([]rxResult, len(spec.rx))
	var wg sync.WaitGroup
	for i, rs := range spec.rx {
		n := lan.Nodes[1+i]
		if rs.lossPermille > 0 {
			if err := n.SetLoss(rs.lossPermille); err != nil {
				t.Fatal(err)
			}
		}
		results[i].path = filepath.Join(dir, fmt.Sprintf("target%d.img", i))
		if rs.hold != nil {
			prefill(t, spec.src, results[i].path, img, rs.hold)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := &results[i]
			rctx := ctx
			if rs.killAfter > 0 {
				var c context.CancelFunc
				rctx, c = context.WithTimeout(ctx, rs.killAfter)
				defer c()
			}
			if rs.joinAfter > 0 {
				time.Sleep(rs.joinAfter)
			}
			c, ifi, err := listenIn(n, DefaultControl)
			if err != nil {
				res.err = err
				return
			}
			defer c.Close()
			res.stats, res.err = Receive(rctx, c, ReceiverConfig{
				ImageID: img.ID, Key: testKey, Pub: spec.pub,
				Name:  img.Manifest.Name,
				Open:  openTarget(res.path, rs.writeDelay, rs.hold != nil),
				Iface: ifi,
				OpenData: func(ctx context.Context, g netip.AddrPort) (net.PacketConn, error) {
					if rs.deafData {
						g = netip.MustParseAddrPort("239.255.77.99:7799")
					}
					c, _, err := listenIn(n, g)
					return c, err
				},
				SenderTimeout:  senderTimeout(rs),
				Logger:         testLogger(t, fmt.Sprintf("rx%d", i)),
				BufferChunks:   rs.bufferChunks,
				MaxCorrupt:     rs.maxCorrupt,
				StatusesPerSec: spec.statusesPerSec,
			})
		}()
	}
	if spec.garbage != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gctx, gc := context.WithCancel(ctx)
			defer gc()
			go func() { wg.Wait(); gc() }()
			if err := spec.garbage(gctx, lan.Nodes[nodes-1], img); err != nil && gctx.Err() == nil {
				t.Errorf("garbage: %v", err)
			}
		}()
	}
	minRx := 0
	for _, rs := range spec.rx {
		if rs.joinAfter == 0 {
			minRx++
		}
	}
	var src Source = RepoSource{Repo: repo, Image: img}
	if spec.source != nil {
		src = spec.source(src)
	}
	if spec.senderDelay > 0 {
		time.Sleep(spec.senderDelay)
	}
	sendImg := img
	if spec.sendImage != nil {
		sendImg = spec.sendImage
	}
	st, err := Send(ctx, sc, SenderConfig{
		Image: sendImg, Source: src, Key: testKey,
		RateBitsPerSec: spec.rateBitsPerSec, ParityBlocks: spec.fecParity,
		MinReceivers: minRx, MaxWait: 20 * time.Second, Linger: 300 * time.Millisecond,
		ReceiverTimeout: 2 * time.Second,
		BlockBytes:      BlockBytesForInterface(sifi),
		Progress:        spec.progress,
		GatherQuiet:     spec.gatherQuiet,
		Logger:          testLogger(t, "tx"),
	})
	if err != nil {
		t.Errorf("Send() = %v", err)
	}
	wg.Wait()
	return st, results
}

// setMTU sets the MTU of every link of lan: the bridge, its ports and the
// nodes' eth0.
func setMTU(t *testing.T, lan *netlab.LAN, mtu int) {
	t.Helper()
	m := strconv.Itoa(mtu)
	cmds := [][]string{{"ip", "-n", lan.Hub, "link", "set", lan.Bridge, "mtu", m}}
	for _, n := range lan.Nodes {
		cmds = append(cmds, []string{"ip", "-n", lan.Hub, "link", "set", n.HostIface, "mtu", m},
			[]string{"ip", "-n", n.Name, "link", "set", n.Iface, "mtu", m})
	}
	for _, c := range cmds {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", c, err, out)
		}
	}
}

func checkTarget(t *testing.T, src, target string) {
	t.Helper()
	want, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(target)
	if err != nil {
		t.Fatalf("read target: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("target %s (%d bytes) differs from source (%d bytes)", target, len(got), len(want))
	}
}

func TestSession(t *testing.T) {
	netlabtest.RequireRoot(t)
	src, repo, img := testImage(t, 8<<20, 1<<20)
	type testCase struct {
		name      string
		receivers int
		loss      int // permille
	}
	var tests []testCase
	for _, n := range []int{1, 4, 8} {
		for _, loss := range []int{0, 10, 50} {
			tests = append(tests, testCase{fmt.Sprintf("%drx-%d.%d%%loss", n, loss/10, loss%10), n, loss})
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := sessionSpec{rateBitsPerSec: 200e6}
			for range tc.receivers {
				spec.rx = append(spec.rx, rxSpec{lossPermille: tc.loss})
			}
			st, res := runSession(t, img, repo, spec)
			for i, r := range res {
				if r.err != nil {
					t.Errorf("receiver %d: Receive() = %v", i, r.err)
					continue
				}
				checkTarget(t, src, r.path)
				t.Logf("receiver %d: %+v", i, r.stats)
			}
			t.Logf("sender: %+v (image stored %d bytes)", st, img.Manifest.StoredBytes)
		})
	}
}

// TestSessionJumbo: on links of MTU 9000 the sender fills each frame
// (blocks of 8938 bytes, about 6x fewer datagrams than at 1500), and every
// receiver, with 1% loss, still writes the image exactly.
func TestSessionJumbo(t *testing.T) {
	netlabtest.RequireRoot(t)
	src, repo, img := testImage(t, 8<<20, 1<<20)
	spec := sessionSpec{rateBitsPerSec: 200e6, mtu: 9000, rx: []rxSpec{{}, {lossPermille: 10}}}
	st, res := runSession(t, img, repo, spec)
	checkAll(t, src, res)
	if want := BlockBytesForMTU(9000); want != wire.MaxBlockBytes {
		t.Fatalf("BlockBytesForMTU(9000) = %d, want %d", want, wire.MaxBlockBytes)
	}
	// At 1500 the first pass alone is over 5,800 datagrams of 1438
	// bytes; jumbo blocks need about 950, repairs included.
	if limit := img.Manifest.StoredBytes / int64(wire.MaxBlockBytes) * 3 / 2; st.Datagrams > limit {
		t.Errorf("sender sent %d datagrams, want at most %d with jumbo blocks", st.Datagrams, limit)
	}
	t.Logf("sender: %+v", st)
}

func checkAll(t *testing.T, src string, res []rxResult) {
	t.Helper()
	for i, r := range res {
		if r.err != nil {
			t.Errorf("receiver %d: Receive() = %v", i, r.err)
			continue
		}
		checkTarget(t, src, r.path)
		t.Logf("receiver %d: %+v", i, r.stats)
	}
}

// TestLateJoiner starts a receiver when the first pass is about half way:
// it gets the manifest and the chunks it missed through requests.
func TestLateJoiner(t *testing.T) {
	netlabtest.RequireRoot(t)
	src, repo, img := testImage(t, 8<<20, 1<<20)
	// 8 MiB at 50 Mbit/s: about 1.3 s of first pass.
	st, res := runSession(t, img, repo, sessionSpec{rateBitsPerSec: 50e6, rx: []rxSpec{{}, {joinAfter: 600 * time.Millisecond}}})
	checkAll(t, src, res)
	t.Logf("sender: %+v", st)
	if res[1].err == nil && res[1].stats.ReceivedBytes >= img.Manifest.StoredBytes && st.RepairBytes == 0 {
		t.Errorf("late joiner got everything without repairs: sender %+v", st)
	}
}

// TestSlowDisk gives one receiver a disk slower than the link and room for
// two chunks: it drops what it cannot hold and catches up through requests,
// while the other receiver finishes at the link's pace.
func TestSlowDisk(t *testing.T) {
	netlabtest.RequireRoot(t)
	src, repo, img := testImage(t, 8<<20, 1<<20)
	st, res := runSession(t, img, repo, sessionSpec{rateBitsPerSec: 200e6, rx: []rxSpec{{}, {writeDelay: 150 * time.Millisecond, bufferChunks: 2}}})
	checkAll(t, src, res)
	t.Logf("sender: %+v", st)
	fast, slow := res[0].stats, res[1].stats
	if slow.NoRoom == 0 {
		t.Errorf("slow receiver dropped nothing for want of room (%+v): the test did not exercise the slow path", slow)
	}
	if fast.Elapsed >= slow.Elapsed {
		t.Errorf("fast receiver took %v, slow one %v: the slow disk held the fast receiver back", fast.Elapsed, slow.Elapsed)
	}
}

// TestKilledReceiver cancels one receiver mid-way: the others finish and the
// sender forgets the dead one and ends.
func TestKilledReceiver(t *testing.T) {
	netlabtest.RequireRoot(t)
	src, repo, img := testImage(t, 8<<20, 1<<20)
	st, res := runSession(t, img, repo, sessionSpec{rateBitsPerSec: 50e6, rx: []rxSpec{{}, {killAfter: 500 * time.Millisecond}, {}}})
	if !errors.Is(res[1].err, context.DeadlineExceeded) {
		t.Errorf("killed receiver: Receive() = %v, want context.DeadlineExceeded", res[1].err)
	}
	checkAll(t, src, []rxResult{res[0], res[2]})
	if st.Dropped != 1 || st.Done != 2 {
		t.Errorf("sender: %d receivers dropped, %d done; want 1 and 2 (%+v)", st.Dropped, st.Done, st)
	}
}

// TestGarbage sends garbage, other sessions' datagrams and forged data of
// the right session to the control and data groups: receivers count and
// drop what does not parse, drop chunks that fail their hash, ask again and
// still write exactly the image.
func TestGarbage(t *testing.T) {
	netlabtest.RequireRoot(t)
	src, repo, img := testImage(t, 8<<20, 1<<20)
	var forged, junk int
	garbage := func(ctx context.Context, n *netlab.Node, img *imaging.Image) error {
		c, _, err := listenIn(n, DefaultControl)
		if err != nil {
			return err
		}
		defer c.Close()
		// Learn the session from the sender's announce, like an attacker
		// on the LAN could.
		buf := make([]byte, 2048)
		var hdr wire.Header
		var ann wire.Announce
		for {
			if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
				return err
			}
			m, _, err := c.ReadFrom(buf)
			if err != nil {
				return fmt.Errorf("waiting for an announce: %w", err)
			}
			h, body, _, err := wire.ParseControl(buf[:m], nil)
			if err != nil || h.Type != wire.TypeAnnounce {
				continue
			}
			if ann, err = wire.ParseAnnounce(body); err == nil {
				hdr = h
				break
			}
		}
		ctrl, data := udpAddr(DefaultControl), udpAddr(ann.Data)
		l := layout{blockBytes: int(ann.BlockBytes), groupBlocks: int(ann.GroupBlocks)}
		other := hdr
		other.Session++
		for i := 0; ctx.Err() == nil && i < 2000; i++ {
			var b []byte
			dst := data
			switch i % 5 {
			case 0: // random bytes
				b = make([]byte, 1+i%1400)
				rand.Read(b)
				if i%2 == 0 {
					dst = ctrl
				}
			case 1: // a good header, then junk
				b = append(wire.AppendStatus(nil, hdr, &wire.Status{Receiver: 1, State: wire.StateDone}, fresh.Stamp{}, nil)[:wire.HeaderBytes], make([]byte, 7)...)
				b[6], b[7] = 0, 7
				dst = ctrl
			case 2: // another session
				b = wire.AppendData(nil, other, &wire.Data{Chunk: 0, Group: 0, Shard: 0, Block: make([]byte, l.blockBytes)})
			case 3: // a request for nonsense
				b, _ = wire.AppendRequest(nil, hdr, &wire.Request{Receiver: 7, Needs: []wire.Need{{Chunk: 1 << 30, Group: 3, Need: 9}}}, fresh.Stamp{TimeMs: time.Now().UnixMilli(), Nonce: 5, Seq: uint32(i)}, nil)
				dst = ctrl
			case 4: // forged data of the right session, now and then
				if i%50 != 4 {
					continue
				}
				chunk := (i / 50) % len(img.Chunks)
				l.storedBytes = int(img.Chunks[chunk].StoredBytes)
				g := (i / 7) % l.groups()
				s := (i / 3) % (2 * l.groupData(g))
				block := make([]byte, l.blockLen(g, s))
				rand.Read(block)
				b = wire.AppendData(nil, hdr, &wire.Data{Chunk: uint32(chunk), Group: uint16(g), Shard: uint16(s), Flags: wire.DataFirstPass, Block: block})
				forged++
			}
			junk++
			if _, err := c.WriteTo(b, dst); err != nil {
				return err
			}
			time.Sleep(200 * time.Microsecond)
		}
		return nil
	}
	st, res := runSession(t, img, repo, sessionSpec{rateBitsPerSec: 50e6, rx: []rxSpec{{}, {}}, garbage: garbage})
	checkAll(t, src, res)
	t.Logf("sender: %+v; garbage sent: %d datagrams, %d forged data", st, junk, forged)
	for i, r := range res {
		if r.stats.Malformed == 0 || r.stats.Foreign == 0 {
			t.Errorf("receiver %d counted %d malformed and %d foreign datagrams; want some of each", i, r.stats.Malformed, r.stats.Foreign)
		}
	}
	if st.Malformed == 0 || st.Refused == 0 {
		t.Errorf("sender counted %d malformed and %d refused (unauthenticated) control datagrams; want some of each", st.Malformed, st.Refused)
	}
}

// corruptSource is a Source whose chunks (but the first) have one byte
// flipped: a sender that keeps sending bad data.
type corruptSource struct{ Source }

func (c corruptSource) Chunk(ctx context.Context, i int, buf []byte) ([]byte, error) {
	b, err := c.Source.Chunk(ctx, i, buf)
	if err == nil && i > 0 {
		b[len(b)/2] ^= 0xff
	}
	return b, err
}

// TestBadSender: a sender whose chunks fail their hashes is given up on
// with ErrBadSender, and no partition table (here: no complete image) is
// written.
func TestBadSender(t *testing.T) {
	netlabtest.RequireRoot(t)
	_, repo, img := testImage(t, 8<<20, 1<<20)
	_, res := runSession(t, img, repo, sessionSpec{
		rateBitsPerSec: 200e6, rx: []rxSpec{{maxCorrupt: 3}},
		source: func(s Source) Source { return corruptSource{s} },
	})
	if !errors.Is(res[0].err, ErrBadSender) {
		t.Errorf("Receive() from a corrupting sender = %v, want ErrBadSender", res[0].err)
	}
	if res[0].stats.Corrupt <= 3 || res[0].stats.ChunksDone > 1 {
		t.Errorf("receiver stats %+v: want more than 3 corrupt chunks and at most chunk 0 written", res[0].stats)
	}
}

// TestRateAdapts sends at four times the link rate: receivers lose most of
// the first pass, report it, and the sender's AIMD brings its rate down
// near the link's; everyone still gets the image. The image is large enough
// (24 MiB: 2 s at the link's rate) for several reports to come back.
func TestRateAdapts(t *testing.T) {
	netlabtest.RequireRoot(t)
	src, repo, img := testImage(t, 24<<20, 1<<20)
	var rates []int64
	var mu sync.Mutex
	spec := sessionSpec{rateBitsPerSec: 400e6, linkBitsPerSec: 100e6, rx: []rxSpec{{}, {}}}
	spec.progress = func(s SenderStats) {
		mu.Lock()
		rates = append(rates, s.RateBitsPerSec)
		mu.Unlock()
	}
	st, res := runSession(t, img, repo, spec)
	checkAll(t, src, res)
	mu.Lock()
	defer mu.Unlock()
	lowest := st.RateBitsPerSec
	for _, r := range rates {
		lowest = min(lowest, r)
	}
	t.Logf("sender %+v; rates seen %v", st, rates)
	if lowest >= 200e6 {
		t.Errorf("lowest rate %d bit/s on a 100 Mbit/s link with 400 Mbit/s asked: AIMD did not lower it", lowest)
	}
}

func senderTimeout(rs rxSpec) time.Duration {
	if rs.deafData {
		return time.Second
	}
	return 0
}

// TestNoData: a receiver that hears the announces but gets no data (its
// data socket is on another group) fails with ErrNoData instead of waiting
// for ever, and the sender, told it failed, ends.
func TestNoData(t *testing.T) {
	netlabtest.RequireRoot(t)
	_, repo, img := testImage(t, 8<<20, 1<<20)
	st, res := runSession(t, img, repo, sessionSpec{rateBitsPerSec: 50e6, rx: []rxSpec{{deafData: true}}})
	if !errors.Is(res[0].err, ErrNoData) {
		t.Errorf("Receive() with no data arriving = %v, want ErrNoData", res[0].err)
	}
	if st.Dropped != 1 {
		t.Errorf("sender dropped %d receivers, want 1 (%+v)", st.Dropped, st)
	}
}
