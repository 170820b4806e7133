package mcast

// batchread.go: reading a socket's datagrams in batches (the receivers' data and control, the sender's control), with UDP generic receive offload where asked and offered: one read returns a run of equal-size datagrams (UDP_GRO), split here.

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/imaging/mcast/wire"
)

// groReadBytes holds the largest run the kernel coalesces into one read
// (an IP packet's 64 KiB), and one byte more to see a truncation.
const groReadBytes = 1<<16 + 1

// batchReader reads a socket's datagrams in batches of reads (recvmmsg)
// and hands them out one datagram at a time. With gro, the kernel may
// coalesce a run of datagrams into one read; they are split again here, so
// that a caller sees the datagrams as they were sent.
type batchReader struct {
	p    *ipv4.PacketConn
	msgs []ipv4.Message
	gro  bool
	// coalesced counts the reads that carried more than one datagram.
	coalesced int64
}

// newBatchReader reads c in batches of n reads. With gro, it asks the
// kernel to coalesce c's datagrams (UDP_GRO) and, where the kernel will
// not, reads them one by one.
func newBatchReader(c net.PacketConn, n int, gro bool) *batchReader {
	br := &batchReader{p: ipv4.NewPacketConn(c)}
	if gro {
		br.gro = EnableGRO(c)
	}
	size := wire.MaxDatagramBytes + 1
	if br.gro {
		size = groReadBytes
	}
	br.msgs = make([]ipv4.Message, n)
	for i := range br.msgs {
		br.msgs[i].Buffers = [][]byte{make([]byte, size)}
		if br.gro {
			br.msgs[i].OOB = make([]byte, GROCmsgBytes)
		}
	}
	return br
}

// EnableGRO sets UDP_GRO on c and reports whether the kernel took it: its
// reads may then carry a run of datagrams, whose size GROSize tells.
func EnableGRO(c net.PacketConn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1)
	}); err != nil {
		return false
	}
	return serr == nil
}

// GROCmsgBytes is the room for the UDP_GRO control message (an int).
var GROCmsgBytes = unix.CmsgSpace(4)

// read blocks for one batch of reads and returns how many there were.
func (br *batchReader) read() (int, error) { return br.p.ReadBatch(br.msgs, 0) }

// each calls fn for each datagram of the first n reads of the batch, in
// order.
func (br *batchReader) each(n int, fn func(b []byte, src netip.Addr)) {
	for i := range br.msgs[:n] {
		m := &br.msgs[i]
		b, src := m.Buffers[0][:m.N], addrOf(m.Addr)
		seg := 0
		if br.gro {
			seg = GROSize(m.OOB[:m.NN])
			m.NN = 0
		}
		if seg <= 0 || seg >= len(b) {
			fn(b, src)
			continue
		}
		br.coalesced++
		for len(b) > 0 {
			d := b[:min(seg, len(b))]
			b = b[len(d):]
			fn(d, src)
		}
	}
}

// GROSize is the size of the datagrams that a read's control data oob says
// the kernel coalesced (UDP_GRO), or 0 when it says nothing of it: the
// read is one datagram. Anything malformed is 0 too.
func GROSize(oob []byte) int {
	hdr := unix.CmsgLen(0)
	for len(oob) >= hdr {
		// struct cmsghdr on 64-bit Linux: a length, a level, a type.
		l64 := binary.NativeEndian.Uint64(oob)
		level := int32(binary.NativeEndian.Uint32(oob[8:]))
		typ := int32(binary.NativeEndian.Uint32(oob[12:]))
		if l64 < uint64(hdr) || l64 > uint64(len(oob)) {
			return 0
		}
		l := int(l64)
		if level == unix.SOL_UDP && typ == unix.UDP_GRO {
			switch data := oob[hdr:l]; len(data) {
			case 2:
				return int(binary.NativeEndian.Uint16(data))
			case 4:
				return int(int32(binary.NativeEndian.Uint32(data)))
			}
			return 0
		}
		next := unix.CmsgSpace(l - hdr)
		if next > len(oob) {
			return 0
		}
		oob = oob[next:]
	}
	return 0
}

// addrOf is the IPv4 address of a datagram's source.
func addrOf(a net.Addr) netip.Addr {
	if u, ok := a.(*net.UDPAddr); ok {
		if ip, ok := netip.AddrFromSlice(u.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}
