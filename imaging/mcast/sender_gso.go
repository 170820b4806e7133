package mcast

// sender_gso.go: UDP segmentation offload: one sendmsg carries a run of equal-size datagrams that the kernel splits (UDP_SEGMENT).

import (
	"encoding/binary"
	"errors"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// A run of one UDP_SEGMENT send: at most gsoMaxSegments datagrams
// (the kernel's UDP_MAX_SEGMENTS) and gsoMaxBytes of UDP payload.
const (
	gsoMaxSegments = 64
	gsoMaxBytes    = 65507 - 8
)

// gso packs the pacer's datagrams into UDP_SEGMENT sends. Runs of datagrams
// of one size (the last of a run may be shorter, as the kernel allows) go
// in one message whose buffers are the datagrams themselves: nothing is
// copied. Off once the kernel refuses it; the pacer then sends datagram by
// datagram.
type gso struct {
	off   bool
	msgs  []ipv4.Message
	segs  []int // datagrams in each of msgs
	oob   [][]byte
	bufs  [][][]byte
	sends int64 // messages sent with UDP_SEGMENT
}

// pack groups in (one datagram each) into runs and returns the messages
// and the number of datagrams in each.
func (g *gso) pack(in []ipv4.Message) ([]ipv4.Message, []int) {
	g.msgs, g.segs = g.msgs[:0], g.segs[:0]
	for i := 0; i < len(in); {
		size := len(in[i].Buffers[0])
		j, total := i+1, size
		for j < len(in) && j-i < gsoMaxSegments && total+len(in[j].Buffers[0]) <= gsoMaxBytes {
			l := len(in[j].Buffers[0])
			if l > size {
				break
			}
			total += l
			j++
			if l < size {
				break // a shorter datagram ends the run
			}
		}
		k := len(g.msgs)
		for len(g.bufs) <= k {
			g.bufs = append(g.bufs, nil)
			g.oob = append(g.oob, make([]byte, SegmentCmsgBytes))
		}
		bufs := g.bufs[k][:0]
		for _, m := range in[i:j] {
			bufs = append(bufs, m.Buffers[0])
		}
		g.bufs[k] = bufs
		m := ipv4.Message{Buffers: bufs, Addr: in[i].Addr}
		if j-i > 1 {
			m.OOB = SegmentCmsg(g.oob[k], uint16(size))
		}
		g.msgs = append(g.msgs, m)
		g.segs = append(g.segs, j-i)
		i = j
	}
	return g.msgs, g.segs
}

// SegmentCmsg writes into b (at least SegmentCmsgBytes long) the control
// message of a sendmsg that asks the kernel to split its payload into UDP
// datagrams of size bytes (UDP_SEGMENT), and returns it.
func SegmentCmsg(b []byte, size uint16) []byte {
	b = b[:unix.CmsgSpace(2)]
	clear(b)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = unix.SOL_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[unix.CmsgLen(0):], size)
	return b
}

// SegmentCmsgBytes is the size of SegmentCmsg's control message.
var SegmentCmsgBytes = unix.CmsgSpace(2)

// gsoRefused reports whether err says the kernel or the device will not
// segment: the pacer then stops asking.
func gsoRefused(err error) bool {
	for _, e := range []error{syscall.EIO, syscall.EINVAL, syscall.ENOPROTOOPT, syscall.EOPNOTSUPP, syscall.EMSGSIZE} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
