package wire

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var testHeader = Header{IDPrefix: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}, Session: 0xdeadbeef}

func sampleAnnounce() *Announce {
	return &Announce{
		ID: [32]byte{1, 2, 3, 4, 5, 6, 7, 8, 9}, ManifestBytes: 1234, Chunks: 64,
		BlockBytes: 1442, GroupBlocks: 64, ParityBlocks: 2, Flags: FlagFirstPassDone,
		CursorChunk: 7, CursorGroup: 3, RateBitsPerSec: 200e6,
		Data: netip.MustParseAddrPort("239.255.77.2:7701"), Name: "debian-12",
	}
}

func TestRoundTrip(t *testing.T) {
	ann, err := AppendAnnounce(nil, testHeader, sampleAnnounce())
	if err != nil {
		t.Fatal(err)
	}
	req, err := AppendRequest(nil, testHeader, &Request{Receiver: 9, Needs: []Need{{1, 2, 3}, {4, WholeChunk, 0}}})
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
		{"status", AppendStatus(nil, testHeader, &Status{Receiver: 3, State: StateDone, LossPermille: 12, ChunksDone: 5, Chunks: 6, ReceivedBytes: 1 << 40, DuplicateBytes: 7}), TypeStatus,
			func(b []byte) (any, error) { return ParseStatus(b) }, Status{Receiver: 3, State: StateDone, LossPermille: 12, ChunksDone: 5, Chunks: 6, ReceivedBytes: 1 << 40, DuplicateBytes: 7}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, body, err := ParseHeader(tc.dgram)
			if err != nil {
				t.Fatalf("ParseHeader: %v", err)
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
	good := AppendStatus(nil, testHeader, &Status{Receiver: 1, State: StateJoining})
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
	ann, _ := AppendAnnounce(nil, testHeader, sampleAnnounce())
	_, body, _ := ParseHeader(ann)
	if _, err := ParseAnnounce(body[:len(body)-1]); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseAnnounce(short name) = %v, want ErrMalformed", err)
	}
}

// FuzzParse feeds arbitrary datagrams to every decoder: none may panic, and
// whatever decodes must encode back to the same bytes.
func FuzzParse(f *testing.F) {
	ann, _ := AppendAnnounce(nil, testHeader, sampleAnnounce())
	req, _ := AppendRequest(nil, testHeader, &Request{Receiver: 9, Needs: []Need{{1, 2, 3}}})
	f.Add(ann)
	f.Add(req)
	f.Add(AppendData(nil, testHeader, &Data{Chunk: ManifestChunk, Block: []byte{1, 2, 3}}))
	f.Add(AppendStatus(nil, testHeader, &Status{Receiver: 1, State: StateReceiving}))
	f.Add([]byte("SHOL"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, body, err := ParseHeader(b)
		if err != nil {
			return
		}
		var again []byte
		switch h.Type {
		case TypeAnnounce:
			a, err := ParseAnnounce(body)
			if err != nil {
				return
			}
			again, err = AppendAnnounce(nil, h, &a)
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
			again, err = AppendRequest(nil, h, &r)
			if err != nil {
				t.Fatalf("AppendRequest(%+v): %v", r, err)
			}
		case TypeStatus:
			s, err := ParseStatus(body)
			if err != nil {
				return
			}
			again = AppendStatus(nil, h, &s)
			again[HeaderBytes+5] = b[HeaderBytes+5]
		default:
			return
		}
		if !bytes.Equal(again, b) {
			t.Errorf("re-encoded %x, want %x", again, b)
		}
	})
}
