package netlab_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/shoal-project/shoal/internal/netlab"
	"github.com/shoal-project/shoal/internal/netlabtest"
)

func TestPingBetweenNodes(t *testing.T) {
	l := netlabtest.New(t, netlab.Config{Nodes: 2})
	ctx := context.Background()
	for _, c := range []struct{ from, to *netlab.Node }{{l.Nodes[0], l.Nodes[1]}, {l.Nodes[1], l.Nodes[0]}} {
		out, err := c.from.Command(ctx, "ping", "-c", "1", "-W", "2", c.to.IP.String()).CombinedOutput()
		if err != nil {
			t.Errorf("ping %s from %s: %v\n%s", c.to.IP, c.from.Name, err, out)
		}
	}
	if l.Nodes[0].MAC == nil || l.Nodes[0].MAC.String() == l.Nodes[1].MAC.String() {
		t.Errorf("MACs = %v, %v; want two distinct addresses", l.Nodes[0].MAC, l.Nodes[1].MAC)
	}
}

func TestNamesFitInterfaceLimit(t *testing.T) {
	l := netlabtest.New(t, netlab.Config{Nodes: 1})
	for _, n := range l.Nodes {
		if len(n.HostIface) > 15 {
			t.Errorf("HostIface %q longer than 15", n.HostIface)
		}
	}
}

// udpSocket opens a UDP socket inside node n bound to port.
func udpSocket(t *testing.T, n *netlab.Node, addr string) net.PacketConn {
	t.Helper()
	var c net.PacketConn
	err := n.Do(func() error {
		var err error
		c, err = net.ListenPacket("udp4", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, n.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestMulticastReachesOtherNodes(t *testing.T) {
	for _, snoop := range []bool{false, true} {
		t.Run(fmt.Sprintf("snooping=%v", snoop), func(t *testing.T) {
			l := netlabtest.New(t, netlab.Config{Nodes: 3, IGMPSnooping: snoop})
			group := net.IPv4(239, 77, 0, 1)
			const port = 7700
			var wg sync.WaitGroup
			got := make([]int, 2)
			for i, n := range l.Nodes[1:] {
				c := udpSocket(t, n, fmt.Sprintf("0.0.0.0:%d", port))
				var ifi *net.Interface
				if err := n.Do(func() error {
					var err error
					ifi, err = net.InterfaceByName("eth0")
					if err != nil {
						return err
					}
					return ipv4.NewPacketConn(c).JoinGroup(ifi, &net.UDPAddr{IP: group})
				}); err != nil {
					t.Fatalf("join group in %s: %v", n.Name, err)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]byte, 1500)
					c.SetReadDeadline(time.Now().Add(3 * time.Second))
					for {
						m, _, err := c.ReadFrom(buf)
						if err != nil {
							return
						}
						if string(buf[:m]) == "hello" {
							got[i]++
							if got[i] == 10 {
								return
							}
						}
					}
				}()
			}
			sender := udpSocket(t, l.Nodes[0], "0.0.0.0:0")
			p := ipv4.NewPacketConn(sender)
			if err := l.Nodes[0].Do(func() error {
				ifi, err := net.InterfaceByName("eth0")
				if err != nil {
					return err
				}
				return p.SetMulticastInterface(ifi)
			}); err != nil {
				t.Fatal(err)
			}
			// With snooping the bridge learns membership from reports; the
			// join sends them at once, but give it a moment.
			time.Sleep(200 * time.Millisecond)
			for i := 0; i < 10; i++ {
				if _, err := sender.WriteTo([]byte("hello"), &net.UDPAddr{IP: group, Port: port}); err != nil {
					t.Fatalf("send: %v", err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			wg.Wait()
			for i, g := range got {
				if g < 9 {
					t.Errorf("node %d got %d of 10 multicast datagrams, want >= 9", i+1, g)
				}
			}
		})
	}
}

func TestSetLossDropsAboutHalf(t *testing.T) {
	netlabtest.RequireTool(t, "nft")
	l := netlabtest.New(t, netlab.Config{Nodes: 2})
	recv, send := l.Nodes[1], l.Nodes[0]
	c := udpSocket(t, recv, ":7701")
	s := udpSocket(t, send, ":0")
	dst := &net.UDPAddr{IP: recv.IP, Port: 7701}
	// Resolve ARP before the loss starts, so that no datagram waits on
	// (possibly dropped) ARP.
	if _, err := s.WriteTo([]byte("x"), dst); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, _, err := c.ReadFrom(make([]byte, 10)); err != nil {
		t.Fatalf("first datagram: %v", err)
	}
	if err := recv.SetLoss(500); err != nil {
		t.Fatalf("SetLoss(500): %v", err)
	}
	const total = 2000
	done := make(chan int)
	go func() {
		n := 0
		buf := make([]byte, 100)
		for {
			c.SetReadDeadline(time.Now().Add(time.Second))
			if _, _, err := c.ReadFrom(buf); err != nil {
				done <- n
				return
			}
			n++
		}
	}()
	for i := 0; i < total; i++ {
		if _, err := s.WriteTo([]byte("datagram"), dst); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if i%50 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	got := <-done
	if got < total*35/100 || got > total*65/100 {
		t.Errorf("with SetLoss(500), received %d of %d datagrams; want 35%%..65%%", got, total)
	}

	// Removing the loss lets everything through again.
	if err := recv.SetLoss(0); err != nil {
		t.Fatalf("SetLoss(0): %v", err)
	}
	go func() {
		n := 0
		buf := make([]byte, 100)
		for {
			c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if _, _, err := c.ReadFrom(buf); err != nil {
				done <- n
				return
			}
			n++
		}
	}()
	for i := 0; i < 100; i++ {
		s.WriteTo([]byte("datagram"), dst)
	}
	if got := <-done; got < 100 {
		t.Errorf("after SetLoss(0), received %d of 100 datagrams", got)
	}
}

// TestSetRateCapsTCP holds one link to 20 Mbit/s with each shaping and
// checks that a TCP stream over it is no faster.
func TestSetRateCapsTCP(t *testing.T) {
	for _, shaping := range []string{"", netlab.ShapingTBF, netlab.ShapingHTB} {
		t.Run("shaping="+shaping, func(t *testing.T) {
			testSetRateCapsTCP(t, shaping)
		})
	}
}

func testSetRateCapsTCP(t *testing.T, shaping string) {
	const rateBitsPerSec = 20_000_000
	l := netlabtest.New(t, netlab.Config{Nodes: 2, Shaping: shaping})
	if err := l.Nodes[1].SetRate(rateBitsPerSec); err != nil {
		t.Fatalf("SetRate: %v", err)
	}
	var ln net.Listener
	if err := l.Nodes[1].Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", ":7702")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		n   int64
		end time.Time
		err error
	}
	received := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		n, err := io.Copy(io.Discard, c)
		received <- result{n, time.Now(), err}
	}()
	var conn net.Conn
	if err := l.Nodes[0].Do(func() error {
		var err error
		conn, err = net.Dial("tcp4", fmt.Sprintf("%s:7702", l.Nodes[1].IP))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	const sizeBytes = 5 << 20 // 2 s at 20 Mbit/s
	start := time.Now()
	buf := make([]byte, 64<<10)
	for sent := 0; sent < sizeBytes; sent += len(buf) {
		if _, err := conn.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	r := <-received
	if r.err != nil || r.n != sizeBytes {
		t.Fatalf("receiver got %d bytes, %v; want %d", r.n, r.err, sizeBytes)
	}
	elapsed := r.end.Sub(start)
	gotBitsPerSec := float64(sizeBytes*8) / elapsed.Seconds()
	t.Logf("sent %d bytes in %v: %.1f Mbit/s (limit %d Mbit/s)", sizeBytes, elapsed, gotBitsPerSec/1e6, rateBitsPerSec/1_000_000)
	if gotBitsPerSec > 1.5*rateBitsPerSec {
		t.Errorf("TCP throughput %.1f Mbit/s, want < 1.5 x %d Mbit/s", gotBitsPerSec/1e6, rateBitsPerSec/1_000_000)
	}
	want := "tbf"
	if shaping == netlab.ShapingHTB {
		want = "htb"
	}
	out, err := exec.Command("tc", "-n", l.Nodes[1].Name, "qdisc", "show", "dev", "eth0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "qdisc "+want) {
		t.Errorf("tc qdisc show on node 1: %v\n%s\nwant a %s qdisc", err, out, want)
	}
}

// TestMTU gives a LAN jumbo frames: the bridge and both ends of every link
// get the MTU, and a ping that fills it (don't fragment) gets through.
func TestMTU(t *testing.T) {
	for _, mtu := range []int{1500, 9000} {
		t.Run(fmt.Sprintf("mtu=%d", mtu), func(t *testing.T) {
			l := netlabtest.New(t, netlab.Config{Nodes: 2, MTU: mtu})
			ctx := context.Background()
			links := [][2]string{{l.Hub, l.Bridge}, {l.Hub, l.Nodes[0].HostIface}, {l.Nodes[0].Name, "eth0"}, {l.Nodes[1].Name, "eth0"}}
			for _, ln := range links {
				out, err := exec.Command("ip", "-n", ln[0], "-o", "link", "show", ln[1]).CombinedOutput()
				if err != nil || !strings.Contains(string(out), fmt.Sprintf(" mtu %d ", mtu)) {
					t.Errorf("ip link show %s in %s: %v: %s; want mtu %d", ln[1], ln[0], err, out, mtu)
				}
			}
			// ICMP echo: 20 bytes of IP and 8 of ICMP header.
			out, err := l.Nodes[0].Command(ctx, "ping", "-c", "1", "-W", "2", "-M", "do", "-s", fmt.Sprint(mtu-28), l.Nodes[1].IP.String()).CombinedOutput()
			if err != nil {
				t.Errorf("ping of %d bytes (don't fragment): %v\n%s", mtu, err, out)
			}
		})
	}
	if _, err := netlab.New(context.Background(), netlab.Config{MTU: 100}); err == nil {
		t.Error("netlab.New with MTU 100 succeeded, want an error")
	}
	if _, err := netlab.New(context.Background(), netlab.Config{Shaping: "netem"}); err == nil {
		t.Error("netlab.New with shaping netem succeeded, want an error")
	}
}

func TestAddNodeAndTap(t *testing.T) {
	l := netlabtest.New(t, netlab.Config{Nodes: 1})
	n, err := l.AddNode(context.Background())
	if err != nil {
		t.Fatalf("AddNode: %v", err)
	}
	out, err := n.Command(context.Background(), "ping", "-c", "1", "-W", "2", l.Nodes[0].IP.String()).CombinedOutput()
	if err != nil {
		t.Errorf("late joiner ping: %v\n%s", err, out)
	}
	if err := l.AddTap(context.Background(), "tap0"); err != nil {
		t.Fatalf("AddTap: %v", err)
	}
	out, err = l.HubCommand(context.Background(), "ip", "-o", "link", "show", "tap0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "master br0") {
		t.Errorf("tap0 = %q, %v; want it on br0", out, err)
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	netlabtest.RequireRoot(t)
	l, err := netlab.New(context.Background(), netlab.Config{Nodes: 2})
	if err != nil {
		t.Fatal(err)
	}
	// A process left running in a node must not keep Close from working.
	cmd := l.Nodes[0].Command(context.Background(), "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	names := []string{l.Hub, l.Nodes[0].Name, l.Nodes[1].Name}
	if err := l.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-waited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Errorf("sleep in node exited with %v, want killed", err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("sleep in node still running after Close")
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == name {
				t.Errorf("namespace %s still there after Close", name)
			}
		}
	}
}
