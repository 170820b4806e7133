package dhcpd

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// fakeBooter gives every allowed MAC a file named after the kind.
type fakeBooter struct{ deny map[string]bool }

func (b fakeBooter) BootFile(mac net.HardwareAddr, k Kind) (string, bool) {
	if b.deny[mac.String()] {
		return "", false
	}
	switch k {
	case PXEBIOS:
		return "undionly.kpxe", true
	case PXEUEFI:
		return "ipxe.efi", true
	case IPXE:
		return "http://10.0.0.1:8080/ipxe/" + mac.String(), true
	case HTTPUEFI:
		return "http://10.0.0.1:8080/boot/ipxe.efi", true
	}
	return "", false
}

// fakeLeases always offers one address and refuses commits of others.
type fakeLeases struct {
	ip        net.IP
	committed []string
	released  []string
}

func (f *fakeLeases) Offer(net.HardwareAddr, time.Time) (net.IP, error) { return f.ip, nil }
func (f *fakeLeases) Commit(mac net.HardwareAddr, ip net.IP, _ time.Time, _ time.Duration) error {
	if !ip.Equal(f.ip) {
		return ErrUnavailable
	}
	f.committed = append(f.committed, mac.String()+"="+ip.String())
	return nil
}
func (f *fakeLeases) Release(mac net.HardwareAddr, _ net.IP) error {
	f.released = append(f.released, mac.String())
	return nil
}
func (f *fakeLeases) Decline(net.HardwareAddr, net.IP, time.Time) error { return nil }
func (f *fakeLeases) Lease(net.HardwareAddr) (net.IP, time.Time, bool) {
	return nil, time.Time{}, false
}

var (
	serverIP = net.IPv4(10, 0, 0, 1).To4()
	mac1     = net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56}
)

func newServer(t *testing.T, mode Mode, leases Allocator, b Booter) *Server {
	t.Helper()
	s, err := New(Config{Mode: mode, ServerIP: serverIP, Leases: leases,
		Netmask: net.CIDRMask(24, 32), LeaseDuration: time.Hour, Booter: b})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func discover(t *testing.T, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	d, err := dhcpv4.NewDiscovery(mac1, mods...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

var (
	pxeBIOS = []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
	}
	pxeUEFI = []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
	}
	ipxe = []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")),
	}
	httpUEFI = []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient:Arch:00016:UNDI:003001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64_HTTP)),
	}
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		mods []dhcpv4.Modifier
		want Kind
	}{
		{"plain", nil, NotPXE},
		{"bios", pxeBIOS, PXEBIOS},
		{"uefi", pxeUEFI, PXEUEFI},
		{"uefi from vendor class only", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016"))}, PXEUEFI},
		{"ipxe", ipxe, IPXE},
		{"http", httpUEFI, HTTPUEFI},
		{"short vendor class", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:"))}, PXEBIOS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(discover(t, tc.mods...)); got != tc.want {
				t.Errorf("Classify() = %v, want %v", got, tc.want)
			}
		})
	}
}

// summary is what a test checks of a reply.
type summary struct {
	Type      string
	YourIP    string
	File      string
	Vendor    string
	NoProxy   bool // option 175 with 176
	TFTPName  string
	ServerID  string
	HasNetmsk bool
}

func summarize(r *dhcpv4.DHCPv4) *summary {
	if r == nil {
		return nil
	}
	return &summary{
		Type:      r.MessageType().String(),
		YourIP:    r.YourIPAddr.String(),
		File:      r.BootFileName,
		Vendor:    r.ClassIdentifier(),
		NoProxy:   string(r.GetOneOption(dhcpv4.GenericOptionCode(175))) == string(ipxeNoProxyDHCP),
		TFTPName:  r.TFTPServerName(),
		ServerID:  r.ServerIdentifier().String(),
		HasNetmsk: r.SubnetMask() != nil,
	}
}

func TestReplyDiscover(t *testing.T) {
	leaseIP := net.IPv4(10, 0, 0, 100).To4()
	for _, tc := range []struct {
		name string
		mode Mode
		mods []dhcpv4.Modifier
		deny bool
		want *summary
	}{
		{"full plain", Full, nil, false, &summary{Type: "OFFER", YourIP: "10.0.0.100", ServerID: "10.0.0.1", HasNetmsk: true}},
		{"full bios", Full, pxeBIOS, false, &summary{Type: "OFFER", YourIP: "10.0.0.100", File: "undionly.kpxe", Vendor: "PXEClient", TFTPName: "10.0.0.1", ServerID: "10.0.0.1", HasNetmsk: true}},
		{"full uefi", Full, pxeUEFI, false, &summary{Type: "OFFER", YourIP: "10.0.0.100", File: "ipxe.efi", Vendor: "PXEClient", TFTPName: "10.0.0.1", ServerID: "10.0.0.1", HasNetmsk: true}},
		{"full ipxe", Full, ipxe, false, &summary{Type: "OFFER", YourIP: "10.0.0.100", File: "http://10.0.0.1:8080/ipxe/52:54:00:12:34:56", Vendor: "PXEClient", NoProxy: true, ServerID: "10.0.0.1", HasNetmsk: true}},
		{"full http", Full, httpUEFI, false, &summary{Type: "OFFER", YourIP: "10.0.0.100", File: "http://10.0.0.1:8080/boot/ipxe.efi", Vendor: "HTTPClient", ServerID: "10.0.0.1", HasNetmsk: true}},
		{"full pxe denied gets plain lease", Full, pxeBIOS, true, &summary{Type: "OFFER", YourIP: "10.0.0.100", ServerID: "10.0.0.1", HasNetmsk: true}},
		{"proxy plain: silent", Proxy, nil, false, nil},
		{"proxy bios", Proxy, pxeBIOS, false, &summary{Type: "OFFER", YourIP: "0.0.0.0", File: "undionly.kpxe", Vendor: "PXEClient", TFTPName: "10.0.0.1", ServerID: "10.0.0.1"}},
		{"proxy ipxe", Proxy, ipxe, false, &summary{Type: "OFFER", YourIP: "0.0.0.0", File: "http://10.0.0.1:8080/ipxe/52:54:00:12:34:56", Vendor: "PXEClient", ServerID: "10.0.0.1"}},
		{"proxy denied: silent", Proxy, pxeBIOS, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := fakeBooter{}
			if tc.deny {
				b.deny = map[string]bool{mac1.String(): true}
			}
			s := newServer(t, tc.mode, &fakeLeases{ip: leaseIP}, b)
			req := discover(t, tc.mods...)
			r, err := s.Reply(req, time.Now())
			if err != nil {
				t.Fatalf("Reply: %v", err)
			}
			if diff := cmp.Diff(tc.want, summarize(r)); diff != "" {
				t.Errorf("Reply(%s) mismatch (-want +got):\n%s", tc.name, diff)
			}
		})
	}
}

// TestReplyRequestFull: RFC 2131 4.3.2 with the real allocator. A
// SELECTING request is ACKed only for the address this server offered
// that MAC; INIT-REBOOT and renewals only for the MAC's own address.
func TestReplyRequestFull(t *testing.T) {
	other := net.IPv4(10, 0, 0, 107).To4()
	for _, tc := range []struct {
		name            string
		discover, lease bool // first a DISCOVER (an offer), or a committed lease
		mods            func(offered net.IP) []dhcpv4.Modifier
		wantType        string
	}{
		{"selecting our offer", true, false, func(ip net.IP) []dhcpv4.Modifier {
			return []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverIP))}
		}, "ACK"},
		{"selecting without an offer", false, false, func(net.IP) []dhcpv4.Modifier {
			return []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(other)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverIP))}
		}, "NAK"},
		{"selecting another address than offered", true, false, func(net.IP) []dhcpv4.Modifier {
			return []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(other)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverIP))}
		}, "NAK"},
		{"selecting another server", true, false, func(ip net.IP) []dhcpv4.Modifier {
			return []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 0, 2)))}
		}, ""},
		{"init-reboot unknown client", false, false, func(net.IP) []dhcpv4.Modifier {
			return []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(other))}
		}, ""},
		{"init-reboot own address", false, true, func(ip net.IP) []dhcpv4.Modifier {
			return []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip))}
		}, "ACK"},
		{"init-reboot other address", false, true, func(net.IP) []dhcpv4.Modifier {
			return []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(other))}
		}, "NAK"},
		{"renew own address", false, true, func(ip net.IP) []dhcpv4.Modifier { return []dhcpv4.Modifier{dhcpv4.WithClientIP(ip)} }, "ACK"},
		{"renew without a lease", false, false, func(net.IP) []dhcpv4.Modifier { return []dhcpv4.Modifier{dhcpv4.WithClientIP(other)} }, ""},
		{"nothing requested", false, true, func(net.IP) []dhcpv4.Modifier { return nil }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first, last, _ := ParseRange("10.0.0.100-10.0.0.110")
			fl, err := NewFileLeases("", first, last)
			if err != nil {
				t.Fatal(err)
			}
			s := newServer(t, Full, fl, fakeBooter{})
			now := time.Now()
			offered := net.IPv4(10, 0, 0, 100).To4()
			if tc.discover {
				r, err := s.Reply(discover(t), now)
				if err != nil || r == nil {
					t.Fatalf("DISCOVER: %v, %v", r, err)
				}
				offered = r.YourIPAddr.To4()
			}
			if tc.lease {
				if err := fl.Commit(mac1, offered, now, time.Hour); err != nil {
					t.Fatal(err)
				}
			}
			req := discover(t, append([]dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest)}, tc.mods(offered)...)...)
			r, err := s.Reply(req, now)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if r != nil {
				got = r.MessageType().String()
			}
			if got != tc.wantType {
				t.Errorf("Reply(request %s) = %q, want %q", tc.name, got, tc.wantType)
			}
			if ip, _, ok := fl.Lease(mac1); got == "ACK" && (!ok || !ip.Equal(r.YourIPAddr)) {
				t.Errorf("ACK of %v, lease %v %v", r.YourIPAddr, ip, ok)
			}
		})
	}
}

// TestForgedRequestsDoNotFillRange: REQUESTs from made-up MACs, without
// an OFFER, for every address of an 11-address range (SELECTING and
// INIT-REBOOT forms) lease nothing; a real client then gets an OFFER.
func TestForgedRequestsDoNotFillRange(t *testing.T) {
	first, last, _ := ParseRange("10.0.0.100-10.0.0.110")
	fl, err := NewFileLeases("", first, last)
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(t, Full, fl, fakeBooter{})
	now := time.Now()
	for i := range 11 {
		for _, withSID := range []bool{true, false} {
			mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
				dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 0, 0, byte(100+i))))}
			if withSID {
				mods = append(mods, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverIP)))
			}
			req, err := dhcpv4.New(append(mods, dhcpv4.WithHwAddr(net.HardwareAddr{2, 0, 0, 0, 1, byte(i)}))...)
			if err != nil {
				t.Fatal(err)
			}
			if r, _ := s.Reply(req, now); r != nil && r.MessageType() == dhcpv4.MessageTypeAck {
				t.Errorf("forged REQUEST %d (server id %v) got an ACK for %v", i, withSID, r.YourIPAddr)
			}
		}
	}
	if n := len(fl.Leases()); n != 0 {
		t.Errorf("%d leases after forged REQUESTs, want 0", n)
	}
	r, err := s.Reply(discover(t), now)
	if err != nil || r == nil || r.MessageType() != dhcpv4.MessageTypeOffer {
		t.Errorf("DISCOVER after forged REQUESTs: %v, %v; want an OFFER", r, err)
	}
}

// TestDeclineNotOfferedAgain: an address the client DECLINEs (RFC 2131
// 4.3.3) is not offered again, to it or another MAC, for DeclineHold.
func TestDeclineNotOfferedAgain(t *testing.T) {
	first, last, _ := ParseRange("10.0.0.100-10.0.0.102")
	fl, err := NewFileLeases(filepath.Join(t.TempDir(), "leases.json"), first, last)
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(t, Full, fl, fakeBooter{})
	now := time.Now()
	off, err := s.Reply(discover(t), now)
	if err != nil || off == nil {
		t.Fatalf("DISCOVER: %v, %v", off, err)
	}
	declined := off.YourIPAddr.To4()
	ack, err := s.Reply(discover(t, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(declined)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverIP))), now)
	if err != nil || ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("REQUEST: %v, %v", ack, err)
	}
	if r, err := s.Reply(discover(t, dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(declined)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverIP))), now); r != nil || err != nil {
		t.Fatalf("DECLINE answered: %v, %v", r, err)
	}
	if a, ok := s.LeasedTo(mac1); ok {
		t.Errorf("LeasedTo after DECLINE = %v, want none", a)
	}
	for _, tc := range []struct {
		name string
		mac  net.HardwareAddr
		at   time.Time
		want bool // may get the declined address
	}{
		{"same client", mac1, now.Add(time.Second), false},
		{"other client", net.HardwareAddr{2, 0, 0, 0, 0, 9}, now.Add(time.Second), false},
		{"after the hold", net.HardwareAddr{2, 0, 0, 0, 0, 9}, now.Add(DeclineHold + time.Minute), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := dhcpv4.NewDiscovery(tc.mac)
			if err != nil {
				t.Fatal(err)
			}
			seen := false
			for range 3 {
				r, err := s.Reply(d, tc.at)
				if err != nil || r == nil {
					t.Fatalf("DISCOVER: %v, %v", r, err)
				}
				seen = seen || r.YourIPAddr.Equal(declined)
				// Not committed: the allocator moves on to the next free address.
			}
			if seen && !tc.want {
				t.Errorf("declined %v offered again", declined)
			}
		})
	}
}

// TestLeasesFileDamaged: an empty or corrupt leases file (a crash before
// the fsync the old code lacked) starts with no leases instead of
// refusing to start; the next commit writes a valid file.
func TestLeasesFileDamaged(t *testing.T) {
	first, last, _ := ParseRange("10.0.0.100-10.0.0.110")
	for _, tc := range []struct{ name, data string }{{"empty", ""}, {"corrupt", "[{\"mac\": "}, {"nul", "\x00\x00\x00"}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "leases.json")
			if err := os.WriteFile(path, []byte(tc.data), 0o640); err != nil {
				t.Fatal(err)
			}
			l, err := NewFileLeases(path, first, last)
			if err != nil {
				t.Fatalf("NewFileLeases(%s file) = %v, want a start with no leases", tc.name, err)
			}
			if n := len(l.Leases()); n != 0 {
				t.Errorf("%d leases, want 0", n)
			}
			if err := l.Commit(mac1, first, time.Now(), time.Hour); err != nil {
				t.Fatal(err)
			}
			l2, err := NewFileLeases(path, first, last)
			if err != nil || len(l2.Leases()) != 1 {
				t.Errorf("reopen after commit: %v, %v", l2.Leases(), err)
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
				t.Errorf("mode after save: %v, %v; want 0640 kept", fi.Mode(), err)
			}
		})
	}
}

func TestLeasedTo(t *testing.T) {
	first, last, _ := ParseRange("10.0.0.100-10.0.0.110")
	fl, _ := NewFileLeases("", first, last)
	s := newServer(t, Full, fl, fakeBooter{})
	if a, ok := s.LeasedTo(mac1); ok {
		t.Errorf("LeasedTo before a lease = %v", a)
	}
	if err := fl.Commit(mac1, first, time.Now(), time.Hour); err != nil {
		t.Fatal(err)
	}
	if a, ok := s.LeasedTo(mac1); !ok || a != netip.MustParseAddr("10.0.0.100") {
		t.Errorf("LeasedTo = %v, %v; want 10.0.0.100", a, ok)
	}
	if err := fl.Release(mac1, first); err != nil {
		t.Fatal(err)
	}
	if a, ok := s.LeasedTo(mac1); ok {
		t.Errorf("LeasedTo after release = %v", a)
	}
	if a, ok := newServer(t, Proxy, nil, fakeBooter{}).LeasedTo(mac1); ok {
		t.Errorf("proxy LeasedTo = %v", a)
	}
}

func TestProxyRequestForSiteLeaseIgnored(t *testing.T) {
	s := newServer(t, Proxy, nil, fakeBooter{})
	req := discover(t, append(pxeBIOS, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 0, 2))),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 0, 0, 50))))...)
	if r, err := s.Reply(req, time.Now()); r != nil || err != nil {
		t.Errorf("proxy Reply(request to other server) = %v, %v; want nil", r, err)
	}
	req.UpdateOption(dhcpv4.OptServerIdentifier(serverIP))
	if r, err := s.Reply(req, time.Now()); r != nil || err != nil {
		t.Errorf("proxy Reply(request to us without ciaddr) = %v, %v; want nil", r, err)
	}
	req.ClientIPAddr = net.IPv4(10, 0, 0, 50)
	r, err := s.Reply(req, time.Now())
	if err != nil || r == nil || r.MessageType() != dhcpv4.MessageTypeAck || !r.YourIPAddr.IsUnspecified() {
		t.Errorf("proxy Reply(request to us) = %v, %v; want ACK without address", r, err)
	}
}

func TestFileLeases(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases.json")
	first, last, err := ParseRange("10.0.0.100-10.0.0.101")
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewFileLeases(path, first, last)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	macs := []net.HardwareAddr{{2, 0, 0, 0, 0, 1}, {2, 0, 0, 0, 0, 2}, {2, 0, 0, 0, 0, 3}}
	var got []string
	for _, m := range macs[:2] {
		ip, err := l.Offer(m, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Commit(m, ip, now, time.Hour); err != nil {
			t.Fatal(err)
		}
		got = append(got, ip.String())
	}
	if diff := cmp.Diff([]string{"10.0.0.100", "10.0.0.101"}, got); diff != "" {
		t.Errorf("addresses (-want +got):\n%s", diff)
	}
	if _, err := l.Offer(macs[2], now); !errors.Is(err, ErrRangeFull) {
		t.Errorf("Offer with range full: %v, want ErrRangeFull", err)
	}
	if err := l.Commit(macs[2], net.IPv4(10, 0, 0, 100), now, time.Hour); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Commit of another's address: %v, want ErrUnavailable", err)
	}
	if err := l.Commit(macs[2], net.IPv4(10, 0, 0, 99), now, time.Hour); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Commit outside range: %v, want ErrUnavailable", err)
	}
	// Leases persist: a new FileLeases on the same file gives the same
	// MAC the same address.
	l2, err := NewFileLeases(path, first, last)
	if err != nil {
		t.Fatal(err)
	}
	ip, err := l2.Offer(macs[1], now)
	if err != nil || ip.String() != "10.0.0.101" {
		t.Errorf("after reload Offer(mac 2) = %v, %v; want 10.0.0.101", ip, err)
	}
	// An expired lease is reused for a new MAC.
	later := now.Add(2 * time.Hour)
	ip, err = l2.Offer(macs[2], later)
	if err != nil {
		t.Fatalf("Offer after expiry: %v", err)
	}
	if err := l2.Commit(macs[2], ip, later, time.Hour); err != nil {
		t.Errorf("Commit of expired address: %v", err)
	}
}

func TestParseRange(t *testing.T) {
	for _, s := range []string{"", "10.0.0.5", "10.0.0.9-10.0.0.1", "a-b", "::1-::2"} {
		if _, _, err := ParseRange(s); err == nil {
			t.Errorf("ParseRange(%q) = nil error, want one", s)
		}
	}
}

// FuzzReply feeds arbitrary bytes to the packet decoder and the handler in
// both modes: no panic, and proxy mode never hands out an address.
func FuzzReply(f *testing.F) {
	for _, mods := range [][]dhcpv4.Modifier{nil, pxeBIOS, pxeUEFI, ipxe, httpUEFI} {
		d, err := dhcpv4.NewDiscovery(mac1, mods...)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(d.ToBytes())
		d.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeRequest))
		d.UpdateOption(dhcpv4.OptServerIdentifier(serverIP))
		d.UpdateOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 0, 0, 100)))
		f.Add(d.ToBytes())
		d.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeDecline))
		f.Add(d.ToBytes())
		d.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeRelease))
		d.ClientIPAddr = net.IPv4(10, 0, 0, 100)
		f.Add(d.ToBytes())
	}
	f.Add([]byte{})
	f.Add(make([]byte, 240))
	first, last, _ := ParseRange("10.0.0.100-10.0.0.110")
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := dhcpv4.FromBytes(data)
		if err != nil {
			return // dropped
		}
		leases, err := NewFileLeases("", first, last)
		if err != nil {
			t.Fatal(err)
		}
		full := newServer(t, Full, leases, fakeBooter{})
		r, err := full.Reply(req, time.Now())
		if err != nil {
			t.Logf("full Reply: %v", err)
		}
		// A fresh server made no offer and has no lease: nothing is ACKed
		// with an address.
		if r != nil && r.MessageType() == dhcpv4.MessageTypeAck && r.YourIPAddr != nil && !r.YourIPAddr.IsUnspecified() {
			t.Errorf("full ACK of %v without an offer", r.YourIPAddr)
		}
		proxy := newServer(t, Proxy, nil, fakeBooter{})
		r, err = proxy.Reply(req, time.Now())
		if err != nil {
			t.Logf("proxy Reply: %v", err)
		}
		if r != nil {
			if r.YourIPAddr != nil && !r.YourIPAddr.IsUnspecified() {
				t.Errorf("proxy reply assigns %v", r.YourIPAddr)
			}
			if _, err := dhcpv4.FromBytes(r.ToBytes()); err != nil {
				t.Errorf("proxy reply does not decode: %v", err)
			}
		}
	})
}
