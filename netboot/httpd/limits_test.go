package httpd

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/netboot/inventory"
)

// serveLoopback runs a Server with lim on 127.0.0.1 (Serve, the real
// listener path) and returns its address.
func serveLoopback(t *testing.T, lim Limits) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"repo", "boot"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "boot/vmlinuz"), []byte("kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.Parse([]byte(machinesFile), "ignore")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{RepoDir: filepath.Join(dir, "repo"), BootDir: filepath.Join(dir, "boot"),
		BaseURL: "http://127.0.0.1", Inventory: inv, Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		s.Close()
	})
	return ln.Addr().String()
}

func TestLimitDefaults(t *testing.T) {
	l := Limits{}.withDefaults()
	for name, d := range map[string]time.Duration{
		"ReadHeaderTimeout": l.ReadHeaderTimeout, "BodyTimeout": l.BodyTimeout, "IdleTimeout": l.IdleTimeout,
	} {
		if d <= 0 || d > 30*time.Second {
			t.Errorf("default %s = %v, want 0 < it <= 30s", name, d)
		}
	}
	if l.MaxConns <= 0 || l.MaxConnsPerIP <= 0 || l.MaxConnsPerIP > l.MaxConns || l.MaxHeaderBytes <= 0 || l.MaxBodyBytes <= 0 {
		t.Errorf("default limits %+v: want every bound set, per IP <= total", l)
	}
}

// TestSlowClientsCut: a client that trickles its header or body one byte a
// second, or sits idle on a keep-alive connection, is disconnected by
// the server soon after the timeout (here 1 s), well within 30 s.
func TestSlowClientsCut(t *testing.T) {
	const timeout = time.Second
	addr := serveLoopback(t, Limits{ReadHeaderTimeout: timeout, BodyTimeout: timeout, IdleTimeout: timeout})
	for _, tc := range []struct {
		name    string
		start   string // sent at once
		trickle string // then one byte a second
	}{
		{"silent", "", ""},
		{"header trickle", "GET /boot/vmlinuz HTTP/1.1\r\nHost: x\r\n", strings.Repeat("X", 60)},
		{"body trickle", "POST /api/v1/machines/52:54:00:12:34:56/status HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{", strings.Repeat(" ", 60)},
		{"idle keep-alive", "GET /boot/vmlinuz HTTP/1.1\r\nHost: x\r\n\r\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			if _, err := io.WriteString(c, tc.start); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				for i := range len(tc.trickle) {
					select {
					case <-stop:
						return
					case <-time.After(time.Second):
					}
					if _, err := c.Write([]byte{tc.trickle[i]}); err != nil {
						return
					}
				}
			}()
			c.SetReadDeadline(start.Add(30 * time.Second))
			_, err = io.Copy(io.Discard, c) // any answer, then the close
			if ne := (net.Error)(nil); errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection still open after %v", time.Since(start).Round(time.Millisecond))
			}
			t.Logf("cut after %v (%v)", time.Since(start).Round(time.Millisecond), err)
		})
	}
}

// TestManyConnectionsBounded: 1,000 idle and slow connections from one
// host (127.0.0.2) are held only up to the per-IP bound (the rest are
// closed at once), and a real client (127.0.0.1) still gets its iPXE
// script and a boot file. Default limits.
func TestManyConnectionsBounded(t *testing.T) {
	addr := serveLoopback(t, Limits{})
	const n = 1000
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i := range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
		if i%2 == 1 {
			io.WriteString(c, "GET / HTTP/1.1\r\n") // a header begun, never ended
		}
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, path := range []string{"/ipxe/52:54:00:12:34:56", "/boot/vmlinuz"} {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s beside %d idle connections: %v", path, n, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(body) == 0 {
			t.Errorf("GET %s: %d %q", path, resp.StatusCode, body)
		}
	}
	// Count the connections the server closed: all but the per-IP bound.
	closed := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil {
			if ne := (net.Error)(nil); !errors.As(err, &ne) || !ne.Timeout() {
				closed++
			}
		}
	}
	if held := n - closed; held > DefaultMaxConnsPerIP {
		t.Errorf("server holds %d connections from one host, want <= %d", held, DefaultMaxConnsPerIP)
	} else {
		t.Logf("held %d of %d connections from one host", held, n)
	}
}
