// server.go runs the lab's shoal serve and reads its API.

package lab

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/shoal-project/shoal/internal/netlab"
	"github.com/shoal-project/shoal/netboot/api"
)

// server is the lab's running shoal serve.
type server struct {
	cmd  *exec.Cmd
	done chan struct{}
	api  *http.Client // dials into the server's namespace
	base string       // http://IP:8080
}

// startServer runs shoal serve in the server's namespace, with the
// machines' inventory, and waits until its HTTP server is up.
func (l *lab) startServer(ctx context.Context, srvNode *netlab.Node, r repository) (*server, error) {
	srvLog, err := os.Create(filepath.Join(l.work, "serve.log"))
	if err != nil {
		return nil, err
	}
	defer srvLog.Close() // the process has its own descriptor
	ip := srvNode.IP.To4()
	rng := fmt.Sprintf("%d.%d.%d.100-%d.%d.%d.199", ip[0], ip[1], ip[2], ip[0], ip[1], ip[2])
	cmdline := strings.TrimSpace(fmt.Sprintf("console=ttyS0 panic=-1 shoal.rate=%d %s", l.cfg.RateBitsPerSec, l.cfg.Cmdline))
	cmd := srvNode.Command(ctx, l.cfg.Shoal, "serve", "--iface", "eth0", "--dhcp", "full", "--range", rng,
		"--boot", l.cfg.Out, "--repo", r.dir, "--inventory", filepath.Join(l.work, "machines"),
		"--leases", filepath.Join(l.work, "leases"), "--cmdline", cmdline)
	cmd.Args = append(cmd.Args, l.stateArgs()...)
	cmd.Stderr = srvLog
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("lab: shoal serve: %w", err)
	}
	l.log.Info("shoal serve started", "pid", cmd.Process.Pid)
	s := &server{cmd: cmd, done: make(chan struct{}), base: "http://" + net.JoinHostPort(srvNode.IP.String(), "8080")}
	go func() { cmd.Wait(); close(s.done) }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.Contains(line, "http on") {
		s.stop()
		b, _ := os.ReadFile(srvLog.Name())
		return nil, fmt.Errorf("lab: shoal serve did not start: %q %v\n%s", line, err, b)
	}
	go io.Copy(io.Discard, out)
	s.api = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := srvNode.Do(func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
	return s, nil
}

// stop ends the server this run started, by PID, and waits for it.
func (s *server) stop() {
	s.cmd.Process.Kill()
	<-s.done
}

// machines asks the server for every machine, by MAC.
func (s *server) machines(ctx context.Context) (map[string]*api.Machine, error) {
	ms, err := (&api.Client{BaseURL: s.base, HTTP: s.api}).Machines(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*api.Machine, len(ms))
	for i := range ms {
		out[ms[i].MAC] = &ms[i]
	}
	return out, nil
}

// repoEgress reads the bytes the server sent from its repository.
func (s *server) repoEgress() (int64, error) {
	resp, err := s.api.Get(s.base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	return ParseRepoEgress(string(b))
}

// ParseRepoEgress finds the repository route's response bytes in
// Prometheus text.
func ParseRepoEgress(metrics string) (int64, error) {
	const key = `shoal_serve_http_response_bytes_total{route="repo"} `
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			var f float64
			if _, err := fmt.Sscanf(v, "%g", &f); err != nil {
				return 0, fmt.Errorf("metrics: %q: %w", l, err)
			}
			return int64(f), nil
		}
	}
	return 0, nil // nothing served from the repository yet
}

// proxyDashboard serves the server's HTTP (dashboard, API) on a host
// address, dialing into the namespace; it returns a stop function.
func proxyDashboard(addr, base string, tr http.RoundTripper) (func(), string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, "", err
		}
	}
	u, _ := url.Parse(base)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = tr
	hs := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); hs.Serve(ln) }()
	return func() { hs.Close(); wg.Wait() }, ln.Addr().String(), nil
}
