// node.go is one machine of the lab: what the server and its console say
// of it, and whether it is over.

package lab

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/shoal-project/shoal/internal/vm"
	"github.com/shoal-project/shoal/netboot/api"
)

// node is one machine of the lab.
type node struct {
	NodeSummary
	index   int // 0-based: tap index, Faults.QEMUArgs key - 1
	m       *vm.Machine
	dir     string
	disk    string
	started time.Time
	doneAt  time.Time
	tiny    bool // given a disk too small on purpose: must fail
	// sample: the image is the sample OS (its disk is compared with the
	// image after the run).
	sample bool
	// bootCheck matches the console of the machine's new OS.
	bootCheck *regexp.Regexp
	// stick is the USB stick a "usb" machine boots the appliance from;
	// once the appliance powers it off, the lab starts it again from its
	// disk alone (the stick pulled), once (fromDisk).
	stick    string
	fromDisk bool
	silent   bool // the server marks it: reports stopped while at work
	// rateBitsPerSec is the write rate the machine last reported.
	rateBitsPerSec int64
	// exitedAt is when the lab first saw QEMU gone without success.
	exitedAt time.Time
}

func (n *node) tap() string { return fmt.Sprintf("tap%d", n.index) }

// exitGrace is how long a QEMU that exited without a success is given
// for its last report to reach the lab before it counts as failed.
const exitGrace = 5 * time.Second

// update takes the server's view of the machine and what its console
// shows.
func (n *node) update(m *api.Machine) {
	if m != nil {
		n.Action = m.Action
		n.silent = m.Silent
	}
	if m != nil && !m.LastReport.IsZero() {
		st := m.Status
		n.State = st.State
		if k := len(n.States); st.State != "" && (k == 0 || n.States[k-1] != st.State) {
			n.States = append(n.States, st.State)
		}
		if st.Role != "" {
			n.Role = st.Role
		}
		// Counts only grow; a report that leaves them out keeps the last.
		n.rateBitsPerSec = st.RateBitsPerSec
		n.BytesFromServer = max(n.BytesFromServer, st.BytesFromServer)
		n.BytesFromPeers = max(n.BytesFromPeers, st.BytesFromPeers)
		n.Progress = max(n.Progress, st.Progress)
		n.Verified = n.Verified || st.Verified
		if st.Error != "" {
			n.Error = st.Error
		}
		if st.BootEntry != "" {
			n.BootEntry = st.BootEntry
		}
		if st.State == api.StateDone && n.doneAt.IsZero() {
			n.doneAt = time.Now()
			n.Seconds = n.doneAt.Sub(n.started).Seconds()
		}
	}
	if n.m == nil {
		return
	}
	if n.State == api.StateFailed && n.ConsoleError == "" {
		n.ConsoleError = ConsoleFailure(n.m.Serial())
	}
	if !n.BootedNewOS && n.bootCheck != nil && n.bootCheck.Match(n.newOSConsole(n.m.Serial())) {
		n.BootedNewOS = true
	}
}

// afterAction is the appliance's last console line before it reboots
// (or powers off, or kexecs) into the new OS.
var afterAction = []byte("shoal: after-action: ")

// newOSConsole is the part of the console that the new OS printed: after
// the appliance's after-action line, or all of it for a USB machine
// started again from its disk (a new console). Nil before the reboot.
func (n *node) newOSConsole(console []byte) []byte {
	if n.stick != "" && n.fromDisk {
		return console
	}
	i := bytes.LastIndex(console, afterAction)
	if i < 0 {
		return nil
	}
	return console[i+len(afterAction):]
}

// health records why a machine that is not over cannot go on: its QEMU
// exited without a success (after exitGrace, for its last report), or its
// console has been silent for silence (it is then stopped).
func (n *node) health(silence time.Duration) {
	if n.m == nil || n.MachineError != "" || n.Killed {
		return
	}
	if n.exited() {
		if n.exitedAt.IsZero() {
			n.exitedAt = time.Now()
		}
		if time.Since(n.exitedAt) >= exitGrace {
			n.MachineError = n.m.ExitReason()
		}
		return
	}
	if why := n.m.Stuck(silence); why != "" {
		n.MachineError = why + " (stopped by the lab)"
		n.m.Kill()
	}
}

// exited reports whether n's QEMU has exited.
func (n *node) exited() bool { return n.m != nil && n.m.Exited() }

// over: the machine has nothing more to do (failed, cannot run, was
// killed, or reimaged and then booted its new OS).
func (n *node) over() bool {
	return n.State == api.StateFailed || n.MachineError != "" || n.Killed || n.BootedNewOS
}

func (n *node) ok() bool {
	if n.State != api.StateDone || !n.Verified || !n.BootedNewOS {
		return false
	}
	return !n.sample || n.DiskMatches
}

// ConsoleFailure returns the error of the appliance's failure banner on a
// console ("SHOAL: REIMAGING FAILED at step ...", then "  error:  ..."),
// with its step; "" when there is none.
func ConsoleFailure(console []byte) string {
	s := string(console)
	i := strings.LastIndex(s, "SHOAL: REIMAGING FAILED")
	if i < 0 {
		return ""
	}
	lines := strings.Split(s[i:], "\n")
	out := strings.TrimSpace(strings.TrimPrefix(lines[0], "SHOAL: REIMAGING FAILED"))
	for _, l := range lines[1:] {
		if e, ok := strings.CutPrefix(strings.TrimSpace(l), "error:"); ok {
			return out + ": " + strings.TrimSpace(e)
		}
	}
	return out
}
