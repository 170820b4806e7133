// blast.go: the offloaded ceiling: a raw UDP multicast blast sent with UDP_SEGMENT (as shoal's sender sends) and a sink that counts it.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/shoal-project/shoal/imaging/mcast"
	"github.com/shoal-project/shoal/internal/netlab"
)

// gsoCeilingGroup is the group of the offloaded blast.
var gsoCeilingGroup = netip.MustParseAddrPort("239.1.2.4:5002")

// BlastCount is what Blast and Sink print (one JSON line).
type BlastCount struct {
	Bytes     int64   `json:"bytes"` // UDP payload
	Datagrams int64   `json:"datagrams"`
	Seconds   float64 `json:"seconds"`
}

// Blast sends datagrams of sizeBytes to group on iface for d, as fast as
// the kernel takes them, each system call carrying runs of them as one
// UDP_SEGMENT send (as shoal's sender does), and prints a BlastCount to w.
// It is `shoal bench --blast` in the sender's namespace, so that its CPU is
// its own process's.
func Blast(ctx context.Context, iface string, group netip.AddrPort, sizeBytes int, d time.Duration, w io.Writer) error {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return fmt.Errorf("blast: %w", err)
	}
	c, err := mcast.ListenGroup(ctx, ifi, netip.AddrPortFrom(group.Addr(), 0), mcast.GroupOptions{})
	if err != nil {
		return fmt.Errorf("blast: %w", err)
	}
	defer c.Close()
	p := ipv4.NewPacketConn(c)
	perSend := max(1, min(64, 65499/sizeBytes))
	payload := make([]byte, perSend*sizeBytes)
	msgs := make([]ipv4.Message, 8)
	for i := range msgs {
		msgs[i] = ipv4.Message{Buffers: [][]byte{payload}, Addr: net.UDPAddrFromAddrPort(group)}
		if perSend > 1 {
			msgs[i].OOB = mcast.SegmentCmsg(make([]byte, mcast.SegmentCmsgBytes), uint16(sizeBytes))
		}
	}
	var n BlastCount
	t0 := time.Now()
	for time.Since(t0) < d && ctx.Err() == nil {
		k, err := p.WriteBatch(msgs, 0)
		if errors.Is(err, syscall.ENOBUFS) {
			time.Sleep(50 * time.Microsecond)
			continue
		}
		if err != nil {
			return fmt.Errorf("blast: %w", err)
		}
		n.Datagrams += int64(k * perSend)
		n.Bytes += int64(k * len(payload))
	}
	n.Seconds = time.Since(t0).Seconds()
	return json.NewEncoder(w).Encode(n)
}

// Sink counts the datagrams that arrive on group on iface from the first
// one until d has passed or nothing came for 500 ms, and prints a
// BlastCount to w: `shoal bench --sink` in a receiver's namespace.
func Sink(ctx context.Context, iface string, group netip.AddrPort, d time.Duration, w io.Writer) error {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	c, err := mcast.ListenGroup(ctx, ifi, group, mcast.GroupOptions{})
	if err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	defer c.Close()
	// Where the interface coalesces (GRO), take runs per read as shoal's
	// receiver does: the ceiling is the platform's with the same offloads.
	gro := mcast.EnableGRO(c)
	fmt.Fprintln(w, "ready")
	p := ipv4.NewPacketConn(c)
	msgs := make([]ipv4.Message, 128)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 65536)}
		if gro {
			msgs[i].OOB = make([]byte, mcast.GROCmsgBytes)
		}
	}
	var n BlastCount
	var first, last time.Time
	for ctx.Err() == nil {
		wait := 30 * time.Second // for the blast to start
		if !first.IsZero() {
			if time.Since(first) >= d {
				break
			}
			wait = 500 * time.Millisecond
		}
		if err := c.SetReadDeadline(time.Now().Add(wait)); err != nil {
			return err
		}
		k, err := p.ReadBatch(msgs, 0)
		if isTimeout(err) {
			break // the blast is over
		}
		if err != nil {
			return fmt.Errorf("sink: %w", err)
		}
		now := time.Now()
		if first.IsZero() {
			first = now
		}
		last = now
		for i := range msgs[:k] {
			m := &msgs[i]
			n.Bytes += int64(m.N)
			n.Datagrams++
			if seg := mcast.GROSize(m.OOB[:m.NN]); seg > 0 && m.N > seg {
				n.Datagrams += int64((m.N+seg-1)/seg) - 1
			}
		}
	}
	if first.IsZero() {
		return fmt.Errorf("sink: nothing arrived on %v", group)
	}
	n.Seconds = last.Sub(first).Seconds()
	return json.NewEncoder(w).Encode(n)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// ceilingGSO is the ceiling with the offloaded blast: `shoal bench
// --blast` from node 0 for cfg.CeilingDuration to n `shoal bench --sink`
// receivers, on a LAN like the tools'.
func (r *Report) ceilingGSO(ctx context.Context, cfg Config, n int) (res CeilingResult) {
	res = CeilingResult{Method: CeilingGSO, Receivers: n, DatagramBytes: cfg.MTU - 28}
	err := func() error {
		ctx, cancel := context.WithTimeout(ctx, cfg.CeilingDuration+45*time.Second)
		defer cancel()
		lan, err := netlab.New(ctx, cfg.lanConfig(n+1))
		if err != nil {
			return err
		}
		defer lan.Close()
		secs := cfg.CeilingDuration.String()
		var sinks []*proc
		defer func() {
			for _, p := range sinks {
				p.stop()
			}
		}()
		for i := range n {
			p, err := start(lan.Nodes[1+i].Command(ctx, cfg.ShoalBin, "bench", "--sink", gsoCeilingGroup.String(), "--blast-iface", "eth0",
				"--blast-for", secs), fmt.Sprintf("sink %d", i))
			if err != nil {
				return err
			}
			sinks = append(sinks, p)
		}
		for i, p := range sinks { // each has joined the group when it says so
			if err := p.waitOutput(ctx, "ready", 10*time.Second); err != nil {
				return fmt.Errorf("sink %d: %w", i, err)
			}
		}
		tx, err := start(lan.Nodes[0].Command(ctx, cfg.ShoalBin, "bench", "--blast", gsoCeilingGroup.String(), "--blast-iface", "eth0",
			"--blast-for", secs, "--blast-bytes", fmt.Sprint(res.DatagramBytes)), "blaster")
		if err != nil {
			return err
		}
		if err := tx.wait(ctx); err != nil {
			return err
		}
		sent, err := lastCount(tx.out.String())
		if err != nil {
			return fmt.Errorf("blaster: %w", err)
		}
		res.Seconds, res.SentBitsPerSec = sent.Seconds, float64(sent.Bytes*8)/sent.Seconds
		res.BitsPerSec = -1
		for i, p := range sinks {
			if err := p.wait(ctx); err != nil {
				return err
			}
			got, err := lastCount(p.out.String())
			if err != nil {
				return fmt.Errorf("sink %d: %w", i, err)
			}
			bps := float64(got.Bytes*8) / max(got.Seconds, 1e-3)
			res.addReceiver(bps, max(0, 1-float64(got.Datagrams)/float64(max(sent.Datagrams, 1))), p.cpu, got.Bytes, n)
		}
		return res.finishSender(tx.cpu, sent.Bytes)
	}()
	return res.done(err)
}

// lastCount is the BlastCount on the last line of a blaster's or a sink's
// output.
func lastCount(out string) (BlastCount, error) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var c BlastCount
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &c); err != nil || c.Seconds <= 0 {
		return c, fmt.Errorf("no count in %q", lastLines(out, 3))
	}
	return c, nil
}
