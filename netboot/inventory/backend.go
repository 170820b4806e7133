// backend.go is what the netboot server needs of an inventory: the file
// Store and etcdstore implement it alike.

package inventory

import "time"

// Backend is an inventory as shoal serve uses it: httpd's boot scripts,
// status reports and machine list, and the DHCP boot policy. MACs may be
// given in any form CanonicalMAC accepts. Implementations are safe for
// concurrent use.
type Backend interface {
	// Lookup returns the machine with this MAC, or (when the
	// unknown-machine policy names an image) the entry an unknown machine
	// gets; ErrUnknown when the policy is "ignore".
	Lookup(mac string) (Machine, error)
	// MarkBoot records that the machine fetched its boot script at now.
	MarkBoot(mac string, now time.Time)
	// Report records a status report received at now; a verified success
	// turns a machine that reimages with the image and disk it booted
	// with to local. It returns the machine as it is after the report.
	Report(mac string, st Status, now time.Time) (Machine, error)
	// Machines returns every machine, sorted by MAC.
	Machines() []Machine
	// Close releases what the inventory holds (connections, goroutines).
	Close() error
}

var _ Backend = (*Store)(nil)

// Close does nothing: a Store holds no open file between uses.
func (s *Store) Close() error { return nil }
