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
	for len(msgs) > 0 {
		sent, err := o.write(msgs)
		msgs = msgs[sent:]
		switch {
		case err == nil:
		case !o.gso.off && gsoRefused(err):
			o.gso.off = true
			if o.log != nil {
				o.log.Info("UDP segmentation offload refused: sending datagram by datagram", "err", err)
			}
		default:
			return fmt.Errorf("send data: %w", err)
		}
	}
	o.n = 0
	return nil
}

// write sends msgs (a datagram each), as UDP_SEGMENT runs unless the kernel
// refused them, and returns how many datagrams went out.
func (o *output) write(msgs []ipv4.Message) (int, error) {
	batch, segs := msgs, []int(nil)
	if !o.gso.off {
		batch, segs = o.gso.pack(msgs)
	}
	sent := 0
	for len(batch) > 0 {
		n, err := o.p.WriteBatch(batch, 0)
		if err != nil {
			if errors.Is(err, syscall.ENOBUFS) {
				// The qdisc is full: back off a little and retry.
				time.Sleep(time.Millisecond)
				continue
			}
			return sent, err
		}
		for k, m := range batch[:n] {
			seg := 1
			if segs != nil {
				seg = segs[k]
			}
			if seg > 1 {
				o.gso.sends++
			}
			for _, b := range m.Buffers {
				o.sentBytes += int64(len(b))
			}
			o.datagrams += int64(seg)
			sent += seg
		}
		batch = batch[n:]
		if segs != nil {
			segs = segs[n:]
		}
	}
	return sent, nil
}
