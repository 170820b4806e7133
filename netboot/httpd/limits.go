// limits.go bounds what one client can hold of the HTTP server: time to
// send a request's header and body, time a keep-alive connection may sit
// idle, header and body sizes, and connections in all and per remote IP.

package httpd

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// Limits bound the HTTP server's connections. A zero field takes its
// default (the Default... constants).
type Limits struct {
	// ReadHeaderTimeout: time to send a request's header, from the
	// connection's start or its first byte after an idle keep-alive.
	ReadHeaderTimeout time.Duration
	// BodyTimeout: time to send a request's body, after its header.
	BodyTimeout time.Duration
	// IdleTimeout: time a keep-alive connection may wait for its next
	// request.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's header.
	MaxHeaderBytes int
	// MaxBodyBytes bounds any request's body (a status report has its own,
	// smaller bound).
	MaxBodyBytes int64
	// MaxConns bounds the connections open at once; MaxConnsPerIP those
	// from one remote address. A connection over either is closed at
	// once.
	MaxConns, MaxConnsPerIP int
}

// The defaults of Limits. No client holds a connection without sending
// for more than 30 s.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultBodyTimeout       = 30 * time.Second
	DefaultIdleTimeout       = 30 * time.Second
	DefaultMaxHeaderBytes    = 16 << 10
	DefaultMaxBodyBytes      = 1 << 20
	DefaultMaxConns          = 4096
	// DefaultMaxConnsPerIP leaves room for an appliance's parallel chunk
	// downloads (imaging: 2 per CPU, at least 4).
	DefaultMaxConnsPerIP = 256
)

func (l Limits) withDefaults() Limits {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&l.BodyTimeout, DefaultBodyTimeout)
	def(&l.IdleTimeout, DefaultIdleTimeout)
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if l.MaxConns <= 0 {
		l.MaxConns = DefaultMaxConns
	}
	if l.MaxConnsPerIP <= 0 {
		l.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	return l
}

// httpServer is the http.Server for h with the limits set.
func (l Limits) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           l.bodyLimits(h),
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		// No ReadTimeout: it would also stop a long image download
		// (the background read after the request then fails), and no
		// WriteTimeout for the same reason. Bodies get their deadline
		// in bodyLimits.
	}
}

// bodyLimits gives a request with a body a deadline to finish sending it
// and a size bound.
func (l Limits) bodyLimits(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
			// The deadline is the connection's: the next request's
			// header read sets its own.
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(l.BodyTimeout))
			r.Body = http.MaxBytesReader(w, r.Body, l.MaxBodyBytes)
		}
		h.ServeHTTP(w, r)
	})
}

// limitListener closes at once a connection over the total or the
// per-IP bound (instead of leaving it in the kernel's queue, where it
// would stall the clients behind it).
type limitListener struct {
	net.Listener
	max, perIP int

	mu    sync.Mutex
	total int
	byIP  map[string]int
}

func (l Limits) listener(ln net.Listener) *limitListener {
	return &limitListener{Listener: ln, max: l.MaxConns, perIP: l.MaxConnsPerIP, byIP: map[string]int{}}
}

func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		ll.mu.Lock()
		ok := ll.total < ll.max && ll.byIP[ip] < ll.perIP
		if ok {
			ll.total++
			ll.byIP[ip]++
		}
		ll.mu.Unlock()
		if !ok {
			c.Close()
			continue
		}
		return &limitConn{Conn: c, ll: ll, ip: ip}, nil
	}
}

func (ll *limitListener) release(ip string) {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	ll.total--
	if ll.byIP[ip]--; ll.byIP[ip] <= 0 {
		delete(ll.byIP, ip)
	}
}

func remoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

type limitConn struct {
	net.Conn
	ll   *limitListener
	ip   string
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.ll.release(c.ip) })
	return err
}
