package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-project/shoal/imaging/mcast/fresh"
)

var testHeader = Header{IDPrefix: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}, Session: 0xdeadbeef}

var (
	testStamp = fresh.Stamp{TimeMs: 1_800_000_000_000, Nonce: 0x0102030405060708, Seq: 42}
	testKey   = []byte("session key for tests")
)

func sampleAnnounce() *Announce {
	return &Announce{
		ID: [32]byte{1, 2, 3, 4, 5, 6, 7, 8, 9}, ManifestBytes: 1234, Chunks: 64,
		BlockBytes: 1442, GroupBlocks: 64, ParityBlocks: 2, Flags: FlagFirstPassDone,
		CursorChunk: 7, CursorGroup: 3, RateBitsPerSec: 200e6,
		Data: netip.MustParseAddrPort("239.255.77.2:7701"), Name: "debian-12",
	}
}

func TestRoundTrip(t *testing.T) {
	ann, err := AppendAnnounce(nil, testHeader, sampleAnnounce(), testStamp, testKey)
	if err != nil {
		t.Fatal(err)
	}
	req, err := AppendRequest(nil, testHeader, &Request{Receiver: 9, Needs: []Need{{1, 2, 3}, {4, WholeChunk, 0}}}, testStamp, testKey)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		dgram []byte
		typ   Type
		parse func([]byte) (any, error)
		want  any
	}{
		{"announce", ann, TypeAnnounce, func(b []byte) (any, error) { return ParseAnnounce(b) }, *sampleAnnounce()},
		{"data", AppendData(nil, testHeader, &Data{Chunk: 5, Group: 6, Shard: 7, Flags: DataFirstPass, Seq: 99, Block: []byte("hello")}), TypeData,
			func(b []byte) (any, error) { return ParseData(b) }, Data{Chunk: 5, Group: 6, Shard: 7, Flags: DataFirstPass, Seq: 99, Block: []byte("hello")}},
		{"request", req, TypeRequest, func(b []byte) (any, error) { return ParseRequest(b, nil) },
			Request{Receiver: 9, Needs: []Need{{1, 2, 3}, {4, WholeChunk, 0}}}},
		{"have", mustHave(t, &Have{Receiver: 4, Ranges: []Range{{0, 3}, {7, 1}, {1 << 31, 5}}}), TypeHave,
			func(b []byte) (any, error) { return ParseHave(b) }, Have{Receiver: 4, Ranges: []Range{{0, 3}, {7, 1}, {1 << 31, 5}}}},
		{"status", AppendStatus(nil, testHeader, &Status{Receiver: 3, State: StateDone, LossPermille: 12, ChunksDone: 5, Chunks: 6, ReceivedBytes: 1 << 40, DuplicateBytes: 7}, testStamp, testKey), TypeStatus,
			func(b []byte) (any, error) { return ParseStatus(b) }, Status{Receiver: 3, State: StateDone, LossPermille: 12, ChunksDone: 5, Chunks: 6, ReceivedBytes: 1 << 40, DuplicateBytes: 7}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, body, err := ParseHeader(tc.dgram)
			if err != nil {
				t.Fatalf("ParseHeader: %v", err)
			}
			if IsControl(h.Type) {
				var st fresh.Stamp
				h, body, st, err = ParseControl(tc.dgram, testKey)
				if err != nil {
					t.Fatalf("ParseControl: %v", err)
				}
				if st != testStamp {
					t.Errorf("stamp %+v, want %+v", st, testStamp)
				}
			}
			wantH := testHeader
			wantH.Type = tc.typ
			if diff := cmp.Diff(wantH, h); diff != "" {
				t.Errorf("ParseHeader() header diff (-want +got):\n%s", diff)
			}
			got, err := tc.parse(body)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("parse diff (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseHeaderRejects(t *testing.T) {
	good := AppendStatus(nil, testHeader, &Status{Receiver: 1, State: StateJoining}, testStamp, nil)
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name  string
		dgram []byte
	}{
		{"empty", nil},
		{"short", good[:HeaderBytes-1]},
		{"magic", mut(func(b []byte) []byte { b[0] = 'X'; return b })},
		{"version", mut(func(b []byte) []byte { b[4] = 9; return b })},
		{"truncated", good[:len(good)-1]},
		{"trailing", append(bytes.Clone(good), 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := ParseHeader(tc.dgram); !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseHeader(%x) = %v, want ErrMalformed", tc.dgram, err)
			}
		})
	}
}

func TestParseBodyRejects(t *testing.T) {
	if _, err := ParseRequest([]byte{0, 0, 0, 1, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8}, nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseRequest(count 2, one entry) = %v, want ErrMalformed", err)
	}
	if _, err := ParseRequest([]byte{0, 0, 0, 1, 0, 0}, nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseRequest(no entries) = %v, want ErrMalformed", err)
	}
	if _, err := ParseStatus(make([]byte, statusBytes)); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseStatus(state 0) = %v, want ErrMalformed", err)
	}
	if _, err := ParseData(make([]byte, 14)); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseData(empty block) = %v, want ErrMalformed", err)
	}
	ann, _ := AppendAnnounce(nil, testHeader, sampleAnnounce(), testStamp, nil)
	_, body, _, _ := ParseControl(ann, nil)
	if _, err := ParseAnnounce(body[:len(body)-1]); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseAnnounce(short name) = %v, want ErrMalformed", err)
	}
}

// TestControlAuth: with a key, a control datagram sealed without it, with
// another key or altered anywhere is refused; its trailer is required.
func TestControlAuth(t *testing.T) {
	signed, _ := AppendAnnounce(nil, testHeader, sampleAnnounce(), testStamp, testKey)
	plain, _ := AppendAnnounce(nil, testHeader, sampleAnnounce(), testStamp, nil)
	other, _ := AppendAnnounce(nil, testHeader, sampleAnnounce(), testStamp, []byte("another key"))
	tests := []struct {
		name  string
		dgram []byte
		key   []byte
		want  error
	}{
		{"signed", signed, testKey, nil},
		{"signed, read without a key", signed, nil, nil},
		{"no key at the sender", plain, testKey, ErrUnauthenticated},
		{"other key", other, testKey, ErrUnauthenticated},
		{"time altered", flip(signed, HeaderBytes+len(signed)-HeaderBytes-AuthBytes+2), testKey, ErrUnauthenticated},
		{"sequence altered", flip(signed, len(signed)-MACBytes-1), testKey, ErrUnauthenticated},
		{"field altered", flip(signed, HeaderBytes+33), testKey, ErrUnauthenticated},
		{"header altered", flip(signed, 17), testKey, ErrUnauthenticated},
		{"data is no control", AppendData(nil, testHeader, &Data{Block: []byte{1}}), testKey, ErrMalformed},
		{"no trailer", shortened(AppendStatus(nil, testHeader, &Status{Receiver: 1, State: StateDone}, testStamp, nil)), nil, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, err := ParseControl(tc.dgram, tc.key)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("ParseControl = %v, want %v", err, tc.want)
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 1
	return b
}

// shortened drops the trailer but keeps the header's length right.
func shortened(b []byte) []byte {
	b = bytes.Clone(b[:len(b)-AuthBytes])
	return finish(b, 0)
}

// FuzzParse feeds arbitrary datagrams to every decoder: none may panic, and
// whatever decodes must encode back to the same bytes (the HMAC included
// when it was checked).
func FuzzParse(f *testing.F) {
	ann, _ := AppendAnnounce(nil, testHeader, sampleAnnounce(), testStamp, testKey)
	req, _ := AppendRequest(nil, testHeader, &Request{Receiver: 9, Needs: []Need{{1, 2, 3}}}, testStamp, testKey)
	f.Add(ann, true)
	f.Add(req, true)
	plainReq, _ := AppendRequest(nil, testHeader, &Request{Receiver: 9, Needs: []Need{{1, 2, 3}}}, testStamp, nil)
	f.Add(plainReq, false)
	f.Add(AppendData(nil, testHeader, &Data{Chunk: ManifestChunk, Block: []byte{1, 2, 3}}), false)
	f.Add(AppendStatus(nil, testHeader, &Status{Receiver: 1, State: StateReceiving}, testStamp, testKey), true)
	f.Add(AppendStatus(nil, testHeader, &Status{Receiver: 1, State: StateReceiving}, testStamp, nil), false)
	f.Add(mustHave(f, &Have{Receiver: 2, Ranges: []Range{{0, 3}, {9, 1}}}), true)
	f.Add([]byte("SHOL"), false)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, b []byte, useKey bool) {
		var key []byte
		if useKey {
			key = testKey
		}
		h, body, err := ParseHeader(b)
		if err != nil {
			return
		}
		var st fresh.Stamp
		if IsControl(h.Type) {
			if h, body, st, err = ParseControl(b, key); err != nil {
				return
			}
		}
		var again []byte
		switch h.Type {
		case TypeAnnounce:
			a, err := ParseAnnounce(body)
			if err != nil {
				return
			}
			again, err = AppendAnnounce(nil, h, &a, st, key)
			if err != nil {
				t.Fatalf("AppendAnnounce(%+v): %v", a, err)
			}
		case TypeData:
			d, err := ParseData(body)
			if err != nil {
				return
			}
			again = AppendData(nil, h, &d)
			// The reserved byte is not kept.
			again[HeaderBytes+9] = b[HeaderBytes+9]
		case TypeRequest:
			r, err := ParseRequest(body, nil)
			if err != nil {
				return
			}
			again, err = AppendRequest(nil, h, &r, st, key)
			if err != nil {
				t.Fatalf("AppendRequest(%+v): %v", r, err)
			}
		case TypeHave:
			hv, err := ParseHave(body)
			if err != nil {
				return
			}
			again, err = AppendHave(nil, h, &hv, st, key)
			if err != nil {
				t.Fatalf("AppendHave(%+v): %v", hv, err)
			}
		case TypeStatus:
			s, err := ParseStatus(body)
			if err != nil {
				return
			}
			again = AppendStatus(nil, h, &s, st, key)
			again[HeaderBytes+5] = b[HeaderBytes+5]
		default:
			return
		}
		if key == nil && IsControl(h.Type) {
			// Unchecked, the MAC is whatever came.
			copy(again[len(again)-MACBytes:], b[len(b)-MACBytes:])
		}
		if !bytes.Equal(again, b) {
			t.Errorf("re-encoded %x, want %x", again, b)
		}
	})
}

func mustHave(t testing.TB, hv *Have) []byte {
	t.Helper()
	b, err := AppendHave(nil, testHeader, hv, testStamp, testKey)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseHaveRejects(t *testing.T) {
	body := func(ranges ...uint32) []byte {
		b := []byte{0, 0, 0, 1, 0, byte(len(ranges) / 2)}
		for _, v := range ranges {
			b = binary.BigEndian.AppendUint32(b, v)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"short", []byte{0, 0, 0}},
		{"no ranges", body()},
		{"empty range", body(3, 0)},
		{"out of order", body(5, 2, 1, 1)},
		{"adjacent", body(0, 2, 2, 1)},
		{"past the end", body(0xFFFFFFFF, 2)},
		{"count lies", append(body(1, 1), 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseHave(tc.body); !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseHave(%x) = %v, want ErrMalformed", tc.body, err)
			}
		})
	}
}

func TestHaveRanges(t *testing.T) {
	held := map[int]bool{0: true, 1: true, 2: true, 5: true, 8: true, 9: true}
	got := HaveRanges(10, func(i int) bool { return held[i] })
	want := []Range{{0, 3}, {5, 1}, {8, 2}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("HaveRanges (-want +got):\n%s", diff)
	}
	alt := HaveRanges(1000, func(i int) bool { return i%2 == 0 })
	if len(alt) != MaxHaveRanges {
		t.Errorf("%d ranges of every other chunk, want the first %d", len(alt), MaxHaveRanges)
	}
	if b, err := AppendHave(nil, testHeader, &Have{Receiver: 1, Ranges: alt}, testStamp, testKey); err != nil || len(b) > 1472 {
		t.Errorf("a full have is %d bytes (%v), want at most 1472", len(b), err)
	}
}
