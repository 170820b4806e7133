// listen.go: opening the server's sockets (Listen), apart from serving them.
package serve

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"golang.org/x/net/icmp"

	"github.com/shoal-project/shoal/netboot/dhcpd"
	"github.com/shoal-project/shoal/netboot/ra"
)

// Listeners are the sockets a Server serves, opened by Listen.
type Listeners struct {
	DHCP net.PacketConn // nil when DHCP is off
	PXE  net.PacketConn // port 4011, proxy mode only
	TFTP net.PacketConn // nil when TFTP is off
	HTTP net.Listener
	RA   *icmp.PacketConn // nil when not answering router solicitations
	// RAErr says why RA is nil although asked for (e.g. no IPv6).
	RAErr error

	ServerIP net.IP
	Netmask  net.IPMask
	ifIndex  int
	ifaceIP  net.IP // --iface's first IPv4 address: the default bind address
}

// Default ports of HTTP and TFTP.
const (
	DefaultHTTPPort = 8080
	DefaultTFTPPort = 69
)

// ErrNoBindAddr is returned when a listener has no address to bind to.
var ErrNoBindAddr = errors.New("no address to listen on")

// BindAddr is the address a listener binds to: flag when given, else the
// boot interface's address ifaceIP with port. Binding to every address
// must be asked for (":PORT", "0.0.0.0:PORT"); Unspecified reports it.
func BindAddr(flag string, ifaceIP net.IP, port int) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if ifaceIP == nil {
		return "", fmt.Errorf("%w: give --iface (its address is the default) or the address, e.g. :%d for every address", ErrNoBindAddr, port)
	}
	return net.JoinHostPort(ifaceIP.String(), strconv.Itoa(port)), nil
}

// Unspecified reports whether addr listens on every address.
func Unspecified(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "" || ip != nil && ip.IsUnspecified()
}

// Close closes every listener.
func (l *Listeners) Close() error {
	var errs []error
	if l.DHCP != nil {
		errs = append(errs, l.DHCP.Close())
	}
	if l.PXE != nil {
		errs = append(errs, l.PXE.Close())
	}
	if l.TFTP != nil {
		errs = append(errs, l.TFTP.Close())
	}
	if l.HTTP != nil {
		errs = append(errs, l.HTTP.Close())
	}
	if l.RA != nil {
		errs = append(errs, l.RA.Close())
	}
	return errors.Join(errs...)
}

// ErrKeyFlag is the refusal of --key (and of shoal.key= in --cmdline).
var ErrKeyFlag = errors.New("--key is gone: a site key on the kernel command line was served to anyone asking for an iPXE script; " +
	"the appliance now gets a per-boot credential (POST /api/v1/machines/{mac}/credential) and signs its reports with it; " +
	"remove --key and shoal.key= (old appliances: --insecure-open-api); see docs/security.md")

// Listen checks cfg and opens its sockets in the calling thread's network
// namespace.
func Listen(cfg Config) (_ *Listeners, err error) {
	if cfg.Key != "" || hasKeyArg(cfg.Cmdline) {
		return nil, ErrKeyFlag
	}
	l := &Listeners{}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	if cfg.Iface != "" {
		ifi, err := net.InterfaceByName(cfg.Iface)
		if err != nil {
			return nil, fmt.Errorf("interface %s: %w", cfg.Iface, err)
		}
		l.ifIndex = ifi.Index
		addrs, err := ifi.Addrs()
		if err != nil {
			return nil, fmt.Errorf("interface %s: %w", cfg.Iface, err)
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				l.ServerIP, l.Netmask = ipn.IP.To4(), ipn.Mask
				l.ifaceIP = l.ServerIP
				break
			}
		}
	}
	if cfg.ServerIP != "" {
		ip := net.ParseIP(cfg.ServerIP).To4()
		if ip == nil {
			return nil, fmt.Errorf("--server-ip %q: not an IPv4 address", cfg.ServerIP)
		}
		l.ServerIP = ip
	}
	switch cfg.DHCP {
	case "off", "":
	case "full", "proxy":
		if cfg.Iface == "" {
			return nil, fmt.Errorf("--dhcp %s needs --iface", cfg.DHCP)
		}
		if l.ServerIP == nil {
			return nil, fmt.Errorf("--dhcp %s: %s has no IPv4 address and no --server-ip given", cfg.DHCP, cfg.Iface)
		}
		if cfg.DHCP == "full" {
			if _, _, err := dhcpd.ParseRange(cfg.Range); err != nil {
				return nil, fmt.Errorf("--range: %w", err)
			}
		}
		if l.DHCP, err = dhcpd.ListenInterface(cfg.Iface); err != nil {
			return nil, err
		}
		if cfg.DHCP == "proxy" {
			if l.PXE, err = dhcpd.ListenInterfacePort(cfg.Iface, dhcpd.PXEPort); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("--dhcp %q: want full, proxy or off", cfg.DHCP)
	}
	if cfg.TFTP != "off" {
		addr, err := BindAddr(cfg.TFTP, l.ifaceIP, DefaultTFTPPort)
		if err != nil {
			return nil, fmt.Errorf("tftp: %w", err)
		}
		if l.TFTP, err = net.ListenPacket("udp4", addr); err != nil {
			return nil, fmt.Errorf("tftp: %w", err)
		}
	}
	addr, err := BindAddr(cfg.HTTP, l.ifaceIP, DefaultHTTPPort)
	if err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	if l.HTTP, err = net.Listen("tcp", addr); err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	if cfg.RA && cfg.Iface != "" {
		// Best effort: a host without IPv6 just does not answer (Serve
		// logs why).
		l.RA, l.RAErr = ra.Listen(l.ifIndex)
	}
	return l, nil
}
