package mcast

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// TestBatchReaderGRO sends runs of datagrams with UDP_SEGMENT on loopback
// and reads them back with and without UDP_GRO: both see every datagram
// whole and in order, and with GRO the runs came as single reads (on
// loopback the kernel hands a segmented send to a GRO socket as one).
func TestBatchReaderGRO(t *testing.T) {
	for _, gro := range []bool{false, true} {
		for _, tc := range []struct {
			name  string
			sizes []int
		}{
			{"equal", []int{1472, 1472, 1472, 1472, 1472, 1472}},
			{"short last", []int{1472, 1472, 1472, 700}},
			{"jumbo", []int{8972, 8972, 8972, 8972, 8972, 8972, 8972}},
			{"one", []int{100}},
		} {
			t.Run(tc.name+map[bool]string{false: "/one by one", true: "/gro"}[gro], func(t *testing.T) {
				rx, tx := listenLoopback(t), listenLoopback(t)
				br := newBatchReader(rx, 8, gro)
				if gro && !br.gro {
					t.Fatal("the kernel refused UDP_GRO on a UDP socket")
				}
				o := &output{p: ipv4.NewPacketConn(tx), dst: rx.LocalAddr(), rate: 1e9}
				want := sendSizes(t, o, tc.sizes)
				var got [][]byte
				for len(got) < len(want) {
					if err := rx.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
						t.Fatal(err)
					}
					n, err := br.read()
					if err != nil {
						t.Fatalf("read after %d datagrams: %v", len(got), err)
					}
					br.each(n, func(b []byte, src netip.Addr) {
						if src != netip.MustParseAddr("127.0.0.1") {
							t.Errorf("source %v, want 127.0.0.1", src)
						}
						got = append(got, append([]byte(nil), b...))
					})
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("datagrams differ (-sent +read):\n%s", diff)
				}
				if coalesced := br.coalesced > 0; coalesced != (gro && len(tc.sizes) > 1) {
					t.Errorf("coalesced reads %d with gro=%v and %d datagrams", br.coalesced, gro, len(tc.sizes))
				}
			})
		}
	}
}

// groCmsg is the control data of a read that the kernel coalesced into
// datagrams of size bytes, with a data field of n bytes.
func groCmsg(size, n int) []byte {
	b := make([]byte, unix.CmsgSpace(n))
	binary.NativeEndian.PutUint64(b, uint64(unix.CmsgLen(n)))
	binary.NativeEndian.PutUint32(b[8:], unix.SOL_UDP)
	binary.NativeEndian.PutUint32(b[12:], unix.UDP_GRO)
	switch n {
	case 2:
		binary.NativeEndian.PutUint16(b[unix.CmsgLen(0):], uint16(size))
	case 4:
		binary.NativeEndian.PutUint32(b[unix.CmsgLen(0):], uint32(size))
	}
	return b
}

func TestGROSize(t *testing.T) {
	other := groCmsg(0, 4)
	binary.NativeEndian.PutUint32(other[12:], unix.UDP_SEGMENT)
	long := groCmsg(1472, 4)
	binary.NativeEndian.PutUint64(long, 1000)
	for _, tc := range []struct {
		name string
		oob  []byte
		want int
	}{
		{"none", nil, 0},
		{"int", groCmsg(1472, 4), 1472},
		{"short", groCmsg(8972, 2), 8972},
		{"after another", append(append([]byte(nil), other...), groCmsg(1400, 4)...), 1400},
		{"other alone", other, 0},
		{"length past the end", long, 0},
		{"truncated header", groCmsg(1472, 4)[:10], 0},
		{"odd data size", groCmsg(1472, 3), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := GROSize(tc.oob); got != tc.want {
				t.Errorf("GROSize = %d, want %d", got, tc.want)
			}
		})
	}
}

// FuzzGROSize: no control data makes GROSize panic or loop, or find a
// size in fewer bytes than a control message takes.
func FuzzGROSize(f *testing.F) {
	f.Add(groCmsg(1472, 4))
	f.Add(groCmsg(8972, 2))
	f.Add([]byte{})
	f.Add(make([]byte, 16))
	f.Fuzz(func(t *testing.T, oob []byte) {
		if n := GROSize(oob); n != 0 && len(oob) < unix.CmsgLen(2) {
			t.Fatalf("GROSize = %d from %d bytes, too few for a control message", n, len(oob))
		}
	})
}
