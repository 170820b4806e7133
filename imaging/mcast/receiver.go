package mcast

// receiver.go: the receiver's API (Sink, ReceiverConfig, ReceiverStats, its errors, Receive) and the state Receive's goroutines share.

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"

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

// ReceiverConfig configures Receive. Fields left zero take the values of
// DefaultReceiverConfig.
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
	// NoGRO reads data datagrams one by one even where the kernel could
	// hand over a run of them per read (UDP_GRO, the default where it is
	// offered: one read and one wakeup per run instead of per datagram).
	NoGRO bool
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
	// StatusesPerSec is the receivers' statuses the LAN may carry each
	// second (default 500): a receiver that hears N others sends one every
	// (N+1)/StatusesPerSec seconds, from 250 ms to 1.5 s (status_rate.go).
	// A change of state (joined, done, failed) is sent at once.
	StatusesPerSec int
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
	CoalescedReads int64 // data reads that carried a run of datagrams (UDP GRO)
	// SenderGathering: the sender's last announce said its first pass
	// waits for more receivers (SenderConfig.GatherQuiet).
	SenderGathering bool
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

// receiver is the state shared by Receive's goroutines.
type receiver struct {
	cfg    ReceiverConfig
	log    *slog.Logger
	codecs codecs
	ctrl   *ipv4.PacketConn
	stamps *fresh.Stamper
	guard  *fresh.Guard

	mu          sync.Mutex
	ann         wire.Announce
	hdr         wire.Header // the session's header, set by the first announce
	joined      bool
	src         netip.Addr    // the sender's address: announces and data come from it
	nonce       uint64        // the sender's nonce: its announces carry it
	annCh       chan struct{} // closed at the first announce
	heard       time.Time     // last datagram of the session
	ending      bool
	img         *imaging.Image
	opening     bool // the sink is being opened
	sink        Sink
	chunks      int
	partials    map[int]*partial
	writing     map[int]bool
	written     []bool
	nwritten    int
	wholeDue    map[int]time.Time // whole-chunk requests: when due next
	cursor      groupKey          // first pass position seen in data
	seq         int64             // data datagrams of the session received
	lastData    time.Time         // when the last one came
	fpDoneAt    time.Time         // when the first announce saying the first pass is done came
	sendingAt   time.Time         // when the first announce saying data flows came
	gatherHeard time.Time         // the last announce saying the first pass gathers
	free        [][]byte          // chunk buffers to reuse
	blocks      [][]byte          // parity block buffers to reuse
	rsShards    [][]byte          // decode's scratch: a group's shards
	dataRaw     syscall.RawConn   // the data socket, to see whether data waits in it
	backlog     bool              // data was waiting in the socket at this tick
	seqHi       uint32            // highest data datagram number seen
	seqOK       bool
	lossExp     int64 // datagrams expected since the last status
	lossGot     int64
	lossNoRoom  int64        // datagrams dropped for want of room since then
	have        []wire.Range // what the target held when opened, for the sender
	haveSent    int          // have messages sent
	writeQ      chan *partial
	fatal       error
	finished    chan struct{}
	stats       ReceiverStats
	storedSize  int64
	peers       map[uint32]time.Time // other receivers, by their last status
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
		peers: make(map[uint32]time.Time),
	}
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer closeOnDone(ctx, ctrl)()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() { defer wg.Done(); r.readLoop(ctx, ctrl, false) }()

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
	go func() { defer wg.Done(); r.readLoop(ctx, dc, true) }()
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
	st.SenderGathering = r.ann.Flags&wire.FlagGathering != 0
	return st
}

// fail records the first fatal error; r.mu is held.
func (r *receiver) fail(err error) {
	if r.fatal == nil {
		r.fatal = err
	}
}
