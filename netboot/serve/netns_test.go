package serve

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/shoal-project/shoal/internal/netlab"
	"github.com/shoal-project/shoal/internal/netlabtest"
)

// hostIP returns the LAN's address with last byte b.
func hostIP(l *netlab.LAN, b byte) net.IP {
	ip := make(net.IP, 4)
	copy(ip, l.Subnet.IP.To4())
	ip[3] = b
	return ip
}

// bootFiles makes a boot directory and a repository with small files, and
// a secret file beside them that must never be served.
func bootFiles(t *testing.T) (bootDir, repoDir string) {
	t.Helper()
	dir := t.TempDir()
	bootDir, repoDir = filepath.Join(dir, "boot"), filepath.Join(dir, "repo")
	for _, d := range []string{bootDir, repoDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string][]byte{
		filepath.Join(bootDir, "undionly.kpxe"): bytes.Repeat([]byte("undionly"), 4000),
		filepath.Join(bootDir, "ipxe.efi"):      bytes.Repeat([]byte("ipxe.efi"), 4000),
		filepath.Join(repoDir, "image.bin"):     []byte("0123456789abcdef"),
		filepath.Join(dir, "secret"):            []byte("secret"),
	}
	for p, b := range files {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return bootDir, repoDir
}

// startServer runs a netboot server inside node n until the test ends.
func startServer(t *testing.T, n *netlab.Node, cfg Config) *Server {
	t.Helper()
	var ls *Listeners
	if err := n.Do(func() error {
		var err error
		ls, err = Listen(cfg)
		return err
	}); err != nil {
		t.Fatalf("Listen in %s: %v", n.Name, err)
	}
	s, err := New(cfg, ls, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

// baseConfig is a server config for node 0 of l serving the test files.
func baseConfig(t *testing.T, l *netlab.LAN, mode string, inventoryText string) Config {
	t.Helper()
	bootDir, repoDir := bootFiles(t)
	inv := filepath.Join(t.TempDir(), "machines")
	if err := os.WriteFile(inv, []byte(inventoryText), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Default()
	cfg.Iface = "eth0"
	cfg.DHCP = mode
	cfg.Range = fmt.Sprintf("%s-%s", hostIP(l, 100), hostIP(l, 109))
	cfg.HTTP = ":8080"
	cfg.Boot = bootDir
	cfg.Repo = repoDir
	cfg.Inventory = inv
	cfg.RA = false
	return cfg
}

// udhcpc runs busybox udhcpc once in node n and returns the variables its
// script saw on "bound", or nil if it got no lease.
func udhcpc(t *testing.T, n *netlab.Node, extra ...string) map[string]string {
	t.Helper()
	netlabtest.RequireTool(t, "busybox")
	dir := t.TempDir()
	script := filepath.Join(dir, "script")
	out := filepath.Join(dir, "bound")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && env > "+out+"\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "3", "-T", "1", "-s", script}, extra...)
	cmdOut, err := n.Command(ctx, "busybox", args...).CombinedOutput()
	data, rerr := os.ReadFile(out)
	if rerr != nil {
		t.Logf("udhcpc %v: no lease (%v):\n%s", extra, err, cmdOut)
		return nil
	}
	vars := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[k] = v
		}
	}
	return vars
}

func inRange(ip net.IP, first, last net.IP) bool {
	a, f, l := ip.To4(), first.To4(), last.To4()
	return a != nil && bytes.Compare(a, f) >= 0 && bytes.Compare(a, l) <= 0
}

const pxeBIOSClass = "PXEClient:Arch:00000:UNDI:002001"

func TestFullModeUdhcpc(t *testing.T) {
	l := netlabtest.New(t, netlab.Config{Nodes: 2})
	client := l.Nodes[1]
	if err := client.FlushAddrs(); err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(t, l, "full", client.MAC.String()+" reimage img\n")
	startServer(t, l.Nodes[0], cfg)
	server := l.Nodes[0].IP.String()

	for _, tc := range []struct {
		name     string
		args     []string
		wantFile string
	}{
		{"plain", nil, ""},
		{"pxe vendor class", []string{"-V", pxeBIOSClass}, "undionly.kpxe"},
		{"ipxe user class", []string{"-x", "0x4d:69505845"}, "http://" + server + ":8080/ipxe/" + client.MAC.String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := udhcpc(t, client, tc.args...)
			if v == nil {
				t.Fatalf("udhcpc got no lease")
			}
			if ip := net.ParseIP(v["ip"]); !inRange(ip, hostIP(l, 100), hostIP(l, 109)) {
				t.Errorf("udhcpc ip = %q, want one in the range", v["ip"])
			}
			if v["serverid"] != server {
				t.Errorf("udhcpc serverid = %q, want %s", v["serverid"], server)
			}
			if v["boot_file"] != tc.wantFile {
				t.Errorf("udhcpc boot_file = %q, want %q", v["boot_file"], tc.wantFile)
			}
			if tc.wantFile == "undionly.kpxe" && v["siaddr"] != server {
				t.Errorf("udhcpc siaddr = %q, want %s", v["siaddr"], server)
			}
		})
	}
}

// nclientRequest runs a full DORA with nclient4 inside node n.
func nclientRequest(t *testing.T, n *netlab.Node, mods ...dhcpv4.Modifier) (*nclient4.Lease, error) {
	t.Helper()
	var c *nclient4.Client
	if err := n.Do(func() error {
		var err error
		c, err = nclient4.New("eth0", nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(3))
		return err
	}); err != nil {
		t.Fatalf("nclient4.New: %v", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return c.Request(ctx, mods...)
}

func TestFullModeNclient4AndLeasePersistence(t *testing.T) {
	l := netlabtest.New(t, netlab.Config{Nodes: 2})
	client := l.Nodes[1]
	if err := client.FlushAddrs(); err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(t, l, "full", client.MAC.String()+" reimage img\n")
	cfg.Leases = filepath.Join(t.TempDir(), "leases.json")
	ctx, cancel := context.WithCancel(context.Background())
	var ls *Listeners
	if err := l.Nodes[0].Do(func() error {
		var err error
		ls, err = Listen(cfg)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, ls, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()

	uefi := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
	}
	lease, err := nclientRequest(t, client, uefi...)
	if err != nil {
		cancel()
		<-done
		t.Fatalf("nclient4 Request: %v", err)
	}
	first := lease.ACK.YourIPAddr
	if !inRange(first, hostIP(l, 100), hostIP(l, 109)) {
		t.Errorf("lease %v not in range", first)
	}
	if lease.ACK.BootFileName != "ipxe.efi" || lease.ACK.ClassIdentifier() != "PXEClient" {
		t.Errorf("UEFI PXE ACK: file %q vendor %q, want ipxe.efi PXEClient", lease.ACK.BootFileName, lease.ACK.ClassIdentifier())
	}
	plain, err := nclientRequest(t, client)
	if err != nil {
		t.Fatalf("plain nclient4 Request: %v", err)
	}
	if plain.ACK.BootFileName != "" {
		t.Errorf("plain client got boot file %q, want none", plain.ACK.BootFileName)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}

	// A restarted server gives the same MAC the same address, and another
	// MAC a different one.
	startServer(t, l.Nodes[0], cfg)
	again, err := nclientRequest(t, client)
	if err != nil {
		t.Fatalf("Request after restart: %v", err)
	}
	if !again.ACK.YourIPAddr.Equal(first) {
		t.Errorf("after restart lease = %v, want the persisted %v", again.ACK.YourIPAddr, first)
	}
	other := net.HardwareAddr{0x02, 0, 0, 0, 0x77, 0x01}
	var c *nclient4.Client
	if err := client.Do(func() error {
		var err error
		c, err = nclient4.New("eth0", nclient4.WithHWAddr(other), nclient4.WithTimeout(2*time.Second))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	ol, err := c.Request(rctx)
	if err != nil {
		t.Fatalf("Request for another MAC: %v", err)
	}
	if ol.ACK.YourIPAddr.Equal(first) {
		t.Errorf("another MAC got the same address %v", first)
	}
}

// discoverAll broadcasts one DISCOVER from node n and collects every offer
// that arrives within wait.
func discoverAll(t *testing.T, n *netlab.Node, wait time.Duration, mods ...dhcpv4.Modifier) []*dhcpv4.DHCPv4 {
	t.Helper()
	var conn net.PacketConn
	if err := n.Do(func() error {
		var err error
		conn, err = nclient4.NewRawUDPConn("eth0", dhcpv4.ClientPort)
		return err
	}); err != nil {
		t.Fatalf("raw conn: %v", err)
	}
	defer conn.Close()
	d, err := dhcpv4.NewDiscovery(n.MAC, mods...)
	if err != nil {
		t.Fatal(err)
	}
	d.SetBroadcast()
	if _, err := conn.WriteTo(d.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort}); err != nil {
		t.Fatalf("send discover: %v", err)
	}
	var offers []*dhcpv4.DHCPv4
	deadline := time.Now().Add(wait)
	buf := make([]byte, 1500)
	for {
		conn.SetReadDeadline(deadline)
		m, _, err := conn.ReadFrom(buf)
		if err != nil {
			return offers
		}
		r, err := dhcpv4.FromBytes(buf[:m])
		if err != nil || r.TransactionID != d.TransactionID || r.OpCode != dhcpv4.OpcodeBootReply {
			continue
		}
		offers = append(offers, r)
	}
}

func startDnsmasq(t *testing.T, n *netlab.Node, first, last net.IP) {
	t.Helper()
	netlabtest.RequireTool(t, "dnsmasq")
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := n.Command(ctx, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--interface=eth0", "--bind-interfaces", "--dhcp-authoritative",
		// Without --no-ping dnsmasq pings each address for up to 3 s
		// before offering it, longer than udhcpc waits.
		"--no-ping",
		"--dhcp-range="+first.String()+","+last.String()+",255.255.255.0,1h",
		"--dhcp-leasefile="+filepath.Join(dir, "leases"), "--pid-file="+filepath.Join(dir, "pid"),
		"--user=root", "--log-facility=-")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("dnsmasq: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("dnsmasq output:\n%s", out.String())
		}
	})
	time.Sleep(300 * time.Millisecond) // let it bind
}

func TestProxyModeBesideDnsmasq(t *testing.T) {
	l := netlabtest.New(t, netlab.Config{Nodes: 3})
	client, site := l.Nodes[1], l.Nodes[2]
	if err := client.FlushAddrs(); err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(t, l, "proxy", client.MAC.String()+" reimage img\n")
	startServer(t, l.Nodes[0], cfg)
	siteFirst, siteLast := hostIP(l, 150), hostIP(l, 159)
	startDnsmasq(t, site, siteFirst, siteLast)
	shoal := l.Nodes[0].IP

	// A plain client gets its address from the site's server; shoal is silent.
	v := udhcpc(t, client)
	if v == nil {
		t.Fatal("udhcpc got no lease beside dnsmasq")
	}
	if !inRange(net.ParseIP(v["ip"]), siteFirst, siteLast) || v["serverid"] != site.IP.String() {
		t.Errorf("udhcpc lease %s from %s, want one in dnsmasq's range from %s", v["ip"], v["serverid"], site.IP)
	}
	if err := client.FlushAddrs(); err != nil {
		t.Fatal(err)
	}

	// A PXE client hears both: an address from dnsmasq, boot info from shoal.
	offers := discoverAll(t, client, 2*time.Second, dhcpv4.WithOption(dhcpv4.OptClassIdentifier(pxeBIOSClass)))
	var fromSite, fromShoal *dhcpv4.DHCPv4
	for _, o := range offers {
		switch {
		case o.ServerIdentifier().Equal(site.IP):
			fromSite = o
		case o.ServerIdentifier().Equal(shoal):
			fromShoal = o
		}
	}
	if fromSite == nil || !inRange(fromSite.YourIPAddr, siteFirst, siteLast) {
		t.Errorf("offer from dnsmasq = %v, want an address in its range", fromSite)
	}
	if fromShoal == nil {
		t.Fatalf("no proxy offer from shoal among %d offers", len(offers))
	}
	if !fromShoal.YourIPAddr.IsUnspecified() {
		t.Errorf("shoal's proxy offer assigns %v, want 0.0.0.0", fromShoal.YourIPAddr)
	}
	if fromShoal.BootFileName != "undionly.kpxe" || !fromShoal.ServerIPAddr.Equal(shoal) || fromShoal.ClassIdentifier() != "PXEClient" {
		t.Errorf("shoal's proxy offer: file %q siaddr %v vendor %q; want undionly.kpxe from %v, PXEClient",
			fromShoal.BootFileName, fromShoal.ServerIPAddr, fromShoal.ClassIdentifier(), shoal)
	}
	// And a full nclient4 exchange (plain) ends with dnsmasq's lease.
	lease, err := nclientRequest(t, client)
	if err != nil {
		t.Fatalf("nclient4 beside dnsmasq: %v", err)
	}
	if !inRange(lease.ACK.YourIPAddr, siteFirst, siteLast) {
		t.Errorf("nclient4 lease %v, want one from dnsmasq", lease.ACK.YourIPAddr)
	}

	// With its address, a PXE client may ask the proxy on port 4011: it
	// gets an ACK with the boot file and still no address.
	cip := lease.ACK.YourIPAddr
	if err := client.Command(context.Background(), "ip", "addr", "add", cip.String()+"/24", "dev", "eth0").Run(); err != nil {
		t.Fatal(err)
	}
	var conn net.PacketConn
	if err := client.Do(func() error {
		var err error
		conn, err = net.ListenPacket("udp4", ":68")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req, err := dhcpv4.NewDiscovery(client.MAC,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(cip),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(pxeBIOSClass)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(shoal)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.WriteTo(req.ToBytes(), &net.UDPAddr{IP: shoal, Port: 4011}); err != nil {
		t.Fatalf("send to port 4011: %v", err)
	}
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 1500)
	for {
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no answer on port 4011: %v", err)
		}
		ack, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || ack.TransactionID != req.TransactionID {
			continue
		}
		if ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.IsUnspecified() || ack.BootFileName != "undionly.kpxe" {
			t.Errorf("port 4011 answer: %v yiaddr %v file %q; want ACK, 0.0.0.0, undionly.kpxe",
				ack.MessageType(), ack.YourIPAddr, ack.BootFileName)
		}
		break
	}
}

func TestProxyModeAloneGivesNoAddress(t *testing.T) {
	l := netlabtest.New(t, netlab.Config{Nodes: 2})
	client := l.Nodes[1]
	if err := client.FlushAddrs(); err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(t, l, "proxy", client.MAC.String()+" reimage img\n")
	startServer(t, l.Nodes[0], cfg)
	if v := udhcpc(t, client, "-V", pxeBIOSClass); v != nil {
		t.Errorf("udhcpc with only a proxy got lease %v, want none", v["ip"])
	}
	if v := udhcpc(t, client); v != nil {
		t.Errorf("plain udhcpc with only a proxy got lease %v, want none", v["ip"])
	}
	offers := discoverAll(t, client, time.Second, dhcpv4.WithOption(dhcpv4.OptClassIdentifier(pxeBIOSClass)))
	if len(offers) != 1 {
		t.Fatalf("got %d offers, want shoal's one proxy offer", len(offers))
	}
	if !offers[0].YourIPAddr.IsUnspecified() || offers[0].BootFileName != "undionly.kpxe" {
		t.Errorf("proxy offer: yiaddr %v file %q, want 0.0.0.0 and undionly.kpxe", offers[0].YourIPAddr, offers[0].BootFileName)
	}
	out, err := client.Command(context.Background(), "ip", "-4", "addr", "show", "dev", "eth0").CombinedOutput()
	if err != nil || strings.Contains(string(out), "inet ") {
		t.Errorf("client has an IPv4 address after proxy-only DHCP: %s %v", out, err)
	}
}

func TestTFTPHPAAndCurlRange(t *testing.T) {
	l := netlabtest.New(t, netlab.Config{Nodes: 2})
	cfg := baseConfig(t, l, "off", "")
	startServerProcess(t, l.Nodes[0], cfg)
	client := l.Nodes[1]
	server := l.Nodes[0].IP.String()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("tftp-hpa", func(t *testing.T) {
		netlabtest.RequireTool(t, "tftp")
		dir := t.TempDir()
		got := filepath.Join(dir, "undionly.kpxe")
		out, err := client.Command(ctx, "tftp", "-m", "binary", server, "-c", "get", "undionly.kpxe", got).CombinedOutput()
		if err != nil {
			t.Fatalf("tftp get: %v\n%s", err, out)
		}
		want, _ := os.ReadFile(filepath.Join(cfg.Boot, "undionly.kpxe"))
		if b, err := os.ReadFile(got); err != nil || !bytes.Equal(b, want) {
			t.Errorf("tftp got %d bytes (%v), want the file's %d", len(b), err, len(want))
		}
		for _, name := range []string{"../secret", "/etc/hostname", "../../../../etc/hostname"} {
			dst := filepath.Join(dir, "refused")
			os.Remove(dst)
			out, _ := client.Command(ctx, "tftp", "-m", "binary", server, "-c", "get", name, dst).CombinedOutput()
			if !strings.Contains(string(out), "Error code") {
				t.Errorf("tftp get %s: output %q, want a TFTP error", name, out)
			}
			if b, err := os.ReadFile(dst); err == nil && len(b) > 0 {
				t.Errorf("tftp get %s wrote %d bytes, want nothing", name, len(b))
			}
		}
	})
	t.Run("curl range", func(t *testing.T) {
		netlabtest.RequireTool(t, "curl")
		out, err := client.Command(ctx, "curl", "-sS", "-r", "2-5", "-w", " %{http_code}", "http://"+server+":8080/repo/image.bin").CombinedOutput()
		if err != nil {
			t.Fatalf("curl: %v\n%s", err, out)
		}
		if got := string(out); got != "2345 206" {
			t.Errorf("curl -r 2-5 = %q, want %q", got, "2345 206")
		}
		// The mux cleans the path and redirects to /secret, which is no
		// route: the file outside the root is never served.
		out, _ = client.Command(ctx, "curl", "-sS", "-L", "--path-as-is", "-w", " %{http_code}", "http://"+server+":8080/repo/../secret").CombinedOutput()
		if strings.HasPrefix(string(out), "secret") || !strings.HasSuffix(string(out), " 404") {
			t.Errorf("curl -L /repo/../secret = %q, want 404 without the file", out)
		}
		out, _ = client.Command(ctx, "curl", "-sS", "--path-as-is", "-w", " %{http_code}", "http://"+server+":8080/repo/%2e%2e/secret").CombinedOutput()
		if strings.HasPrefix(string(out), "secret") || strings.HasSuffix(string(out), " 200") {
			t.Errorf("curl /repo/%%2e%%2e/secret = %q, want an error without the file", out)
		}
	})
}
