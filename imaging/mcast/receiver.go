package mcast

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/imaging/mcast/fresh"
	"github.com/shoal-project/shoal/imaging/mcast/wire"
)

// Sink is where a receiver's verified chunks go. *imaging.Writer is one.
type Sink interface {
	// WriteStored verifies chunk i's stored bytes and writes them; an
	// error wrapping imaging.ErrCorrupt means the bytes were bad.
	WriteStored(i int, stored []byte) error
	// Has reports whether chunk i is already written.
	Has(i int) bool
	// Finish is called once every chunk is written.
	Finish() error
}

// ReceiverConfig configures Receive.
type ReceiverConfig struct {
	// ImageID, when set, is the image to receive: announces of any other
	// image are ignored, and the manifest that comes must have exactly
	// this ID (so an older image of the same name, even signed by the
	// site's key, is refused). Zero: the first image announced (of Name).
	ImageID imaging.ID
	// Name, when set, must be the manifest's name too.
	Name string
	// Session, when not 0, is the only session joined (the peer session
	// names it in its leader's authenticated announce); 0 joins the first
	// fresh, authenticated announce of ImageID.
	Session uint32
	// Source, when valid, is the only address announces and data are
	// taken from (the peer session: its leader's); otherwise the source of
	// the announce joined.
	Source netip.Addr
	// Key authenticates the control datagrams (HMAC-SHA256). Nil:
	// unauthenticated, with a warning unless Quiet is set (the caller
	// warned already).
	Key   []byte
	Quiet bool
	// Clock is the receiver's estimate of the image server's clock, which
	// judges and stamps control datagrams (default: the local clock).
	Clock func() time.Time
	// Pub, when set, must have signed the manifest.
	Pub ed25519.PublicKey
	// Open is called with the verified manifest and returns where its
	// chunks go (the target checks happen here).
	Open func(img *imaging.Image) (Sink, error)
	// OpenData opens the data group the announce names (default:
	// ListenGroup on Iface).
	OpenData func(ctx context.Context, group netip.AddrPort) (net.PacketConn, error)
	Iface    *net.Interface
	// Control is where requests and statuses go (default DefaultControl).
	Control netip.AddrPort
	// BufferChunks bounds the chunks held in memory, being assembled or
	// waiting for the disk (default 16). Chunks beyond it are dropped and
	// asked for again later, so a slow disk never slows the sender.
	BufferChunks int
	// Writers is the number of chunks written in parallel (default 2).
	Writers int
	// JoinTimeout bounds the wait for an announce (0: wait for ever).
	JoinTimeout time.Duration
	// SenderTimeout is how long the sender may stay silent (default 10 s).
	SenderTimeout time.Duration
	// MaxCorrupt is how many chunks may fail their hash before the sender
	// is given up on (default 3; a manifest with a bad signature gives it
	// up at once).
	MaxCorrupt int
	// Backoff is the longest random delay before a request (default 4 ms);
	// Retry the wait for an answer before asking again (default 40 ms).
	Backoff, Retry time.Duration
	Logger         *slog.Logger
	// Progress, when set, is called about every 250 ms and at the end.
	Progress func(ReceiverStats)
	// ID names the receiver to the sender (random when 0).
	ID uint32
}

// ReceiverStats counts what a receiver did.
type ReceiverStats struct {
	Elapsed        time.Duration
	Image          imaging.ID
	Chunks         int
	ChunksDone     int
	WrittenBytes   int64 // chunk bytes written (uncompressed)
	StoredBytes    int64 // compressed size of the image
	ReceivedBytes  int64 // block bytes received, duplicates included
	DuplicateBytes int64 // block bytes received but not needed
	Datagrams      int64
	Malformed      int64 // datagrams that did not parse
	Foreign        int64 // datagrams of another session, image or source
	Refused        int64 // control datagrams unauthenticated, stale or replayed
	NoRoom         int64 // datagrams dropped for want of buffer
	Corrupt        int   // chunks that failed their hash
	Requests       int64 // request datagrams sent
	Suppressed     int64 // needs not sent because another receiver asked
	LostBlocks     int64 // datagrams lost (from gaps in their numbers)
}

// ErrSenderGone is returned when the sender stops or stays silent before
// the image is complete.
var ErrSenderGone = errors.New("sender gone")

// ErrNoData is returned when the sender's announces arrive but its data does
// not (multicast not forwarded to this port: IGMP snooping without a querier,
// a firewall).
var ErrNoData = errors.New("announces heard but no data")

// ErrBadSender is returned when the sender's data keeps failing its hashes,
// or its manifest's signature is bad: a bad peer, to be left.
var ErrBadSender = errors.New("sender keeps sending bad data")

func (c *ReceiverConfig) defaults() error {
	if err := checkKey(c.Key); err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if !c.Control.IsValid() {
		c.Control = DefaultControl
	}
	if c.BufferChunks <= 0 {
		c.BufferChunks = 16
	}
	if c.Writers <= 0 {
		c.Writers = 2
	}
	if c.SenderTimeout <= 0 {
		c.SenderTimeout = 10 * time.Second
	}
	if c.MaxCorrupt <= 0 {
		c.MaxCorrupt = 3
	}
	if c.Backoff <= 0 {
		c.Backoff = 4 * time.Millisecond
	}
	if c.Retry <= 0 {
		c.Retry = 40 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.OpenData == nil {
		iface := c.Iface
		c.OpenData = func(ctx context.Context, g netip.AddrPort) (net.PacketConn, error) {
			return ListenGroup(ctx, iface, g, GroupOptions{})
		}
	}
	for c.ID == 0 {
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.ID = binary.BigEndian.Uint32(b[:])
	}
	return nil
}

// partial is a chunk being assembled.
type partial struct {
	chunk int // -1: manifest blob
	l     layout
	buf   []byte     // blocks*blockBytes
	have  [][]bool   // per group: shards received (data, then parity)
	count []int      // per group: distinct shards received
	par   [][][]byte // per group: parity shards received
	done  []bool
	left  int // groups not done
	// Requests, per group: when the next is due (zero: not scheduled),
	// and when data for the group last came.
	due  []time.Time
	last []time.Time
	// The highest group seen and when any datagram of the chunk came.
	maxGroup int
	lastAny  time.Time
	// lastSeq is the receiver's datagram count at the chunk's last
	// datagram; reqSeq, per group, the count when it was last asked for.
	// Counting datagrams rather than time keeps a receiver that was not
	// scheduled for a while from asking for what sits in its socket.
	lastSeq int64
	reqSeq  []int64
	// firstPass: the chunk's data came from the first pass, whose
	// cursor then says which groups are over.
	firstPass bool
}

func newPartial(chunk int, l layout, buf []byte) *partial {
	g := l.groups()
	if n := l.blocks() * l.blockBytes; cap(buf) >= n {
		buf = buf[:n] // old bytes do no harm: every block is overwritten
	} else {
		buf = make([]byte, n)
	}
	return &partial{
		chunk: chunk, l: l,
		buf:  buf,
		have: make([][]bool, g), count: make([]int, g), par: make([][][]byte, g),
		done: make([]bool, g), left: g, due: make([]time.Time, g), last: make([]time.Time, g),
		reqSeq: make([]int64, g),
	}
}

// receiver is the state shared by Receive's goroutines.
type receiver struct {
	cfg    ReceiverConfig
	log    *slog.Logger
	codecs codecs
	ctrl   *ipv4.PacketConn
	stamps *fresh.Stamper
	guard  *fresh.Guard

	mu         sync.Mutex
	ann        wire.Announce
	hdr        wire.Header // the session's header, set by the first announce
	joined     bool
	src        netip.Addr    // the sender's address: announces and data come from it
	nonce      uint64        // the sender's nonce: its announces carry it
	annCh      chan struct{} // closed at the first announce
	heard      time.Time     // last datagram of the session
	ending     bool
	img        *imaging.Image
	opening    bool // the sink is being opened
	sink       Sink
	chunks     int
	partials   map[int]*partial
	writing    map[int]bool
	written    []bool
	nwritten   int
	wholeDue   map[int]time.Time // whole-chunk requests: when due next
	cursor     groupKey          // first pass position seen in data
	seq        int64             // data datagrams of the session received
	lastData   time.Time         // when the last one came
	fpDoneAt   time.Time         // when the first announce saying the first pass is done came
	sendingAt  time.Time         // when the first announce saying data flows came
	free       [][]byte          // chunk buffers to reuse
	dataRaw    syscall.RawConn   // the data socket, to see whether data waits in it
	backlog    bool              // data was waiting in the socket at this tick
	seqHi      uint32            // highest data datagram number seen
	seqOK      bool
	lossExp    int64 // datagrams expected since the last status
	lossGot    int64
	writeQ     chan *partial
	fatal      error
	finished   chan struct{}
	stats      ReceiverStats
	storedSize int64
}

// Receive waits for the sender's announce on ctrl (a socket listening on
// the control group, from ListenGroup), receives the image, writes it to
// the sink cfg.Open returns and returns once the sink is finished.
func Receive(ctx context.Context, ctrl net.PacketConn, cfg ReceiverConfig) (ReceiverStats, error) {
	if err := cfg.defaults(); err != nil {
		return ReceiverStats{}, err
	}
	if cfg.Open == nil {
		return ReceiverStats{}, errors.New("receive: no Open")
	}
	if cfg.Key == nil && !cfg.Quiet {
		cfg.Logger.Warn("INSECURE: no key: control datagrams are not authenticated; anyone on the LAN can stall this receiver (never write a byte: the image ID and every chunk's hash are checked)")
	}
	r := &receiver{
		cfg: cfg, log: cfg.Logger, ctrl: ipv4.NewPacketConn(ctrl),
		stamps: fresh.NewStamper(cfg.Clock), guard: fresh.NewGuard(cfg.Clock, 0),
		annCh: make(chan struct{}), partials: make(map[int]*partial), writing: make(map[int]bool),
		wholeDue: make(map[int]time.Time), cursor: groupKey{-1, 0},
		writeQ: make(chan *partial, cfg.BufferChunks), finished: make(chan struct{}),
	}
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer closeOnDone(ctx, ctrl)()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() { defer wg.Done(); r.readLoop(ctx, r.ctrl, false) }()

	// Join: wait for an announce of our image.
	var joinTimeout <-chan time.Time
	if cfg.JoinTimeout > 0 {
		t := time.NewTimer(cfg.JoinTimeout)
		defer t.Stop()
		joinTimeout = t.C
	}
	select {
	case <-ctx.Done():
		return r.snapshot(start), ctx.Err()
	case <-joinTimeout:
		return r.snapshot(start), fmt.Errorf("no sender announced image %q (%s) within %v", cfg.Name, cfg.ImageID.String()[:16], cfg.JoinTimeout)
	case <-r.annCh:
	}
	r.mu.Lock()
	group := r.ann.Data
	r.mu.Unlock()
	dc, err := cfg.OpenData(ctx, group)
	if err != nil {
		return r.snapshot(start), fmt.Errorf("data group: %w", err)
	}
	defer closeOnDone(ctx, dc)()
	defer dc.Close()
	if sc, ok := dc.(syscall.Conn); ok {
		r.dataRaw, _ = sc.SyscallConn()
	}
	wg.Add(1)
	go func() { defer wg.Done(); r.readLoop(ctx, ipv4.NewPacketConn(dc), true) }()
	for range cfg.Writers {
		wg.Add(1)
		go func() { defer wg.Done(); r.writeLoop(ctx) }()
	}
	err = r.tickLoop(ctx, start)
	st := r.snapshot(start)
	if cfg.Progress != nil {
		cfg.Progress(st)
	}
	return st, err
}

func (r *receiver) snapshot(start time.Time) ReceiverStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.stats
	st.Elapsed = time.Since(start)
	st.Chunks, st.ChunksDone, st.StoredBytes = r.chunks, r.nwritten, r.storedSize
	return st
}

// fail records the first fatal error; r.mu is held.
func (r *receiver) fail(err error) {
	if r.fatal == nil {
		r.fatal = err
	}
}

func (r *receiver) readLoop(ctx context.Context, p *ipv4.PacketConn, data bool) {
	msgs := make([]ipv4.Message, 128)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	var needs []wire.Need
	for {
		n, err := p.ReadBatch(msgs, 0)
		if err != nil {
			if ctx.Err() == nil {
				r.mu.Lock()
				r.fail(fmt.Errorf("read: %w", err))
				r.mu.Unlock()
			}
			return
		}
		now := time.Now()
		r.mu.Lock()
		for _, m := range msgs[:n] {
			needs = r.handle(now, m.Buffers[0][:m.N], addrOf(m.Addr), needs)
		}
		r.mu.Unlock()
		if data && n < len(msgs)/4 {
			// Caught up: let datagrams gather in the (large) socket
			// buffer rather than waking for each one.
			time.Sleep(batchWait)
		}
	}
}

// batchWait is how long the data reader lets datagrams gather once it has
// caught up: about 85 full datagrams at 200 Mbit/s, 430 at 1 Gbit/s (the
// socket buffer holds 8 MiB).
const batchWait = 5 * time.Millisecond

// addrOf is the IPv4 address of a datagram's source.
func addrOf(a net.Addr) netip.Addr {
	if u, ok := a.(*net.UDPAddr); ok {
		if ip, ok := netip.AddrFromSlice(u.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// handle handles one datagram from src; r.mu is held.
func (r *receiver) handle(now time.Time, b []byte, src netip.Addr, needs []wire.Need) []wire.Need {
	r.stats.Datagrams++
	h, body, err := wire.ParseHeader(b)
	if err != nil {
		r.stats.Malformed++
		return needs
	}
	if h.Type == wire.TypeData {
		if !r.joined || h.IDPrefix != r.hdr.IDPrefix || h.Session != r.hdr.Session || src != r.src {
			r.stats.Foreign++
			return needs
		}
		d, err := wire.ParseData(body)
		if err != nil {
			r.stats.Malformed++
			return needs
		}
		r.heard = now
		r.data(now, d)
		return needs
	}
	h, body, st, err := wire.ParseControl(b, r.cfg.Key)
	switch {
	case errors.Is(err, wire.ErrUnauthenticated):
		r.stats.Refused++
		return needs
	case err != nil:
		r.stats.Malformed++
		return needs
	}
	if st.Nonce == r.stamps.Nonce() {
		return needs // our own, looped back
	}
	if h.Type == wire.TypeAnnounce {
		a, err := wire.ParseAnnounce(body)
		if err != nil || wire.Prefix(a.ID) != h.IDPrefix {
			r.stats.Malformed++
			return needs
		}
		r.announce(now, h, a, st, src)
		return needs
	}
	if !r.joined || h.IDPrefix != r.hdr.IDPrefix || h.Session != r.hdr.Session {
		r.stats.Foreign++
		return needs
	}
	switch h.Type {
	case wire.TypeRequest:
		q, err := wire.ParseRequest(body, needs)
		if err != nil {
			r.stats.Malformed++
			return needs
		}
		if err := r.guard.Check(st); err != nil {
			r.stats.Refused++ // a replayed request would silence ours
			return needs
		}
		if q.Receiver != r.cfg.ID {
			r.suppress(now, q.Needs)
		}
		return q.Needs
	case wire.TypeStatus:
		// Other receivers' statuses are for the sender.
	}
	return needs
}

// announce handles an announce from src; r.mu is held. The first fresh
// announce of our image (of cfg.Session and from cfg.Source, when set) is
// joined; from then on only that sender's (session, address and nonce).
func (r *receiver) announce(now time.Time, h wire.Header, a wire.Announce, st fresh.Stamp, src netip.Addr) {
	if !r.joined {
		if r.cfg.ImageID != (imaging.ID{}) && imaging.ID(a.ID) != r.cfg.ImageID || r.cfg.Session != 0 && h.Session != r.cfg.Session ||
			r.cfg.Source.IsValid() && src != r.cfg.Source {
			r.stats.Foreign++
			return
		}
		if r.cfg.Name != "" && a.Name != r.cfg.Name {
			r.stats.Foreign++
			return
		}
		if a.BlockBytes > 1500 || a.GroupBlocks > 128 || int64(a.ManifestBytes) > maxBlobBytes {
			r.stats.Malformed++
			return
		}
		if err := r.guard.Check(st); err != nil {
			r.stats.Refused++
			return
		}
		r.joined, r.ann, r.hdr = true, a, wire.Header{IDPrefix: h.IDPrefix, Session: h.Session}
		r.src, r.nonce = src, st.Nonce
		r.log.Info("joined session", "image", a.Name, "id", imaging.ID(a.ID), "session", h.Session, "data", a.Data, "sender", src)
		close(r.annCh)
		r.accept(now, a)
		return
	}
	if h.Session != r.hdr.Session || a.ID != r.ann.ID || src != r.src || st.Nonce != r.nonce {
		r.stats.Foreign++
		return
	}
	if err := r.guard.Check(st); err != nil {
		r.stats.Refused++
		return
	}
	r.accept(now, a)
}

// accept takes what an announce of the joined session says; r.mu is held.
func (r *receiver) accept(now time.Time, a wire.Announce) {
	r.heard = now
	r.ann.Flags, r.ann.RateBitsPerSec = a.Flags, a.RateBitsPerSec
	if a.Flags&wire.FlagFirstPassDone != 0 && r.fpDoneAt.IsZero() {
		r.fpDoneAt = now
	}
	if a.Flags&wire.FlagSending != 0 && r.sendingAt.IsZero() {
		r.sendingAt = now
	}
	if a.Flags&wire.FlagEnding != 0 {
		r.ending = true
	}
}

// maxBlobBytes bounds the manifest blob an announce may promise (the
// receiver holds it in memory): the largest manifest, its length and a
// signature.
const maxBlobBytes = imaging.MaxManifestBytes + 4 + 1024

func chunkIndex(c uint32) int {
	if c == wire.ManifestChunk {
		return -1
	}
	return int(c)
}

func before(a, b groupKey) bool {
	return a.chunk < b.chunk || a.chunk == b.chunk && a.group < b.group
}

func (r *receiver) advance(k groupKey) {
	if before(r.cursor, k) {
		r.cursor = k
	}
}

// passed reports whether the first pass is past group k: its data went
// past it, or it ended a while ago, or it ended and no data is coming.
func (r *receiver) passed(now time.Time, k groupKey) bool {
	if before(k, r.cursor) {
		return true
	}
	return !r.fpDoneAt.IsZero() && !r.backlog && (now.Sub(r.fpDoneAt) > 25*r.cfg.Retry || r.idle(now))
}

// idle reports whether no data came for a while and none waits in the
// socket (a receiver not scheduled for a while has data waiting).
func (r *receiver) idle(now time.Time) bool { return !r.backlog && now.Sub(r.lastData) > r.cfg.Retry }

// waiting reports whether datagrams wait in the data socket.
func (r *receiver) waiting() bool {
	if r.dataRaw == nil {
		return false
	}
	n := 0
	if err := r.dataRaw.Control(func(fd uintptr) {
		n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	}); err != nil {
		return false
	}
	return n > 0
}

func (r *receiver) layout(chunk int) (layout, bool) {
	l := layout{blockBytes: int(r.ann.BlockBytes), groupBlocks: int(r.ann.GroupBlocks)}
	switch {
	case chunk < 0:
		l.storedBytes = int(r.ann.ManifestBytes)
	case r.img != nil && chunk < r.chunks:
		l.storedBytes = int(r.img.Chunks[chunk].StoredBytes)
	default:
		return l, false
	}
	return l, l.valid() == nil
}

// data handles a data datagram; r.mu is held.
func (r *receiver) data(now time.Time, d wire.Data) {
	chunk := chunkIndex(d.Chunk)
	g, s := int(d.Group), int(d.Shard)
	n := int64(len(d.Block))
	r.stats.ReceivedBytes += n
	r.seq++
	r.lastData = now
	if r.opening || chunk >= 0 && r.img == nil {
		r.stats.NoRoom++ // no manifest yet
		return
	}
	l, ok := r.layout(chunk)
	if !ok || g >= l.groups() || s >= 2*l.groupData(g) || len(d.Block) != l.blockLen(g, s) {
		r.stats.Malformed++
		return
	}
	r.seqSeen(d.Seq)
	if d.Flags&wire.DataFirstPass != 0 {
		r.advance(groupKey{chunk, g})
	}
	if (chunk < 0 && r.img != nil) || (chunk >= 0 && (r.written[chunk] || r.writing[chunk])) {
		r.stats.DuplicateBytes += n
		return
	}
	p := r.partials[chunk]
	if p == nil {
		if chunk >= 0 && len(r.partials)+len(r.writing) >= r.cfg.BufferChunks {
			r.stats.NoRoom++
			return
		}
		var buf []byte
		if n := len(r.free); n > 0 {
			buf, r.free = r.free[n-1], r.free[:n-1]
		}
		p = newPartial(chunk, l, buf)
		p.firstPass = d.Flags&wire.DataFirstPass != 0
		r.partials[chunk] = p
		delete(r.wholeDue, chunk)
	}
	if p.done[g] {
		r.stats.DuplicateBytes += n
		return
	}
	k := l.groupData(g)
	if p.have[g] == nil {
		p.have[g] = make([]bool, 2*k)
	}
	if p.have[g][s] {
		r.stats.DuplicateBytes += n
		return
	}
	p.have[g][s] = true
	p.count[g]++
	p.last[g] = now
	p.lastAny = now
	p.lastSeq = r.seq
	p.maxGroup = max(p.maxGroup, g)
	if s < k {
		copy(p.buf[l.offset(g, s):], d.Block)
	} else {
		if p.par[g] == nil {
			p.par[g] = make([][]byte, k)
		}
		p.par[g][s-k] = append([]byte(nil), d.Block...)
	}
	if p.count[g] < k {
		return
	}
	if err := r.decode(p, g); err != nil {
		// Forged or damaged shards: start the group again.
		r.log.Warn("group does not decode", "chunk", chunk, "group", g, "err", err)
		p.have[g], p.par[g], p.count[g] = nil, nil, 0
		return
	}
	p.done[g] = true
	p.par[g], p.have[g] = nil, nil
	p.left--
	if p.left > 0 {
		return
	}
	delete(r.partials, chunk)
	if chunk < 0 {
		r.manifest(p)
		return
	}
	r.writing[chunk] = true
	select {
	case r.writeQ <- p:
	default:
		// Cannot happen: the queue holds BufferChunks and so do we.
		delete(r.writing, chunk)
	}
}

// seqSeen counts loss from gaps in the sender's datagram numbers; r.mu
// is held.
func (r *receiver) seqSeen(seq uint32) {
	if !r.seqOK {
		r.seqOK, r.seqHi = true, seq
		return
	}
	d := int64(int32(seq - r.seqHi)) // wraps; negative: late or repeated
	if d <= 0 {
		return
	}
	r.seqHi = seq
	r.lossExp += d
	r.lossGot++
	r.stats.LostBlocks += d - 1
}

// decode rebuilds group g's missing data blocks from parity.
func (r *receiver) decode(p *partial, g int) error {
	l := p.l
	k := l.groupData(g)
	missing := false
	for s := 0; s < k; s++ {
		if !p.have[g][s] {
			missing = true
			break
		}
	}
	if !missing {
		return nil
	}
	enc, err := r.codecs.get(k)
	if err != nil {
		return err
	}
	pad := make([]byte, l.blockBytes)
	shards := make([][]byte, 2*k)
	for s := 0; s < k; s++ {
		if p.have[g][s] {
			off := l.offset(g, s)
			if n := l.blockLen(g, s); n < l.blockBytes {
				copy(pad, p.buf[off:off+n])
				shards[s] = pad
			} else {
				shards[s] = p.buf[off : off+n]
			}
		}
	}
	for j := 0; j < k; j++ {
		if p.have[g][k+j] {
			shards[k+j] = p.par[g][j]
		}
	}
	if err := enc.ReconstructData(shards); err != nil {
		return fmt.Errorf("reconstruct: %w", err)
	}
	for s := 0; s < k; s++ {
		if !p.have[g][s] {
			off := l.offset(g, s)
			copy(p.buf[off:off+l.blockLen(g, s)], shards[s])
		}
	}
	return nil
}

// manifest checks the manifest blob and opens the sink; r.mu is held.
func (r *receiver) manifest(p *partial) {
	blob := p.buf[:p.l.storedBytes]
	bad := func(format string, a ...any) {
		r.stats.Corrupt++
		r.log.Warn("manifest blob rejected", "why", fmt.Sprintf(format, a...))
		if r.stats.Corrupt > r.cfg.MaxCorrupt {
			r.fail(fmt.Errorf("%w: the manifest failed %d times", ErrBadSender, r.stats.Corrupt))
		}
	}
	if len(blob) < 4 {
		bad("%d bytes", len(blob))
		return
	}
	n := int(binary.BigEndian.Uint32(blob))
	if n > len(blob)-4 {
		bad("manifest length %d in a blob of %d", n, len(blob))
		return
	}
	raw, sig := blob[4:4+n], blob[4+n:]
	if sha256.Sum256(raw) != r.ann.ID || r.cfg.ImageID != (imaging.ID{}) && imaging.ID(r.ann.ID) != r.cfg.ImageID {
		bad("manifest hash is not the image ID")
		return
	}
	if len(sig) == 0 {
		sig = nil
	}
	img, err := imaging.NewImage(append([]byte(nil), raw...), append([]byte(nil), sig...), r.cfg.Pub)
	if err != nil {
		// The manifest is ours (its hash is the ID) but the sender's
		// signature of it is bad (or the manifest invalid): a bad peer,
		// whose data is not worth waiting for.
		r.stats.Corrupt++
		r.fail(fmt.Errorf("%w: its manifest of image %x: %w", ErrBadSender, r.ann.ID[:8], err))
		return
	}
	if int(r.ann.Chunks) != len(img.Chunks) {
		r.fail(fmt.Errorf("announce says %d chunks, manifest has %d", r.ann.Chunks, len(img.Chunks)))
		return
	}
	if r.cfg.Name != "" && img.Manifest.Name != r.cfg.Name {
		r.fail(fmt.Errorf("manifest names image %q, want %q", img.Manifest.Name, r.cfg.Name))
		return
	}
	// Opening the target may take a while (wiping): not under the lock.
	r.opening = true
	r.mu.Unlock()
	sink, err := r.cfg.Open(img)
	r.mu.Lock()
	r.opening = false
	if err != nil {
		r.fail(fmt.Errorf("open target: %w", err))
		return
	}
	r.img, r.sink = img, sink
	r.chunks = len(img.Chunks)
	r.written = make([]bool, r.chunks)
	for i := range r.written {
		if sink.Has(i) {
			r.written[i] = true
			r.nwritten++
		}
	}
	for _, c := range img.Chunks {
		r.storedSize += c.StoredBytes
	}
	r.stats.Image = img.ID
	r.log.Info("manifest verified", "image", img.Manifest.Name, "chunks", r.chunks)
	if r.nwritten == r.chunks {
		close(r.finished)
	}
}

func (r *receiver) writeLoop(ctx context.Context) {
	for {
		var p *partial
		select {
		case <-ctx.Done():
			return
		case p = <-r.writeQ:
		}
		err := r.sink.WriteStored(p.chunk, p.buf[:p.l.storedBytes])
		r.mu.Lock()
		delete(r.writing, p.chunk)
		if len(r.free) < r.cfg.BufferChunks {
			r.free = append(r.free, p.buf)
		}
		switch {
		case err == nil:
			if !r.written[p.chunk] {
				r.written[p.chunk] = true
				r.nwritten++
				r.stats.WrittenBytes += r.img.Chunks[p.chunk].SizeBytes
				if r.nwritten == r.chunks {
					close(r.finished)
				}
			}
		case errors.Is(err, imaging.ErrCorrupt):
			r.stats.Corrupt++
			r.log.Warn("chunk failed its hash; asking again", "chunk", p.chunk, "err", err)
			if r.stats.Corrupt > r.cfg.MaxCorrupt {
				r.fail(fmt.Errorf("%w: %d chunks failed their hash (last: %v)", ErrBadSender, r.stats.Corrupt, err))
			}
		default:
			r.fail(fmt.Errorf("write chunk %d: %w", p.chunk, err))
		}
		r.mu.Unlock()
	}
}

// suppress records needs other receivers asked for; r.mu is held.
func (r *receiver) suppress(now time.Time, needs []wire.Need) {
	for _, n := range needs {
		chunk := chunkIndex(n.Chunk)
		if n.Group == wire.WholeChunk {
			if _, ok := r.wholeDue[chunk]; ok {
				r.wholeDue[chunk] = now.Add(r.wholeRetry())
				r.stats.Suppressed++
			}
			continue
		}
		p := r.partials[chunk]
		g := int(n.Group)
		if p == nil || g >= len(p.done) || p.done[g] {
			continue
		}
		k := p.l.groupData(g)
		if int(n.Need) >= k-p.count[g] {
			p.due[g] = now.Add(r.cfg.Retry)
			p.reqSeq[g] = r.seq
			r.stats.Suppressed++
		}
	}
}

func (r *receiver) wholeRetry() time.Duration { return 25 * r.cfg.Retry }

func (r *receiver) backoff() time.Duration {
	return r.cfg.Backoff/2 + time.Duration(mrand.Int64N(int64(r.cfg.Backoff/2)+1))
}

// tickLoop sends requests and statuses, and watches for the end.
func (r *receiver) tickLoop(ctx context.Context, start time.Time) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	lastStatus := time.Time{}
	lastProg := time.Now()
	var needs []wire.Need
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.finished:
			return r.finish(ctx)
		case <-tick.C:
		}
		backlog := r.waiting()
		now := time.Now()
		r.mu.Lock()
		r.backlog = backlog
		if r.fatal != nil {
			err := r.fatal
			r.mu.Unlock()
			r.sendStatus(wire.StateFailed)
			return err
		}
		if now.Sub(r.heard) > r.cfg.SenderTimeout {
			r.mu.Unlock()
			return fmt.Errorf("%w: nothing heard for %v", ErrSenderGone, r.cfg.SenderTimeout)
		}
		if !r.sendingAt.IsZero() && now.Sub(r.sendingAt) > r.cfg.SenderTimeout && now.Sub(r.lastData) > r.cfg.SenderTimeout {
			group := r.ann.Data
			r.mu.Unlock()
			r.sendStatus(wire.StateFailed)
			return fmt.Errorf("%w: the sender (session %d) is sending, but nothing came on data group %v for %v (is multicast forwarded to this port?)",
				ErrNoData, r.hdr.Session, group, r.cfg.SenderTimeout)
		}
		if r.ending && (r.img == nil || r.nwritten < r.chunks) {
			r.mu.Unlock()
			return fmt.Errorf("%w: the sender ended the session before the image was complete", ErrSenderGone)
		}
		needs = r.collectNeeds(now, needs[:0])
		r.mu.Unlock()
		for len(needs) > 0 {
			n := min(len(needs), wire.MaxRequestEntries)
			err := r.stamps.Do(func(st fresh.Stamp) error {
				b, err := wire.AppendRequest(nil, r.hdr, &wire.Request{Receiver: r.cfg.ID, Needs: needs[:n]}, st, r.cfg.Key)
				if err == nil {
					_, err = r.ctrl.WriteTo(b, nil, udpAddr(r.cfg.Control))
				}
				return err
			})
			if err != nil && ctx.Err() == nil {
				r.log.Warn("request", "err", err)
			}
			r.mu.Lock()
			r.stats.Requests++
			r.mu.Unlock()
			needs = needs[n:]
		}
		if now.Sub(lastStatus) >= 250*time.Millisecond {
			lastStatus = now
			r.mu.Lock()
			state := uint8(wire.StateReceiving)
			if r.img == nil {
				state = wire.StateJoining
			}
			r.mu.Unlock()
			r.sendStatus(state)
		}
		if r.cfg.Progress != nil && now.Sub(lastProg) >= 250*time.Millisecond {
			lastProg = now
			r.cfg.Progress(r.snapshot(start))
		}
	}
}

// collectNeeds returns the requests due now; r.mu is held.
func (r *receiver) collectNeeds(now time.Time, needs []wire.Need) []wire.Need {
	// The manifest first.
	if r.img == nil {
		p := r.partials[-1]
		if p == nil {
			due, ok := r.wholeDue[-1]
			switch {
			case !ok:
				r.wholeDue[-1] = now.Add(r.cfg.Retry + r.backoff())
			case !now.Before(due):
				needs = append(needs, wire.Need{Chunk: wire.ManifestChunk, Group: wire.WholeChunk})
				r.wholeDue[-1] = now.Add(r.cfg.Retry * 5)
			}
			return needs
		}
	}
	idle := r.idle(now)
	for _, p := range r.partials {
		for g := range p.done {
			// Ask once the sender has moved past the group: the first
			// pass is beyond it, this chunk's stream is at a later
			// group, or the chunk's stream has stopped.
			// Groups beyond the highest seen may just not be sent yet
			// (a sender that was not scheduled for a while): only a long
			// silence makes them due.
			moved := p.firstPass && before(groupKey{p.chunk, g}, r.cursor) || g < p.maxGroup ||
				r.seq-p.lastSeq > int64(2*p.l.groupBlocks) ||
				idle && g == p.maxGroup && now.Sub(r.lastData) > 2*r.cfg.Retry ||
				idle && now.Sub(r.lastData) > 10*r.cfg.Retry
			if p.done[g] || !moved {
				continue
			}
			k := p.l.groupData(g)
			if p.due[g].IsZero() {
				// The receiver missing the most asks first; the others
				// then hear they need not ask.
				p.due[g] = now.Add(r.backoff() / time.Duration(k-p.count[g]))
			}
			if now.Before(p.due[g]) || now.Sub(p.last[g]) < r.cfg.Backoff {
				continue
			}
			if p.reqSeq[g] != 0 && r.seq-p.reqSeq[g] < int64(4*p.l.groupBlocks) && !idle {
				continue // asked already; the answer may be in the socket
			}
			needs = append(needs, wire.Need{Chunk: wireChunk(p.chunk), Group: uint16(g), Need: uint16(k - p.count[g])})
			p.due[g] = now.Add(r.cfg.Retry)
			p.reqSeq[g] = max(r.seq, 1)
		}
	}
	if r.img == nil {
		return needs
	}
	// Whole chunks the first pass has passed, as far as there is room.
	room := r.cfg.BufferChunks - len(r.partials) - len(r.writing)
	for c := 0; c < r.chunks && room > 0; c++ {
		if r.written[c] || r.writing[c] || r.partials[c] != nil || !r.passed(now, groupKey{c, 1 << 30}) {
			continue
		}
		due, ok := r.wholeDue[c]
		switch {
		case !ok:
			r.wholeDue[c] = now.Add(r.backoff())
		case !now.Before(due):
			needs = append(needs, wire.Need{Chunk: uint32(c), Group: wire.WholeChunk})
			r.wholeDue[c] = now.Add(r.wholeRetry())
		}
		room--
	}
	return needs
}

func (r *receiver) sendStatus(state uint8) {
	r.mu.Lock()
	loss := 0
	if r.lossExp > 0 {
		loss = int(1000 * (r.lossExp - r.lossGot) / r.lossExp)
	}
	r.lossExp, r.lossGot = 0, 0
	hdr := r.hdr
	status := wire.Status{
		Receiver: r.cfg.ID, State: state, LossPermille: uint16(loss),
		ChunksDone: uint32(r.nwritten), Chunks: uint32(r.chunks),
		ReceivedBytes: uint64(r.stats.ReceivedBytes), DuplicateBytes: uint64(r.stats.DuplicateBytes),
	}
	r.mu.Unlock()
	if err := r.stamps.Do(func(st fresh.Stamp) error {
		_, err := r.ctrl.WriteTo(wire.AppendStatus(nil, hdr, &status, st, r.cfg.Key), nil, udpAddr(r.cfg.Control))
		return err
	}); err != nil {
		r.log.Debug("status", "err", err)
	}
}

// finish writes the table and tells the sender.
func (r *receiver) finish(ctx context.Context) error {
	if err := r.sink.Finish(); err != nil {
		r.sendStatus(wire.StateFailed)
		return fmt.Errorf("finish: %w", err)
	}
	for i := range 3 {
		r.sendStatus(wire.StateDone)
		if i < 2 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}
