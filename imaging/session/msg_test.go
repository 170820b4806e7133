package session

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-project/shoal/imaging/mcast/fresh"
)

var testKey = []byte("site key for tests")

func sampleMsgs() []Msg {
	id := [32]byte{1, 2, 3, 4, 5, 6, 7, 8, 9}
	return []Msg{
		{Type: TypeAnnounce, Flags: FlagComplete, ID: id, Epoch: 3, Node: 77, Held: 12,
			Group: netip.MustParseAddrPort("239.255.78.9:7720"), Name: "debian-12"},
		{Type: TypeRequest, ID: id, Epoch: 0, Node: 5, Held: 0, Name: "debian-12"},
		{Type: TypeRequest, Node: 6, Name: "no-manifest-yet"},
		{Type: TypeTakeover, ID: id, Epoch: 4, Node: 9, Held: 100, Name: "x"},
		{Type: TypeAnnounce, Flags: FlagLeaving, ID: id, Epoch: 1, Node: 1,
			Group: netip.MustParseAddrPort("239.255.78.1:7720")},
		// Version 2: freshness, the data session's number, the echo.
		{Type: TypeAnnounce, Flags: FlagSending, ID: id, Epoch: 2, Node: 8, Held: 3, Session: 0xabcdef01,
			Group: netip.MustParseAddrPort("239.255.78.2:7711"), Name: "img",
			Stamp:     fresh.Stamp{TimeMs: 1_800_000_000_123, Nonce: 0x1122334455667788, Seq: 9},
			EchoNonce: 0x99, EchoSeq: 4},
		{Type: TypeRequest, ID: id, Epoch: 2, Node: 10, Name: "img",
			Stamp:     fresh.Stamp{TimeMs: 1_800_000_000_200, Nonce: 0x99, Seq: 5},
			EchoNonce: 0x1122334455667788, EchoSeq: 9},
		{Type: TypeTakeover, ID: id, Epoch: 3, Node: 10, Held: 40, Name: "img",
			Stamp:     fresh.Stamp{TimeMs: 1_800_000_000_900, Nonce: 0x99, Seq: 6},
			EchoNonce: 0x1122334455667788, EchoSeq: 12},
	}
}

func TestMsgRoundTrip(t *testing.T) {
	for _, m := range sampleMsgs() {
		for _, key := range [][]byte{nil, testKey} {
			t.Run(m.Type.String()+"/"+m.Name, func(t *testing.T) {
				b, err := AppendMsg(nil, &m, key)
				if err != nil {
					t.Fatalf("AppendMsg(%+v) = %v", m, err)
				}
				got, err := ParseMsg(b, key)
				if err != nil {
					t.Fatalf("ParseMsg(AppendMsg(%+v)) = %v", m, err)
				}
				if d := cmp.Diff(m, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); d != "" {
					t.Errorf("round trip (-want +got):\n%s", d)
				}
			})
		}
	}
}

func TestMsgAuth(t *testing.T) {
	m := sampleMsgs()[0]
	plain, _ := AppendMsg(nil, &m, nil)
	signed, _ := AppendMsg(nil, &m, testKey)
	other, _ := AppendMsg(nil, &m, []byte("another key"))
	tampered := bytes.Clone(signed)
	tampered[45] ^= 1 // node ID
	tests := []struct {
		name string
		b    []byte
		key  []byte
		want error
	}{
		{"unsigned with key", plain, testKey, ErrUnauthenticated},
		{"signed with key", signed, testKey, nil},
		{"signed without key", signed, nil, nil},
		{"other key", other, testKey, ErrUnauthenticated},
		{"tampered", tampered, testKey, ErrUnauthenticated},
		{"short", signed[:40], testKey, ErrBadMsg},
		{"truncated MAC", signed[:len(signed)-1], testKey, ErrBadMsg},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseMsg(tt.b, tt.key)
			if !errors.Is(err, tt.want) && !(tt.want == nil && err == nil) {
				t.Errorf("ParseMsg = %v, want %v", err, tt.want)
			}
		})
	}
}

func FuzzParseMsg(f *testing.F) {
	for _, m := range sampleMsgs() {
		b, _ := AppendMsg(nil, &m, nil)
		f.Add(b, false)
		b, _ = AppendMsg(nil, &m, testKey)
		f.Add(b, true)
	}
	f.Add([]byte("SHPS\x01\x01"), false)
	f.Add([]byte("SHPS\x02\x01"), false)
	f.Add(bytes.Repeat([]byte{0xff}, 100), true)
	f.Fuzz(func(t *testing.T, b []byte, useKey bool) {
		var key []byte
		if useKey {
			key = testKey
		}
		m, err := ParseMsg(b, key)
		if err != nil {
			return
		}
		// A message that parses encodes back to the same bytes (the
		// HMAC included, when it was checked).
		out, err := AppendMsg(nil, &m, key)
		if err != nil {
			t.Fatalf("AppendMsg(ParseMsg(%x)) = %v", b, err)
		}
		if useKey && !bytes.Equal(out, b) {
			t.Fatalf("re-encoded %x, want %x", out, b)
		}
		if _, err := ParseMsg(out, key); err != nil {
			t.Fatalf("ParseMsg(re-encoded) = %v", err)
		}
	})
}
