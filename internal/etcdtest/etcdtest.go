// Package etcdtest runs a real etcd cluster for tests: Debian's etcd-server
// (/usr/bin/etcd), one member per loopback address 127.0.0.11, .12, .13 …,
// on free ports (or on one address inside a network namespace the test
// made, StartWith), each with its data directory in t.TempDir(). Members are
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
	command Command
	tls     *Certs
	Members []*Member
}

// Command makes the command that runs a program: exec.CommandContext, or
// netlab's Node.Command to run it inside a network namespace.
type Command func(ctx context.Context, name string, args ...string) *exec.Cmd

// Options says where the members run; the zero value is Start's.
type Options struct {
	// Host is the address every member listens on, each on ports of its
	// own (2379+2i for clients, 2380+2i for peers); empty: member i on
	// 127.0.0.(11+i), on free ports.
	Host string
	// Command runs etcd and etcdctl; nil: exec.CommandContext. Members
	// are ended by their PID, so it must exec the program itself (as
	// `ip netns exec` does).
	Command Command
	// TLS, when set, serves the client URLs over TLS with its server
	// certificate and asks clients for a certificate its CA signed
	// (--client-cert-auth); etcdctl uses its client certificate.
	TLS *Certs
}

// Member is one etcd process of a Cluster.
type Member struct {
	Name      string
	ClientURL string // http://127.0.0.1X:PORT (https:// with Options.TLS)
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

// Start runs a cluster of n members on loopback and waits until each
// answers healthy.
func Start(t testing.TB, n int) *Cluster { t.Helper(); return StartWith(t, n, Options{}) }

// StartWith runs a cluster of n members as o says and waits until each
// answers healthy.
func StartWith(t testing.TB, n int, o Options) *Cluster {
	t.Helper()
	etcd := netlabtest.RequireTool(t, "etcd")
	netlabtest.RequireTool(t, "etcdctl")
	c := &Cluster{t: t, etcd: etcd, command: o.Command, tls: o.TLS}
	scheme := "http://"
	if o.TLS != nil {
		scheme = "https://"
	}
	if c.command == nil {
		c.command = exec.CommandContext
	}
	var initial []string
	var held []net.Listener // until every port is chosen: no port twice
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for i := range n {
		m := &Member{Name: fmt.Sprintf("m%d", i+1), dataDir: t.TempDir()}
		if o.Host == "" {
			ip := fmt.Sprintf("127.0.0.%d", 11+i)
			client, peer := listen(t, ip), listen(t, ip)
			held = append(held, client, peer)
			m.ClientURL, m.PeerURL = scheme+client.Addr().String(), "http://"+peer.Addr().String()
		} else {
			m.ClientURL = scheme + net.JoinHostPort(o.Host, strconv.Itoa(2379+2*i))
			m.PeerURL = "http://" + net.JoinHostPort(o.Host, strconv.Itoa(2380+2*i))
		}
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
		if o.TLS != nil {
			m.args = append(m.args, "--cert-file", o.TLS.ServerCert, "--key-file", o.TLS.ServerKey,
				"--trusted-ca-file", o.TLS.CA, "--client-cert-auth")
		}
	}
	t.Cleanup(func() {
		for _, m := range c.Members {
			m.kill()
		}
	})
	for _, l := range held {
		l.Close()
	}
	for i := range c.Members {
		c.Restart(i)
	}
	c.WaitHealthy()
	return c
}

// listen opens a listener on a free port of ip; its port is free again
// once it is closed.
func listen(t testing.TB, ip string) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	return l
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
// etcd://HOST:PORT,HOST:PORT… (etcds:// over TLS).
func (c *Cluster) StoreURL() string {
	var hosts []string
	for _, m := range c.Members {
		hosts = append(hosts, strings.TrimPrefix(strings.TrimPrefix(m.ClientURL, "http://"), "https://"))
	}
	if c.tls != nil {
		return "etcds://" + strings.Join(hosts, ",")
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
	cmd := c.command(context.Background(), c.etcd, m.args...)
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

// WaitHealthy waits until every running member answers etcdctl's
// endpoint health, failing the test after StartTimeout.
func (c *Cluster) WaitHealthy() {
	c.t.Helper()
	deadline := time.Now().Add(StartTimeout)
	for _, m := range c.Members {
		m.mu.Lock()
		running := m.cmd != nil
		m.mu.Unlock()
		if !running {
			continue
		}
		for {
			out, err := c.etcdctl("--endpoints", m.ClientURL, "--command-timeout", "1s", "endpoint", "health")
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				m.mu.Lock()
				logs := m.logs.String()
				m.mu.Unlock()
				c.t.Fatalf("etcdtest: %s not healthy after %v: %v %s\n%s", m.Name, StartTimeout, err, out, logs)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// Etcdctl runs etcdctl (API v3) against the cluster (or the --endpoints
// or --endpoints=… that args start with) and returns its output, failing the test on an
// error.
func (c *Cluster) Etcdctl(args ...string) string {
	c.t.Helper()
	out, err := c.etcdctl(args...)
	if err != nil {
		c.t.Fatalf("etcdctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *Cluster) etcdctl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if len(args) == 0 || (args[0] != "--endpoints" && !strings.HasPrefix(args[0], "--endpoints=")) {
		args = append([]string{"--endpoints", strings.Join(c.Endpoints(), ",")}, args...)
	}
	if c.tls != nil {
		args = append([]string{"--cacert", c.tls.CA, "--cert", c.tls.ClientCert, "--key", c.tls.ClientKey}, args...)
	}
	cmd := c.command(ctx, "etcdctl", args...)
	cmd.Env = append(cmd.Environ(), "ETCDCTL_API=3")
	out, err := cmd.CombinedOutput()
	return string(out), err
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
