package etcdstore

import (
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-project/shoal/netboot/api"
)

// FuzzDecodeMachine: any value under /shoal/machines/ (an operator's
// etcdctl put) either is refused with ErrBadRecord or decodes to a valid
// action and image that survive the store's own rewrite (Encode).
func FuzzDecodeMachine(f *testing.F) {
	for _, s := range []string{
		`{"image":"debian-12","disk":"/dev/vda","action":"reimage"}`,
		`{"image":"debian-12","action":"local"}`,
		`{"image":"debian-12","disk":"-","action":"local"}`,
		`{"image":"debian-12","disk":"size>=100G","action":"reimage"}`,
		`{"image":"debian-12","action":"wipe"}`,
		`{"imgae":"debian-12","action":"reimage"}`,
		`{"image":"","action":"reimage"}`,
		`{"image":"a b","action":"reimage"}`,
		`{"image":"x","action":"local"} {}`,
		`{"image":"x","action":"local","action":"reimage"}`,
		`[]`, `null`, ``, `{`, "\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeMachine(b)
		if err != nil {
			if !errors.Is(err, ErrBadRecord) {
				t.Fatalf("DecodeMachine(%q) = %v, not an ErrBadRecord", b, err)
			}
			return
		}
		if r.Action != api.Reimage && r.Action != api.Local {
			t.Fatalf("DecodeMachine(%q) action %q", b, r.Action)
		}
		if r.Image == "" || r.Disk == "-" {
			t.Fatalf("DecodeMachine(%q) = %+v: empty image or a disk of \"-\"", b, r)
		}
		again, err := DecodeMachine(r.Encode())
		if err != nil {
			t.Fatalf("DecodeMachine(Encode(%+v)) = %v", r, err)
		}
		if diff := cmp.Diff(r, again); diff != "" {
			t.Fatalf("round trip of %q (-first +again):\n%s", b, diff)
		}
	})
}

// FuzzDecodeStatus: any value under /shoal/status/ or /shoal/events/
// decodes or is refused with ErrBadRecord; a decoded status has progress
// in 0..1.
func FuzzDecodeStatus(f *testing.F) {
	for _, s := range []string{
		`{"status":{"state":"writing","progress":0.5},"lastReport":"2026-12-04T12:00:00Z","server":"a"}`,
		`{"status":{"state":"done","progress":1,"verified":true},"firstSeen":"2026-12-04T12:00:00Z","server":"a","newer":1}`,
		`{"status":{"progress":2}}`,
		`{"time":"2026-12-04T12:00:00Z","server":"a","status":{"state":"done","progress":1}}`,
		`{"lastReport":"yesterday"}`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeStatus(b)
		if err != nil && !errors.Is(err, ErrBadRecord) {
			t.Fatalf("DecodeStatus(%q) = %v, not an ErrBadRecord", b, err)
		}
		if err == nil && (r.Status.Progress < 0 || r.Status.Progress > 1) {
			t.Fatalf("DecodeStatus(%q) progress %v", b, r.Status.Progress)
		}
		if _, err := DecodeEvent(b); err != nil && !errors.Is(err, ErrBadRecord) {
			t.Fatalf("DecodeEvent(%q) = %v, not an ErrBadRecord", b, err)
		}
	})
}

// FuzzMACOfKey: a key either names one canonical MAC under its prefix or
// is refused; the canonical key names the same MAC.
func FuzzMACOfKey(f *testing.F) {
	for _, s := range []string{"52:54:00:12:34:56", "52-54-00-12-34-56", "52:54:00:12:34:56/x", "", "zz", "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01"} {
		f.Add(s)
	}
	keys := Layout{DefaultPrefix}
	f.Fuzz(func(t *testing.T, rest string) {
		mac, err := MACOfKey(keys.Machines(), keys.Machines()+rest)
		if err != nil {
			return
		}
		if again, err := MACOfKey(keys.Machines(), keys.Machine(mac)); err != nil || again != mac {
			t.Fatalf("MACOfKey of %q = %q; of its canonical key: %q %v", rest, mac, again, err)
		}
	})
}

// FuzzParseURL: any --store value either is refused or gives one
// http://HOST:PORT endpoint (https:// for etcds://) per comma-separated
// host, each a valid URL with a port in 1..65535, and none twice.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"etcd://10.0.0.5:2379,10.0.0.6:2379,10.0.0.7:2379",
		"etcd://etcd1", "etcd://[::1]:2379,[fe80::1]", "etcd://::1", "etcds://a:2379",
		"etcd://a:0", "etcd://a:65536", "etcd://a:2379,a:2379", "etcd://a:02379", "etcd://", "etcd://a,,b",
		"etcd://a/b", "etcd://u@a", "etcd://a:2379?x", "http://a:2379", "file", "etcd://[a]:1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		eps, err := ParseURL(s)
		if err != nil {
			return
		}
		if want := strings.Count(s, ",") + 1; len(eps) != want {
			t.Fatalf("ParseURL(%q) = %d endpoints, want %d", s, len(eps), want)
		}
		seen := map[string]bool{}
		for _, ep := range eps {
			u, err := url.Parse(ep)
			want := "http"
			if strings.HasPrefix(s, "etcds://") {
				want = "https"
			}
			if err != nil || u.Scheme != want || u.Port() == "" || u.Hostname() == "" || u.Path != "" {
				t.Fatalf("ParseURL(%q): endpoint %q is not %s://HOST:PORT (%v)", s, ep, want, err)
			}
			if _, _, err := net.SplitHostPort(u.Host); err != nil {
				t.Fatalf("ParseURL(%q): endpoint %q: %v", s, ep, err)
			}
			if seen[ep] {
				t.Fatalf("ParseURL(%q): %q twice", s, ep)
			}
			seen[ep] = true
		}
	})
}
