package ra

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"

	"github.com/shoal-project/shoal/internal/netlab"
	"github.com/shoal-project/shoal/internal/netlabtest"
)

func TestAdvertisementIsEmpty(t *testing.T) {
	b := Advertisement()
	m, err := icmp.ParseMessage(58, b)
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != ipv6.ICMPTypeRouterAdvertisement {
		t.Fatalf("type = %v, want router advertisement", m.Type)
	}
	body := m.Body.(*icmp.RawBody).Data
	if len(body) != 12 {
		t.Fatalf("body = %d bytes, want 12", len(body))
	}
	for i, c := range body {
		if c != 0 {
			t.Errorf("body byte %d = %d, want 0 (no flags, lifetime 0, no options)", i, c)
		}
	}
}

// TestAnswersSolicitation sends a router solicitation from one namespace
// and expects the empty advertisement from the server's namespace.
func TestAnswersSolicitation(t *testing.T) {
	l := netlabtest.New(t, netlab.Config{Nodes: 2})
	srv, cli := l.Nodes[0], l.Nodes[1]
	waitLinkLocal(t, srv)
	waitLinkLocal(t, cli)
	var c *icmp.PacketConn
	var ifIndex int
	if err := srv.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		ifIndex = ifi.Index
		c, err = Listen(ifi.Index)
		return err
	}); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, c, ifIndex, nil) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	var rc *icmp.PacketConn
	var cliIfi *net.Interface
	if err := cli.Do(func() error {
		var err error
		if cliIfi, err = net.InterfaceByName("eth0"); err != nil {
			return err
		}
		rc, err = icmp.ListenPacket("ip6:ipv6-icmp", "::")
		if err != nil {
			return err
		}
		p := rc.IPv6PacketConn()
		if err := p.JoinGroup(cliIfi, &net.IPAddr{IP: allNodes}); err != nil {
			return err
		}
		if err := p.SetMulticastInterface(cliIfi); err != nil {
			return err
		}
		return p.SetMulticastHopLimit(255)
	}); err != nil {
		t.Fatalf("client socket: %v", err)
	}
	defer rc.Close()
	rs, _ := (&icmp.Message{Type: ipv6.ICMPTypeRouterSolicitation, Body: &icmp.RawBody{Data: make([]byte, 4)}}).Marshal(nil)
	p := rc.IPv6PacketConn()
	deadline := time.Now().Add(5 * time.Second)
	buf := make([]byte, 1500)
	for time.Now().Before(deadline) {
		if _, err := p.WriteTo(rs, nil, &net.IPAddr{IP: allRouters}); err != nil {
			t.Fatalf("send RS: %v", err)
		}
		rc.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, _, src, err := p.ReadFrom(buf)
			if err != nil {
				break
			}
			if n >= 16 && buf[0] == byte(ipv6.ICMPTypeRouterAdvertisement) {
				if lifetime := int(buf[6])<<8 | int(buf[7]); lifetime != 0 {
					t.Errorf("advertisement from %v has router lifetime %d, want 0", src, lifetime)
				}
				return
			}
		}
	}
	t.Fatal("no router advertisement within 5 s")
}

// waitLinkLocal waits until the node's eth0 has a usable (non-tentative)
// link-local address.
func waitLinkLocal(t *testing.T, n *netlab.Node) {
	t.Helper()
	for i := 0; i < 50; i++ {
		out, _ := n.Command(context.Background(), "ip", "-6", "addr", "show", "dev", "eth0", "scope", "link").Output()
		if len(out) > 0 && !strings.Contains(string(out), "tentative") {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: no link-local IPv6 address", n.Name)
}
