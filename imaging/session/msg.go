package session

// The peer session's control messages: layout, encoding, decoding.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/shoal-project/shoal/imaging/mcast/fresh"
)

// The peer session's control messages (docs/session.md). Every message is
// one UDP datagram:
//
//	offset size field
//	0      4    magic "SHPS"
//	4      1    version (2)
//	5      1    type: 1 announce, 2 request, 3 takeover
//	6      2    flags: bit 0 complete, bit 1 leaving, bit 2 sending, bit 15 HMAC follows
//	8      32   image ID (all zeros: a requester that has no manifest yet)
//	40     4    epoch
//	44     4    node ID of the sender
//	48     4    chunks the sender holds
//	52     4    data session: IPv4 address of the transport's control group
//	56     2    its port
//	58     4    announce: the transport session number while sending (else 0)
//	62     8    time: the sender's estimate of the server's clock, ms since the Unix epoch
//	70     8    nonce: random, drawn once per sender and run
//	78     4    sequence number of the sender's messages, from 1
//	82     8    echo nonce: the sender of the message this one answers (0: none)
//	90     4    echo sequence: that message's sequence number
//	94     1    image name length n
//	95     n    image name
//	95+n   32   HMAC-SHA256 over bytes [0, 95+n) with the key, when flag bit 15
//
// The datagram must be exactly as long as the fields say.

// msgMagic starts every control message.
const msgMagic = "SHPS"

// msgVersion is the version this package speaks (2: freshness and echo).
const msgVersion = 2

// msgFixedBytes is the size of a message without its name and MAC.
const msgFixedBytes = 95

// macBytes is the size of the HMAC trailer.
const macBytes = sha256.Size

// maxNameBytes bounds the image name in a message.
const maxNameBytes = 255

// MsgType is a control message's type.
type MsgType uint8

// Control message types.
const (
	// TypeAnnounce: a leader, every AnnounceInterval and in answer to
	// each request (echoing it): "I am downloading (or hold) image X; its
	// data session is on group G".
	TypeAnnounce MsgType = 1
	// TypeRequest: a node that wants image X, every AnnounceInterval
	// until data flows (epoch: the leader it asks, echoing that leader's
	// last announce; 0 when it knows none, echoing another listener).
	TypeRequest MsgType = 2
	// TypeTakeover: a candidate in a takeover election for epoch E, with
	// the chunks it holds, echoing the leader that is gone.
	TypeTakeover MsgType = 3
)

func (t MsgType) String() string {
	switch t {
	case TypeAnnounce:
		return "announce"
	case TypeRequest:
		return "request"
	case TypeTakeover:
		return "takeover"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Message flags.
const (
	FlagComplete = 1 << 0  // the sender holds the whole image
	FlagLeaving  = 1 << 1  // the leader is about to stop
	FlagSending  = 1 << 2  // the leader's data session is running
	flagMAC      = 1 << 15 // an HMAC trailer follows
)

// ErrBadMsg is wrapped by every decode error.
var ErrBadMsg = errors.New("bad session message")

// ErrUnauthenticated is wrapped when a key is set and a message carries
// no HMAC or a wrong one.
var ErrUnauthenticated = errors.New("session message not authenticated")

// Msg is one control message.
type Msg struct {
	Type  MsgType
	Flags uint16 // FlagComplete, FlagLeaving, FlagSending
	ID    [32]byte
	Epoch uint32
	Node  uint32
	Held  uint32
	Group netip.AddrPort // announce: the transport's control group
	// Session is, in an announce while sending, the transport session
	// number of the data session (mcast's Session).
	Session uint32
	// Stamp is the message's freshness (time, nonce, sequence).
	Stamp fresh.Stamp
	// Echo names the message this one answers, by its sender's nonce and
	// its sequence number: a leader's announce echoes the request it
	// answers, which proves to the requester that the leader lives in
	// this run.
	EchoNonce uint64
	EchoSeq   uint32
	Name      string
}

// AppendMsg appends m's datagram to dst, with an HMAC when key is not nil.
func AppendMsg(dst []byte, m *Msg, key []byte) ([]byte, error) {
	if len(m.Name) > maxNameBytes {
		return dst, fmt.Errorf("session message: name of %d bytes, at most %d", len(m.Name), maxNameBytes)
	}
	var addr [4]byte
	var port uint16
	if m.Group.IsValid() {
		if !m.Group.Addr().Is4() {
			return dst, fmt.Errorf("session message: group %v is not IPv4", m.Group)
		}
		addr, port = m.Group.Addr().As4(), m.Group.Port()
	}
	flags := m.Flags &^ flagMAC
	if key != nil {
		flags |= flagMAC
	}
	start := len(dst)
	dst = append(dst, msgMagic...)
	dst = append(dst, msgVersion, byte(m.Type))
	dst = binary.BigEndian.AppendUint16(dst, flags)
	dst = append(dst, m.ID[:]...)
	dst = binary.BigEndian.AppendUint32(dst, m.Epoch)
	dst = binary.BigEndian.AppendUint32(dst, m.Node)
	dst = binary.BigEndian.AppendUint32(dst, m.Held)
	dst = append(dst, addr[:]...)
	dst = binary.BigEndian.AppendUint16(dst, port)
	dst = binary.BigEndian.AppendUint32(dst, m.Session)
	dst = m.Stamp.Append(dst)
	dst = binary.BigEndian.AppendUint64(dst, m.EchoNonce)
	dst = binary.BigEndian.AppendUint32(dst, m.EchoSeq)
	dst = append(dst, byte(len(m.Name)))
	dst = append(dst, m.Name...)
	if key != nil {
		mac := hmac.New(sha256.New, key)
		mac.Write(dst[start:])
		dst = mac.Sum(dst)
	}
	return dst, nil
}

// ParseMsg decodes datagram b. With a key, a message without a good HMAC
// is an error wrapping ErrUnauthenticated; without one, an HMAC is
// skipped unchecked. Freshness is the caller's (fresh.Guard).
func ParseMsg(b []byte, key []byte) (Msg, error) {
	var m Msg
	if len(b) < msgFixedBytes {
		return m, fmt.Errorf("%w: %d bytes, shorter than %d", ErrBadMsg, len(b), msgFixedBytes)
	}
	if string(b[:4]) != msgMagic {
		return m, fmt.Errorf("%w: magic %q", ErrBadMsg, b[:4])
	}
	if b[4] != msgVersion {
		return m, fmt.Errorf("%w: version %d, want %d", ErrBadMsg, b[4], msgVersion)
	}
	m.Type = MsgType(b[5])
	if m.Type < TypeAnnounce || m.Type > TypeTakeover {
		return m, fmt.Errorf("%w: type %d", ErrBadMsg, b[5])
	}
	flags := binary.BigEndian.Uint16(b[6:])
	n := int(b[msgFixedBytes-1])
	want := msgFixedBytes + n
	if flags&flagMAC != 0 {
		want += macBytes
	}
	if len(b) != want {
		return m, fmt.Errorf("%w: %d bytes, fields say %d", ErrBadMsg, len(b), want)
	}
	if key != nil {
		if flags&flagMAC == 0 {
			return m, fmt.Errorf("%w: no HMAC", ErrUnauthenticated)
		}
		mac := hmac.New(sha256.New, key)
		mac.Write(b[:msgFixedBytes+n])
		if !hmac.Equal(mac.Sum(nil), b[msgFixedBytes+n:]) {
			return m, fmt.Errorf("%w: bad HMAC", ErrUnauthenticated)
		}
	}
	m.Flags = flags &^ flagMAC
	copy(m.ID[:], b[8:40])
	m.Epoch = binary.BigEndian.Uint32(b[40:])
	m.Node = binary.BigEndian.Uint32(b[44:])
	m.Held = binary.BigEndian.Uint32(b[48:])
	var addr [4]byte
	copy(addr[:], b[52:56])
	port := binary.BigEndian.Uint16(b[56:])
	if port != 0 {
		a := netip.AddrFrom4(addr)
		if !a.IsMulticast() {
			return m, fmt.Errorf("%w: group %v is not multicast", ErrBadMsg, a)
		}
		m.Group = netip.AddrPortFrom(a, port)
	} else if addr != [4]byte{} {
		return m, fmt.Errorf("%w: group address without a port", ErrBadMsg)
	}
	m.Session = binary.BigEndian.Uint32(b[58:])
	m.Stamp, _ = fresh.Decode(b[62:]) // the length was checked
	m.EchoNonce = binary.BigEndian.Uint64(b[82:])
	m.EchoSeq = binary.BigEndian.Uint32(b[90:])
	m.Name = string(b[msgFixedBytes : msgFixedBytes+n])
	if m.Type == TypeAnnounce && !m.Group.IsValid() {
		return m, fmt.Errorf("%w: announce without a group", ErrBadMsg)
	}
	return m, nil
}
