package serve

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/internal/etcdtest"
	"github.com/shoal-project/shoal/internal/netlab"
	"github.com/shoal-project/shoal/internal/netlabtest"
	"github.com/shoal-project/shoal/netboot/api"
)

// nodeClient is an API client whose connections are made inside node n
// (a machine on that namespace's network).
func nodeClient(n *netlab.Node, base string) *api.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := n.Do(func() error {
			var err error
			c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return &api.Client{BaseURL: base, HTTP: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dial}}}
}

// TestServerProcessesOnEtcdNetns: two server processes, each in a network
// namespace of its own, on a 3-member etcd cluster in a third namespace
// (every namespace on one netlab bridge: the servers reach etcd over a
// veth, not loopback). A machine in a fourth namespace boots from server
// A and reports done, signed with A's credential; a machine in a fifth
// asks server B, which then boots it locally. An etcdctl put reaches both
// processes within 1 s.
func TestServerProcessesOnEtcdNetns(t *testing.T) {
	netlabtest.RequireTool(t, "etcd")
	lan := netlabtest.New(t, netlab.Config{Nodes: 5})
	storeNode, nodeA, machineA, nodeB, machineB := lan.Nodes[0], lan.Nodes[1], lan.Nodes[2], lan.Nodes[3], lan.Nodes[4]
	c := etcdtest.StartWith(t, 3, etcdtest.Options{Host: storeNode.IP.String(), Command: storeNode.Command})
	const done, edited = "52:54:00:00:06:01", "52:54:00:00:06:02"
	putMachine(c, done, "debian-12", api.Reimage)
	putMachine(c, edited, "debian-12", api.Reimage)
	start := func(n *netlab.Node) string {
		cfg := Default()
		cfg.HTTP = net.JoinHostPort(n.IP.String(), "8080")
		cfg.TFTP, cfg.RA = "off", false
		cfg.Repo, cfg.Boot = t.TempDir(), t.TempDir()
		cfg.Store = c.StoreURL()
		startServerProcess(t, n, cfg)
		return "http://" + cfg.HTTP
	}
	a := nodeClient(machineA, start(nodeA))
	b := nodeClient(machineB, start(nodeB))

	report := signedReport(t, a, done)
	if err := report(doneStatus); err != nil {
		t.Fatalf("done report to A: %v", err)
	}
	took := waitMachine(t, b, done, time.Second, func(m api.Machine) bool {
		return m.Action == api.Local && m.Status.State == api.StateDone
	})
	t.Logf("done through process A, local on process B after %v", took.Round(time.Millisecond))
	if s := script(t, b, done); !strings.Contains(s, "booting the local disk") {
		t.Errorf("B's script for %s after its success: want the local script, got\n%s", done, s)
	}
	putMachine(c, edited, "debian-13", api.Local)
	for name, srv := range map[string]*api.Client{"A": a, "B": b} {
		took := waitMachine(t, srv, edited, time.Second, func(m api.Machine) bool { return m.Image == "debian-13" && m.Action == api.Local })
		t.Logf("etcdctl put seen by process %s within %v", name, took.Round(time.Millisecond))
	}
}
