package mcast

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// The fields that defaults fills in with what cannot be compared: random
// numbers, functions, loggers.
var (
	senderOpts = cmp.Options{
		cmpopts.EquateComparable(netip.AddrPort{}),
		cmpopts.IgnoreFields(SenderConfig{}, "Session", "Clock", "Logger"),
	}
	receiverOpts = cmp.Options{
		cmpopts.EquateComparable(netip.AddrPort{}, netip.Addr{}),
		cmpopts.IgnoreFields(ReceiverConfig{}, "ID", "Clock", "Logger", "OpenData"),
	}
)

func TestSenderDefaults(t *testing.T) {
	set := DefaultSenderConfig()
	set.RateBitsPerSec, set.GroupBlocks, set.ParityBlocks, set.Linger = 5e6, 8, 2, time.Minute
	tests := []struct {
		name string
		in   SenderConfig
		want SenderConfig
	}{
		{"zero config takes DefaultSenderConfig", SenderConfig{}, DefaultSenderConfig()},
		{"fields set stay", SenderConfig{RateBitsPerSec: 5e6, GroupBlocks: 8, ParityBlocks: 2, Linger: time.Minute}, set},
		{"DefaultSenderConfig stays", DefaultSenderConfig(), DefaultSenderConfig()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.in
			if err := got.defaults(); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, senderOpts); diff != "" {
				t.Errorf("defaults (-want +got):\n%s", diff)
			}
			if got.Session == 0 || got.Clock == nil || got.Logger == nil {
				t.Errorf("defaults left Session %d, Clock %v, Logger %v unset", got.Session, got.Clock != nil, got.Logger != nil)
			}
		})
	}
}

func TestReceiverDefaults(t *testing.T) {
	set := DefaultReceiverConfig()
	set.BufferChunks, set.SenderTimeout, set.JoinTimeout = 4, time.Minute, time.Second
	tests := []struct {
		name string
		in   ReceiverConfig
		want ReceiverConfig
	}{
		{"zero config takes DefaultReceiverConfig", ReceiverConfig{}, DefaultReceiverConfig()},
		{"fields set stay", ReceiverConfig{BufferChunks: 4, SenderTimeout: time.Minute, JoinTimeout: time.Second}, set},
		{"DefaultReceiverConfig stays", DefaultReceiverConfig(), DefaultReceiverConfig()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.in
			if err := got.defaults(); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, receiverOpts); diff != "" {
				t.Errorf("defaults (-want +got):\n%s", diff)
			}
			if got.ID == 0 || got.Clock == nil || got.Logger == nil || got.OpenData == nil {
				t.Errorf("defaults left ID %d, Clock %v, Logger %v, OpenData %v unset", got.ID, got.Clock != nil, got.Logger != nil, got.OpenData != nil)
			}
		})
	}
}

func TestBlockBytesForMTU(t *testing.T) {
	for _, tc := range []struct{ mtu, want int }{
		{0, DefaultBlockBytes},
		{-1, DefaultBlockBytes},
		{1500, 1438},
		{1400, 1338},
		{9000, 8938},
		{65536, 8938}, // loopback: capped at the protocol's largest
		{100, 514},    // below IPv4's minimum MTU: 576's block
	} {
		if got := BlockBytesForMTU(tc.mtu); got != tc.want {
			t.Errorf("BlockBytesForMTU(%d) = %d, want %d", tc.mtu, got, tc.want)
		}
	}
	if got := BlockBytesForInterface(nil); got != DefaultBlockBytes {
		t.Errorf("BlockBytesForInterface(nil) = %d, want %d", got, DefaultBlockBytes)
	}
}
