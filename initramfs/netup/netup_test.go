package netup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/internal/netlab"
	"github.com/shoal-project/shoal/internal/netlabtest"
)

// TestMain runs Up in a helper process when NETUP_HELPER names the links:
// the test starts this binary inside a node's network namespace (ip netns
// exec), because u-root's DHCP client opens its sockets from goroutines,
// which would not inherit a namespace entered by one thread.
func TestMain(m *testing.M) {
	if ifaces := os.Getenv("NETUP_HELPER"); ifaces != "" {
		// Configuring a lease writes /etc/resolv.conf (as it should in the
		// appliance): here it must hit a private copy, never the host's.
		// The helper runs in its own mount namespace (see helper).
		if err := privateResolvConf(); err != nil {
			fmt.Fprintln(os.Stderr, "netup helper:", err)
			os.Exit(1)
		}
		leases, err := Up(context.Background(), Options{Ifaces: strings.Split(ifaces, ","), CarrierWait: 3 * time.Second, DHCPTimeout: 2 * time.Second, Retries: 3})
		out := struct {
			Leases []Lease
			Err    string
			NoLink bool
		}{Leases: leases}
		if err != nil {
			out.Err, out.NoLink = err.Error(), errors.Is(err, ErrNoLink)
		}
		json.NewEncoder(os.Stdout).Encode(out)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestUpDHCP: on a namespace LAN, dnsmasq in one node hands out an address
// with a router; Up in the other node (its address flushed) gets the
// lease and configures it with netlink: the address and the default route
// are on eth0 afterwards.
func TestUpDHCP(t *testing.T) {
	netlabtest.RequireRoot(t)
	netlabtest.RequireTool(t, "dnsmasq")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lan := netlabtest.New(t, netlab.Config{Nodes: 2})
	srv, cli := lan.Nodes[0], lan.Nodes[1]
	ip := srv.IP.To4()
	router := fmt.Sprintf("%d.%d.%d.1", ip[0], ip[1], ip[2])
	dir := t.TempDir()
	dns := srv.Command(ctx, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--interface=eth0",
		"--bind-interfaces", "--no-ping", fmt.Sprintf("--dhcp-range=%d.%d.%d.150,%d.%d.%d.159,255.255.255.0,1h", ip[0], ip[1], ip[2], ip[0], ip[1], ip[2]),
		"--dhcp-option=option:router,"+router, "--dhcp-leasefile="+filepath.Join(dir, "leases"),
		"--pid-file="+filepath.Join(dir, "pid"), "--user=root", "--log-facility=-")
	if err := dns.Start(); err != nil {
		t.Fatalf("dnsmasq: %v", err)
	}
	defer func() { dns.Process.Kill(); dns.Wait() }()
	if err := cli.FlushAddrs(); err != nil {
		t.Fatal(err)
	}
	got := helper(t, ctx, cli, "eth0")
	if got.Err != "" || len(got.Leases) != 1 {
		t.Fatalf("Up = %+v", got)
	}
	l := got.Leases[0]
	if l.Iface != "eth0" || !strings.HasPrefix(l.IP.String(), fmt.Sprintf("%d.%d.%d.15", ip[0], ip[1], ip[2])) ||
		l.Router.String() != router || !l.Server.Equal(srv.IP) || l.MAC.String() != cli.MAC.String() {
		t.Errorf("lease = %+v, want eth0 in .150-.159 from %v with router %s", l, srv.IP, router)
	}
	addrs, _ := cli.Command(ctx, "ip", "-4", "addr", "show", "eth0").CombinedOutput()
	if !strings.Contains(string(addrs), l.IP.String()+"/24") {
		t.Errorf("eth0 lacks %s/24:\n%s", l.IP, addrs)
	}
	routes, _ := cli.Command(ctx, "ip", "-4", "route").CombinedOutput()
	if !strings.Contains(string(routes), "default via "+router) {
		t.Errorf("no default route via %s:\n%s", router, routes)
	}
}

// TestUpNoCarrier: a link whose peer is down never gets carrier; Up says
// so (ErrNoLink) after CarrierWait instead of hanging.
func TestUpNoCarrier(t *testing.T) {
	netlabtest.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lan := netlabtest.New(t, netlab.Config{Nodes: 1})
	n := lan.Nodes[0]
	// A veth with its peer down in the same namespace: no carrier.
	if out, err := n.Command(ctx, "ip", "link", "add", "nc0", "type", "veth", "peer", "name", "nc1").CombinedOutput(); err != nil {
		t.Fatalf("ip link add: %v %s", err, out)
	}
	got := helper(t, ctx, n, "nc0")
	if !got.NoLink || !strings.Contains(got.Err, "nc0") {
		t.Errorf("Up on a link without carrier = %+v, want ErrNoLink naming nc0", got)
	}
}

type helperResult struct {
	Leases []Lease
	Err    string
	NoLink bool
}

// privateResolvConf bind-mounts an empty temporary file over
// /etc/resolv.conf, after checking that this process has a mount namespace
// of its own.
func privateResolvConf() error {
	self, err1 := os.Readlink("/proc/self/ns/mnt")
	parent, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid()))
	if err1 != nil || err2 != nil || self == parent {
		return fmt.Errorf("not in a mount namespace of its own (%s, parent %s, %v, %v): refusing to touch /etc/resolv.conf", self, parent, err1, err2)
	}
	f, err := os.CreateTemp("", "netup-resolv")
	if err != nil {
		return err
	}
	f.Close()
	defer os.Remove(f.Name()) // the mount keeps the file
	return unix.Mount(f.Name(), "/etc/resolv.conf", "", unix.MS_BIND, "")
}

// helper runs Up on ifaces in node n: this test binary under ip netns
// exec, in a new mount namespace whose mounts do not propagate back.
func helper(t *testing.T, ctx context.Context, n *netlab.Node, ifaces string) helperResult {
	t.Helper()
	cmd := n.Command(ctx, os.Args[0], "-test.run=XXX")
	cmd.Env = append(os.Environ(), "NETUP_HELPER="+ifaces)
	// Go makes / private (recursively) in the child's new mount namespace.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	var r helperResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("helper output %q: %v", out, err)
	}
	return r
}
