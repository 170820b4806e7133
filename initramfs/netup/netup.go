// Package netup brings the appliance's network up: every Ethernet link up,
// a wait for carrier, then DHCPv4 (u-root's dhclient, which uses nclient4
// and netlink) on every link with carrier, in parallel; each lease's
// address, routes and DNS servers are configured with netlink.
package netup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/u-root/u-root/pkg/dhclient"
	"github.com/vishvananda/netlink"
)

var (
	// ErrNoLink is wrapped when no Ethernet link has carrier.
	ErrNoLink = errors.New("no network link with carrier")
	// ErrNoLease is wrapped when no link got a DHCP lease.
	ErrNoLease = errors.New("no DHCP lease")
)

// Options tunes Up.
type Options struct {
	// CarrierWait is how long to wait for the first link with carrier
	// (default 20 s); links that get carrier up to 2 s later join too.
	CarrierWait time.Duration
	// DHCPTimeout is one DHCP attempt's timeout (default 5 s), Retries the
	// number of attempts (default 6).
	DHCPTimeout time.Duration
	Retries     int
	// Ifaces, when set, names the links to use; by default every link
	// backed by a device (a NIC) is used.
	Ifaces []string
	Log    *slog.Logger
}

// Lease is an address a link got.
type Lease struct {
	Iface  string
	MAC    net.HardwareAddr
	IP     net.IP
	Mask   net.IPMask
	Router net.IP
	Server net.IP // the DHCP server
	Took   time.Duration
}

func (l Lease) String() string {
	ones, _ := l.Mask.Size()
	return fmt.Sprintf("%s (%s): %s/%d router %v from DHCP server %v", l.Iface, l.MAC, l.IP, ones, l.Router, l.Server)
}

// Up configures the network and returns the leases, first the first link's.
func Up(ctx context.Context, o Options) ([]Lease, error) {
	if o.CarrierWait == 0 {
		o.CarrierWait = 20 * time.Second
	}
	if o.DHCPTimeout == 0 {
		o.DHCPTimeout = 5 * time.Second
	}
	if o.Retries == 0 {
		o.Retries = 6
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	if lo, err := netlink.LinkByName("lo"); err == nil {
		netlink.LinkSetUp(lo)
	}
	links, err := ethernet(o.Ifaces)
	if err != nil {
		return nil, err
	}
	if len(links) == 0 {
		return nil, fmt.Errorf("%w: no Ethernet interface found (is the NIC's driver in the initramfs?)", ErrNoLink)
	}
	for _, l := range links {
		if err := netlink.LinkSetUp(l); err != nil {
			log.Warn("link up failed", "iface", l.Attrs().Name, "err", err)
		}
	}
	up := waitCarrier(ctx, links, o.CarrierWait)
	if len(up) == 0 {
		var names []string
		for _, l := range links {
			names = append(names, l.Attrs().Name)
		}
		return nil, fmt.Errorf("%w after %v: interfaces %s (check the cable and the switch port)", ErrNoLink, o.CarrierWait, strings.Join(names, ", "))
	}
	for _, l := range up {
		log.Info("link has carrier", "iface", l.Attrs().Name, "mac", l.Attrs().HardwareAddr.String())
	}
	cfg := dhclient.Config{Timeout: o.DHCPTimeout, Retries: o.Retries, LogLevel: dhclient.LogInfo}
	var leases []Lease
	var errs []string
	for r := range dhclient.SendRequests(ctx, up, true, false, cfg, 5*time.Second) {
		name := r.Interface.Attrs().Name
		if r.Err != nil {
			errs = append(errs, name+": "+r.Err.Error())
			log.Warn("DHCP failed", "iface", name, "err", r.Err)
			continue
		}
		if err := r.Lease.Configure(); err != nil {
			errs = append(errs, name+": configure: "+err.Error())
			log.Warn("configuring lease failed", "iface", name, "err", err)
			continue
		}
		p, _ := r.Lease.Message()
		if p == nil {
			continue
		}
		l := Lease{Iface: name, MAC: r.Interface.Attrs().HardwareAddr, IP: p.YourIPAddr,
			Mask: p.SubnetMask(), Server: p.ServerIdentifier(), Took: time.Since(start)}
		if rs := p.Router(); len(rs) > 0 {
			l.Router = rs[0]
		}
		log.Info("DHCP lease", "iface", name, "ip", l.IP.String(), "router", fmt.Sprint(l.Router), "server", fmt.Sprint(l.Server), "after", l.Took.Round(10*time.Millisecond).String())
		leases = append(leases, l)
	}
	if len(leases) == 0 {
		return nil, fmt.Errorf("%w on %d links: %s (is a DHCP server on this network?)", ErrNoLease, len(up), strings.Join(errs, "; "))
	}
	return leases, nil
}

// ethernet lists the links named, or else those that are Ethernet devices
// (not lo, not virtual ones without a device).
func ethernet(names []string) ([]netlink.Link, error) {
	if len(names) > 0 {
		var out []netlink.Link
		for _, n := range names {
			l, err := netlink.LinkByName(n)
			if err != nil {
				return nil, fmt.Errorf("link %s: %w", n, err)
			}
			out = append(out, l)
		}
		return out, nil
	}
	all, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []netlink.Link
	for _, l := range all {
		a := l.Attrs()
		if a.Name == "lo" || len(a.HardwareAddr) != 6 {
			continue
		}
		if _, err := os.Stat(filepath.Join("/sys/class/net", a.Name, "device")); err != nil {
			continue
		}
		out = append(out, l)
	}
	return out, nil
}

// waitCarrier waits up to max for the first link with carrier, then 2 s
// more for others, and returns those with carrier.
func waitCarrier(ctx context.Context, links []netlink.Link, max time.Duration) []netlink.Link {
	deadline := time.Now().Add(max)
	var firstAt time.Time
	for {
		var up []netlink.Link
		for _, l := range links {
			b, err := os.ReadFile(filepath.Join("/sys/class/net", l.Attrs().Name, "carrier"))
			if err == nil && strings.TrimSpace(string(b)) == "1" {
				up = append(up, l)
			}
		}
		now := time.Now()
		if len(up) > 0 && firstAt.IsZero() {
			firstAt = now
		}
		if len(up) == len(links) || now.After(deadline) || (!firstAt.IsZero() && now.Sub(firstAt) >= 2*time.Second) {
			return up
		}
		select {
		case <-ctx.Done():
			return up
		case <-time.After(100 * time.Millisecond):
		}
	}
}
