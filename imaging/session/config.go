package session

// Run's configuration, its defaults, and the session key.

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/shoal-project/shoal/imaging"
)

// DeriveKey returns the session key of one image from the site's secret:
// HMAC-SHA256(siteSecret, "shoal session v1" || imageID). A server can
// hand each machine the key of its image only: a machine holding it can
// speak for that image's sessions and no other.
func DeriveKey(siteSecret []byte, imageID [32]byte) []byte {
	mac := hmac.New(sha256.New, siteSecret)
	mac.Write([]byte("shoal session v1"))
	mac.Write(imageID[:])
	return mac.Sum(nil)
}

// Relay modes.
const (
	// RelayStream multicasts each chunk as soon as the leader has
	// verified it (the default).
	RelayStream = "stream"
	// RelayAfter starts the multicast once the leader's own download has
	// succeeded (the patent's literal method).
	RelayAfter = "after"
)

// Default ports and groups.
const (
	// DefaultControlPort is the UDP port of announces, requests and
	// takeovers (sent to the subnet's broadcast address by default).
	DefaultControlPort = 7710
	// DefaultDataPort is the port of a data session's transport control
	// group; its data group uses the next port.
	DefaultDataPort = 7711
)

// DefaultDataGroups is where data sessions' groups are picked, one address
// per image and epoch.
var DefaultDataGroups = netip.MustParsePrefix("239.255.78.0/24")

// Config configures Run. Zero values take the documented defaults.
type Config struct {
	Server imaging.Repo      // the image server (HTTP repo)
	Name   string            // image name
	Pub    ed25519.PublicKey // nil: unsigned accepted
	Iface  *net.Interface
	Relay  string // "stream" (default) or "after"
	// Key authenticates every control message, the session's and its
	// data sessions' (HMAC-SHA256): see DeriveKey. Without a key (nil)
	// the session runs and logs a warning: then anyone on the LAN can
	// stall or redirect it (never write a byte: every chunk is checked
	// against the manifest). Callers ask for that explicitly (shoal
	// fetch: --insecure-no-key).
	Key []byte
	// Clock is this node's estimate of the image server's clock, which
	// stamps every control message and judges the freshness of those
	// heard (fresh.Window). Default: the local clock; shoal fetch and the
	// appliance learn the server's from its responses (fresh.ServerClock).
	Clock func() time.Time
	// Open opens the target for img (the target checks happen here).
	// Run calls the writer's Finish (the partition table) when every
	// chunk is written; closing the target is the caller's.
	Open func(img *imaging.Image) (*imaging.Writer, error)
	// Progress, when set, is called about every 250 ms and at the end.
	Progress func(Status)
	Logger   *slog.Logger

	// Control, when a multicast group, carries the control messages
	// instead of subnet broadcast to ControlPort.
	Control netip.AddrPort
	// ControlPort is the broadcast port (default DefaultControlPort).
	ControlPort int
	// DataGroups is the range data sessions' groups are picked from
	// (default DefaultDataGroups); DataPort their port (default
	// DefaultDataPort; the data group uses DataPort+1).
	DataGroups netip.Prefix
	DataPort   int
	// RateBitsPerSec is the leader's highest multicast rate (default
	// 100 Mbit/s; the transport lowers it when receivers lose data).
	RateBitsPerSec int64

	// AnnounceInterval is the time between a leader's announces, and
	// between a node's requests or takeover claims (default 200 ms).
	AnnounceInterval time.Duration
	// ListenWindow is how long a new node listens for a leader before it
	// leads itself (default 1 s, plus up to a quarter more at random).
	ListenWindow time.Duration
	// LeaderTimeout: a leader not heard for that long is gone (default
	// 5 announce intervals, 1 s).
	LeaderTimeout time.Duration
	// ElectionWindow is how long takeover claims are collected (default
	// 1 s).
	ElectionWindow time.Duration
	// DataTimeout: a follower whose data stops (or never comes while the
	// leader says it is sending) for that long falls back to the server
	// (default 5 s).
	DataTimeout time.Duration
	// Linger is how long a leader that holds the whole image stays while
	// nobody asks (default 2 s).
	Linger time.Duration
	// GatherQuiet: a leader whose data session would send little (its
	// receivers hold most of the image: a delta) holds the first pass
	// until no receiver has joined for GatherQuiet (default 2 s, less
	// once followers show their pace; negative: never), for at most
	// GatherMax (default 15 s); its
	// announces say so, and its followers wait for it that long more
	// than DataTimeout. See imaging/mcast's gather.
	GatherQuiet, GatherMax time.Duration
	// ServerTimeout: fetching from the server may fail for that long
	// before the node gives up (default 60 s); ServerRetry is the wait
	// between tries (default 1 s).
	ServerTimeout, ServerRetry time.Duration
	// Workers is the number of chunks fetched from the server at once
	// (default 4).
	Workers int
	// CacheChunks is how many downloaded chunks a leader keeps in memory
	// for the multicast (default 16); older ones are read back from the
	// target.
	CacheChunks int
	// MaxAttempts is how many data sessions with a live leader may fail
	// before the follower falls back to the server (default 2).
	MaxAttempts int
	// NodeID names this node (random when 0).
	NodeID uint32
	// Netns, when set, runs each function that opens a socket (tests:
	// netlab's Node.Do, so that sockets are made in the node's network
	// namespace). Nil runs it directly.
	Netns func(func() error) error
}

// leaderTimeoutIntervals is the default LeaderTimeout in announce
// intervals.
const leaderTimeoutIntervals = 5

// DefaultConfig returns the defaults Run gives a Config's zero fields: the
// relay mode, ports, groups, rate, timers and sizes (not the required
// fields, nor the per-run ones: a random NodeID, the local clock, no
// logging). Its LeaderTimeout is 5 of its AnnounceIntervals; a zero
// LeaderTimeout is 5 of the AnnounceInterval the run uses.
func DefaultConfig() Config {
	const interval = 200 * time.Millisecond
	return Config{
		Relay:            RelayStream,
		ControlPort:      DefaultControlPort,
		DataGroups:       DefaultDataGroups,
		DataPort:         DefaultDataPort,
		RateBitsPerSec:   100e6,
		AnnounceInterval: interval,
		ListenWindow:     time.Second,
		LeaderTimeout:    leaderTimeoutIntervals * interval,
		ElectionWindow:   time.Second,
		DataTimeout:      5 * time.Second,
		Linger:           2 * time.Second,
		GatherQuiet:      2 * time.Second,
		GatherMax:        15 * time.Second,
		ServerTimeout:    60 * time.Second,
		ServerRetry:      time.Second,
		Workers:          4,
		CacheChunks:      16,
		MaxAttempts:      2,
	}
}

// defaults gives c's zero fields their defaults (DefaultConfig) and checks
// it.
func (c *Config) defaults() error {
	if c.Server == nil || c.Name == "" || c.Open == nil {
		return errors.New("session: Server, Name and Open are required")
	}
	d := DefaultConfig()
	if len(c.Key) == 0 {
		c.Key = nil // no key
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	switch c.Relay {
	case "":
		c.Relay = d.Relay
	case RelayStream, RelayAfter:
	default:
		return fmt.Errorf("session: relay %q: want %q or %q", c.Relay, RelayStream, RelayAfter)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ControlPort <= 0 {
		c.ControlPort = d.ControlPort
	}
	if !c.DataGroups.IsValid() {
		c.DataGroups = d.DataGroups
	}
	if !c.DataGroups.Addr().Is4() || !c.DataGroups.Addr().IsMulticast() || c.DataGroups.Bits() > 30 {
		return fmt.Errorf("session: data groups %v: want an IPv4 multicast range of /30 or larger", c.DataGroups)
	}
	if c.DataPort <= 0 {
		c.DataPort = d.DataPort
	}
	if c.Control.IsValid() && (!c.Control.Addr().Is4() || !c.Control.Addr().IsMulticast()) {
		return fmt.Errorf("session: control %v: want an IPv4 multicast group", c.Control)
	}
	def := func(v *time.Duration, dv time.Duration) {
		if *v <= 0 {
			*v = dv
		}
	}
	def(&c.AnnounceInterval, d.AnnounceInterval)
	def(&c.ListenWindow, d.ListenWindow)
	// Derived from the interval this run uses, not the default one.
	def(&c.LeaderTimeout, leaderTimeoutIntervals*c.AnnounceInterval)
	def(&c.ElectionWindow, d.ElectionWindow)
	def(&c.DataTimeout, d.DataTimeout)
	def(&c.Linger, d.Linger)
	if c.GatherQuiet == 0 {
		c.GatherQuiet = d.GatherQuiet
	}
	def(&c.GatherMax, d.GatherMax)
	def(&c.ServerTimeout, d.ServerTimeout)
	def(&c.ServerRetry, d.ServerRetry)
	if c.RateBitsPerSec <= 0 {
		c.RateBitsPerSec = d.RateBitsPerSec
	}
	if c.Workers <= 0 {
		c.Workers = d.Workers
	}
	if c.CacheChunks <= 0 {
		c.CacheChunks = d.CacheChunks
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = d.MaxAttempts
	}
	for c.NodeID == 0 {
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.NodeID = binary.BigEndian.Uint32(b[:])
	}
	if c.Netns == nil {
		c.Netns = func(f func() error) error { return f() }
	}
	return nil
}
