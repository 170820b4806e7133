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
