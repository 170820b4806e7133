package wire

// The trailer of control datagrams: freshness stamp and HMAC.

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/shoal-project/shoal/imaging/mcast/fresh"
)

// MACBytes is the size of a control datagram's HMAC.
const MACBytes = sha256.Size

// AuthBytes is the size of the trailer every control datagram ends with:
// the stamp (time 8, nonce 8, sequence 4) and the HMAC.
const AuthBytes = fresh.Bytes + MACBytes

// ErrUnauthenticated is wrapped when a key is set and a control datagram's
// HMAC is wrong (or zero: a sender without the key).
var ErrUnauthenticated = errors.New("datagram not authenticated")

// IsControl reports whether datagrams of type t carry the trailer.
func IsControl(t Type) bool {
	return t == TypeAnnounce || t == TypeRequest || t == TypeStatus || t == TypeHave
}

// seal appends st and the HMAC (with key; zeros without one) to the
// control datagram that starts at start, and writes its body length.
func seal(b []byte, start int, st fresh.Stamp, key []byte) []byte {
	b = st.Append(b)
	b = append(b, make([]byte, MACBytes)...)
	b = finish(b, start)
	if key != nil {
		mac := hmac.New(sha256.New, key)
		mac.Write(b[start : len(b)-MACBytes])
		mac.Sum(b[len(b)-MACBytes : len(b)-MACBytes])
	}
	return b
}

// ParseControl checks control datagram b (its header, then its trailer:
// the HMAC when key is set) and returns its header, the fields of its body
// (without the trailer) and its stamp. Freshness is the caller's
// (fresh.Guard).
func ParseControl(b []byte, key []byte) (Header, []byte, fresh.Stamp, error) {
	h, body, err := ParseHeader(b)
	if err != nil {
		return h, nil, fresh.Stamp{}, err
	}
	if !IsControl(h.Type) {
		return h, nil, fresh.Stamp{}, malformed("%v is not a control datagram", h.Type)
	}
	if len(body) < AuthBytes {
		return h, nil, fresh.Stamp{}, malformed("%v of %d bytes, shorter than its trailer", h.Type, len(body))
	}
	if key != nil {
		mac := hmac.New(sha256.New, key)
		mac.Write(b[:len(b)-MACBytes])
		if !hmac.Equal(mac.Sum(nil), b[len(b)-MACBytes:]) {
			return h, nil, fresh.Stamp{}, fmt.Errorf("%w: %v with a bad HMAC", ErrUnauthenticated, h.Type)
		}
	}
	fields := body[:len(body)-AuthBytes]
	st, err := fresh.Decode(body[len(fields):])
	if err != nil {
		return h, nil, st, malformed("%v", err)
	}
	return h, fields, st, nil
}
