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
}

// Ignore is the unknown-machine policy that leaves unknown machines alone.
const Ignore = "ignore"

// Open loads the inventory at path. A missing file is an empty inventory
// (created on the first save). unknown is "ignore" (or "") or the name of
// the image that unknown machines get.
func Open(path, unknown string) (*Store, error) {
	if unknown == "" {
		unknown = Ignore
	}
	s := &Store{path: path, unknown: unknown, lineOf: map[string]int{}, machines: map[string]*Machine{}}
	if path == "" {
		return s, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	if err := s.parse(data); err != nil {
		return nil, fmt.Errorf("inventory %s: %w", path, err)
	}
	return s, nil
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
	if create {
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
	m, err := s.lookupLocked(mac, true)
	if err != nil {
		return
	}
	if m.FirstSeen.IsZero() {
		m.FirstSeen = now
	}
	m.LastBoot = now
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
	m, err := s.lookupLocked(mac, true)
	if err != nil {
		return Machine{}, err
	}
	if m.FirstSeen.IsZero() {
		m.FirstSeen = now
	}
	m.Status = st
	m.LastReport = now
	if st.Success() && m.Action != Local {
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
	return writeFileAtomic(s.path, buf.Bytes())
}

func writeFileAtomic(path string, data []byte) error {
	if err := atomicfile.Write(path, data, atomicfile.Options{Perm: 0o600}); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}
