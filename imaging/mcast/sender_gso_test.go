package mcast

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/ipv4"
)

// TestPacerGSO sends runs of datagrams of mixed sizes through the pacer on
// loopback: each arrives whole and in order, as if sent one by one, and
// the runs went out as UDP_SEGMENT sends (this kernel has them).
func TestPacerGSO(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sizes []int
	}{
		{"equal", []int{1472, 1472, 1472, 1472}},
		{"shorter ends a run", []int{1472, 1472, 900, 1472, 1472}},
		{"longer starts a run", []int{600, 1472, 1472, 1472}},
		{"jumbo", []int{8972, 8972, 8972, 8972, 8972, 8972, 8972, 8972, 8972, 8972}},
		{"one", []int{100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rx, tx := listenLoopback(t), listenLoopback(t)
			o := &output{p: ipv4.NewPacketConn(tx), dst: rx.LocalAddr(), rate: 1e9}
			want := sendSizes(t, o, tc.sizes)
			var got [][]byte
			buf := make([]byte, 65536)
			for range want {
				if err := rx.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
					t.Fatal(err)
				}
				n, _, err := rx.ReadFrom(buf)
				if err != nil {
					t.Fatalf("read datagram %d: %v", len(got), err)
				}
				got = append(got, append([]byte(nil), buf[:n]...))
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("datagrams differ (-sent +received):\n%s", diff)
			}
			if o.datagrams != int64(len(want)) {
				t.Errorf("datagrams = %d, want %d", o.datagrams, len(want))
			}
			if o.gso.off {
				t.Errorf("the kernel refused UDP_SEGMENT")
			}
			if len(tc.sizes) > 1 && o.gso.sends == 0 {
				t.Errorf("no UDP_SEGMENT send for %d datagrams", len(tc.sizes))
			}
		})
	}
}

// sendSizes sends through o one datagram of each of sizes, of made-up
// bytes, and flushes; it returns what it sent.
func sendSizes(t *testing.T, o *output, sizes []int) [][]byte {
	t.Helper()
	var sent [][]byte
	ctx := context.Background()
	for i, n := range sizes {
		b := o.buf()
		for j := range n {
			b = append(b, byte(i*7+j))
		}
		sent = append(sent, append([]byte(nil), b...))
		if err := o.add(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.flush(ctx); err != nil {
		t.Fatal(err)
	}
	return sent
}

// BenchmarkPacer measures the sender's datagram output alone (no pacing
// wait: the rate is far above what loopback takes), with and without
// UDP_SEGMENT, in MB/s of UDP payload.
func BenchmarkPacer(b *testing.B) {
	for _, useGSO := range []bool{false, true} {
		for _, size := range []int{1472, 8972} {
			b.Run(fmt.Sprintf("gso=%v/%d", useGSO, size), func(b *testing.B) {
				rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					b.Fatal(err)
				}
				defer rx.Close()
				tx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					b.Fatal(err)
				}
				defer tx.Close()
				go func() { // drain
					buf := make([]byte, 65536)
					for {
						if _, _, err := rx.ReadFrom(buf); err != nil {
							return
						}
					}
				}()
				o := &output{p: ipv4.NewPacketConn(tx), dst: rx.LocalAddr(), rate: 1e12}
				o.gso.off = !useGSO
				ctx := context.Background()
				b.SetBytes(int64(size))
				for range b.N {
					buf := o.buf()[:size]
					if err := o.add(ctx, buf); err != nil {
						b.Fatal(err)
					}
				}
				if err := o.flush(ctx); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}
