package dhcpd

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shoal-project/shoal/internal/atomicfile"
)

// Allocator is the lease policy of full mode: which address a MAC gets.
type Allocator interface {
	// Offer picks an address for mac: its current lease if it has one,
	// else a free one. It reserves nothing.
	Offer(mac net.HardwareAddr, now time.Time) (net.IP, error)
	// Commit leases ip to mac until now+d; it fails with ErrUnavailable
	// when ip is outside the range or leased to another MAC.
	Commit(mac net.HardwareAddr, ip net.IP, now time.Time, d time.Duration) error
	// Release ends mac's lease of ip, if it has it.
	Release(mac net.HardwareAddr, ip net.IP) error
}

// ErrUnavailable means an address cannot be leased to the asking MAC.
var ErrUnavailable = errors.New("address unavailable")

// ErrRangeFull means every address of the range is leased.
var ErrRangeFull = errors.New("address range full")

// Lease is one MAC's lease.
type Lease struct {
	MAC     string    `json:"mac"`
	IP      string    `json:"ip"`
	Expires time.Time `json:"expires"`
}

// FileLeases hands out addresses from a range and keeps the leases in a
// JSON file, so that they survive a restart. A MAC keeps its address while
// the range has others free, even after its lease expired.
type FileLeases struct {
	first, last uint32
	path        string

	mu     sync.Mutex
	byMAC  map[string]Lease
	byIP   map[uint32]string
	lastIP uint32 // where the search for a free address starts
}

// ParseRange parses "FIRST-LAST" (IPv4 addresses, FIRST <= LAST).
func ParseRange(s string) (first, last net.IP, err error) {
	a, b, ok := strings.Cut(s, "-")
	first, last = net.ParseIP(strings.TrimSpace(a)).To4(), net.ParseIP(strings.TrimSpace(b)).To4()
	if !ok || first == nil || last == nil || ip2u(first) > ip2u(last) {
		return nil, nil, fmt.Errorf("bad range %q: want FIRST-LAST IPv4 addresses", s)
	}
	return first, last, nil
}

// NewFileLeases loads (or starts) the leases in path for the range
// first..last. path "" keeps leases in memory only.
func NewFileLeases(path string, first, last net.IP) (*FileLeases, error) {
	if first.To4() == nil || last.To4() == nil || ip2u(first) > ip2u(last) {
		return nil, fmt.Errorf("leases: bad range %v-%v", first, last)
	}
	l := &FileLeases{first: ip2u(first), last: ip2u(last), path: path,
		byMAC: map[string]Lease{}, byIP: map[uint32]string{}}
	l.lastIP = l.first - 1
	if path == "" {
		return l, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("leases: %w", err)
	}
	var leases []Lease
	if err := json.Unmarshal(data, &leases); err != nil {
		return nil, fmt.Errorf("leases %s: %w", path, err)
	}
	for _, le := range leases {
		ip := net.ParseIP(le.IP).To4()
		if ip == nil || ip2u(ip) < l.first || ip2u(ip) > l.last {
			continue // the range changed: forget leases outside it
		}
		l.byMAC[le.MAC] = le
		l.byIP[ip2u(ip)] = le.MAC
	}
	return l, nil
}

func ip2u(ip net.IP) uint32 { return binary.BigEndian.Uint32(ip.To4()) }

func u2ip(u uint32) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, u)
	return ip
}

// Offer implements Allocator.
func (l *FileLeases) Offer(mac net.HardwareAddr, now time.Time) (net.IP, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if le, ok := l.byMAC[mac.String()]; ok {
		return net.ParseIP(le.IP).To4(), nil
	}
	n := l.last - l.first + 1
	// First a never-used address, then the oldest expired one.
	for i := uint32(0); i < n; i++ {
		u := l.first + (l.lastIP-l.first+1+i)%n
		if _, used := l.byIP[u]; !used {
			l.lastIP = u
			return u2ip(u), nil
		}
	}
	var oldest *Lease
	for _, le := range l.byMAC {
		if le.Expires.Before(now) && (oldest == nil || le.Expires.Before(oldest.Expires)) {
			le := le
			oldest = &le
		}
	}
	if oldest == nil {
		return nil, ErrRangeFull
	}
	return net.ParseIP(oldest.IP).To4(), nil
}

// Commit implements Allocator.
func (l *FileLeases) Commit(mac net.HardwareAddr, ip net.IP, now time.Time, d time.Duration) error {
	ip = ip.To4()
	if ip == nil {
		return fmt.Errorf("commit: not IPv4: %w", ErrUnavailable)
	}
	u := ip2u(ip)
	if u < l.first || u > l.last {
		return fmt.Errorf("commit %v: outside range: %w", ip, ErrUnavailable)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	key := mac.String()
	if owner, ok := l.byIP[u]; ok && owner != key {
		if l.byMAC[owner].Expires.After(now) {
			return fmt.Errorf("commit %v: leased to %s: %w", ip, owner, ErrUnavailable)
		}
		delete(l.byMAC, owner)
	}
	if old, ok := l.byMAC[key]; ok && old.IP != ip.String() {
		delete(l.byIP, ip2u(net.ParseIP(old.IP)))
	}
	l.byMAC[key] = Lease{MAC: key, IP: ip.String(), Expires: now.Add(d).UTC()}
	l.byIP[u] = key
	return l.saveLocked()
}

// Release implements Allocator.
func (l *FileLeases) Release(mac net.HardwareAddr, ip net.IP) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	le, ok := l.byMAC[mac.String()]
	if !ok || (ip != nil && !ip.IsUnspecified() && le.IP != ip.String()) {
		return nil
	}
	// Keep the address associated with the MAC (it gets it again next
	// time) but mark the lease as expired.
	le.Expires = time.Time{}
	l.byMAC[le.MAC] = le
	return l.saveLocked()
}

// Leases returns the current leases sorted by address.
func (l *FileLeases) Leases() []Lease {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Lease, 0, len(l.byMAC))
	for _, le := range l.byMAC {
		out = append(out, le)
	}
	sort.Slice(out, func(i, j int) bool {
		return ip2u(net.ParseIP(out[i].IP)) < ip2u(net.ParseIP(out[j].IP))
	})
	return out
}

func (l *FileLeases) saveLocked() error {
	if l.path == "" {
		return nil
	}
	leases := make([]Lease, 0, len(l.byMAC))
	for _, le := range l.byMAC {
		leases = append(leases, le)
	}
	sort.Slice(leases, func(i, j int) bool { return leases[i].MAC < leases[j].MAC })
	data, err := json.MarshalIndent(leases, "", "  ")
	if err != nil {
		return fmt.Errorf("save leases: %w", err)
	}
	if err := atomicfile.Write(l.path, append(data, '\n'), atomicfile.Options{Perm: 0o600}); err != nil {
		return fmt.Errorf("save leases: %w", err)
	}
	return nil
}
