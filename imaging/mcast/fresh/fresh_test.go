package fresh

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestStampRoundTrip(t *testing.T) {
	s := Stamp{TimeMs: 1_700_000_000_123, Nonce: 0xdeadbeefcafe, Seq: 7}
	b := s.Append(nil)
	if len(b) != Bytes {
		t.Fatalf("encoded %d bytes, want %d", len(b), Bytes)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(s, got); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
	if _, err := Decode(b[:Bytes-1]); err == nil {
		t.Errorf("Decode(short) = nil error")
	}
}

func TestStamperCounts(t *testing.T) {
	now := time.UnixMilli(5000)
	s := NewStamper(func() time.Time { return now })
	var got []Stamp
	for range 3 {
		_ = s.Do(func(st Stamp) error { got = append(got, st); return nil })
	}
	for i, st := range got {
		if st.Seq != uint32(i+1) || st.Nonce != s.Nonce() || st.Nonce == 0 || st.TimeMs != 5000 {
			t.Errorf("stamp %d = %+v, want seq %d, nonce %x, time 5000", i, st, i+1, s.Nonce())
		}
	}
	if NewStamper(nil).Nonce() == s.Nonce() {
		t.Errorf("two stampers drew the same nonce")
	}
}

func TestGuard(t *testing.T) {
	now := time.UnixMilli(1_000_000_000)
	clock := func() time.Time { return now }
	ms := now.UnixMilli()
	tests := []struct {
		name string
		in   []Stamp
		want []error // per stamp: nil, ErrStale or ErrReplay
	}{
		{"fresh in order", []Stamp{{ms, 1, 1}, {ms, 1, 2}, {ms + 10, 1, 5}}, []error{nil, nil, nil}},
		{"repeated", []Stamp{{ms, 1, 3}, {ms, 1, 3}}, []error{nil, ErrReplay}},
		{"older sequence", []Stamp{{ms, 1, 3}, {ms, 1, 2}}, []error{nil, ErrReplay}},
		{"two senders", []Stamp{{ms, 1, 3}, {ms, 2, 1}, {ms, 1, 4}}, []error{nil, nil, nil}},
		{"earlier run", []Stamp{{ms - Window.Milliseconds() - 1, 3, 1}}, []error{ErrStale}},
		{"edge of the window", []Stamp{{ms - Window.Milliseconds(), 3, 1}, {ms + Window.Milliseconds(), 4, 1}}, []error{nil, nil}},
		{"future", []Stamp{{ms + Window.Milliseconds() + 1, 3, 1}}, []error{ErrStale}},
		{"nonce zero", []Stamp{{ms, 0, 1}}, []error{ErrReplay}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewGuard(clock, 0)
			for i, s := range tt.in {
				err := g.Check(s)
				if tt.want[i] == nil && err != nil || tt.want[i] != nil && !errors.Is(err, tt.want[i]) {
					t.Errorf("Check(%+v) = %v, want %v", s, err, tt.want[i])
				}
			}
		})
	}
}

// A flood of fresh senders keeps the table bounded; marked senders stay;
// a sender forgotten because its messages went stale cannot be replayed.
func TestGuardBounded(t *testing.T) {
	now := time.UnixMilli(1_000_000_000)
	clock := func() time.Time { return now }
	g := NewGuard(clock, 64)
	old := Stamp{now.UnixMilli(), 42, 9}
	if err := g.Check(old); err != nil {
		t.Fatal(err)
	}
	now = now.Add(Window + 2*time.Second)
	if err := g.Check(Stamp{now.UnixMilli(), 43, 1}); err != nil {
		t.Fatal(err)
	}
	g.Mark(43)
	for i := range 100_000 {
		if err := g.Check(Stamp{now.UnixMilli(), uint64(1000 + i), 1}); err != nil {
			t.Fatalf("fresh sender %d: %v", i, err)
		}
		if g.Len() > 64 {
			t.Fatalf("table holds %d senders, at most 64", g.Len())
		}
	}
	if !g.Marked(43) {
		t.Errorf("marked sender forgotten by the flood")
	}
	if err := g.Check(old); !errors.Is(err, ErrStale) {
		t.Errorf("replay of a forgotten sender = %v, want ErrStale", err)
	}
}

func TestGuardMemory(t *testing.T) {
	g := NewGuard(nil, 0)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ms := time.Now().UnixMilli()
	for i := range 1_000_000 {
		_ = g.Check(Stamp{ms, uint64(i + 1), 1})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("a million senders: %d remembered, heap +%d KiB", g.Len(), grew>>10)
	if grew > 2<<20 {
		t.Errorf("heap grew %d bytes for a million senders, want at most 2 MiB", grew)
	}
}

func TestServerClockDate(t *testing.T) {
	// A server whose clock is an hour and a quarter second ahead and
	// which says so in Date only (like nginx).
	skew := time.Hour + 250*time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", time.Now().Add(skew).UTC().Format(http.TimeFormat))
		time.Sleep(3 * time.Millisecond)
	}))
	defer srv.Close()
	c := NewServerClock()
	if d := time.Since(c.Now()); d > time.Second || d < -time.Second {
		t.Fatalf("before any response: %v off the local clock", d)
	}
	client := &http.Client{Transport: c.Transport(nil)}
	for range 12 {
		resp, err := client.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		time.Sleep(83 * time.Millisecond) // walk across the second boundaries
	}
	if !c.Synced() {
		t.Fatal("not synced after 12 responses")
	}
	off := c.Now().Sub(time.Now().Add(skew))
	t.Logf("Date only: off by %v, uncertainty %v", off, c.Uncertainty())
	if off > 500*time.Millisecond || off < -500*time.Millisecond {
		t.Errorf("estimate off by %v, want within 0.5 s", off)
	}
}

func TestServerClockShoalTime(t *testing.T) {
	skew := -3*time.Minute - 42*time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(TimeHeader, strconv.FormatInt(time.Now().Add(skew).UnixMilli(), 10))
	}))
	defer srv.Close()
	c := NewServerClock()
	resp, err := (&http.Client{Transport: c.Transport(nil)}).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	off := c.Now().Sub(time.Now().Add(skew))
	if off > 20*time.Millisecond || off < -20*time.Millisecond {
		t.Errorf("estimate off by %v with X-Shoal-Time, want within 20 ms", off)
	}
}

// A stepped server clock (disjoint intervals) restarts the estimate;
// agreeing responses never make Now go back.
func TestServerClockStep(t *testing.T) {
	c := NewServerClock()
	t0 := time.Now()
	s := time.Unix(2_000_000_000, 0)
	c.Observe(t0, t0.Add(time.Millisecond), s, s.Add(time.Second))
	a := c.Now()
	c.Observe(t0, t0.Add(time.Millisecond), s.Add(900*time.Millisecond), s.Add(901*time.Millisecond))
	if b := c.Now(); b.Before(a) {
		t.Errorf("Now went back from %v to %v on an agreeing response", a, b)
	}
	c.Observe(t0, t0.Add(time.Millisecond), s.Add(-time.Hour), s.Add(-time.Hour+time.Second))
	if d := c.Now().Sub(s.Add(-time.Hour)); d < 0 || d > 2*time.Second {
		t.Errorf("after a step of an hour back, Now is %v from the new server time", d)
	}
}
