// Package wire encodes and decodes the datagrams of shoal's multicast
// transport (docs/protocol.md). Every datagram starts with a 20-byte header:
// magic, version, type, body length, the first 8 bytes of the image ID and
// the sender's session number. Control datagrams (announce, request,
// status) end with a trailer: the sender's freshness stamp (time, nonce,
// sequence) and an HMAC-SHA256 of the whole datagram (auth.go). Decoders
// check every length and never trust a count from the network.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/shoal-project/shoal/imaging/mcast/fresh"
)

// Magic starts every datagram.
const Magic = "SHOL"

// Version is the protocol version this package speaks (2: control
// datagrams carry a freshness stamp and an HMAC).
const Version = 2

// HeaderBytes is the size of the common header.
const HeaderBytes = 20

// DataHeaderBytes is the size of a data message's header, common header
// included; the block follows it.
const DataHeaderBytes = HeaderBytes + 14

// MaxDatagramBytes bounds every datagram of the protocol: the UDP payload
// of a 9000-byte (jumbo) Ethernet MTU, less IPv4 and UDP headers.
const MaxDatagramBytes = 9000 - 28

// MaxBlockBytes is the largest block a data datagram carries.
const MaxBlockBytes = MaxDatagramBytes - DataHeaderBytes

// ManifestChunk is the chunk number of the manifest blob (manifest length,
// manifest, signature), sent and repaired like any chunk.
const ManifestChunk = 0xFFFFFFFF

// WholeChunk in a request's Group field asks for a whole chunk.
const WholeChunk = 0xFFFF

// MaxRequestEntries bounds the entries of one request datagram.
const MaxRequestEntries = 160

// Type is a message type.
type Type uint8

// Message types.
const (
	TypeAnnounce Type = 1 // sender -> control group: the session
	TypeData     Type = 2 // sender -> data group: one block (shard) of a chunk
	TypeRequest  Type = 3 // receiver -> control group: what it misses
	TypeStatus   Type = 4 // receiver -> control group: progress, loss, done
	TypeHave     Type = 5 // receiver -> control group: the chunks it already holds
)

func (t Type) String() string {
	switch t {
	case TypeAnnounce:
		return "announce"
	case TypeData:
		return "data"
	case TypeRequest:
		return "request"
	case TypeStatus:
		return "status"
	case TypeHave:
		return "have"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// ErrMalformed is wrapped by every decode error.
var ErrMalformed = errors.New("malformed datagram")

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
}

// Header is the common header of every datagram.
type Header struct {
	Type Type
	// IDPrefix is the first 8 bytes of the image ID (the SHA-256 of the
	// manifest). The announce carries the full ID.
	IDPrefix [8]byte
	// Session is the sender's random session number (the peer session
	// uses it as its epoch); receivers echo it in their messages.
	Session uint32
}

// Prefix returns the IDPrefix of a full image ID.
func Prefix(id [32]byte) [8]byte {
	var p [8]byte
	copy(p[:], id[:8])
	return p
}

// appendHeader appends h with room for the body length, which finish fills in.
func appendHeader(dst []byte, h Header) []byte {
	dst = append(dst, Magic...)
	dst = append(dst, Version, byte(h.Type), 0, 0)
	dst = append(dst, h.IDPrefix[:]...)
	return binary.BigEndian.AppendUint32(dst, h.Session)
}

// finish writes the body length of the datagram that starts at start.
func finish(b []byte, start int) []byte {
	binary.BigEndian.PutUint16(b[start+6:], uint16(len(b)-start-HeaderBytes))
	return b
}

// ParseHeader checks the magic, version and length of datagram b and returns
// its header and body.
func ParseHeader(b []byte) (Header, []byte, error) {
	var h Header
	if len(b) < HeaderBytes {
		return h, nil, malformed("%d bytes, shorter than a header", len(b))
	}
	if string(b[:4]) != Magic {
		return h, nil, malformed("bad magic %q", b[:4])
	}
	if b[4] != Version {
		return h, nil, malformed("version %d, want %d", b[4], Version)
	}
	h.Type = Type(b[5])
	n := int(binary.BigEndian.Uint16(b[6:]))
	if n != len(b)-HeaderBytes {
		return h, nil, malformed("body length %d, datagram has %d", n, len(b)-HeaderBytes)
	}
	copy(h.IDPrefix[:], b[8:16])
	h.Session = binary.BigEndian.Uint32(b[16:])
	return h, b[HeaderBytes:], nil
}

// Announce flags.
const (
	FlagFirstPassDone = 1 << 0 // every chunk was sent once
	FlagEnding        = 1 << 1 // the sender is about to stop
	FlagSending       = 1 << 2 // the first pass has started: data is flowing
	FlagGathering     = 1 << 3 // the first pass waits for more receivers (gather)
)

// Announce is the sender's repeated description of its session.
type Announce struct {
	ID             [32]byte
	ManifestBytes  uint32 // size of the manifest blob (chunk ManifestChunk)
	Chunks         uint32
	BlockBytes     uint16 // data bytes per block
	GroupBlocks    uint16 // data blocks per FEC group (K)
	ParityBlocks   uint16 // parity blocks sent per group in the first pass (M)
	Flags          uint16
	CursorChunk    uint32 // first pass: chunk being sent (ManifestChunk before chunk 0)
	CursorGroup    uint16 // first pass: group being sent
	RateBitsPerSec uint64 // current pacing rate
	Data           netip.AddrPort
	Name           string
}

const announceFixed = 32 + 4 + 4 + 2 + 2 + 2 + 2 + 4 + 2 + 8 + 4 + 2 + 1

// AppendAnnounce appends an announce datagram to dst, sealed with st and
// key (nil: no key, a zero MAC).
func AppendAnnounce(dst []byte, h Header, a *Announce, st fresh.Stamp, key []byte) ([]byte, error) {
	if len(a.Name) > 255 {
		return dst, fmt.Errorf("announce: name of %d bytes, at most 255", len(a.Name))
	}
	if !a.Data.Addr().Is4() {
		return dst, fmt.Errorf("announce: data address %v is not IPv4", a.Data)
	}
	h.Type = TypeAnnounce
	start := len(dst)
	dst = appendHeader(dst, h)
	dst = append(dst, a.ID[:]...)
	dst = binary.BigEndian.AppendUint32(dst, a.ManifestBytes)
	dst = binary.BigEndian.AppendUint32(dst, a.Chunks)
	dst = binary.BigEndian.AppendUint16(dst, a.BlockBytes)
	dst = binary.BigEndian.AppendUint16(dst, a.GroupBlocks)
	dst = binary.BigEndian.AppendUint16(dst, a.ParityBlocks)
	dst = binary.BigEndian.AppendUint16(dst, a.Flags)
	dst = binary.BigEndian.AppendUint32(dst, a.CursorChunk)
	dst = binary.BigEndian.AppendUint16(dst, a.CursorGroup)
	dst = binary.BigEndian.AppendUint64(dst, a.RateBitsPerSec)
	ip := a.Data.Addr().As4()
	dst = append(dst, ip[:]...)
	dst = binary.BigEndian.AppendUint16(dst, a.Data.Port())
	dst = append(dst, byte(len(a.Name)))
	dst = append(dst, a.Name...)
	return seal(dst, start, st, key), nil
}

// ParseAnnounce decodes an announce's fields (ParseControl's).
func ParseAnnounce(body []byte) (Announce, error) {
	var a Announce
	if len(body) < announceFixed {
		return a, malformed("announce of %d bytes, want at least %d", len(body), announceFixed)
	}
	b := body
	copy(a.ID[:], b[:32])
	b = b[32:]
	a.ManifestBytes = binary.BigEndian.Uint32(b)
	a.Chunks = binary.BigEndian.Uint32(b[4:])
	a.BlockBytes = binary.BigEndian.Uint16(b[8:])
	a.GroupBlocks = binary.BigEndian.Uint16(b[10:])
	a.ParityBlocks = binary.BigEndian.Uint16(b[12:])
	a.Flags = binary.BigEndian.Uint16(b[14:])
	a.CursorChunk = binary.BigEndian.Uint32(b[16:])
	a.CursorGroup = binary.BigEndian.Uint16(b[20:])
	a.RateBitsPerSec = binary.BigEndian.Uint64(b[22:])
	a.Data = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[30:34])), binary.BigEndian.Uint16(b[34:]))
	n := int(b[36])
	b = b[37:]
	if len(b) != n {
		return a, malformed("announce name of %d bytes, %d left", n, len(b))
	}
	a.Name = string(b)
	if a.BlockBytes == 0 || a.GroupBlocks == 0 {
		return a, malformed("announce with block size %d, group size %d", a.BlockBytes, a.GroupBlocks)
	}
	if a.ManifestBytes == 0 {
		return a, malformed("announce with an empty manifest")
	}
	return a, nil
}

// Data flags.
const (
	DataFirstPass = 1 << 0 // sent by the first pass (not a repair)
)

// Data is one block of a chunk's stored bytes, or one parity block.
type Data struct {
	Chunk uint32
	Group uint16
	// Shard is the block's number in its group: below the group's data
	// block count a data block, from there on parity block Shard-k.
	Shard uint16
	Flags uint8
	// Seq counts the sender's data datagrams: receivers measure loss
	// from its gaps.
	Seq   uint32
	Block []byte // aliases the datagram when parsed
}

// AppendData appends a data datagram to dst.
func AppendData(dst []byte, h Header, d *Data) []byte {
	h.Type = TypeData
	start := len(dst)
	dst = appendHeader(dst, h)
	dst = binary.BigEndian.AppendUint32(dst, d.Chunk)
	dst = binary.BigEndian.AppendUint16(dst, d.Group)
	dst = binary.BigEndian.AppendUint16(dst, d.Shard)
	dst = append(dst, d.Flags, 0)
	dst = binary.BigEndian.AppendUint32(dst, d.Seq)
	dst = append(dst, d.Block...)
	return finish(dst, start)
}

// ParseData decodes a data body. Block aliases body.
func ParseData(body []byte) (Data, error) {
	var d Data
	if len(body) < DataHeaderBytes-HeaderBytes+1 {
		return d, malformed("data of %d bytes", len(body))
	}
	d.Chunk = binary.BigEndian.Uint32(body)
	d.Group = binary.BigEndian.Uint16(body[4:])
	d.Shard = binary.BigEndian.Uint16(body[6:])
	d.Flags = body[8]
	d.Seq = binary.BigEndian.Uint32(body[10:])
	d.Block = body[14:]
	return d, nil
}

// Need is one entry of a request: Need more blocks of group Group of chunk
// Chunk, or the whole chunk when Group is WholeChunk.
type Need struct {
	Chunk uint32
	Group uint16
	Need  uint16
}

// Request is a receiver's list of what it misses.
type Request struct {
	Receiver uint32
	Needs    []Need
}

// AppendRequest appends a request datagram to dst, sealed with st and key.
func AppendRequest(dst []byte, h Header, r *Request, st fresh.Stamp, key []byte) ([]byte, error) {
	if len(r.Needs) == 0 || len(r.Needs) > MaxRequestEntries {
		return dst, fmt.Errorf("request with %d entries, want 1 to %d", len(r.Needs), MaxRequestEntries)
	}
	h.Type = TypeRequest
	start := len(dst)
	dst = appendHeader(dst, h)
	dst = binary.BigEndian.AppendUint32(dst, r.Receiver)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(r.Needs)))
	for _, n := range r.Needs {
		dst = binary.BigEndian.AppendUint32(dst, n.Chunk)
		dst = binary.BigEndian.AppendUint16(dst, n.Group)
		dst = binary.BigEndian.AppendUint16(dst, n.Need)
	}
	return seal(dst, start, st, key), nil
}

// ParseRequest decodes a request's fields (ParseControl's). Needs is
// appended to buf[:0].
func ParseRequest(body []byte, buf []Need) (Request, error) {
	var r Request
	if len(body) < 6 {
		return r, malformed("request of %d bytes", len(body))
	}
	r.Receiver = binary.BigEndian.Uint32(body)
	n := int(binary.BigEndian.Uint16(body[4:]))
	b := body[6:]
	if n == 0 || n > MaxRequestEntries || len(b) != 8*n {
		return r, malformed("request with %d entries in %d bytes", n, len(b))
	}
	r.Needs = buf[:0]
	for i := 0; i < n; i++ {
		e := b[8*i:]
		r.Needs = append(r.Needs, Need{
			Chunk: binary.BigEndian.Uint32(e),
			Group: binary.BigEndian.Uint16(e[4:]),
			Need:  binary.BigEndian.Uint16(e[6:]),
		})
	}
	return r, nil
}

// Receiver states in a status.
const (
	StateJoining   = 1 // heard the announce, has no manifest yet
	StateReceiving = 2
	StateDone      = 3 // every chunk verified and written, table written
	StateFailed    = 4 // gave up
)

// Status is a receiver's periodic report.
type Status struct {
	Receiver       uint32
	State          uint8
	LossPermille   uint16 // blocks lost in the last interval, per thousand
	ChunksDone     uint32
	Chunks         uint32
	ReceivedBytes  uint64 // block bytes received (duplicates included)
	DuplicateBytes uint64 // block bytes received but not needed
}

const statusBytes = 4 + 1 + 1 + 2 + 4 + 4 + 8 + 8

// AppendStatus appends a status datagram to dst, sealed with st and key.
func AppendStatus(dst []byte, h Header, s *Status, st fresh.Stamp, key []byte) []byte {
	h.Type = TypeStatus
	start := len(dst)
	dst = appendHeader(dst, h)
	dst = binary.BigEndian.AppendUint32(dst, s.Receiver)
	dst = append(dst, s.State, 0)
	dst = binary.BigEndian.AppendUint16(dst, s.LossPermille)
	dst = binary.BigEndian.AppendUint32(dst, s.ChunksDone)
	dst = binary.BigEndian.AppendUint32(dst, s.Chunks)
	dst = binary.BigEndian.AppendUint64(dst, s.ReceivedBytes)
	dst = binary.BigEndian.AppendUint64(dst, s.DuplicateBytes)
	return seal(dst, start, st, key)
}

// ParseStatus decodes a status's fields (ParseControl's).
func ParseStatus(body []byte) (Status, error) {
	var s Status
	if len(body) != statusBytes {
		return s, malformed("status of %d bytes, want %d", len(body), statusBytes)
	}
	s.Receiver = binary.BigEndian.Uint32(body)
	s.State = body[4]
	s.LossPermille = binary.BigEndian.Uint16(body[6:])
	s.ChunksDone = binary.BigEndian.Uint32(body[8:])
	s.Chunks = binary.BigEndian.Uint32(body[12:])
	s.ReceivedBytes = binary.BigEndian.Uint64(body[16:])
	s.DuplicateBytes = binary.BigEndian.Uint64(body[24:])
	if s.State < StateJoining || s.State > StateFailed {
		return s, malformed("status with state %d", s.State)
	}
	return s, nil
}
