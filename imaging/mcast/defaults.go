package mcast

// defaults.go: the transport's defaults, and filling them into the zero fields of a config.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/shoal-project/shoal/imaging/mcast/wire"
)

// Default groups and ports (admin-scoped, RFC 2365).
var (
	DefaultControl = netip.MustParseAddrPort("239.255.77.1:7700")
	DefaultData    = netip.MustParseAddrPort("239.255.77.2:7701")
)

// DefaultBlockBytes fills a 1500-byte MTU: 1500 - 20 (IP) - 8 (UDP) - 34.
const DefaultBlockBytes = 1500 - 28 - wire.DataHeaderBytes

// minBlockBytes is the smallest block BlockBytesForMTU gives: IPv4's
// minimum MTU (576) less the headers.
const minBlockBytes = 576 - 28 - wire.DataHeaderBytes

// BlockBytesForMTU is the block size whose data datagrams fill one frame
// of a link of mtu bytes (an interface's MTU): 1438 at 1500, 8938 at 9000
// (the protocol's largest). Fewer, larger datagrams cost the sender and
// every receiver less CPU per byte. Every receiver's link must carry that
// MTU: the sender announces its block size and sends nothing smaller.
// mtu <= 0 gives DefaultBlockBytes.
func BlockBytesForMTU(mtu int) int {
	if mtu <= 0 {
		return DefaultBlockBytes
	}
	return min(max(mtu-28-wire.DataHeaderBytes, minBlockBytes), wire.MaxBlockBytes)
}

// BlockBytesForInterface is BlockBytesForMTU of ifi's MTU; nil (the
// system's choice of interface) gives DefaultBlockBytes.
func BlockBytesForInterface(ifi *net.Interface) int {
	if ifi == nil {
		return DefaultBlockBytes
	}
	return BlockBytesForMTU(ifi.MTU)
}

// DefaultSenderConfig returns the defaults Send uses for the fields of a
// SenderConfig left zero (Session excepted: a zero Session is random).
// Image and Source are for the caller to set.
func DefaultSenderConfig() SenderConfig {
	return SenderConfig{
		Data:                  DefaultData,
		Control:               DefaultControl,
		RateBitsPerSec:        100e6,
		LossThresholdPermille: 100,
		BlockBytes:            DefaultBlockBytes,
		GroupBlocks:           64,
		ParityBlocks:          0,
		MinReceivers:          0,
		MaxWait:               60 * time.Second,
		Linger:                time.Second,
		ReceiverTimeout:       5 * time.Second,
		AnnounceInterval:      100 * time.Millisecond,
		Logger:                slog.New(slog.DiscardHandler),
		Clock:                 time.Now,
		MaxReceivers:          1024,
	}
}

// DefaultReceiverConfig returns the defaults Receive uses for the fields of
// a ReceiverConfig left zero (ID excepted: a zero ID is random; OpenData
// defaults to ListenGroup on Iface). Open is for the caller to set.
func DefaultReceiverConfig() ReceiverConfig {
	return ReceiverConfig{
		Control:        DefaultControl,
		BufferChunks:   16,
		Writers:        2,
		JoinTimeout:    0, // wait for ever
		SenderTimeout:  10 * time.Second,
		MaxCorrupt:     3,
		StatusesPerSec: 500,
		Backoff:        4 * time.Millisecond,
		Retry:          40 * time.Millisecond,
		Logger:         slog.New(slog.DiscardHandler),
		Clock:          time.Now,
	}
}

// orDefault sets *v to def unless *v is positive.
func orDefault[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// defaults fills the zero fields of c from DefaultSenderConfig.
func (c *SenderConfig) defaults() error {
	if err := checkKey(c.Key); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	d := DefaultSenderConfig()
	if c.Clock == nil {
		c.Clock = d.Clock
	}
	orDefault(&c.MaxReceivers, d.MaxReceivers)
	if !c.Data.IsValid() {
		c.Data = d.Data
	}
	if !c.Control.IsValid() {
		c.Control = d.Control
	}
	orDefault(&c.RateBitsPerSec, d.RateBitsPerSec)
	orDefault(&c.LossThresholdPermille, d.LossThresholdPermille)
	orDefault(&c.BlockBytes, d.BlockBytes)
	orDefault(&c.GroupBlocks, d.GroupBlocks)
	orDefault(&c.MaxWait, d.MaxWait)
	orDefault(&c.Linger, d.Linger)
	orDefault(&c.ReceiverTimeout, d.ReceiverTimeout)
	orDefault(&c.AnnounceInterval, d.AnnounceInterval)
	if c.GatherQuiet > 0 {
		orDefault(&c.GatherMax, 4*c.GatherQuiet)
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	for c.Session == 0 {
		c.Session = randomID()
	}
	return nil
}

// defaults fills the zero fields of c from DefaultReceiverConfig.
func (c *ReceiverConfig) defaults() error {
	if err := checkKey(c.Key); err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	d := DefaultReceiverConfig()
	if c.Clock == nil {
		c.Clock = d.Clock
	}
	if !c.Control.IsValid() {
		c.Control = d.Control
	}
	orDefault(&c.BufferChunks, d.BufferChunks)
	orDefault(&c.Writers, d.Writers)
	orDefault(&c.SenderTimeout, d.SenderTimeout)
	orDefault(&c.MaxCorrupt, d.MaxCorrupt)
	orDefault(&c.StatusesPerSec, d.StatusesPerSec)
	orDefault(&c.Backoff, d.Backoff)
	orDefault(&c.Retry, d.Retry)
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.OpenData == nil {
		iface := c.Iface
		c.OpenData = func(ctx context.Context, g netip.AddrPort) (net.PacketConn, error) {
			return ListenGroup(ctx, iface, g, GroupOptions{})
		}
	}
	for c.ID == 0 {
		c.ID = randomID()
	}
	return nil
}

// randomID returns a random number (0 included: the callers loop).
func randomID() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}
