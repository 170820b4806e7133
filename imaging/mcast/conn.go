package mcast

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// socketBufferBytes is the kernel buffer asked for on every socket: about
// 80 ms at 1 Gbit/s, so that a busy receiver does not lose data.
const socketBufferBytes = 8 << 20

// GroupOptions tunes ListenGroup.
type GroupOptions struct {
	// TTL is the multicast TTL of what the socket sends (default 1).
	TTL int
	// Loopback delivers the socket's own multicast to sockets on the same
	// host (off by default; tests on one host turn it on).
	Loopback bool
}

// ListenGroup opens a UDP socket bound to group's port, joins group on iface
// (nil: the system's choice) and sets the interface, TTL and loopback for
// what it sends. Several sockets on one host may listen on the same group.
func ListenGroup(ctx context.Context, iface *net.Interface, group netip.AddrPort, opts GroupOptions) (net.PacketConn, error) {
	if !group.Addr().Is4() || !group.Addr().IsMulticast() {
		return nil, fmt.Errorf("listen %v: not an IPv4 multicast group", group)
	}
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			if serr != nil {
				return
			}
			// Ask beyond rmem_max when allowed (root); fall back quietly.
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketBufferBytes) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, socketBufferBytes)
			}
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, socketBufferBytes) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, socketBufferBytes)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	// Bound to the group's address, the socket sees only that group's traffic.
	c, err := lc.ListenPacket(ctx, "udp4", group.String())
	if err != nil {
		return nil, fmt.Errorf("listen %v: %w", group, err)
	}
	p := ipv4.NewPacketConn(c)
	ttl := opts.TTL
	if ttl <= 0 {
		ttl = 1
	}
	steps := []struct {
		what string
		do   func() error
	}{
		{"join", func() error { return p.JoinGroup(iface, &net.UDPAddr{IP: group.Addr().AsSlice()}) }},
		{"ttl", func() error { return p.SetMulticastTTL(ttl) }},
		{"loopback", func() error { return p.SetMulticastLoopback(opts.Loopback) }},
		{"interface", func() error {
			if iface == nil {
				return nil
			}
			return p.SetMulticastInterface(iface)
		}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			c.Close()
			return nil, fmt.Errorf("listen %v on %s: %s: %w", group, ifaceName(iface), s.what, err)
		}
	}
	return c, nil
}

func ifaceName(iface *net.Interface) string {
	if iface == nil {
		return "default interface"
	}
	return iface.Name
}

func udpAddr(a netip.AddrPort) *net.UDPAddr { return net.UDPAddrFromAddrPort(a) }

// closeOnDone closes c when ctx is done, unblocking its readers. The
// returned function stops the watch.
func closeOnDone(ctx context.Context, c net.PacketConn) func() bool {
	return context.AfterFunc(ctx, func() { c.Close() })
}
