// table.go prints the live table of the machines.

package lab

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/shoal-project/shoal/internal/vm"
	"github.com/shoal-project/shoal/netboot/api"
)

func (l *lab) elapsed() time.Duration { return time.Since(l.start) }

// lastConsoleLine is the last line of text on n's console.
func lastConsoleLine(n *node) string { return vm.LastLine(string(n.m.Serial())) }

// tableSignature changes when a row of the table would.
func tableSignature(nodes []*node) string {
	var b strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&b, "%s|%s|%s|%s|%s|%s|%v|%v|%v;", n.State, n.Role, mib(n.BytesFromServer), mib(n.BytesFromPeers), n.Error, n.MachineError, n.BootedNewOS, n.Killed, n.silent)
	}
	return b.String()
}

// rowState is the state column: the reported state, or what the lab
// knows better (killed, silent at the server, QEMU gone or stuck).
func (n *node) rowState() string {
	switch {
	case n.Killed:
		return "killed"
	case n.MachineError != "" && n.exited() && !strings.Contains(n.MachineError, "stopped by the lab"):
		return "qemu-exited"
	case n.MachineError != "":
		return "stuck"
	case n.silent:
		return "silent"
	case n.State == "":
		return string(api.StateBooting) // nothing reported yet
	}
	return string(n.State)
}

func printTable(w io.Writer, nodes []*node, elapsed time.Duration) {
	fmt.Fprintf(w, "\n%s  %-8s %-5s %-17s %-12s %-9s %5s %11s %-11s %9s %9s %-8s\n", fmtDur(elapsed),
		"machine", "fw", "mac", "state", "role", "done", "rate", "source", "server", "peers", "new OS")
	sorted := append([]*node(nil), nodes...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, n := range sorted {
		os := "-"
		if n.BootedNewOS {
			os = "booted"
		}
		rate, source := "-", "-"
		if n.rateBitsPerSec > 0 && n.State == api.StateWriting {
			rate = fmt.Sprintf("%.1fMbit/s", float64(n.rateBitsPerSec)/1e6)
		}
		switch {
		case n.BytesFromServer > 0 && n.BytesFromPeers > 0:
			source = "peer+server"
		case n.BytesFromServer > 0:
			source = "server"
		case n.BytesFromPeers > 0:
			source = "peer"
		}
		fmt.Fprintf(w, "%8s  %-8s %-5s %-17s %-12s %-9s %4.0f%% %11s %-11s %9s %9s %-8s\n", "", n.Name, n.Firmware, n.MAC, n.rowState(), n.Role,
			100*n.Progress, rate, source, mib(n.BytesFromServer), mib(n.BytesFromPeers), os)
	}
	for _, n := range sorted {
		if n.MachineError != "" {
			fmt.Fprintf(w, "%8s  %s: %s\n", "", n.Name, n.MachineError)
		}
	}
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func mib(n int64) string { return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20)) }

func fmtDur(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%02d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}
