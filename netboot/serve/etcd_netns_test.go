package serve

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
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

// joinBackbone gives node n a second interface, "bb0", on the backbone
// LAN bb (a veth into bb's bridge) with bb's address .host, and returns
// that address. The namespaces' removal removes it.
func joinBackbone(t *testing.T, n *netlab.Node, bb *netlab.LAN, hubSide string, host byte) net.IP {
	t.Helper()
	ip := hostIP(bb, host)
	ones, _ := bb.Subnet.Mask.Size()
	for _, args := range [][]string{
		{"-n", n.Name, "link", "add", "bb0", "type", "veth", "peer", "name", hubSide, "netns", bb.Hub},
		{"-n", n.Name, "addr", "add", fmt.Sprintf("%s/%d", ip, ones), "dev", "bb0"},
		{"-n", n.Name, "link", "set", "bb0", "up"},
		{"-n", bb.Hub, "link", "set", hubSide, "master", bb.Bridge},
		{"-n", bb.Hub, "link", "set", hubSide, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return ip
}

// TestServerProcessesOnEtcdNetns: two LANs, each with a server process
// and a machine in namespaces of their own, and a backbone LAN with the
// 3-member etcd cluster, which each server reaches through a second
// interface; the machines reach only their own LAN's server. A machine
// on LAN A boots from server A and reports done, signed with A's
// credential; the machine on LAN B then gets the local script from
// server B. An etcdctl put reaches both processes within 1 s.
func TestServerProcessesOnEtcdNetns(t *testing.T) {
	netlabtest.RequireTool(t, "etcd")
	lanA := netlabtest.New(t, netlab.Config{Nodes: 2})
	lanB := netlabtest.New(t, netlab.Config{Nodes: 2})
	backbone := netlabtest.New(t, netlab.Config{Nodes: 1})
	nodeA, machineA, nodeB, machineB := lanA.Nodes[0], lanA.Nodes[1], lanB.Nodes[0], lanB.Nodes[1]
	joinBackbone(t, nodeA, backbone, "srvA", 100)
	joinBackbone(t, nodeB, backbone, "srvB", 101)
	storeNode := backbone.Nodes[0]
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
	// The LANs are apart: machine A cannot reach server B.
	if _, err := nodeClient(machineA, b.BaseURL).Machines(context.Background()); err == nil {
		t.Fatalf("machine A reached server B at %s: the LANs are not apart", b.BaseURL)
	}

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
