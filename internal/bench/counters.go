// counters.go: the kernel's counters of a LAN run: interface bytes and packets, UDP receive-buffer drops, qdisc drops.
package bench

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"github.com/shoal-project/shoal/internal/netlab"
)

// udpRcvbufErrors reads RcvbufErrors from the Udp line of /proc/net/snmp
// inside the node's namespace.
func udpRcvbufErrors(ctx context.Context, n *netlab.Node) (int64, error) {
	out, err := n.Command(ctx, "cat", "/proc/net/snmp").Output()
	if err != nil {
		return 0, fmt.Errorf("snmp of %s: %w", n.Name, err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, name := range names {
			if name == "RcvbufErrors" && i < len(f) {
				return strconv.ParseInt(f[i], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("snmp of %s: no Udp RcvbufErrors", n.Name)
}

// qdiscDrops sums the drops of every qdisc in a namespace.
func qdiscDrops(ctx context.Context, ns string) (int64, error) {
	out, err := exec.CommandContext(ctx, "tc", "-n", ns, "-s", "qdisc", "show").Output()
	if err != nil {
		return 0, fmt.Errorf("tc -s qdisc in %s: %w", ns, err)
	}
	var total int64
	f := strings.Fields(string(out))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "dropped" {
			v, err := strconv.ParseInt(strings.TrimSuffix(f[i+1], ","), 10, 64)
			if err == nil {
				total += v
			}
		}
	}
	return total, nil
}

func drops(ctx context.Context, lan *netlab.LAN) (rcvbuf, qdisc int64, err error) {
	for i, n := range lan.Nodes {
		d, err := qdiscDrops(ctx, n.Name)
		if err != nil {
			return 0, 0, err
		}
		qdisc += d
		if i == 0 {
			continue
		}
		e, err := udpRcvbufErrors(ctx, n)
		if err != nil {
			return 0, 0, err
		}
		rcvbuf += e
	}
	d, err := qdiscDrops(ctx, lan.Hub)
	return rcvbuf, qdisc + d, err
}

// counters are a node's eth0 statistics.
type counters struct{ txBytes, txPackets, rxBytes, rxPackets int64 }

func readCounters(ctx context.Context, n *netlab.Node) (counters, error) {
	out, err := n.Command(ctx, "cat",
		"/sys/class/net/eth0/statistics/tx_bytes", "/sys/class/net/eth0/statistics/tx_packets",
		"/sys/class/net/eth0/statistics/rx_bytes", "/sys/class/net/eth0/statistics/rx_packets").Output()
	if err != nil {
		return counters{}, fmt.Errorf("read counters of %s: %w", n.Name, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 4 {
		return counters{}, fmt.Errorf("counters of %s: %q", n.Name, out)
	}
	var v [4]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i], 10, 64); err != nil {
			return counters{}, err
		}
	}
	return counters{v[0], v[1], v[2], v[3]}, nil
}
