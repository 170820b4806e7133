package mcast

// sender_pacer.go: the pacer: datagrams batched and sent at the rate (token bucket).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/shoal-project/shoal/imaging/mcast/wire"
)

// wireOverheadBytes is what each datagram adds on an Ethernet link beyond
// its UDP payload (Ethernet 14, IPv4 20, UDP 8): the pacer counts it, so a
// rate is a link rate as tc counts it.
const wireOverheadBytes = 42

// output batches datagrams and paces them with a token bucket.
type output struct {
	p    *ipv4.PacketConn
	dst  net.Addr
	rate float64 // bytes per second

	msgs      []ipv4.Message
	bufs      [][]byte
	n         int
	tokens    float64
	last      time.Time
	sentBytes int64
	datagrams int64
	seq       uint32
	gso       gso
	log       *slog.Logger
}

const batch = 16

func (o *output) buf() []byte {
	if o.bufs == nil {
		o.bufs = make([][]byte, batch)
		o.msgs = make([]ipv4.Message, batch)
		for i := range o.bufs {
			o.bufs[i] = make([]byte, 0, wire.MaxDatagramBytes)
		}
	}
	return o.bufs[o.n][:0]
}

func (o *output) add(ctx context.Context, b []byte) error {
	o.bufs[o.n] = b
	o.msgs[o.n] = ipv4.Message{Buffers: [][]byte{b}, Addr: o.dst}
	o.n++
	if o.n == batch {
		return o.flush(ctx)
	}
	return nil
}

func (o *output) flush(ctx context.Context) error {
	if o.n == 0 {
		return nil
	}
	var size float64
	for _, m := range o.msgs[:o.n] {
		size += float64(len(m.Buffers[0]) + wireOverheadBytes)
	}
	// Token bucket: up to 20 ms of burst, so that a sender not scheduled
	// for a while catches up (the link's queue absorbs it).
	for {
		now := time.Now()
		if !o.last.IsZero() {
			o.tokens = min(o.tokens+now.Sub(o.last).Seconds()*o.rate, max(o.rate*0.020, size))
		}
		o.last = now
		if o.tokens >= size {
			break
		}
		wait := time.Duration((size - o.tokens) / o.rate * float64(time.Second))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	o.tokens -= size
	msgs := o.msgs[:o.n]
	if !o.gso.off {
		sent, err := o.writeGSO(msgs)
		msgs = msgs[sent:]
		if err != nil {
			if !gsoRefused(err) {
				return fmt.Errorf("send data: %w", err)
			}
			o.gso.off = true
			if o.log != nil {
				o.log.Info("UDP segmentation offload refused: sending datagram by datagram", "err", err)
			}
		}
	}
	for len(msgs) > 0 {
		n, err := o.p.WriteBatch(msgs, 0)
		if err != nil {
			if errors.Is(err, syscall.ENOBUFS) {
				// The qdisc is full: back off a little and retry.
				time.Sleep(time.Millisecond)
				continue
			}
			return fmt.Errorf("send data: %w", err)
		}
		for _, m := range msgs[:n] {
			o.sentBytes += int64(len(m.Buffers[0]))
		}
		o.datagrams += int64(n)
		msgs = msgs[n:]
	}
	o.n = 0
	return nil
}

// writeGSO sends msgs as UDP_SEGMENT runs and returns how many of them
// (datagrams) went out.
func (o *output) writeGSO(msgs []ipv4.Message) (int, error) {
	gm, segs := o.gso.pack(msgs)
	sent := 0
	for len(gm) > 0 {
		n, err := o.p.WriteBatch(gm, 0)
		if err != nil {
			if errors.Is(err, syscall.ENOBUFS) {
				time.Sleep(time.Millisecond)
				continue
			}
			return sent, err
		}
		for k := range n {
			for _, b := range gm[k].Buffers {
				o.sentBytes += int64(len(b))
			}
			if segs[k] > 1 {
				o.gso.sends++
			}
			sent += segs[k]
		}
		o.datagrams += int64(sum(segs[:n]))
		gm, segs = gm[n:], segs[n:]
	}
	return sent, nil
}

func sum(xs []int) int {
	t := 0
	for _, x := range xs {
		t += x
	}
	return t
}
