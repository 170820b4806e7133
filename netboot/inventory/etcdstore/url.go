// url.go parses shoal serve's --store etcd://HOST[:PORT][,HOST[:PORT]…]
// (or etcds://, over TLS).

package etcdstore

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// DefaultPort is etcd's client port, taken when a host names none.
const DefaultPort = "2379"

// ParseURL parses etcd://HOST[:PORT][,HOST[:PORT]…] into the client
// endpoints http://HOST:PORT, one per member, and etcds://… into
// https://HOST:PORT (TLS). Hosts are names, IPv4 addresses or bracketed
// IPv6 addresses; no path, query, user or fragment.
func ParseURL(s string) ([]string, error) {
	scheme := "http://"
	rest, ok := strings.CutPrefix(s, "etcd://")
	if !ok {
		if rest, ok = strings.CutPrefix(s, "etcds://"); !ok {
			return nil, fmt.Errorf("store %q: want etcd://HOST[:PORT][,HOST[:PORT]…] or etcds://…", s)
		}
		scheme = "https://"
	}
	if i := strings.IndexAny(rest, "/?#@ \t\r\n"); i >= 0 {
		return nil, fmt.Errorf("store %q: %q not allowed: want etcd://HOST[:PORT][,HOST[:PORT]…]", s, rest[i])
	}
	var eps []string
	seen := map[string]bool{}
	for _, hp := range strings.Split(rest, ",") {
		if hp == "" {
			return nil, fmt.Errorf("store %q: empty host", s)
		}
		host, port, err := net.SplitHostPort(hp)
		if err != nil {
			// No port: the whole is the host.
			host, port = strings.TrimSuffix(strings.TrimPrefix(hp, "["), "]"), DefaultPort
			if strings.ContainsAny(host, "[]") || (strings.Contains(host, ":") && net.ParseIP(host) == nil) {
				return nil, fmt.Errorf("store %q: host %q: %w", s, hp, err)
			}
			if strings.Contains(host, ":") && !strings.HasPrefix(hp, "[") {
				return nil, fmt.Errorf("store %q: IPv6 host %q: put it in brackets", s, hp)
			}
		}
		if host == "" {
			return nil, fmt.Errorf("store %q: empty host in %q", s, hp)
		}
		if !validHost(host) {
			return nil, fmt.Errorf("store %q: host %q: want a name (letters, digits, '-', '.') or an IP address", s, host)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return nil, fmt.Errorf("store %q: port %q: want 1-65535", s, port)
		}
		ep := scheme + net.JoinHostPort(host, port)
		if seen[ep] {
			return nil, fmt.Errorf("store %q: %s listed twice", s, hp)
		}
		seen[ep] = true
		eps = append(eps, ep)
	}
	return eps, nil
}

// validHost accepts an IP address or a DNS name's characters.
func validHost(h string) bool {
	if strings.Contains(h, ":") {
		return net.ParseIP(h) != nil
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
			return false
		}
	}
	return true
}
