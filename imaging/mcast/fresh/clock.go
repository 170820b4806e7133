package fresh

// ServerClock: the node's estimate of the image server's clock, learnt
// from the HTTP responses it gets anyway.

import (
	"net/http"
	"strconv"
	"sync"
	"time"
)

// TimeHeader is the response header in which shoal serve gives its clock,
// in milliseconds since the Unix epoch. Any other static server (nginx)
// gives the Date header, to the second, which serves as well.
const TimeHeader = "X-Shoal-Time"

// ServerClock estimates the server's clock. Each response says that the
// server stamped it at some instant of [lo, hi) (the Date header: its
// second; X-Shoal-Time: its millisecond), somewhere between the moment the
// request left and the moment the answer came: so the offset between the
// server's clock and ours lies in an interval, and the intervals of
// successive responses are intersected (a few responses pin a 1-second
// Date down to the round trip). An empty intersection (the server's clock
// was stepped, or ours drifted) starts again from the latest response.
// The offset is applied to the monotonic clock, and Now never goes back.
type ServerClock struct {
	origin time.Time // local monotonic reference

	mu     sync.Mutex
	have   bool
	lo, hi int64 // bounds of (server Unix ns) - (local ns since origin)
	last   time.Time
}

// NewServerClock returns a clock that reads the local clock until it has
// seen a response.
func NewServerClock() *ServerClock { return &ServerClock{origin: time.Now()} }

// Observe records that the server stamped a response at an instant of
// [serverLo, serverHi) while the request was under way (sent at t0, its
// answer read at t1, both local times with a monotonic reading).
func (c *ServerClock) Observe(t0, t1, serverLo, serverHi time.Time) {
	m0, m1 := t0.Sub(c.origin).Nanoseconds(), t1.Sub(c.origin).Nanoseconds()
	lo, hi := serverLo.UnixNano()-m1, serverHi.UnixNano()-m0
	if lo > hi {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.have && lo <= c.hi && hi >= c.lo {
		c.lo, c.hi = max(c.lo, lo), min(c.hi, hi)
		return
	}
	// The first response, or a clock stepped: Now may jump (back) once.
	c.have, c.lo, c.hi, c.last = true, lo, hi, time.Time{}
}

// ObserveResponse records a response's X-Shoal-Time, or else its Date; it
// reports whether the response had either.
func (c *ServerClock) ObserveResponse(t0, t1 time.Time, h http.Header) bool {
	if v := h.Get(TimeHeader); v != "" {
		if ms, err := strconv.ParseInt(v, 10, 64); err == nil && ms > 0 {
			s := time.UnixMilli(ms)
			c.Observe(t0, t1, s, s.Add(time.Millisecond))
			return true
		}
	}
	if v := h.Get("Date"); v != "" {
		if d, err := http.ParseTime(v); err == nil {
			c.Observe(t0, t1, d, d.Add(time.Second))
			return true
		}
	}
	return false
}

// Synced reports whether the clock has seen a response.
func (c *ServerClock) Synced() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.have
}

// Uncertainty is the width of the interval the offset is known to lie in
// (0 before any response).
func (c *ServerClock) Uncertainty() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Duration(c.hi - c.lo)
}

// Now is the estimate of the server's clock: the local clock until a
// response was seen. It does not go back while the responses agree (the
// narrowing of the interval moves its middle by at most a half second).
func (c *ServerClock) Now() time.Time {
	mono := time.Since(c.origin).Nanoseconds()
	c.mu.Lock()
	defer c.mu.Unlock()
	var t time.Time
	if c.have {
		t = time.Unix(0, (c.lo+c.hi)/2+mono)
	} else {
		t = time.Now()
	}
	if t.Before(c.last) {
		return c.last
	}
	c.last = t
	return t
}

// Transport wraps rt (nil: http.DefaultTransport) so that every response
// through it is observed.
func (c *ServerClock) Transport(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return observer{c, rt}
}

type observer struct {
	c  *ServerClock
	rt http.RoundTripper
}

func (o observer) RoundTrip(r *http.Request) (*http.Response, error) {
	t0 := time.Now()
	resp, err := o.rt.RoundTrip(r)
	if err == nil {
		o.c.ObserveResponse(t0, time.Now(), resp.Header)
	}
	return resp, err
}
