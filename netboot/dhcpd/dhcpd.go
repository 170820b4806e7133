// Package dhcpd is shoal's DHCP server for network boot, in two modes:
//
//   - full: it leases addresses from a range (an isolated provisioning
//     network) and gives PXE clients boot information too;
//   - proxy: it runs beside the site's DHCP server and answers PXE clients
//     with boot information only, never an address (ProxyDHCP, as in the
//     PXE specification, pixiecore and Tinkerbell).
//
// Which file a client boots is decided by a Booter (policy), which leases
// it gets by an Allocator; the protocol lives in Server.Reply, a pure
// function of the request that the fuzz test exercises.
package dhcpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/iana"
)

// Mode is how the server answers.
type Mode string

// The modes.
const (
	Full  Mode = "full"
	Proxy Mode = "proxy"
)

// Booter decides what a boot client gets.
type Booter interface {
	// BootFile returns the boot file for a client of kind k (never NotPXE)
	// with this MAC: a TFTP file name for PXE clients, an http:// URL for
	// iPXE and UEFI HTTP clients. ok false means: give it no boot
	// information (a machine to leave alone).
	BootFile(mac net.HardwareAddr, k Kind) (file string, ok bool)
}

// Config configures a Server.
type Config struct {
	Mode     Mode
	ServerIP net.IP // the address clients reach this server's TFTP and HTTP at; also the DHCP server identifier

	// Full mode only.
	Leases        Allocator
	Netmask       net.IPMask
	Router        net.IP   // optional
	DNS           []net.IP // optional
	LeaseDuration time.Duration

	Booter Booter
	Log    *slog.Logger // nil: discard
	// Replied, if set, is called after each reply is sent (for metrics).
	Replied func(msgType dhcpv4.MessageType, k Kind)
}

// Server answers DHCP requests as its Config says.
type Server struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	offers map[string]offer // MAC: the last address offered to it (full mode)
}

// offer is an address offered to a MAC, and when.
type offer struct {
	ip net.IP
	at time.Time
}

// offerTTL is how long a client may take to REQUEST what it was offered;
// maxOffers bounds the offers remembered (a DISCOVER flood from made-up
// MACs evicts the oldest).
const (
	offerTTL  = time.Minute
	maxOffers = 1024
)

// New checks cfg and returns a server.
func New(cfg Config) (*Server, error) {
	if cfg.ServerIP.To4() == nil {
		return nil, fmt.Errorf("dhcpd: server IP %v is not IPv4", cfg.ServerIP)
	}
	cfg.ServerIP = cfg.ServerIP.To4()
	switch cfg.Mode {
	case Full:
		if cfg.Leases == nil || cfg.Netmask == nil {
			return nil, errors.New("dhcpd: full mode needs leases and a netmask")
		}
		if cfg.LeaseDuration <= 0 {
			cfg.LeaseDuration = time.Hour
		}
	case Proxy:
	default:
		return nil, fmt.Errorf("dhcpd: unknown mode %q", cfg.Mode)
	}
	if cfg.Booter == nil {
		return nil, errors.New("dhcpd: no Booter")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log, offers: map[string]offer{}}, nil
}

// Reply computes the answer to req, or nil for no answer. It never panics
// on any decodable packet and, in proxy mode, never returns an address.
func (s *Server) Reply(req *dhcpv4.DHCPv4, now time.Time) (*dhcpv4.DHCPv4, error) {
	if req.OpCode != dhcpv4.OpcodeBootRequest || req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return nil, nil
	}
	mac := req.ClientHWAddr
	kind := Classify(req)
	var file string
	boot := false
	if kind != NotPXE {
		file, boot = s.cfg.Booter.BootFile(mac, kind)
	}
	switch s.cfg.Mode {
	case Proxy:
		return s.proxyReply(req, kind, file, boot)
	default:
		return s.fullReply(req, kind, file, boot, now)
	}
}

func (s *Server) proxyReply(req *dhcpv4.DHCPv4, kind Kind, file string, boot bool) (*dhcpv4.DHCPv4, error) {
	if !boot {
		return nil, nil
	}
	var mt dhcpv4.MessageType
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		mt = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeInform:
		// Only a client that already has its address (from the site's
		// server) and asks the proxy itself gets an ACK, with boot
		// information and still no address. A REQUEST for the site's
		// offer (no ciaddr yet) is none of the proxy's business.
		if req.ClientIPAddr == nil || req.ClientIPAddr.IsUnspecified() {
			return nil, nil
		}
		if sid := req.ServerIdentifier(); req.MessageType() == dhcpv4.MessageTypeRequest && sid != nil && !sid.Equal(s.cfg.ServerIP) {
			return nil, nil
		}
		mt = dhcpv4.MessageTypeAck
	default:
		return nil, nil
	}
	resp, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithServerIP(s.cfg.ServerIP),
		dhcpv4.WithYourIP(net.IPv4zero),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP)),
	)
	if err != nil {
		return nil, fmt.Errorf("proxy reply: %w", err)
	}
	s.addBoot(req, resp, kind, file, false)
	return resp, nil
}

func (s *Server) fullReply(req *dhcpv4.DHCPv4, kind Kind, file string, boot bool, now time.Time) (*dhcpv4.DHCPv4, error) {
	mac := req.ClientHWAddr
	var mt dhcpv4.MessageType
	var ip net.IP
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		var err error
		ip, err = s.cfg.Leases.Offer(mac, now)
		if err != nil {
			s.log.Warn("dhcp: no address to offer", "mac", mac.String(), "err", err)
			return nil, nil
		}
		s.rememberOffer(mac, ip, now)
		mt = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		var why string
		ip, why = s.requested(req, now)
		if ip == nil {
			if why == "" {
				return nil, nil // not ours to answer (RFC 2131 4.3.2)
			}
			s.log.Info("dhcp: nak", "mac", mac.String(), "why", why)
			return s.nak(req, why)
		}
		if err := s.cfg.Leases.Commit(mac, ip, now, s.cfg.LeaseDuration); err != nil {
			s.log.Info("dhcp: nak", "mac", mac.String(), "ip", ip, "err", err)
			return s.nak(req, "address not available")
		}
		mt = dhcpv4.MessageTypeAck
	case dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline:
		if sid := req.ServerIdentifier(); sid != nil && !sid.Equal(s.cfg.ServerIP) {
			return nil, nil
		}
		s.forgetOffer(mac)
		if req.MessageType() == dhcpv4.MessageTypeDecline {
			// RFC 2131 4.3.3: the address is in use by someone else;
			// do not offer it again for a while.
			ip := req.RequestedIPAddress()
			s.log.Warn("dhcp: address declined: in use on the network; not offered for "+DeclineHold.String(),
				"mac", mac.String(), "ip", ip)
			if err := s.cfg.Leases.Decline(mac, ip, now); err != nil {
				s.log.Warn("dhcp: decline", "mac", mac.String(), "err", err)
			}
			return nil, nil
		}
		if err := s.cfg.Leases.Release(mac, req.ClientIPAddr); err != nil {
			s.log.Warn("dhcp: release", "mac", mac.String(), "err", err)
		}
		return nil, nil
	case dhcpv4.MessageTypeInform:
		mt = dhcpv4.MessageTypeAck
	default:
		return nil, nil
	}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithServerIP(s.cfg.ServerIP),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP)),
		dhcpv4.WithOption(dhcpv4.OptSubnetMask(s.cfg.Netmask)),
	}
	if ip != nil {
		mods = append(mods,
			dhcpv4.WithYourIP(ip),
			dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(s.cfg.LeaseDuration)))
	}
	if s.cfg.Router != nil {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRouter(s.cfg.Router)))
	}
	if len(s.cfg.DNS) > 0 {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDNS(s.cfg.DNS...)))
	}
	resp, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		return nil, fmt.Errorf("reply: %w", err)
	}
	if boot {
		s.addBoot(req, resp, kind, file, true)
	}
	return resp, nil
}

// requested is the address a full-mode REQUEST may be ACKed with (RFC
// 2131 4.3.2), or nil and why to NAK it ("" for silence):
//
//   - SELECTING (server identifier, requested address): ours and the
//     address this server offered to this MAC (or already leases to it);
//   - INIT-REBOOT (requested address, no server identifier): only the
//     address associated with this MAC; silence if the MAC has none;
//   - RENEWING/REBINDING (ciaddr): likewise.
func (s *Server) requested(req *dhcpv4.DHCPv4, now time.Time) (net.IP, string) {
	mac := req.ClientHWAddr
	sid := req.ServerIdentifier()
	ip := req.RequestedIPAddress().To4()
	if ip == nil || ip.IsUnspecified() {
		ip = req.ClientIPAddr.To4() // renewing or rebinding
	}
	leased, _, hasLease := s.cfg.Leases.Lease(mac)
	switch {
	case sid != nil && !sid.Equal(s.cfg.ServerIP):
		s.forgetOffer(mac) // the client chose another server
		return nil, ""
	case ip == nil || ip.IsUnspecified():
		if sid != nil {
			return nil, "no address requested"
		}
		return nil, ""
	case sid != nil:
		if o, ok := s.offerTo(mac, now); ok && o.Equal(ip) {
			return ip, ""
		}
		if hasLease && leased.Equal(ip) {
			return ip, ""
		}
		return nil, "not the address offered"
	case !hasLease:
		return nil, "" // no record of this client: silence
	case !leased.Equal(ip):
		return nil, "not your address"
	}
	return ip, ""
}

func (s *Server) rememberOffer(mac net.HardwareAddr, ip net.IP, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.offers[mac.String()]; !ok && len(s.offers) >= maxOffers {
		oldest := ""
		for k, o := range s.offers {
			if oldest == "" || o.at.Before(s.offers[oldest].at) {
				oldest = k
			}
			if now.Sub(o.at) > offerTTL {
				delete(s.offers, k)
			}
		}
		delete(s.offers, oldest)
	}
	s.offers[mac.String()] = offer{ip: ip, at: now}
}

func (s *Server) offerTo(mac net.HardwareAddr, now time.Time) (net.IP, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.offers[mac.String()]
	if !ok || now.Sub(o.at) > offerTTL {
		return nil, false
	}
	return o.ip, true
}

func (s *Server) forgetOffer(mac net.HardwareAddr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.offers, mac.String())
}

// LeasedTo returns the address this server currently leases to mac (full
// mode, a lease not expired nor released), for other parts of shoal serve
// that want to know which IP a machine has. In proxy mode it is always
// false: the site's server leases the addresses.
func (s *Server) LeasedTo(mac net.HardwareAddr) (netip.Addr, bool) {
	if s.cfg.Mode != Full {
		return netip.Addr{}, false
	}
	ip, expires, ok := s.cfg.Leases.Lease(mac)
	if !ok || !expires.After(time.Now()) {
		return netip.Addr{}, false
	}
	a, ok := netip.AddrFromSlice(ip.To4())
	return a, ok
}

func (s *Server) nak(req *dhcpv4.DHCPv4, msg string) (*dhcpv4.DHCPv4, error) {
	resp, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP)),
		dhcpv4.WithOption(dhcpv4.OptMessage(msg)),
	)
	if err != nil {
		return nil, fmt.Errorf("nak: %w", err)
	}
	resp.SetBroadcast()
	return resp, nil
}

// iPXE encapsulated options (option 175); sub-option 176 "no ProxyDHCP"
// stops iPXE waiting for ProxyDHCP offers that will not come.
var ipxeNoProxyDHCP = []byte{176, 1, 1}

// PXE vendor options (option 43): PXE_DISCOVERY_CONTROL (6) = 8, "boot the
// file in the reply, skip boot server discovery".
var pxeDiscoveryControl = []byte{6, 1, 8, 255}

func (s *Server) addBoot(req, resp *dhcpv4.DHCPv4, kind Kind, file string, full bool) {
	switch kind {
	case HTTPUEFI:
		// UEFI HTTP boot takes only replies that say HTTPClient.
		resp.UpdateOption(dhcpv4.OptClassIdentifier("HTTPClient"))
	default:
		resp.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
	}
	if kind == PXEBIOS || kind == PXEUEFI {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, pxeDiscoveryControl))
		resp.UpdateOption(dhcpv4.OptTFTPServerName(s.cfg.ServerIP.String()))
	}
	if kind == IPXE && full {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(175), ipxeNoProxyDHCP))
	}
	// PXE clients match replies to their GUID (option 97).
	if guid := req.GetOneOption(dhcpv4.OptionClientMachineIdentifier); guid != nil {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, guid))
	}
	resp.BootFileName = file
	resp.UpdateOption(dhcpv4.OptBootFileName(file))
}

// Serve answers requests on conn until ctx is done; then it closes conn and
// returns nil. conn should be bound to port 67 on the provisioning
// interface, with SO_BROADCAST (ListenInterface makes such a socket).
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	// server4 runs each handler in its own goroutine; count them so that
	// Serve returns only after the last one, and start none after closing.
	var (
		mu     sync.Mutex
		closed bool
		wg     sync.WaitGroup
	)
	handler := func(c net.PacketConn, peer net.Addr, req *dhcpv4.DHCPv4) {
		mu.Lock()
		if closed {
			mu.Unlock()
			return
		}
		wg.Add(1)
		mu.Unlock()
		defer wg.Done()
		s.handle(c, peer, req)
	}
	stop := func() {
		mu.Lock()
		closed = true
		mu.Unlock()
		wg.Wait()
	}
	srv, err := server4.NewServer("", nil, handler, server4.WithConn(conn))
	if err != nil {
		return fmt.Errorf("dhcpd: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	select {
	case <-ctx.Done():
		srv.Close()
		<-done
		stop()
		return nil
	case err := <-done:
		stop()
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("dhcpd: serve: %w", err)
	}
}

func (s *Server) handle(conn net.PacketConn, peer net.Addr, req *dhcpv4.DHCPv4) {
	resp, err := s.Reply(req, time.Now())
	if err != nil {
		s.log.Warn("dhcp: reply", "mac", req.ClientHWAddr.String(), "err", err)
		return
	}
	if resp == nil {
		return
	}
	dst := replyAddr(req, resp, peer)
	if _, err := conn.WriteTo(resp.ToBytes(), dst); err != nil {
		s.log.Warn("dhcp: send", "to", dst, "err", err)
		return
	}
	kind := Classify(req)
	s.log.Debug("dhcp: reply", "type", resp.MessageType(), "mac", req.ClientHWAddr.String(), "kind", kind, "ip", resp.YourIPAddr, "file", resp.BootFileName)
	if s.cfg.Replied != nil {
		s.cfg.Replied(resp.MessageType(), kind)
	}
}

// replyAddr is where a reply goes (RFC 2131 4.1): to the relay, to the
// client's own address, or broadcast.
func replyAddr(req, resp *dhcpv4.DHCPv4, peer net.Addr) net.Addr {
	if !req.GatewayIPAddr.IsUnspecified() && req.GatewayIPAddr != nil {
		return &net.UDPAddr{IP: req.GatewayIPAddr, Port: dhcpv4.ServerPort}
	}
	if resp.MessageType() != dhcpv4.MessageTypeNak && req.ClientIPAddr != nil && !req.ClientIPAddr.IsUnspecified() {
		return &net.UDPAddr{IP: req.ClientIPAddr, Port: dhcpv4.ClientPort}
	}
	if p, ok := peer.(*net.UDPAddr); ok && p.Port != 0 && p.Port != dhcpv4.ClientPort && !p.IP.Equal(net.IPv4bcast) {
		// PXE clients asking on port 4011 get their answer where they asked from.
		return p
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
}

// ListenInterface opens a UDP socket on port 67 bound to the interface
// ifname (SO_BINDTODEVICE), with SO_BROADCAST, for Serve.
func ListenInterface(ifname string) (net.PacketConn, error) {
	return ListenInterfacePort(ifname, dhcpv4.ServerPort)
}

// PXEPort is where PXE clients send their ProxyDHCP REQUEST after they got
// an address from the site's server (PXE specification 2.1, "port 4011").
const PXEPort = 4011

// ListenInterfacePort is ListenInterface on another port (PXEPort in
// proxy mode).
func ListenInterfacePort(ifname string, port int) (net.PacketConn, error) {
	conn, err := server4.NewIPv4UDPConn(ifname, &net.UDPAddr{Port: port})
	if err != nil {
		return nil, fmt.Errorf("dhcpd: listen on %s port %d: %w", ifname, port, err)
	}
	return conn, nil
}
