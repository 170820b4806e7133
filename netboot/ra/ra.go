// Package ra answers IPv6 router solicitations with an empty router
// advertisement (router lifetime 0, no prefixes, no flags). On a
// provisioning network without an IPv6 router, iPXE otherwise waits about
// 13 s for an advertisement before it goes on with DHCPv4; the empty one
// tells it at once that there is no IPv6 configuration to wait for, and
// tells hosts not to use this server as a router.
package ra

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

var allRouters = net.ParseIP("ff02::2")
var allNodes = net.ParseIP("ff02::1")

// Listen opens an ICMPv6 socket on the interface with index ifIndex that
// receives router solicitations and can send advertisements.
func Listen(ifIndex int) (*icmp.PacketConn, error) {
	ifi, err := net.InterfaceByIndex(ifIndex)
	if err != nil {
		return nil, fmt.Errorf("ra: %w", err)
	}
	c, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, fmt.Errorf("ra: %w", err)
	}
	p := c.IPv6PacketConn()
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	steps := []error{
		p.SetICMPFilter(&f),
		p.JoinGroup(ifi, &net.IPAddr{IP: allRouters}),
		p.SetMulticastInterface(ifi),
		p.SetMulticastHopLimit(255), // RFC 4861: hop limit 255 or it is dropped
		p.SetHopLimit(255),
		p.SetControlMessage(ipv6.FlagInterface, true),
	}
	for _, err := range steps {
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("ra: %w", err)
		}
	}
	return c, nil
}

// Advertisement returns the bytes of an empty router advertisement.
func Advertisement() []byte {
	m := icmp.Message{
		Type: ipv6.ICMPTypeRouterAdvertisement,
		// cur hop limit 0, flags 0, router lifetime 0, reachable 0, retrans 0
		Body: &icmp.RawBody{Data: make([]byte, 12)},
	}
	b, _ := m.Marshal(nil) // the kernel fills in the ICMPv6 checksum
	return b
}

// Serve answers each router solicitation arriving on c's interface with an
// empty advertisement to all nodes, until ctx is done; then it closes c.
func Serve(ctx context.Context, c *icmp.PacketConn, ifIndex int, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	go func() {
		<-ctx.Done()
		c.Close()
	}()
	p := c.IPv6PacketConn()
	buf := make([]byte, 1500)
	ra := Advertisement()
	for {
		n, cm, _, err := p.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("ra: read: %w", err)
		}
		if n < 1 || buf[0] != byte(ipv6.ICMPTypeRouterSolicitation) {
			continue
		}
		if cm != nil && cm.IfIndex != ifIndex {
			continue
		}
		if _, err := p.WriteTo(ra, nil, &net.IPAddr{IP: allNodes}); err != nil {
			log.Warn("ra: send", "err", err)
			continue
		}
		log.Debug("ra: answered a router solicitation")
	}
}
