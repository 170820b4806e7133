package mcast

// sender.go: the sender's API (Source, SenderConfig, SenderStats, Send) and the state Send's goroutines share.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
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

// SenderConfig configures Send. Fields left zero take the values of
// DefaultSenderConfig.
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
	// GatherQuiet, when set, holds a short first pass (at most a quarter
	// of the image once the receivers said what they hold) after the
	// manifest blob until no receiver has joined for GatherQuiet (or
	// less, once receivers show their pace), for at most GatherMax
	// (default 4 GatherQuiet): one pass then serves receivers that arrive
	// close together (gather.go). Off by default.
	GatherQuiet, GatherMax time.Duration
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
	Statuses       int64 // status datagrams heard
	Malformed      int64 // control datagrams that did not parse
	Refused        int64 // control datagrams unauthenticated, stale or replayed
	Receivers      int   // receivers heard of
	Done           int   // receivers that reported done
	Dropped        int   // receivers forgotten (timed out or failed)
	FirstPassDone  bool
	// HeldChunks are the chunks the first pass did not send because every
	// receiver said its target held them already.
	HeldChunks     int
	Chunk, Chunks  int // first pass position
	RateBitsPerSec int64
}

type rxInfo struct {
	state    uint8
	lastSeen time.Time
	loss     int
	status   wire.Status
	have     []wire.Range // the chunks it said its target held (a have)
}

// holds reports whether r said it holds chunk i (or is done).
func (r *rxInfo) holds(i int) bool {
	if r.state == wire.StateDone {
		return true
	}
	_, found := slices.BinarySearchFunc(r.have, uint64(i), func(rg wire.Range, c uint64) int {
		switch {
		case uint64(rg.Start)+uint64(rg.Count) <= c:
			return -1
		case uint64(rg.Start) > c:
			return 1
		}
		return 0
	})
	return found
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
	gather   gatherState
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
	go func() {
		err := s.readControl(ctx, conn)
		if err != nil {
			// Deaf to its receivers, the sender cannot serve them: the
			// session ends, with this error.
			cancel()
		}
		readErr <- err
	}()
	err := s.run(ctx, ipv4.NewPacketConn(conn))
	cancel()
	// readControl returns nil for the shutdown (ctx done, conn closed):
	// an error is the control socket's own, and why run ended.
	if rerr := <-readErr; rerr != nil {
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
