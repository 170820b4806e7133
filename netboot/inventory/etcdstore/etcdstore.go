// Package etcdstore keeps shoal serve's inventory in etcd, so that several
// servers (one per LAN) share one list of machines, their last reports and
// their history.
//
// Key layout (records.go; docs/netboot.md, "Inventory on etcd"):
//
//	/shoal/machines/<mac>                        {"image":"debian-12","disk":"/dev/vda","action":"reimage"}
//	/shoal/status/<mac>                          the last report and times (StatusRecord)
//	/shoal/events/<mac>/<unixnano>-<server>-<n>  one accepted report (Event), the newest EventsKept per machine
//
// (/shoal/ is Config.Prefix's default.)
//
// Every server keeps a cache of the machines and statuses, loaded at Open
// and kept current by a watch: an edit through any server, or an etcdctl
// put in this layout, takes effect on every server as soon as the watch
// delivers it (milliseconds). Lookups and boots are answered from the
// cache alone. Reports update the cache at once and are written by one
// writer goroutine from a bounded in-memory queue: while etcd is
// unreachable, known machines still boot as the cache says, unknown ones
// follow the server's unknown-machine policy, and reports wait in the
// queue until etcd is back. A verified success turns a machine local by
// a transaction that compares the key's mod revision, so two servers never
// overwrite each other or an operator's edit.
//
// Per-boot credentials are not here: they stay in the server that issued
// them (netboot/httpd), never in etcd.
package etcdstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/shoal-project/shoal/netboot/api"
	"github.com/shoal-project/shoal/netboot/inventory"
)

// Config says which etcd to use and how.
type Config struct {
	Endpoints []string // client URLs, http:// or https://HOST:PORT (ParseURL)
	// TLS is used for https:// endpoints (nil: the system's roots, no
	// client certificate).
	TLS *tls.Config
	// Prefix holds every key (default DefaultPrefix, "/shoal/"): one
	// cluster can hold separate inventories under separate prefixes.
	Prefix string
	// Unknown is the unknown-machine policy: inventory.Ignore or the image
	// unknown machines get. It is this server's own, not in etcd.
	Unknown string
	// Server names this server in status records and event keys; default
	// HOSTNAME.PID.
	Server string
	Log    *slog.Logger
	// RequestTimeout bounds each etcd request (default 2 s); OpenTimeout
	// the first load at Open (default 5 s).
	RequestTimeout, OpenTimeout time.Duration
	// RetryInterval is the wait between writes while etcd is down, and
	// between health probes while it is up (default 500 ms).
	RetryInterval time.Duration
	// MaxQueuedEvents bounds the reports waiting to be written to the
	// history (default 10000): past it the oldest are dropped (the last
	// status of each machine is always kept).
	MaxQueuedEvents int
	// EventsKept is how many events of each machine's history are kept
	// in etcd (default 100).
	EventsKept int
}

func (c Config) withDefaults() Config {
	if c.Unknown == "" {
		c.Unknown = inventory.Ignore
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Server == "" {
		h, _ := os.Hostname()
		c.Server = fmt.Sprintf("%s.%d", h, os.Getpid())
	}
	c.Server = strings.NewReplacer("/", "_", " ", "_").Replace(c.Server)
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 2 * time.Second
	}
	if c.OpenTimeout <= 0 {
		c.OpenTimeout = 5 * time.Second
	}
	if c.RetryInterval <= 0 {
		c.RetryInterval = 500 * time.Millisecond
	}
	if c.MaxQueuedEvents <= 0 {
		c.MaxQueuedEvents = 10000
	}
	if c.EventsKept <= 0 {
		c.EventsKept = 100
	}
	return c
}

// Store is an inventory in etcd. It implements inventory.Backend.
type Store struct {
	cfg    Config
	keys   Layout
	cli    *clientv3.Client
	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{}

	mu sync.Mutex
	// known are the machines in etcd, as the watch last saw them.
	known map[string]*knownMachine
	// admitted are unknown machines let in by the policy that reported:
	// this server's alone, until a verified success writes them to etcd.
	admitted map[string]*api.Machine
	// pending are unknown machines let in by the policy that fetched a
	// boot script but never reported (capped, expiring, as in the file
	// store).
	pending map[string]api.Machine
	status  map[string]StatusRecord // from etcd and from this server's reports
	booted  map[string]bootedWith
	q       queue
	// flushing is the part of the queue a flush is writing now.
	flushing queue
	down     bool
	seq      uint64
	dropped  int // events dropped from a full queue since the store went down
}

type knownMachine struct {
	MachineRecord
	key    string // as written (an operator may spell the MAC otherwise)
	modRev int64
}

type bootedWith struct{ image, disk string }

var _ inventory.Backend = (*Store)(nil)

// ErrConfig is wrapped by Open's errors about its Config.
var ErrConfig = errors.New("etcdstore: bad config")

// Open connects to etcd, loads the inventory and starts the watch and the
// writer. It fails when etcd does not answer within OpenTimeout: a server
// that never had the inventory has nothing to boot from.
func Open(cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if len(cfg.Endpoints) == 0 {
		return nil, fmt.Errorf("%w: no endpoints", ErrConfig)
	}
	var plain, secure int
	for _, ep := range cfg.Endpoints {
		if strings.HasPrefix(ep, "https://") {
			secure++
		} else {
			plain++
		}
	}
	if plain > 0 && secure > 0 {
		return nil, fmt.Errorf("%w: endpoints %v mix http and https", ErrConfig, cfg.Endpoints)
	}
	tlsConf := cfg.TLS
	if secure > 0 && tlsConf == nil {
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if plain > 0 {
		tlsConf = nil
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		TLS:                  tlsConf,
		Logger:               zap.NewNop(),
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		// gRPC's default waits up to 2 min between reconnections: a
		// cluster that is back is used again within about a second.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("etcdstore: client for %v: %w", cfg.Endpoints, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{cfg: cfg, keys: Layout{cfg.Prefix}, cli: cli, log: cfg.Log, cancel: cancel, wake: make(chan struct{}, 1),
		known: map[string]*knownMachine{}, admitted: map[string]*api.Machine{}, pending: map[string]api.Machine{},
		status: map[string]StatusRecord{}, booted: map[string]bootedWith{}, q: newQueue(), flushing: newQueue()}
	if plain > 0 {
		s.log.Warn("INSECURE: the inventory store is reached without TLS: anyone on the path to etcd can read and change which machines are reimaged (etcds:// and --store-ca, docs/security.md)",
			"endpoints", strings.Join(cfg.Endpoints, ","))
	}
	lctx, lcancel := context.WithTimeout(ctx, cfg.OpenTimeout)
	rev, err := s.load(lctx)
	lcancel()
	if err != nil {
		cancel()
		cli.Close()
		return nil, fmt.Errorf("etcdstore: load from %v: %w", cfg.Endpoints, err)
	}
	s.log.Info("inventory on etcd", "endpoints", strings.Join(cfg.Endpoints, ","), "machines", len(s.known), "revision", rev, "server", cfg.Server)
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.watchLoop(ctx, rev) }()
	go func() { defer s.wg.Done(); s.writeLoop(ctx) }()
	return s, nil
}

// Close stops the watch, writes what is queued (for at most one
// RequestTimeout) and disconnects.
func (s *Store) Close() error {
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	s.wg.Wait()
	s.cancel = nil
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	err := s.flush(ctx)
	if n := s.Queued(); n > 0 {
		s.log.Warn("inventory store: reports not written at close", "queued", n, "err", err)
	}
	if cerr := s.cli.Close(); cerr != nil && !errors.Is(cerr, context.Canceled) {
		return fmt.Errorf("etcdstore: close: %w", cerr)
	}
	return nil
}

// Lookup returns the machine from the cache (etcd's, as last watched), or
// the unknown-machine policy's entry. It never waits for etcd.
func (s *Store) Lookup(mac string) (api.Machine, error) {
	mac, err := inventory.CanonicalMAC(mac)
	if err != nil {
		return api.Machine{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.machineLocked(mac)
}

// machineLocked composes mac's machine: its entry and its status.
func (s *Store) machineLocked(mac string) (api.Machine, error) {
	var m api.Machine
	if k, ok := s.known[mac]; ok {
		m = api.Machine{MAC: mac, Action: k.Action, Image: k.Image, Disk: k.Disk, Known: true}
	} else if a, ok := s.admitted[mac]; ok {
		m = *a
	} else if s.cfg.Unknown == inventory.Ignore {
		return api.Machine{}, fmt.Errorf("%s: %w", mac, inventory.ErrUnknown)
	} else if p, ok := s.pending[mac]; ok {
		return p, nil
	} else {
		return api.Machine{MAC: mac, Action: api.Reimage, Image: s.cfg.Unknown}, nil
	}
	if st, ok := s.status[mac]; ok {
		m.Status, m.FirstSeen, m.LastBoot, m.LastReport = st.Status, st.FirstSeen, st.LastBoot, st.LastReport
	}
	return m, nil
}

// MarkBoot records a boot script fetch: in the cache at once, in etcd by
// the writer.
func (s *Store) MarkBoot(mac string, now time.Time) {
	mac, err := inventory.CanonicalMAC(mac)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.machineLocked(mac)
	if err != nil {
		return
	}
	s.booted[mac] = bootedWith{m.Image, m.Disk}
	if _, isKnown := s.known[mac]; !isKnown {
		if _, isAdmitted := s.admitted[mac]; !isAdmitted {
			s.addPendingLocked(mac, now)
			return
		}
	}
	st := s.status[mac]
	if st.FirstSeen.IsZero() {
		st.FirstSeen = now
	}
	st.LastBoot = now
	st.Server = s.cfg.Server
	s.status[mac] = st
	s.q.status[mac] = st
	s.kick()
}

// addPendingLocked records an unknown machine's boot script fetch in the
// capped, expiring pending set (the oldest goes when it is full).
func (s *Store) addPendingLocked(mac string, now time.Time) {
	p, ok := s.pending[mac]
	if !ok {
		for k, o := range s.pending {
			if now.Sub(o.LastBoot) > inventory.PendingTTL {
				delete(s.pending, k)
			}
		}
		if len(s.pending) >= inventory.MaxPending {
			oldest := ""
			for k, o := range s.pending {
				if oldest == "" || o.LastBoot.Before(s.pending[oldest].LastBoot) {
					oldest = k
				}
			}
			delete(s.pending, oldest)
		}
		p = api.Machine{MAC: mac, Action: api.Reimage, Image: s.cfg.Unknown, FirstSeen: now}
	}
	p.LastBoot = now
	s.pending[mac] = p
}

// Report records a status report: the cache at once, etcd's status key,
// history and (for a verified success) the turn to local by the writer.
func (s *Store) Report(mac string, st api.Status, now time.Time) (api.Machine, error) {
	mac, err := inventory.CanonicalMAC(mac)
	if err != nil {
		return api.Machine{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.machineLocked(mac)
	if err != nil {
		return api.Machine{}, err
	}
	k, isKnown := s.known[mac]
	if !isKnown {
		if _, ok := s.admitted[mac]; !ok {
			a := m
			a.Status, a.LastReport = api.Status{}, time.Time{}
			s.admitted[mac] = &a
			if !a.FirstSeen.IsZero() || !a.LastBoot.IsZero() {
				s.status[mac] = StatusRecord{FirstSeen: a.FirstSeen, LastBoot: a.LastBoot}
			}
			delete(s.pending, mac)
		}
	}
	rec := s.status[mac]
	if rec.FirstSeen.IsZero() {
		rec.FirstSeen = now
	}
	rec.Status, rec.LastReport, rec.Server = st, now, s.cfg.Server
	s.status[mac] = rec
	s.q.status[mac] = rec
	s.seq++
	s.q.addEvent(s.keys.Event(mac, now, s.cfg.Server, s.seq), mustJSON(Event{Time: now, Server: s.cfg.Server, Status: st}), s.cfg.MaxQueuedEvents, &s.dropped)
	// The success counts only for the image and disk the machine was
	// booted with: an operator who changed them since wants it reimaged.
	b, booted := s.booted[mac]
	still := !booted || (b.image == m.Image && b.disk == m.Disk)
	if st.Success() && m.Action != api.Local && still {
		op := localOp{MachineRecord: MachineRecord{Image: m.Image, Disk: m.Disk, Action: api.Local}}
		if isKnown {
			op.key, op.modRev = k.key, k.modRev
			k.Action = api.Local // at once here; in etcd when the writer gets there
		} else {
			op.key = s.keys.Machine(mac)
			a := s.admitted[mac]
			a.Action, a.Known = api.Local, true
		}
		s.q.local[mac] = op
	}
	s.kick()
	return s.machineLocked(mac)
}

// Machines returns every machine in etcd and every unknown machine this
// server let in that reported, sorted by MAC.
func (s *Store) Machines() []api.Machine {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]api.Machine, 0, len(s.known)+len(s.admitted))
	for mac := range s.known {
		m, _ := s.machineLocked(mac)
		out = append(out, m)
	}
	for mac := range s.admitted {
		if _, ok := s.known[mac]; !ok {
			m, _ := s.machineLocked(mac)
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MAC < out[j].MAC })
	return out
}

// Down reports whether the last write or health probe failed.
func (s *Store) Down() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down
}

// Queued returns how many writes wait for etcd: statuses, events and
// turns to local.
func (s *Store) Queued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.q.len() + s.flushing.len()
}

func (s *Store) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
