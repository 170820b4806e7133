// Package inventory keeps the netboot server's list of machines: which image
// each machine (by MAC address) gets, on which disk, and whether its next
// network boot reimages it or boots its local disk. It also holds each
// machine's last reported progress.
//
// The file format is a text table, one machine per line, fields separated by
// blanks, '#' starting a comment:
//
//	# mac              action   image        disk
//	52:54:00:12:34:56  reimage  debian-12    /dev/vda
//	52:54:00:12:34:57  local    debian-12    size>=100G
//
// action is "reimage" or "local"; image is a name in the repository; disk
// is the appliance's target-disk selector ("-" for the appliance's default).
// When an action changes (a verified success turns "reimage" into "local"),
// the file is rewritten atomically, keeping its comments and line order.
package inventory

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shoal-project/shoal/internal/atomicfile"
	"github.com/shoal-project/shoal/netboot/api"
)

// The machine API's types (netboot/api): one definition for the server,
// the appliance and the lab.
type (
	Action  = api.Action
	Machine = api.Machine
	Status  = api.Status
)

// The actions.
const (
	Reimage = api.Reimage
	Local   = api.Local
)

// ErrUnknown is returned for a MAC that is not in the inventory and not
// allowed by the unknown-machine policy.
var ErrUnknown = errors.New("machine not in inventory")

// Store is an inventory loaded from a file. It is safe for concurrent use.
type Store struct {
	path    string
	unknown string // "ignore" or the image for unknown machines

	mu       sync.Mutex
	lines    []string // raw file lines; machine lines are rewritten on save
	lineOf   map[string]int
	machines map[string]*Machine

	// file is the machines file as last read or written; a change (an
	// operator's edit) is read again before any use (fileStamp).
	file    fileStamp
	fileErr error // the last reread failed: nothing is written until fixed
	// booted is the image and disk each machine's last boot script named:
	// a success turns the machine local only if its entry still says so.
	booted map[string]bootedWith
	// pending holds unknown machines (let in by the policy) that fetched a
	// boot script but never reported: capped and expiring, not in
	// Machines, the file or the metrics.
	pending map[string]Machine
}

type bootedWith struct{ image, disk string }

// MaxPending bounds the unknown machines seen only by a boot script fetch;
// PendingTTL is how long one is kept.
const (
	MaxPending = 256
	PendingTTL = time.Hour
)

// Ignore is the unknown-machine policy that leaves unknown machines alone.
const Ignore = "ignore"

// Open loads the inventory at path. A missing file is an empty inventory
// (created on the first save). unknown is "ignore" (or "") or the name of
// the image that unknown machines get.
func Open(path, unknown string) (*Store, error) {
	if unknown == "" {
		unknown = Ignore
	}
	s := &Store{path: path, unknown: unknown, lineOf: map[string]int{}, machines: map[string]*Machine{},
		booted: map[string]bootedWith{}, pending: map[string]Machine{}}
	if path == "" {
		return s, nil
	}
	if err := s.refreshLocked(); err != nil {
		return nil, err
	}
	return s, nil
}

// refreshLocked reads the file again if it changed since it was last read
// or written (operator edits win): the machines are the file's, with
// what the server knows of each (status, times) kept by MAC.
func (s *Store) refreshLocked() error {
	if s.path == "" {
		return nil
	}
	st, err := stampOf(s.path)
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	if st == s.file && s.fileErr == nil {
		return nil
	}
	var data []byte
	if st.exists {
		if data, err = os.ReadFile(s.path); err != nil {
			return fmt.Errorf("inventory: %w", err)
		}
	}
	n := &Store{lineOf: map[string]int{}, machines: map[string]*Machine{}}
	if err := n.parse(data); err != nil {
		s.fileErr = fmt.Errorf("inventory %s: %w", s.path, err)
		return s.fileErr
	}
	for mac, m := range n.machines {
		if old, ok := s.machines[mac]; ok {
			m.Status, m.FirstSeen, m.LastBoot, m.LastReport = old.Status, old.FirstSeen, old.LastBoot, old.LastReport
		}
	}
	// Unknown machines that reported stay while the file does not list
	// them.
	for mac, m := range s.machines {
		if _, inFile := n.machines[mac]; !inFile && !m.Known && s.unknown != Ignore {
			n.machines[mac] = m
		}
	}
	s.lines, s.lineOf, s.machines = n.lines, n.lineOf, n.machines
	s.file, s.fileErr = st, nil
	return nil
}

// Parse reads an inventory from data without a file behind it (Save then
// does nothing).
func Parse(data []byte, unknown string) (*Store, error) {
	s, err := Open("", unknown)
	if err != nil {
		return nil, err
	}
	if err := s.parse(data); err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	return s, nil
}

func (s *Store) parse(data []byte) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		s.lines = append(s.lines, line)
		body, _, _ := strings.Cut(line, "#")
		f := strings.Fields(body)
		if len(f) == 0 {
			continue
		}
		if len(f) < 3 || len(f) > 4 {
			return fmt.Errorf("line %d: want MAC ACTION IMAGE [DISK], got %d fields", n, len(f))
		}
		mac, err := CanonicalMAC(f[0])
		if err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
		a := Action(f[1])
		if a != Reimage && a != Local {
			return fmt.Errorf("line %d: action %q: want reimage or local", n, f[1])
		}
		if _, dup := s.machines[mac]; dup {
			return fmt.Errorf("line %d: %s listed twice", n, mac)
		}
		m := &Machine{MAC: mac, Action: a, Image: f[2], Known: true}
		if len(f) == 4 && f[3] != "-" {
			m.Disk = f[3]
		}
		s.machines[mac] = m
		s.lineOf[mac] = len(s.lines) - 1
	}
	return sc.Err()
}

// CanonicalMAC parses a MAC address (colons or dashes, any case) and
// returns it as lower case with colons. Only 6-byte addresses are accepted.
func CanonicalMAC(s string) (string, error) {
	hw, err := net.ParseMAC(strings.ReplaceAll(s, "-", ":"))
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("bad MAC address %q", s)
	}
	return hw.String(), nil
}

// Lookup returns the machine with this MAC: from the file, or (when the
// policy names an image) a new entry that reimages with that image. It
// returns ErrUnknown for an unknown MAC when the policy is "ignore".
func (s *Store) Lookup(mac string) (Machine, error) {
	mac, err := CanonicalMAC(mac)
	if err != nil {
		return Machine{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refreshLocked() // on an error (a bad edit), the last good copy serves
	m, err := s.lookupLocked(mac, false)
	if err != nil {
		return Machine{}, err
	}
	return *m, nil
}

// lookupLocked finds mac; an unknown MAC allowed by the policy is added to
// the in-memory list only when create is set (a boot or a report), so that
// DHCP traffic from other machines does not grow it.
func (s *Store) lookupLocked(mac string, create bool) (*Machine, error) {
	if m, ok := s.machines[mac]; ok {
		return m, nil
	}
	if s.unknown == Ignore {
		return nil, fmt.Errorf("%s: %w", mac, ErrUnknown)
	}
	m := &Machine{MAC: mac, Action: Reimage, Image: s.unknown}
	if p, ok := s.pending[mac]; ok {
		*m = p
	}
	if create {
		delete(s.pending, mac)
		s.machines[mac] = m
	}
	return m, nil
}

// Allowed reports whether the server should boot this MAC at all.
func (s *Store) Allowed(mac string) bool {
	_, err := s.Lookup(mac)
	return err == nil
}

// MarkBoot records that the machine fetched its boot script now.
func (s *Store) MarkBoot(mac string, now time.Time) {
	mac, err := CanonicalMAC(mac)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refreshLocked()
	if _, ok := s.machines[mac]; !ok {
		if s.unknown != Ignore {
			s.addPendingLocked(mac, now)
		}
		return
	}
	m := s.machines[mac]
	if m.FirstSeen.IsZero() {
		m.FirstSeen = now
	}
	m.LastBoot = now
	s.booted[mac] = bootedWith{m.Image, m.Disk}
}

// addPendingLocked records an unknown machine's boot script fetch in the
// capped, expiring pending set (the oldest goes when it is full).
func (s *Store) addPendingLocked(mac string, now time.Time) {
	p, ok := s.pending[mac]
	if !ok {
		for k, o := range s.pending {
			if now.Sub(o.LastBoot) > PendingTTL {
				delete(s.pending, k)
			}
		}
		if len(s.pending) >= MaxPending {
			oldest := ""
			for k, o := range s.pending {
				if oldest == "" || o.LastBoot.Before(s.pending[oldest].LastBoot) {
					oldest = k
				}
			}
			delete(s.pending, oldest)
		}
		p = Machine{MAC: mac, Action: Reimage, Image: s.unknown, FirstSeen: now}
	}
	p.LastBoot = now
	s.pending[mac] = p
	s.booted[mac] = bootedWith{p.Image, p.Disk}
}

// Pending returns how many unknown machines fetched a boot script and have
// not reported (at most MaxPending).
func (s *Store) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// Report records a status report. A verified success turns the machine's
// action to local and saves the file. It returns the machine as it is
// after the report.
func (s *Store) Report(mac string, st Status, now time.Time) (Machine, error) {
	mac, err := CanonicalMAC(mac)
	if err != nil {
		return Machine{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refreshLocked()
	m, err := s.lookupLocked(mac, true)
	if err != nil {
		return Machine{}, err
	}
	if m.FirstSeen.IsZero() {
		m.FirstSeen = now
	}
	m.Status = st
	m.LastReport = now
	// The success counts only for the image and disk the machine was
	// booted with: an operator who changed them since wants it reimaged.
	b, booted := s.booted[mac]
	still := !booted || (b.image == m.Image && b.disk == m.Disk)
	if st.Success() && m.Action != Local && still {
		m.Action = Local
		m.Known = true
		if err := s.saveLocked(); err != nil {
			return *m, err
		}
	}
	return *m, nil
}

// Machines returns every machine, sorted by MAC.
func (s *Store) Machines() []Machine {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refreshLocked()
	out := make([]Machine, 0, len(s.machines))
	for _, m := range s.machines {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MAC < out[j].MAC })
	return out
}

// Save writes the file (atomically: a temporary file renamed over it).
func (s *Store) Save() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.saveLocked()
}

func formatLine(m *Machine) string {
	disk := m.Disk
	if disk == "" {
		disk = "-"
	}
	return fmt.Sprintf("%s  %-7s  %s  %s", m.MAC, m.Action, m.Image, disk)
}

func (s *Store) saveLocked() error {
	if s.path == "" {
		return nil
	}
	// The operator's edits first: a change made since the last read is
	// read and kept, what this save changes is applied to it.
	pendingLocal := map[string]bool{}
	for mac, m := range s.machines {
		if m.Action == Local && m.Known {
			pendingLocal[mac] = true
		}
	}
	before := s.file
	if err := s.refreshLocked(); err != nil {
		return fmt.Errorf("not saved: %w", err)
	}
	if s.file != before {
		// Reread: apply only the turns to local of machines whose entry
		// still reimages with the image they booted.
		for mac := range pendingLocal {
			m, ok := s.machines[mac]
			b, booted := s.booted[mac]
			if ok && m.Action == Reimage && m.Status.Success() && (!booted || (b.image == m.Image && b.disk == m.Disk)) {
				m.Action = Local
			}
		}
	}
	// Known machines update their own line; machines let in by the
	// unknown policy that became known are appended.
	var added []string
	for mac, m := range s.machines {
		if !m.Known {
			continue
		}
		if i, ok := s.lineOf[mac]; ok {
			_, comment, hasComment := strings.Cut(s.lines[i], "#")
			l := formatLine(m)
			if hasComment {
				l += "  #" + comment
			}
			s.lines[i] = l
			continue
		}
		added = append(added, mac)
	}
	sort.Strings(added)
	for _, mac := range added {
		s.lines = append(s.lines, formatLine(s.machines[mac]))
		s.lineOf[mac] = len(s.lines) - 1
	}
	var buf bytes.Buffer
	for _, l := range s.lines {
		buf.WriteString(l)
		buf.WriteByte('\n')
	}
	if err := atomicfile.Write(s.path, buf.Bytes(), atomicfile.Options{Perm: 0o644}); err != nil {
		return fmt.Errorf("save %s: %w", s.path, err)
	}
	st, err := stampOf(s.path)
	if err != nil {
		return fmt.Errorf("save %s: %w", s.path, err)
	}
	s.file = st
	return nil
}
