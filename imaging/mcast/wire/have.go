package wire

// have.go: the have message: the chunks a receiver already holds on its disk (found by its scan), so that the sender need not send them.

import (
	"encoding/binary"
	"fmt"

	"github.com/shoal-project/shoal/imaging/mcast/fresh"
)

// Range is a run of chunks: Count chunks from Start.
type Range struct {
	Start, Count uint32
}

// Have is a receiver's list of the chunks it holds, as ranges in order.
// It may say less than the receiver holds (it is cut to fit a datagram),
// never more: the sender skips only chunks that every receiver it knows
// has said it holds.
type Have struct {
	Receiver uint32
	Ranges   []Range
}

// MaxHaveRanges bounds a have's ranges: with its header and trailer it
// fits a 1500-byte link's datagram.
const MaxHaveRanges = 160

// AppendHave appends a have datagram to dst, sealed with st and key.
func AppendHave(dst []byte, h Header, hv *Have, st fresh.Stamp, key []byte) ([]byte, error) {
	if len(hv.Ranges) == 0 || len(hv.Ranges) > MaxHaveRanges {
		return dst, fmt.Errorf("have with %d ranges, want 1 to %d", len(hv.Ranges), MaxHaveRanges)
	}
	h.Type = TypeHave
	start := len(dst)
	dst = appendHeader(dst, h)
	dst = binary.BigEndian.AppendUint32(dst, hv.Receiver)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(hv.Ranges)))
	for _, r := range hv.Ranges {
		dst = binary.BigEndian.AppendUint32(dst, r.Start)
		dst = binary.BigEndian.AppendUint32(dst, r.Count)
	}
	return seal(dst, start, st, key), nil
}

// ParseHave decodes a have's fields (ParseControl's). The ranges must be
// in order, apart, and not empty.
func ParseHave(body []byte) (Have, error) {
	var hv Have
	if len(body) < 6 {
		return hv, malformed("have of %d bytes", len(body))
	}
	hv.Receiver = binary.BigEndian.Uint32(body)
	n := int(binary.BigEndian.Uint16(body[4:]))
	if n == 0 || n > MaxHaveRanges || len(body) != 6+8*n {
		return hv, malformed("have of %d bytes with %d ranges", len(body), n)
	}
	var end uint64
	for i := range n {
		e := body[6+8*i:]
		r := Range{Start: binary.BigEndian.Uint32(e), Count: binary.BigEndian.Uint32(e[4:])}
		if r.Count == 0 || (i > 0 && uint64(r.Start) <= end) {
			return hv, malformed("have range %d (%d+%d) empty or out of order", i, r.Start, r.Count)
		}
		end = uint64(r.Start) + uint64(r.Count)
		if end > 1<<32 {
			return hv, malformed("have range %d (%d+%d) past the last chunk number", i, r.Start, r.Count)
		}
		hv.Ranges = append(hv.Ranges, r)
	}
	return hv, nil
}

// HaveRanges returns the ranges of the chunks i for which has(i), of n,
// cut to MaxHaveRanges (the first ones).
func HaveRanges(n int, has func(i int) bool) []Range {
	var out []Range
	for i := 0; i < n && len(out) < MaxHaveRanges; i++ {
		if !has(i) {
			continue
		}
		j := i
		for j < n && has(j) {
			j++
		}
		out = append(out, Range{Start: uint32(i), Count: uint32(j - i)})
		i = j
	}
	return out
}
