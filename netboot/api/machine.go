// machine.go is a machine as shoal serve knows it, and the status it
// reports.

package api

import "time"

// Machine is one line of the inventory plus what the server knows about it.
type Machine struct {
	MAC    string `json:"mac"` // canonical form, lower case with colons
	Action Action `json:"action"`
	Image  string `json:"image"`
	Disk   string `json:"disk"` // "" for the appliance's default
	// Known is false for a machine that is not in the file but was let in
	// by the unknown-machine policy.
	Known bool `json:"known"`

	Status     Status    `json:"status"`
	FirstSeen  time.Time `json:"firstSeen,omitzero"`
	LastBoot   time.Time `json:"lastBoot,omitzero"`   // last boot script served
	LastReport time.Time `json:"lastReport,omitzero"` // last status accepted
	// Silent is set in the server's answers (not stored): the machine's
	// reports stopped while it was at work (see Machine.SilentAt).
	Silent bool `json:"silent,omitempty"`
}

// SilentAt reports whether, at now, m's reports have stopped for longer
// than after while its last state was not an end (done or failed): the
// machine died, hung or lost its network.
func (m Machine) SilentAt(now time.Time, after time.Duration) bool {
	if m.LastReport.IsZero() || m.Status.State.Over() {
		return false
	}
	return now.Sub(m.LastReport) > after
}

// Status is what the appliance reports to POST /api/v1/machines/{mac}/status.
type Status struct {
	State           State   `json:"state"`
	Role            Role    `json:"role,omitempty"`
	Progress        float64 `json:"progress"` // 0..1
	RateBitsPerSec  int64   `json:"rateBitsPerSec,omitempty"`
	BytesTotal      int64   `json:"bytesTotal,omitempty"`
	BytesDone       int64   `json:"bytesDone,omitempty"`
	BytesFromPeers  int64   `json:"bytesFromPeers,omitempty"`
	BytesFromServer int64   `json:"bytesFromServer,omitempty"`
	// ChunksOnDisk and BytesOnDisk are what the disk already held before
	// this run, found by hashing it against the manifest: neither moved
	// nor written (a reimage by difference, or a resume).
	ChunksOnDisk int   `json:"chunksOnDisk,omitempty"`
	BytesOnDisk  int64 `json:"bytesOnDisk,omitempty"`
	// Verified: the manifest's signature was checked against the key
	// built into the appliance, and every chunk written against the
	// manifest (false under shoal.insecure=unsigned; docs/security.md).
	Verified bool   `json:"verified,omitempty"`
	Error    string `json:"error,omitempty"`
	// BootEntry says, in a done report from a machine booted by UEFI, what
	// the appliance did about the firmware boot entry the disk needs.
	BootEntry string `json:"bootEntry,omitempty"`
}

// Success reports whether s is a verified, finished write.
func (s Status) Success() bool { return s.State == StateDone && s.Verified && s.Error == "" }
