// shaping.go: a node's link: its rate (tc tbf or htb on both ends) and random loss (nftables).
package netlab

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// Shapings a Config may name: the qdisc that holds a link to its rate.
const (
	// ShapingTBF is one tbf qdisc per link end (the default).
	ShapingTBF = "tbf"
	// ShapingHTB is an htb qdisc with one class per link end.
	ShapingHTB = "htb"
)

// SetLoss drops permille thousandths of the frames arriving on the node's
// eth0, at random (nftables netdev ingress, `numgen random mod 1000 < N`).
// 0 removes the rule.
func (n *Node) SetLoss(permille int) error {
	if permille < 0 || permille > 1000 {
		return fmt.Errorf("netlab: loss %d‰ out of range", permille)
	}
	ctx := context.Background()
	// Remove any previous table; "No such file" just means there was none.
	_ = run(ctx, "ip", "netns", "exec", n.Name, "nft", "delete", "table", "netdev", "netlab")
	if permille == 0 {
		return nil
	}
	rules := fmt.Sprintf(`table netdev netlab {
	chain loss {
		type filter hook ingress device %q priority 0; policy accept;
		numgen random mod 1000 < %d drop
	}
}
`, n.Iface, permille)
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.Name, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("netlab: set loss on %s: nft: %w: %s", n.Name, err, bytes.TrimSpace(out))
	}
	return nil
}

// SetRate limits the node's link to rateBitsPerSec in both directions (on
// the node's eth0 and on its peer in the hub), with the LAN's Shaping: tc
// tbf, or an htb class. 0 removes the limit.
func (n *Node) SetRate(rateBitsPerSec int64) error {
	ctx := context.Background()
	ends := [][2]string{{n.Name, n.Iface}, {n.lan.Hub, n.HostIface}}
	for _, e := range ends {
		if rateBitsPerSec <= 0 {
			_ = run(ctx, "tc", "-n", e[0], "qdisc", "del", "dev", e[1], "root")
			continue
		}
		for _, s := range shapingSteps(n.lan.cfg.Shaping, e[1], rateBitsPerSec, n.lan.cfg.MTU) {
			if err := run(ctx, "tc", append([]string{"-n", e[0]}, s...)...); err != nil {
				return fmt.Errorf("netlab: set rate on %s: %w", n.Name, err)
			}
		}
	}
	return nil
}

// shapingSteps are the tc commands (without "tc -n NS") that hold dev to
// rateBitsPerSec. Burst: 10 ms at the rate, but at least 16 full frames.
func shapingSteps(shaping, dev string, rateBitsPerSec int64, mtu int) [][]string {
	frameBytes := int64(max(mtu, 1500) + 14)
	burstBytes := max(rateBitsPerSec/8/100, 16*frameBytes)
	rate := strconv.FormatInt(rateBitsPerSec, 10) + "bit"
	burst := strconv.FormatInt(burstBytes, 10)
	if shaping == ShapingHTB {
		// One class takes everything (default 1); its quantum only
		// matters between classes, so any value that fits a frame and
		// keeps the kernel quiet (at most 200000) does.
		return [][]string{
			{"qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", "1"},
			{"class", "replace", "dev", dev, "parent", "1:", "classid", "1:1", "htb", "rate", rate, "ceil", rate,
				"burst", burst, "cburst", burst, "quantum", strconv.FormatInt(min(200000, 16*frameBytes), 10)},
		}
	}
	return [][]string{{"qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate, "burst", burst, "latency", "100ms"}}
}
