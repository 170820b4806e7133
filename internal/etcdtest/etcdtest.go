// Package etcdtest runs a real etcd cluster for tests: Debian's etcd-server
// (/usr/bin/etcd), one member per loopback address 127.0.0.11, .12, .13 …,
// on free ports, each with its data directory in t.TempDir(). Members are
// started and ended by PID (only the processes this package started); the
// test's cleanup kills what is still running. Without etcd a test is
// skipped on a laptop and fails in CI (netlabtest.RequireTool).
package etcdtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-project/shoal/internal/netlabtest"
)

// Cluster is a running etcd cluster.
type Cluster struct {
	t       testing.TB
	etcd    string
	Members []*Member
}

// Member is one etcd process of a Cluster.
type Member struct {
	Name      string
	ClientURL string // http://127.0.0.1X:PORT
	PeerURL   string
	dataDir   string
	args      []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs *bytes.Buffer
}

// StartTimeout bounds how long a cluster takes to answer its health check.
const StartTimeout = 20 * time.Second

// Start runs a cluster of n members and waits until each answers healthy.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	etcd := netlabtest.RequireTool(t, "etcd")
	c := &Cluster{t: t, etcd: etcd}
	var initial []string
	for i := range n {
		ip := fmt.Sprintf("127.0.0.%d", 11+i)
		m := &Member{Name: fmt.Sprintf("m%d", i+1), ClientURL: "http://" + freeAddr(t, ip), PeerURL: "http://" + freeAddr(t, ip),
			dataDir: t.TempDir()}
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	token := fmt.Sprintf("shoal-test-%d", time.Now().UnixNano())
	for _, m := range c.Members {
		m.args = []string{
			"--name", m.Name, "--data-dir", m.dataDir,
			"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL, "--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", token,
			// Short timeouts: a killed leader is replaced in about a second.
			"--heartbeat-interval", "50", "--election-timeout", "500",
			"--logger", "zap", "--log-level", "warn",
		}
	}
	t.Cleanup(func() {
		for _, m := range c.Members {
			m.kill()
		}
	})
	for i := range c.Members {
		c.Restart(i)
	}
	c.WaitHealthy()
	return c
}

// freeAddr returns ip:port with a port free now on ip.
func freeAddr(t testing.TB, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	defer l.Close()
	return ip + ":" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// Endpoints returns the members' client URLs.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// StoreURL returns the cluster as shoal serve's --store value:
// etcd://HOST:PORT,HOST:PORT….
func (c *Cluster) StoreURL() string {
	var hosts []string
	for _, m := range c.Members {
		hosts = append(hosts, strings.TrimPrefix(m.ClientURL, "http://"))
	}
	return "etcd://" + strings.Join(hosts, ",")
}

// Restart starts member i (again, on its data directory) if it is not
// running.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	m := c.Members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return
	}
	cmd := exec.Command(c.etcd, m.args...)
	m.logs = &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = m.logs, m.logs
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("etcdtest: start %s: %v", m.Name, err)
	}
	m.cmd, m.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		cmd.Wait()
		close(done)
	}(m.done)
}

// Kill ends member i's process (SIGKILL, by its PID) and waits for it.
func (c *Cluster) Kill(i int) { c.Members[i].kill() }

// PID returns member i's process id, 0 when it is not running.
func (c *Cluster) PID(i int) int {
	m := c.Members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

func (m *Member) kill() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	syscall.Kill(m.cmd.Process.Pid, syscall.SIGKILL)
	<-m.done
	m.cmd = nil
}

// WaitHealthy waits until every running member answers its /health with
// true, failing the test after StartTimeout.
func (c *Cluster) WaitHealthy() {
	c.t.Helper()
	deadline := time.Now().Add(StartTimeout)
	hc := &http.Client{Timeout: time.Second}
	for _, m := range c.Members {
		m.mu.Lock()
		running := m.cmd != nil
		m.mu.Unlock()
		if !running {
			continue
		}
		for {
			resp, err := hc.Get(m.ClientURL + "/health")
			var body []byte
			if err == nil {
				var b bytes.Buffer
				b.ReadFrom(resp.Body)
				resp.Body.Close()
				body = b.Bytes()
			}
			if err == nil && bytes.Contains(body, []byte(`"health":"true"`)) {
				break
			}
			if time.Now().After(deadline) {
				m.mu.Lock()
				logs := m.logs.String()
				m.mu.Unlock()
				c.t.Fatalf("etcdtest: %s not healthy after %v: %v %s\n%s", m.Name, StartTimeout, err, body, logs)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// Etcdctl runs etcdctl (API v3) against the cluster (or the --endpoints
// that args start with) and returns its output, failing the test on an
// error.
func (c *Cluster) Etcdctl(args ...string) string {
	c.t.Helper()
	ctl := netlabtest.RequireTool(c.t, "etcdctl")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if len(args) == 0 || args[0] != "--endpoints" {
		args = append([]string{"--endpoints", strings.Join(c.Endpoints(), ",")}, args...)
	}
	cmd := exec.CommandContext(ctx, ctl, args...)
	cmd.Env = append(cmd.Environ(), "ETCDCTL_API=3")
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("etcdctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Leader returns the index of the running member that leads the cluster
// (as etcdctl endpoint status tells), waiting up to StartTimeout for one
// to be elected.
func (c *Cluster) Leader() int {
	c.t.Helper()
	var eps []string
	for i := range c.Members {
		if c.PID(i) != 0 {
			eps = append(eps, c.Members[i].ClientURL)
		}
	}
	deadline := time.Now().Add(StartTimeout)
	for {
		out := c.Etcdctl("--endpoints", strings.Join(eps, ","), "endpoint", "status", "-w", "json")
		var st []struct {
			Endpoint string
			Status   struct {
				Header struct {
					MemberID uint64 `json:"member_id"`
				} `json:"header"`
				Leader uint64 `json:"leader"`
			}
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			c.t.Fatalf("etcdtest: endpoint status: %v\n%s", err, out)
		}
		for _, s := range st {
			if s.Status.Header.MemberID != s.Status.Leader {
				continue
			}
			for i, m := range c.Members {
				if m.ClientURL == s.Endpoint {
					return i
				}
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("etcdtest: no leader among the running members after %v: %s", StartTimeout, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
