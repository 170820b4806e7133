package mcast

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/imaging/mcast/fresh"
	"github.com/shoal-project/shoal/imaging/mcast/wire"
)

// Source is where the sender's chunk bytes come from.
type Source interface {
	// Chunk appends chunk i's stored (compressed) bytes to buf[:0]. It may
	// block until the chunk is available (a leader still downloading it).
	Chunk(ctx context.Context, i int, buf []byte) ([]byte, error)
}

// RepoSource reads an image's chunks from a repository.
type RepoSource struct {
	Repo  imaging.Repo
	Image *imaging.Image
}

// Chunk implements Source.
func (r RepoSource) Chunk(ctx context.Context, i int, buf []byte) ([]byte, error) {
	if i < 0 || i >= len(r.Image.Chunks) {
		return nil, fmt.Errorf("chunk %d: out of range (image has %d)", i, len(r.Image.Chunks))
	}
	return r.Repo.Chunk(ctx, r.Image.Chunks[i].Chunk, buf[:0])
}

// wireOverheadBytes is what each datagram adds on an Ethernet link beyond
// its UDP payload (Ethernet 14, IPv4 20, UDP 8): the pacer counts it, so a
// rate is a link rate as tc counts it.
const wireOverheadBytes = 42

// DefaultBlockBytes fills a 1500-byte MTU: 1500 - 20 (IP) - 8 (UDP) - 34.
const DefaultBlockBytes = 1500 - 28 - wire.DataHeaderBytes

// SenderConfig configures Send.
type SenderConfig struct {
	Image  *imaging.Image
	Source Source
	// Data is the group data goes to (default DefaultData); the control
	// group is the one the connection given to Send listens on.
	Data    netip.AddrPort
	Control netip.AddrPort
	// RateBitsPerSec is the highest pacing rate, counted as link bytes
	// (default 100 Mbit/s). AIMD lowers it when receivers report loss
	// above LossThresholdPermille and raises it back.
	RateBitsPerSec        int64
	LossThresholdPermille int // default 100 (10%)
	// BlockBytes is the data per datagram (default DefaultBlockBytes).
	BlockBytes int
	// GroupBlocks is the Reed-Solomon group size K (default 64, at most
	// 128); ParityBlocks the parity blocks M sent per group in the first
	// pass (default 0). Repairs are always parity blocks.
	GroupBlocks, ParityBlocks int
	// MinReceivers makes the sender wait, up to MaxWait, for that many
	// receivers before the first pass.
	MinReceivers int
	// MaxWait bounds the wait for MinReceivers, and ends the sender when it
	// has heard nothing from any receiver for that long (default 60 s).
	MaxWait time.Duration
	// Linger is how long nothing must be asked, once every receiver is
	// done (or there is none), before the sender ends (default 1 s).
	Linger time.Duration
	// ReceiverTimeout forgets a receiver not heard from for that long
	// (default 5 s): a dead receiver does not keep the sender.
	ReceiverTimeout time.Duration
	// AnnounceInterval is the time between announces (default 100 ms).
	AnnounceInterval time.Duration
	Logger           *slog.Logger
	// Progress, when set, is called about every 250 ms and at the end.
	Progress func(SenderStats)
	// Session is the session number (random when 0).
	Session uint32
	// Key authenticates the control datagrams (HMAC-SHA256): what this
	// sender announces, and the requests and statuses it acts on. Nil:
	// unauthenticated, with a warning unless Quiet is set (the caller
	// warned already).
	Key   []byte
	Quiet bool
	// Clock is the sender's estimate of the image server's clock, which
	// stamps and judges the freshness of control datagrams (default: the
	// local clock; see fresh.ServerClock).
	Clock func() time.Time
	// MaxReceivers bounds the receivers the sender keeps track of
	// (default 1024); beyond it the one heard from longest ago is dropped.
	MaxReceivers int
}

// SenderStats counts what a sender did.
type SenderStats struct {
	Elapsed        time.Duration
	SentBytes      int64 // UDP payload bytes of data datagrams
	DataBytes      int64 // block bytes sent (first pass and repairs)
	FirstPassBytes int64
	RepairBytes    int64
	Datagrams      int64
	Requests       int64 // request datagrams heard
	Malformed      int64 // control datagrams that did not parse
	Refused        int64 // control datagrams unauthenticated, stale or replayed
	Receivers      int   // receivers heard of
	Done           int   // receivers that reported done
	Dropped        int   // receivers forgotten (timed out or failed)
	FirstPassDone  bool
	Chunk, Chunks  int // first pass position
	RateBitsPerSec int64
}

func (c *SenderConfig) defaults() error {
	if err := checkKey(c.Key); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.MaxReceivers <= 0 {
		c.MaxReceivers = 1024
	}
	if !c.Data.IsValid() {
		c.Data = DefaultData
	}
	if !c.Control.IsValid() {
		c.Control = DefaultControl
	}
	if c.RateBitsPerSec <= 0 {
		c.RateBitsPerSec = 100e6
	}
	if c.LossThresholdPermille <= 0 {
		c.LossThresholdPermille = 100
	}
	if c.BlockBytes <= 0 {
		c.BlockBytes = DefaultBlockBytes
	}
	if c.GroupBlocks <= 0 {
		c.GroupBlocks = 64
	}
	if c.MaxWait <= 0 {
		c.MaxWait = 60 * time.Second
	}
	if c.Linger <= 0 {
		c.Linger = time.Second
	}
	if c.ReceiverTimeout <= 0 {
		c.ReceiverTimeout = 5 * time.Second
	}
	if c.AnnounceInterval <= 0 {
		c.AnnounceInterval = 100 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	for c.Session == 0 {
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.Session = binary.BigEndian.Uint32(b[:])
	}
	return nil
}

type groupKey struct {
	chunk int // -1: the manifest blob
	group int
}

type rxInfo struct {
	state    uint8
	lastSeen time.Time
	loss     int
	status   wire.Status
}

// sender is the state shared by Send's goroutines.
type sender struct {
	cfg    SenderConfig
	hdr    wire.Header
	blob   []byte // manifest blob
	chunks int
	codecs codecs
	parity parityCache // used by the sending goroutine only
	log    *slog.Logger
	stamps *fresh.Stamper
	guard  *fresh.Guard

	mu           sync.Mutex
	hi           []groupKey // repairs, in the order asked
	hiNeed       map[groupKey]int
	lo           []int // whole chunks, in the order asked (-1: manifest)
	loSet        map[int]bool
	nextRepair   map[groupKey]int
	rx           map[uint32]*rxInfo
	dropped      int
	lastHeard    time.Time // any request or status
	lastAsk      time.Time // last request
	lastDecrease time.Time
	// What the announces say.
	annSent  groupKey
	annFlags uint16
	annRate  int64
	annErr   error // the announce loop's failure
	wake     chan struct{}
	stats    SenderStats
}

// ManifestBlob is what the sender sends as chunk wire.ManifestChunk: the
// manifest's length (4 bytes, big endian), the manifest, its signature.
func ManifestBlob(img *imaging.Image) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(img.Raw)))
	b = append(b, img.Raw...)
	return append(b, img.Sig...)
}

// Send runs a sender on conn, a socket listening on the control group
// (from ListenGroup): it announces the image, sends it, serves repairs and
// returns when the session is over (see SenderConfig) or ctx is done.
func Send(ctx context.Context, conn net.PacketConn, cfg SenderConfig) (SenderStats, error) {
	if err := cfg.defaults(); err != nil {
		return SenderStats{}, err
	}
	if cfg.Image == nil || cfg.Source == nil {
		return SenderStats{}, errors.New("send: no image or source")
	}
	if cfg.Key == nil && !cfg.Quiet {
		cfg.Logger.Warn("INSECURE: no key: control datagrams are not authenticated; anyone on the LAN can stall or end this session")
	}
	s := &sender{
		cfg:        cfg,
		hdr:        wire.Header{IDPrefix: wire.Prefix(cfg.Image.ID), Session: cfg.Session},
		blob:       ManifestBlob(cfg.Image),
		chunks:     len(cfg.Image.Chunks),
		log:        cfg.Logger,
		hiNeed:     make(map[groupKey]int),
		loSet:      make(map[int]bool),
		nextRepair: make(map[groupKey]int),
		rx:         make(map[uint32]*rxInfo),
		wake:       make(chan struct{}, 1),
		stamps:     fresh.NewStamper(cfg.Clock),
		guard:      fresh.NewGuard(cfg.Clock, 0),
	}
	s.stats.Chunks = s.chunks
	s.stats.RateBitsPerSec = cfg.RateBitsPerSec
	for _, l := range []layout{s.layout(-1), s.layout(max(0, s.chunks-1))} {
		if err := l.valid(); err != nil {
			return SenderStats{}, fmt.Errorf("send: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := closeOnDone(ctx, conn)
	defer stop()
	readErr := make(chan error, 1)
	go func() { readErr <- s.readControl(ctx, conn) }()
	err := s.run(ctx, ipv4.NewPacketConn(conn))
	cancel()
	rerr := <-readErr
	if err == nil && rerr != nil && ctx.Err() == nil {
		err = rerr
	}
	st := s.snapshot()
	if cfg.Progress != nil {
		cfg.Progress(st)
	}
	return st, err
}

func (s *sender) layout(chunk int) layout {
	l := layout{blockBytes: s.cfg.BlockBytes, groupBlocks: s.cfg.GroupBlocks}
	if chunk < 0 {
		l.storedBytes = len(s.blob)
	} else if chunk < s.chunks {
		l.storedBytes = int(s.cfg.Image.Chunks[chunk].StoredBytes)
	}
	return l
}

func (s *sender) snapshot() SenderStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Receivers = len(s.rx) + s.dropped
	st.Dropped = s.dropped
	for _, r := range s.rx {
		if r.state == wire.StateDone {
			st.Done++
		}
	}
	return st
}

func (s *sender) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// readControl reads requests and statuses until conn is closed.
func (s *sender) readControl(ctx context.Context, conn net.PacketConn) error {
	p := ipv4.NewPacketConn(conn)
	msgs := make([]ipv4.Message, 16)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	var needs []wire.Need
	for {
		n, err := p.ReadBatch(msgs, 0)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read control: %w", err)
		}
		now := time.Now()
		s.mu.Lock()
		for _, m := range msgs[:n] {
			needs = s.handleControl(now, m.Buffers[0][:m.N], needs)
		}
		s.mu.Unlock()
		s.poke()
	}
}

// handleControl handles one control datagram; s.mu is held.
func (s *sender) handleControl(now time.Time, b []byte, needs []wire.Need) []wire.Need {
	h, body, st, err := wire.ParseControl(b, s.cfg.Key)
	switch {
	case errors.Is(err, wire.ErrUnauthenticated):
		s.stats.Refused++
		return needs
	case err != nil:
		s.stats.Malformed++
		return needs
	}
	if h.IDPrefix != s.hdr.IDPrefix || h.Session != s.hdr.Session {
		return needs // another session's traffic
	}
	if st.Nonce == s.stamps.Nonce() {
		return needs // our own announce
	}
	if h.Type != wire.TypeRequest && h.Type != wire.TypeStatus {
		return needs
	}
	if err := s.guard.Check(st); err != nil {
		s.stats.Refused++ // another run's, or a replay of this one's
		return needs
	}
	switch h.Type {
	case wire.TypeRequest:
		r, err := wire.ParseRequest(body, needs)
		if err != nil {
			s.stats.Malformed++
			return needs
		}
		s.stats.Requests++
		s.lastHeard, s.lastAsk = now, now
		s.seen(r.Receiver, now)
		for _, n := range r.Needs {
			s.request(n)
		}
		return r.Needs
	case wire.TypeStatus:
		st, err := wire.ParseStatus(body)
		if err != nil {
			s.stats.Malformed++
			return needs
		}
		s.lastHeard = now
		r := s.seen(st.Receiver, now)
		if r.state != st.State && st.State == wire.StateDone {
			s.log.Info("receiver done", "receiver", st.Receiver)
		}
		r.state, r.loss, r.status = st.State, int(st.LossPermille), st
	}
	return needs
}

func (s *sender) seen(id uint32, now time.Time) *rxInfo {
	r := s.rx[id]
	if r == nil {
		if len(s.rx) >= s.cfg.MaxReceivers {
			s.forgetOldest()
		}
		r = &rxInfo{state: wire.StateJoining}
		s.rx[id] = r
		s.log.Info("receiver joined", "receiver", id)
	}
	r.lastSeen = now
	return r
}

// forgetOldest makes room in the receiver table, down to half of it: done
// receivers first, then those heard from longest ago; s.mu is held. Only
// a flood of receivers (forged, without a key) gets here, once per half a
// table of new receivers.
func (s *sender) forgetOldest() {
	type aged struct {
		id   uint32
		done bool
		at   time.Time
	}
	all := make([]aged, 0, len(s.rx))
	for id, r := range s.rx {
		all = append(all, aged{id, r.state == wire.StateDone, r.lastSeen})
	}
	slices.SortFunc(all, func(a, b aged) int {
		if a.done != b.done {
			if a.done {
				return -1
			}
			return 1
		}
		return a.at.Compare(b.at)
	})
	for _, a := range all[:len(all)-s.cfg.MaxReceivers/2] {
		delete(s.rx, a.id)
		s.dropped++
	}
}

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

// run is the sending loop.
func (s *sender) run(ctx context.Context, p *ipv4.PacketConn) error {
	start := time.Now()
	s.mu.Lock()
	s.lastHeard, s.lastAsk = start, start
	s.mu.Unlock()
	out := &output{p: p, dst: udpAddr(s.cfg.Data), rate: float64(s.cfg.RateBitsPerSec) / 8}
	s.mu.Lock()
	s.annSent, s.annRate = groupKey{-1, 0}, s.cfg.RateBitsPerSec
	s.mu.Unlock()
	// Announces go out from their own goroutine, so that they continue
	// while the source blocks (a leader waiting for its download).
	annCtx, cancelAnn := context.WithCancel(ctx)
	var annWG sync.WaitGroup
	annWG.Add(1)
	go func() {
		defer annWG.Done()
		if err := s.announceLoop(annCtx, p); err != nil {
			s.mu.Lock()
			s.annErr = err
			s.mu.Unlock()
		}
	}()
	stopAnn := func() error {
		cancelAnn()
		annWG.Wait()
		return s.announceErr()
	}
	defer stopAnn()
	cur := groupKey{-1, 0} // first pass position: the next group
	firstPassDone := false
	waitUntil := start.Add(s.cfg.MaxWait)
	for s.cfg.MinReceivers > 0 {
		s.mu.Lock()
		n := len(s.rx)
		s.mu.Unlock()
		if n >= s.cfg.MinReceivers {
			break
		}
		if time.Now().After(waitUntil) {
			s.log.Warn("starting without all receivers", "heard", n, "want", s.cfg.MinReceivers)
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.wake:
		case <-time.After(s.cfg.AnnounceInterval):
		}
		if err := s.announceErr(); err != nil {
			return err
		}
	}
	s.log.Info("first pass", "chunks", s.chunks, "rateBitsPerSec", s.cfg.RateBitsPerSec)
	s.mu.Lock()
	s.annFlags |= wire.FlagSending
	s.mu.Unlock()
	var (
		cache    chunkCache
		lastAIMD = time.Now()
		lastProg = time.Now()
		loCur    = -2 // chunk being sent for the low-priority queue
		loGroup  int
	)
	load := func(chunk int) ([]byte, error) {
		if chunk < 0 {
			return s.blob, nil
		}
		if b, ok := cache.get(chunk); ok {
			return b, nil
		}
		b, err := s.cfg.Source.Chunk(ctx, chunk, cache.spare())
		if err != nil {
			return nil, fmt.Errorf("chunk %d: %w", chunk, err)
		}
		cache.put(chunk, b)
		return b, nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		now := time.Now()
		if err := s.announceErr(); err != nil {
			return err
		}
		if now.Sub(lastAIMD) >= 200*time.Millisecond {
			lastAIMD = now
			s.aimd(now, out)
		}
		if s.cfg.Progress != nil && now.Sub(lastProg) >= 250*time.Millisecond {
			lastProg = now
			s.cfg.Progress(s.snapshot())
		}
		// Pick the next job: repairs, then the first pass, then whole chunks.
		var j job
		s.mu.Lock()
		switch {
		case len(s.hi) > 0:
			k := s.hi[0]
			s.hi = s.hi[1:]
			need := s.hiNeed[k]
			delete(s.hiNeed, k)
			j = job{key: k, shards: s.repairShards(k, need)}
		case !firstPassDone && (cur.group > 0 || s.ready(cur.chunk)):
			l := s.layout(cur.chunk)
			j = job{key: cur, firstPass: true}
			k := l.groupData(cur.group)
			for i := 0; i < k+min(s.cfg.ParityBlocks, k); i++ {
				j.shards = append(j.shards, i)
			}
			s.stats.Chunk = max(cur.chunk, 0)
			cur.group++
			if cur.group >= l.groups() {
				cur = groupKey{cur.chunk + 1, 0}
				for cur.chunk < s.chunks && s.skips(cur.chunk) {
					cur.chunk++
				}
				if cur.chunk >= s.chunks {
					firstPassDone = true
					s.stats.FirstPassDone = true
					s.annFlags |= wire.FlagFirstPassDone
					s.stats.Chunk = s.chunks
					s.log.Info("first pass done", "elapsed", time.Since(start))
				}
			}
		case loCur != -2 || len(s.lo) > 0:
			j = s.loJob(&loCur, &loGroup)
		}
		s.mu.Unlock()
		if j.shards == nil {
			if firstPassDone {
				if done, why := s.finished(now, start); done {
					s.log.Info("session over", "why", why)
					if err := stopAnn(); err != nil {
						return err
					}
					s.mu.Lock()
					s.annFlags |= wire.FlagEnding
					s.mu.Unlock()
					for range 3 {
						if err := s.announce(p); err != nil {
							return err
						}
						time.Sleep(10 * time.Millisecond)
					}
					s.mu.Lock()
					s.stats.Elapsed = time.Since(start)
					s.mu.Unlock()
					return nil
				}
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-s.wake:
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		b, err := load(j.key.chunk)
		if err != nil {
			return err
		}
		if err := s.sendJob(ctx, out, j, b); err != nil {
			return err
		}
		if j.firstPass {
			// The announce names the last group the first pass sent
			// completely.
			s.mu.Lock()
			s.annSent = j.key
			s.mu.Unlock()
		}
	}
}

// loJob returns the next group of the whole-chunk queue; s.mu is held.
func (s *sender) loJob(loCur, loGroup *int) job {
	if *loCur == -2 {
		*loCur = s.lo[0]
		s.lo = s.lo[1:]
		delete(s.loSet, *loCur)
		*loGroup = 0
	}
	l := s.layout(*loCur)
	j := job{key: groupKey{*loCur, *loGroup}}
	k := l.groupData(*loGroup)
	for i := 0; i < k+min(s.cfg.ParityBlocks, k); i++ {
		j.shards = append(j.shards, i)
	}
	*loGroup++
	if *loGroup >= l.groups() {
		*loCur = -2
	}
	return j
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

// finished reports whether the session is over.
func (s *sender) finished(now, start time.Time) (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, r := range s.rx {
		if r.state != wire.StateDone && now.Sub(r.lastSeen) > s.cfg.ReceiverTimeout {
			s.log.Warn("receiver gone", "receiver", id, "silentFor", now.Sub(r.lastSeen))
			delete(s.rx, id)
			s.dropped++
		} else if r.state == wire.StateFailed {
			s.log.Warn("receiver failed", "receiver", id)
			delete(s.rx, id)
			s.dropped++
		}
	}
	if now.Sub(s.lastHeard) > s.cfg.MaxWait {
		return true, fmt.Sprintf("nothing heard for %v", s.cfg.MaxWait)
	}
	for _, r := range s.rx {
		if r.state != wire.StateDone {
			return false, ""
		}
	}
	if len(s.rx)+s.dropped < s.cfg.MinReceivers && now.Sub(start) < s.cfg.MaxWait {
		return false, ""
	}
	if now.Sub(s.lastAsk) < s.cfg.Linger {
		return false, ""
	}
	return true, fmt.Sprintf("%d receivers done", len(s.rx))
}

// rateHold is how long the rate stays put after a decrease: about two
// status intervals, so that the reports reflect the new rate.
const rateHold = 500 * time.Millisecond

// aimd adapts the rate to the loss the receivers report.
func (s *sender) aimd(now time.Time, out *output) {
	s.mu.Lock()
	defer s.mu.Unlock()
	worst := 0
	for _, r := range s.rx {
		if r.state == wire.StateReceiving && now.Sub(r.lastSeen) < time.Second {
			worst = max(worst, r.loss)
		}
	}
	maxRate := float64(s.cfg.RateBitsPerSec) / 8
	s.log.Debug("aimd", "worstLossPermille", worst, "rateBitsPerSec", int64(out.rate*8))
	if now.Sub(s.lastDecrease) < rateHold {
		// Reports still describe the rate before the last decrease.
		return
	}
	if worst > s.cfg.LossThresholdPermille {
		// What got through, a little less: congestion loss says how
		// much the path carries. Never below 1 Mbit/s.
		out.rate = max(out.rate*(1-float64(worst)/1000)*0.9, 125e3)
		s.lastDecrease = now
		for _, r := range s.rx {
			r.loss = 0 // one decrease per report
		}
	} else {
		out.rate = min(out.rate+maxRate/20, maxRate)
	}
	s.stats.RateBitsPerSec = int64(out.rate * 8)
	s.annRate = s.stats.RateBitsPerSec
}

func (s *sender) announceErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.annErr
}

// announceLoop announces the session every AnnounceInterval until ctx is
// done.
func (s *sender) announceLoop(ctx context.Context, p *ipv4.PacketConn) error {
	t := time.NewTicker(s.cfg.AnnounceInterval)
	defer t.Stop()
	for {
		if err := s.announce(p); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// announce sends one announce of the current state.
func (s *sender) announce(p *ipv4.PacketConn) error {
	s.mu.Lock()
	a := wire.Announce{
		ID: s.cfg.Image.ID, ManifestBytes: uint32(len(s.blob)), Chunks: uint32(s.chunks),
		BlockBytes: uint16(s.cfg.BlockBytes), GroupBlocks: uint16(s.cfg.GroupBlocks),
		ParityBlocks: uint16(s.cfg.ParityBlocks), Flags: s.annFlags,
		CursorChunk: wireChunk(s.annSent.chunk), CursorGroup: uint16(s.annSent.group),
		RateBitsPerSec: uint64(s.annRate), Data: s.cfg.Data, Name: s.cfg.Image.Manifest.Name,
	}
	s.mu.Unlock()
	return s.stamps.Do(func(st fresh.Stamp) error {
		b, err := wire.AppendAnnounce(nil, s.hdr, &a, st, s.cfg.Key)
		if err != nil {
			return err
		}
		if _, err := p.WriteTo(b, nil, udpAddr(s.cfg.Control)); err != nil {
			return fmt.Errorf("announce: %w", err)
		}
		return nil
	})
}

func wireChunk(chunk int) uint32 {
	if chunk < 0 {
		return wire.ManifestChunk
	}
	return uint32(chunk)
}

// sendJob builds the job's datagrams and sends them, paced.
func (s *sender) sendJob(ctx context.Context, out *output, j job, stored []byte) error {
	l := s.layout(j.key.chunk)
	if len(stored) != l.storedBytes {
		return fmt.Errorf("chunk %d: source gave %d bytes, manifest says %d", j.key.chunk, len(stored), l.storedBytes)
	}
	kd := l.groupData(j.key.group)
	var parity [][]byte
	for _, sh := range j.shards {
		if sh >= kd {
			if p, ok := s.parity.get(j.key); ok {
				parity = p
				break
			}
			pad := make([]byte, l.blockBytes)
			shards := groupShards(l, stored, j.key.group, pad)
			enc, err := s.codecs.get(kd)
			if err != nil {
				return err
			}
			parity = make([][]byte, kd)
			for i := range parity {
				parity[i] = make([]byte, l.blockBytes)
			}
			if err := enc.Encode(append(shards, parity...)); err != nil {
				return fmt.Errorf("chunk %d group %d: parity: %w", j.key.chunk, j.key.group, err)
			}
			s.parity.put(j.key, parity)
			break
		}
	}
	var flags uint8
	if j.firstPass {
		flags = wire.DataFirstPass
	}
	var dataBytes int64
	for _, sh := range j.shards {
		d := wire.Data{Chunk: wireChunk(j.key.chunk), Group: uint16(j.key.group), Shard: uint16(sh), Flags: flags}
		if sh < kd {
			off := l.offset(j.key.group, sh)
			d.Block = stored[off : off+l.blockLen(j.key.group, sh)]
		} else {
			d.Block = parity[sh-kd]
		}
		dataBytes += int64(len(d.Block))
		d.Seq = out.seq
		out.seq++
		if err := out.add(ctx, wire.AppendData(out.buf(), s.hdr, &d)); err != nil {
			return err
		}
	}
	if err := out.flush(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	s.stats.DataBytes += dataBytes
	if j.firstPass {
		s.stats.FirstPassBytes += dataBytes
	} else {
		s.stats.RepairBytes += dataBytes
	}
	s.stats.SentBytes, s.stats.Datagrams = out.sentBytes, out.datagrams
	s.mu.Unlock()
	return nil
}

// output batches datagrams and paces them with a token bucket.
type output struct {
	p    *ipv4.PacketConn
	dst  net.Addr
	rate float64 // bytes per second

	msgs      []ipv4.Message
	bufs      [][]byte
	n         int
	tokens    float64
	last      time.Time
	sentBytes int64
	datagrams int64
	seq       uint32
}

const batch = 16

func (o *output) buf() []byte {
	if o.bufs == nil {
		o.bufs = make([][]byte, batch)
		o.msgs = make([]ipv4.Message, batch)
		for i := range o.bufs {
			o.bufs[i] = make([]byte, 0, 2048)
		}
	}
	return o.bufs[o.n][:0]
}

func (o *output) add(ctx context.Context, b []byte) error {
	o.bufs[o.n] = b
	o.msgs[o.n] = ipv4.Message{Buffers: [][]byte{b}, Addr: o.dst}
	o.n++
	if o.n == batch {
		return o.flush(ctx)
	}
	return nil
}

func (o *output) flush(ctx context.Context) error {
	if o.n == 0 {
		return nil
	}
	var size float64
	for _, m := range o.msgs[:o.n] {
		size += float64(len(m.Buffers[0]) + wireOverheadBytes)
	}
	// Token bucket: up to 20 ms of burst, so that a sender not scheduled
	// for a while catches up (the link's queue absorbs it).
	for {
		now := time.Now()
		if !o.last.IsZero() {
			o.tokens = min(o.tokens+now.Sub(o.last).Seconds()*o.rate, max(o.rate*0.020, size))
		}
		o.last = now
		if o.tokens >= size {
			break
		}
		wait := time.Duration((size - o.tokens) / o.rate * float64(time.Second))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	o.tokens -= size
	msgs := o.msgs[:o.n]
	for len(msgs) > 0 {
		n, err := o.p.WriteBatch(msgs, 0)
		if err != nil {
			if errors.Is(err, syscall.ENOBUFS) {
				// The qdisc is full: back off a little and retry.
				time.Sleep(time.Millisecond)
				continue
			}
			return fmt.Errorf("send data: %w", err)
		}
		for _, m := range msgs[:n] {
			o.sentBytes += int64(len(m.Buffers[0]))
		}
		o.datagrams += int64(n)
		msgs = msgs[n:]
	}
	o.n = 0
	return nil
}

// parityCache keeps the parity of the groups repaired lately, so that
// repeated repairs of a group are not encoded again.
type parityCache struct {
	m     map[groupKey][][]byte
	order []groupKey
}

const parityCacheGroups = 64

func (c *parityCache) get(k groupKey) ([][]byte, bool) {
	p, ok := c.m[k]
	return p, ok
}

func (c *parityCache) put(k groupKey, p [][]byte) {
	if c.m == nil {
		c.m = make(map[groupKey][][]byte)
	}
	if len(c.order) >= parityCacheGroups {
		delete(c.m, c.order[0])
		c.order = c.order[1:]
	}
	c.m[k] = p
	c.order = append(c.order, k)
}

// chunkCache keeps the last few chunks sent: repairs of the chunks just
// sent interleave with the first pass and would otherwise read them again.
type chunkCache struct {
	chunks []int
	bufs   [][]byte
	free   []byte
}

const cacheChunks = 4

func (c *chunkCache) get(chunk int) ([]byte, bool) {
	for i, ch := range c.chunks {
		if ch == chunk {
			return c.bufs[i], true
		}
	}
	return nil, false
}

// spare returns a buffer to read the next chunk into.
func (c *chunkCache) spare() []byte {
	if len(c.chunks) < cacheChunks {
		return nil
	}
	return c.free
}

func (c *chunkCache) put(chunk int, b []byte) {
	if len(c.chunks) == cacheChunks {
		// The oldest goes; its buffer was handed out by spare.
		c.chunks, c.bufs = c.chunks[1:], c.bufs[1:]
	}
	c.chunks = append(c.chunks, chunk)
	c.bufs = append(c.bufs, b)
	if len(c.chunks) == cacheChunks {
		c.free = c.bufs[0][:0]
	}
}
