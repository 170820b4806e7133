// summary.go is what a lab run did: the summary, its JSON, and how it is
// judged at the end.

package lab

import (
	"context"
	"fmt"
	"io"

	"github.com/shoal-project/shoal/netboot/api"
)

// Summary is what a lab run did; `shoal lab --summary FILE` writes it.
type Summary struct {
	Seconds float64 `json:"seconds"`
	// Accel is the accelerator the machines ran under (kvm or tcg).
	Accel             string `json:"accel"`
	ImageBytes        int64  `json:"image_bytes"`         // what the server would send once
	ServerEgressBytes int64  `json:"server_egress_bytes"` // what it sent (repository route)
	// KilledLeaderAt is the most a follower had of the image when the
	// lab killed the leader (Faults.KillLeaderAt; 0: no kill).
	KilledLeaderAt float64       `json:"killed_leader_at,omitempty"`
	Nodes          []NodeSummary `json:"nodes"`
}

// NodeSummary is one machine's result.
type NodeSummary struct {
	Name     string    `json:"name"`
	MAC      string    `json:"mac"`
	Firmware string    `json:"firmware"`
	Role     api.Role  `json:"role"`
	State    api.State `json:"state"`
	// Action is the server's inventory entry for the machine's next
	// network boot at the end: "local" once its success was reported.
	Action api.Action `json:"action"`
	// States are the states the machine reported, in order, each once
	// per change (booting, listening, writing, serving, done...).
	States   []api.State `json:"states,omitempty"`
	Verified bool        `json:"verified"`
	// DiskMatches: with the sample OS, the machine's disk, after it
	// booted its new OS, equals byte for byte a disk of the same size that
	// `shoal image apply` wrote on the host (the sample OS never writes
	// to its disk). Not checked for other images.
	DiskMatches bool `json:"disk_matches,omitempty"`
	// BootedNewOS: the boot check (Config.BootCheck) matched the console
	// after the appliance's reboot.
	BootedNewOS bool `json:"booted_new_os"`
	// BootCheck is the expression that was matched for BootedNewOS.
	BootCheck string `json:"boot_check"`
	// BootEntry is what the appliance did about the UEFI boot entry (its
	// done report's bootEntry; "" on BIOS).
	BootEntry       string  `json:"boot_entry,omitempty"`
	BytesFromServer int64   `json:"bytes_from_server"`
	BytesFromPeers  int64   `json:"bytes_from_peers"`
	Seconds         float64 `json:"seconds"`
	Error           string  `json:"error,omitempty"`
	// ConsoleError is the error the appliance showed on the machine's
	// console when it failed ("SHOAL: REIMAGING FAILED").
	ConsoleError string `json:"console_error,omitempty"`
	// MachineError says why the machine itself could not go on: QEMU's
	// exit status and last line of stderr, or how long its console was
	// silent and its last line.
	MachineError string `json:"machine_error,omitempty"`
	// Killed: the lab killed this machine (Faults.KillLeaderAt).
	Killed bool `json:"killed,omitempty"`
	// Progress is the last progress the machine reported (0..1).
	Progress float64 `json:"progress"`
}

// finish compares the disks, reads the server's egress, judges each
// machine and prints the summary.
func (l *lab) finish(ctx context.Context, r repository, srv *server, runErr error) (Summary, error) {
	sum := &l.sum
	sum.Seconds = l.elapsed().Seconds()
	if l.sample {
		if err := l.checkDisks(ctx, r); err != nil {
			l.log.Warn("comparing the disks with the image", "err", err)
		}
	}
	var err error
	if sum.ServerEgressBytes, err = srv.repoEgress(); err != nil {
		l.log.Warn("server egress", "err", err)
	}
	failed := 0
	for _, n := range l.nodes {
		switch {
		case n.Killed:
			// The run killed it.
		case n.tiny:
			if n.State != api.StateFailed {
				failed++
				n.Error = fmt.Sprintf("disk too small, yet state %q", n.State)
			} else if zero, err := allZero(n.disk); err != nil || !zero {
				failed++
				n.Error = fmt.Sprintf("disk too small, yet written to (%v)", err)
			}
		case !n.ok():
			failed++
			if n.Error == "" {
				n.Error = n.why()
			}
		}
		sum.Nodes = append(sum.Nodes, n.NodeSummary)
	}
	printSummary(l.cfg.Table, *sum)
	if runErr == nil && failed > 0 {
		runErr = fmt.Errorf("%w: %d of %d", ErrNodesFailed, failed, len(l.nodes))
	}
	if runErr != nil && l.cfg.Keep {
		fmt.Fprintf(l.cfg.Table, "logs: %s (serve.log, node*/serial.log)\n", l.work)
	}
	return *sum, runErr
}

// why says what is missing for a machine that is not ok.
func (n *node) why() string {
	switch {
	case n.MachineError != "":
		return n.MachineError
	case n.State == "":
		last := "nothing on its console"
		if n.m != nil {
			if l := lastConsoleLine(n); l != "" {
				last = fmt.Sprintf("last console line %q", l)
			}
		}
		return "never reported to the server; " + last
	case n.State != api.StateDone:
		return fmt.Sprintf("state %q at the end", n.State)
	case !n.Verified:
		return "done but not verified"
	case !n.BootedNewOS:
		return fmt.Sprintf("reimaged, but the boot check %q never matched its console after the reboot", n.bootCheck)
	}
	return "the disk does not match the image"
}

func printSummary(w io.Writer, s Summary) {
	fmt.Fprintf(w, "\nsummary: %.1f s under %s; image %s; server sent %s (%.2fx the image)\n",
		s.Seconds, s.Accel, mib(s.ImageBytes), mib(s.ServerEgressBytes), ratio(s.ServerEgressBytes, s.ImageBytes))
	for _, n := range s.Nodes {
		note := n.Error
		if n.Killed {
			note = "killed by the lab (--kill-leader-at)"
		}
		fmt.Fprintf(w, "  %-8s %-5s %-9s verified=%-5v disk_matches=%-5v booted_new_os=%-5v server=%s peers=%s %.1f s %s\n",
			n.Name, n.Firmware, n.Role, n.Verified, n.DiskMatches, n.BootedNewOS, mib(n.BytesFromServer), mib(n.BytesFromPeers), n.Seconds, note)
	}
}
