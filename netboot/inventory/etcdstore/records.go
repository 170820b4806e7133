// records.go is the key layout in etcd and the JSON values under it: what
// the store writes and what it reads back, from itself, from other
// servers and from operators' etcdctl puts.

package etcdstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/shoal-project/shoal/netboot/api"
	"github.com/shoal-project/shoal/netboot/inventory"
)

// DefaultPrefix holds everything shoal keeps in etcd (Config.Prefix).
const DefaultPrefix = "/shoal/"

// Layout is the key layout under a prefix (docs/netboot.md, "Inventory on
// etcd"); <mac> is the canonical MAC, lower case with colons:
//
//	PREFIX machines/<mac>                        the machine as an operator sets it, JSON {"image": …, "disk": …, "action": "reimage"|"local"} (MachineRecord)
//	PREFIX status/<mac>                          its last report and times (StatusRecord), written by the server that received it
//	PREFIX events/<mac>/<unixnano>-<server>-<n>  its report history (Event), the newest Config.EventsKept kept
type Layout struct{ Prefix string }

// Machines is the prefix of the machines' keys.
func (l Layout) Machines() string { return l.Prefix + "machines/" }

// Statuses is the prefix of the status keys.
func (l Layout) Statuses() string { return l.Prefix + "status/" }

// Events is the prefix of every machine's history.
func (l Layout) Events() string { return l.Prefix + "events/" }

// Machine is mac's key.
func (l Layout) Machine(mac string) string { return l.Machines() + mac }

// Status is the key of mac's last report.
func (l Layout) Status(mac string) string { return l.Statuses() + mac }

// History is the prefix of mac's history.
func (l Layout) History(mac string) string { return l.Events() + mac + "/" }

// Event names one event of mac's history: the time in nanoseconds since
// 1970, zero-padded to 19 digits so that keys sort in time order, the
// server that wrote it and that server's sequence number.
func (l Layout) Event(mac string, at time.Time, server string, n uint64) string {
	return fmt.Sprintf("%s%019d-%s-%d", l.History(mac), at.UnixNano(), server, n)
}

// macOfEvent returns the <mac> of an event key.
func (l Layout) macOfEvent(key string) string {
	rest := strings.TrimPrefix(key, l.Events())
	mac, _, _ := strings.Cut(rest, "/")
	return mac
}

// MACOfKey returns the canonical MAC of a key under prefix (a Layout's
// Machines or Statuses).
func MACOfKey(prefix, key string) (string, error) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok || rest == "" || strings.Contains(rest, "/") {
		return "", fmt.Errorf("key %q: want %s<mac>", key, prefix)
	}
	mac, err := inventory.CanonicalMAC(rest)
	if err != nil {
		return "", fmt.Errorf("key %q: %w", key, err)
	}
	return mac, nil
}

// MachineRecord is the value of a machine's key.
type MachineRecord struct {
	Image  string     `json:"image"`
	Disk   string     `json:"disk,omitempty"` // "" or "-": the appliance's default
	Action api.Action `json:"action"`
}

// ErrBadRecord is wrapped by the decoders' errors.
var ErrBadRecord = errors.New("bad record")

// DecodeMachine reads a machine's value: one JSON object with no unknown
// field (a misspelt key is an error, not a default), an action of reimage
// or local and an image name without blanks.
func DecodeMachine(b []byte) (MachineRecord, error) {
	var r MachineRecord
	if err := decodeStrict(b, &r); err != nil {
		return MachineRecord{}, fmt.Errorf("machine: %w: %w", ErrBadRecord, err)
	}
	if r.Action != api.Reimage && r.Action != api.Local {
		return MachineRecord{}, fmt.Errorf("machine: %w: action %q: want reimage or local", ErrBadRecord, r.Action)
	}
	if r.Image == "" || strings.ContainsFunc(r.Image+r.Disk, isBlank) {
		return MachineRecord{}, fmt.Errorf("machine: %w: image %q, disk %q: want an image and no blanks", ErrBadRecord, r.Image, r.Disk)
	}
	if r.Disk == "-" {
		r.Disk = ""
	}
	return r, nil
}

func isBlank(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == 0 }

// Encode returns r as its key's value.
func (r MachineRecord) Encode() []byte {
	b, _ := json.Marshal(r) // strings only: cannot fail
	return b
}

// StatusRecord is the value of a machine's status key.
type StatusRecord struct {
	Status     api.Status `json:"status"`
	FirstSeen  time.Time  `json:"firstSeen,omitzero"`
	LastBoot   time.Time  `json:"lastBoot,omitzero"`
	LastReport time.Time  `json:"lastReport,omitzero"`
	Server     string     `json:"server"` // the server that wrote it
}

// DecodeStatus reads a status key's value (unknown fields are let by: a
// newer server may write more).
func DecodeStatus(b []byte) (StatusRecord, error) {
	var r StatusRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return StatusRecord{}, fmt.Errorf("status: %w: %w", ErrBadRecord, err)
	}
	if r.Status.Progress < 0 || r.Status.Progress > 1 {
		return StatusRecord{}, fmt.Errorf("status: %w: progress %v", ErrBadRecord, r.Status.Progress)
	}
	return r, nil
}

// Event is one entry of a machine's history: a report accepted.
type Event struct {
	Time   time.Time  `json:"time"`
	Server string     `json:"server"`
	Status api.Status `json:"status"`
}

// DecodeEvent reads an event's value.
func DecodeEvent(b []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return Event{}, fmt.Errorf("event: %w: %w", ErrBadRecord, err)
	}
	return e, nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("etcdstore: marshal %T: %v", v, err)) // only our own types: a bug
	}
	return b
}

// decodeStrict decodes exactly one JSON object with no unknown field.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON object")
	}
	return nil
}
