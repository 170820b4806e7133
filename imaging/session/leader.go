package session

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/imaging/mcast"
)

// lead is the leader: it downloads what it misses from the server,
// announces, and multicasts to the nodes that request the image (each
// chunk once verified, or after the whole download with RelayAfter). It
// yields to a leader of a higher epoch (or of the same epoch and a lower
// node ID), and ends once it holds the whole image, no data session runs
// and nobody asked for Linger. A leader that took over has its first pass
// skip the chunks it held then: its followers, fed by the same multicast,
// hold most of them, and ask for the others whole. A probe (a complete
// node that heard requests that may be replays) ends after a few
// announces unless a requester echoes one.
func (n *node) lead(ctx context.Context, epoch uint32, takeover, probe bool) (next, error) {
	img := n.image()
	if err := n.openWriter(img); err != nil {
		return next{}, err
	}
	group := n.groupFor(img.ID, epoch)
	n.setRole(RoleLeader, epoch, 0)
	n.mu.Lock()
	if !probe {
		n.st.Led++
	}
	n.maxEpoch = max(n.maxEpoch, epoch)
	n.leadState = &leading{epoch: epoch, group: group}
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		n.leadState = nil
		n.mu.Unlock()
	}()
	var skip []bool
	if takeover {
		w := n.writer()
		skip = make([]bool, len(img.Chunks))
		for i := range skip {
			skip[i] = w.Has(i)
		}
	}
	n.log.Info("leading", "epoch", epoch, "group", group, "held", n.held(), "chunks", len(img.Chunks), "relay", n.cfg.Relay)

	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	dlDone := make(chan error, 1)
	downloading := !n.complete()
	if downloading {
		wg.Add(1)
		go func() { defer wg.Done(); dlDone <- n.download(lctx) }()
	}
	sendDone := make(chan error, 1)
	sending := false
	var session uint32
	setState := func() {
		var flags uint16
		if sending {
			flags |= FlagSending
		}
		n.mu.Lock()
		n.leadState = &leading{epoch: epoch, group: group, flags: flags, session: session}
		n.mu.Unlock()
	}
	startSend := func() {
		sending = true
		session = newSession()
		setState()
		wg.Add(1)
		go func() { defer wg.Done(); sendDone <- n.multicast(lctx, img, group, session, skip) }()
	}
	asked := !probe
	leaderStart := time.Now()
	lastAsked := leaderStart
	var lastAnn time.Time
	tick := time.NewTicker(n.cfg.AnnounceInterval / 4)
	defer tick.Stop()
	for {
		now := time.Now()
		if now.Sub(lastAnn) >= n.cfg.AnnounceInterval {
			lastAnn = now
			var flags uint16
			if sending {
				flags |= FlagSending
			}
			n.send(Msg{Type: TypeAnnounce, Epoch: epoch, Flags: flags, Group: group, Session: session})
		}
		// Two leaders of one image: the lower epoch, or the higher node
		// ID, yields and follows. It keeps what it has.
		if l, ok := n.bestLeader(now); ok && l.beats(epoch, n.cfg.NodeID) {
			n.log.Info("another leader wins; following it", "leader", l.node, "epoch", l.epoch, "ourEpoch", epoch)
			cancel()
			wg.Wait()
			return next{state: stFollow, leader: l}, nil
		}
		if n.askedSince(lastAsked, epoch) {
			lastAsked = now
			if !asked {
				asked = true
				n.mu.Lock()
				n.st.Led++
				n.mu.Unlock()
			}
			lastAnn = time.Time{} // answer at once: the announce names the group
			if !sending && (n.cfg.Relay == RelayStream || n.complete()) {
				n.log.Info("requested: multicasting", "group", group, "held", n.held())
				startSend()
			}
		}
		if !downloading && !sending && (now.Sub(lastAsked) > n.cfg.Linger || !asked && now.Sub(leaderStart) > 3*n.cfg.AnnounceInterval) {
			for range 3 {
				n.send(Msg{Type: TypeAnnounce, Epoch: epoch, Flags: FlagLeaving, Group: group})
				time.Sleep(10 * time.Millisecond)
			}
			n.log.Info("leader done", "epoch", epoch)
			return next{state: stDone}, nil
		}
		select {
		case <-ctx.Done():
			return next{}, ctx.Err()
		case err := <-dlDone:
			downloading = false
			lastAsked = time.Now() // linger from here
			if err != nil {
				// Tell the followers, so that they need not wait for
				// the timeout to notice.
				for range 3 {
					n.send(Msg{Type: TypeAnnounce, Epoch: epoch, Flags: FlagLeaving, Group: group})
				}
				return next{}, err
			}
			if err := n.finish(); err != nil {
				return next{}, err
			}
		case err := <-sendDone:
			sending, session = false, 0
			setState()
			lastAsked = time.Now() // linger from here
			if err != nil && ctx.Err() == nil {
				n.log.Warn("multicast session", "err", err)
				n.setErr(err)
			}
		case <-tick.C:
		}
	}
}

// multicast runs one data session on group (imaging/mcast's sender), with
// the chunks of the download as its source.
func (n *node) multicast(ctx context.Context, img *imaging.Image, group netip.AddrPort, session uint32, skip []bool) error {
	var conn net.PacketConn
	if err := n.cfg.Netns(func() error {
		var err error
		conn, err = mcast.ListenGroup(ctx, n.cfg.Iface, group, mcast.GroupOptions{})
		return err
	}); err != nil {
		return fmt.Errorf("data session: %w", err)
	}
	defer conn.Close()
	var last int64
	st, err := mcast.Send(ctx, conn, mcast.SenderConfig{
		Image: img, Source: leaderSource{n, skip}, Data: dataGroup(group), Control: group,
		RateBitsPerSec: n.cfg.RateBitsPerSec, Session: session, BlockBytes: mcast.BlockBytesForInterface(n.cfg.Iface),
		Key: n.cfg.Key, Quiet: true, Clock: n.cfg.Clock,
		MaxWait: 2 * n.cfg.DataTimeout,
		// Late requesters start a new data session: the transport
		// need not wait long once its receivers are done.
		Linger:      n.cfg.AnnounceInterval,
		GatherQuiet: max(n.cfg.GatherQuiet, 0), GatherMax: n.cfg.GatherMax,
		Logger: n.log.With("part", "sender"),
		Progress: func(s mcast.SenderStats) {
			n.toPeers.Add(s.DataBytes - last)
			last = s.DataBytes
		},
	})
	if err != nil {
		return err
	}
	n.log.Info("multicast session over", "receivers", st.Receivers, "done", st.Done, "sentBytes", st.DataBytes, "elapsed", st.Elapsed.Round(time.Millisecond))
	return nil
}

// leaderSource gives the multicast the chunks the leader holds, waiting for
// the ones still being downloaded.
type leaderSource struct {
	n    *node
	skip []bool // chunks the first pass skips
}

// Skip implements mcast.SkipSource.
func (s leaderSource) Skip(i int) bool { return i >= 0 && i < len(s.skip) && s.skip[i] }

// Ready implements mcast.ReadySource: while the download has not brought
// the next chunk, the sender serves late joiners' whole-chunk requests.
func (s leaderSource) Ready(i int) bool { return s.n.writer().Has(i) }

// Chunk implements mcast.Source: from the cache of the download, else read
// back from the target and compressed again, else (when that does not give
// the stored bytes the manifest names) from the server.
func (s leaderSource) Chunk(ctx context.Context, i int, buf []byte) ([]byte, error) {
	n := s.n
	w := n.writer()
	img := w.Image()
	if i < 0 || i >= len(img.Chunks) {
		return nil, fmt.Errorf("chunk %d: out of range", i)
	}
	for !w.Has(i) {
		n.mu.Lock()
		ch := n.changed
		n.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ch:
		case <-time.After(100 * time.Millisecond):
		}
	}
	n.mu.Lock()
	b, ok := n.cache[i]
	n.mu.Unlock()
	if ok {
		return append(buf[:0], b...), nil
	}
	ref := img.Chunks[i]
	if plain, err := w.ReadPlain(i, nil); err == nil {
		for _, c := range codecs {
			out, cerr := c.Compress(buf[:0], plain)
			if cerr == nil && int64(len(out)) == ref.StoredBytes {
				return out, nil
			}
			buf = out
		}
	}
	out, err := n.cfg.Server.Chunk(ctx, ref.Chunk, buf[:0])
	if err != nil {
		return nil, fmt.Errorf("chunk %d: not in memory, not the same once compressed again, and from the server: %w", i, err)
	}
	n.fromServer.Add(int64(len(out)))
	return out, nil
}

// codecs compress chunks read back from a target as imaging.Create may
// have: at its default level first, then at zstd's default (the level of
// images made before Create's changed). The transport carries a chunk's
// stored size, so a frame of another size cannot stand in for it; one of
// the same size is as good, since receivers check the decoded hash.
var codecs = []*imaging.Codec{imaging.NewCodec(imaging.CreateLevel), imaging.NewCodec(0)}

// download fetches the chunks the target misses from the server, Workers at
// a time, in order, keeping the latest in the cache for the multicast. A
// chunk that fails is tried again after ServerRetry; the download fails
// when nothing came from the server for ServerTimeout.
func (n *node) download(ctx context.Context) error {
	w := n.writer()
	img := w.Image()
	lastGood := time.Now()
	var mu sync.Mutex
	for {
		missing := w.Missing()
		if len(missing) == 0 {
			return nil
		}
		g, gctx := errgroup.WithContext(ctx)
		work := make(chan int)
		var lastErr error
		g.Go(func() error {
			defer close(work)
			for _, i := range missing {
				select {
				case work <- i:
				case <-gctx.Done():
					return nil
				}
			}
			return nil
		})
		for range n.cfg.Workers {
			g.Go(func() error {
				var buf []byte
				for i := range work {
					if w.Has(i) {
						continue
					}
					var err error
					buf, err = n.cfg.Server.Chunk(gctx, img.Chunks[i].Chunk, buf[:0])
					if err == nil {
						n.fromServer.Add(int64(len(buf)))
						err = w.WriteStored(i, buf)
					}
					if err != nil {
						if gctx.Err() != nil {
							return nil
						}
						mu.Lock()
						lastErr = fmt.Errorf("chunk %d from %s: %w", i, n.cfg.Server, err)
						mu.Unlock()
						continue
					}
					mu.Lock()
					lastGood = time.Now()
					mu.Unlock()
					n.cached(i, buf)
				}
				return nil
			})
		}
		_ = g.Wait()
		if err := ctx.Err(); err != nil {
			return err
		}
		if lastErr == nil {
			continue
		}
		n.setErr(lastErr)
		mu.Lock()
		since := time.Since(lastGood)
		mu.Unlock()
		if since > n.cfg.ServerTimeout {
			return fmt.Errorf("%w: nothing for %v: %w", ErrServer, since.Round(time.Second), lastErr)
		}
		n.log.Warn("server fetch failed; retrying", "err", lastErr, "missing", w.Remaining())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(n.cfg.ServerRetry):
		}
	}
}

// cached keeps chunk i's stored bytes for the multicast and wakes whoever
// waits for a chunk.
func (n *node) cached(i int, stored []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.cache[i]; !ok {
		if len(n.cacheFIFO) >= n.cfg.CacheChunks {
			delete(n.cache, n.cacheFIFO[0])
			n.cacheFIFO = n.cacheFIFO[1:]
		}
		n.cache[i] = append([]byte(nil), stored...)
		n.cacheFIFO = append(n.cacheFIFO, i)
	}
	close(n.changed)
	n.changed = make(chan struct{})
}

// newSession draws a data session's transport session number (not 0).
func newSession() uint32 {
	for {
		if s := mrand.Uint32(); s != 0 {
			return s
		}
	}
}
