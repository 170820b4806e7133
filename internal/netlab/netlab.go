// Package netlab builds a LAN of network namespaces for tests and benchmarks
// (its test helpers are in internal/netlabtest).
//
// A LAN is one "hub" namespace holding a Linux bridge, and one namespace per
// node, each joined to the bridge by a veth pair whose node end is called
// eth0. Nodes get addresses from the LAN's /24 (node i gets .(i+10)). Rate
// limits use tc tbf (or htb) on both ends of a node's link, and every link
// can be given an MTU (jumbo frames); random loss uses an nftables netdev ingress chain (this kernel has no netem).
//
// Everything a LAN makes is named uniquely (process ID plus a counter), so
// parallel test binaries do not collide, and Close removes all of it.
package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Config describes a LAN.
type Config struct {
	// Nodes is the number of node namespaces, each with one veth "eth0"
	// on the bridge.
	Nodes int
	// RateBitsPerSec limits every node's link in both directions with
	// Shaping; 0 means unlimited (no qdisc is added).
	RateBitsPerSec int64
	// Shaping is the qdisc that holds a link to RateBitsPerSec: ShapingTBF
	// (tc tbf, the default when empty) or ShapingHTB (an htb class).
	Shaping string
	// MTU is the MTU of the bridge and of both ends of every veth (and of
	// taps); 0 leaves the kernel's default, 1500.
	MTU int
	// Subnet is an IPv4 /24 in CIDR form, e.g. "10.77.0.0/24". Empty picks
	// one from the process ID and a counter. Node i gets host .(i+10).
	Subnet string
	// IGMPSnooping turns on the bridge's IGMP snooping, with the bridge as
	// an IGMPv3 querier. Off (the default), the bridge floods multicast to
	// every port.
	IGMPSnooping bool
	// GRO turns on generic receive offload on the nodes' eth0, as a real
	// NIC's driver has it: a socket that asks for it (UDP_GRO) then reads a
	// run of datagrams at once. Off (the default), every frame stays
	// wire-size up to the socket, which SetLoss needs: its drops act on
	// what arrives at eth0, and with GRO that is whole runs.
	GRO bool
	// NoAddress leaves the nodes' eth0 without an IPv4 address (for DHCP
	// clients). Node.IP is still the address the node would have had.
	NoAddress bool
}

// LAN is a bridge in a hub namespace and the nodes attached to it.
type LAN struct {
	// Nodes are the LAN's nodes in the order they were made.
	Nodes []*Node
	// Bridge is the bridge's interface name inside the hub namespace.
	Bridge string
	// Hub is the name of the namespace holding the bridge (and taps).
	Hub string
	// Subnet is the LAN's IPv4 network.
	Subnet *net.IPNet

	id   string
	cfg  Config
	mu   sync.Mutex
	next int // index of the next node
	taps []string
}

// Node is one namespace on a LAN.
type Node struct {
	// Name is the network namespace's name (for `ip netns exec`).
	Name string
	// Iface is the node's interface on the LAN, always "eth0".
	Iface string
	// IP is the node's IPv4 address, Prefix its prefix length.
	IP     net.IP
	Prefix int
	// MAC is the hardware address of the node's eth0.
	MAC net.HardwareAddr
	// HostIface is the peer veth's name inside the hub namespace.
	HostIface string

	lan *LAN
}

var counter atomic.Int64

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// New makes a LAN as cfg says. It needs root (CAP_NET_ADMIN and
// CAP_SYS_ADMIN), iproute2, ethtool and, for SetLoss, nft. On error,
// whatever was made is removed.
func New(ctx context.Context, cfg Config) (_ *LAN, err error) {
	n := counter.Add(1)
	pid := os.Getpid()
	l := &LAN{
		id:  strconv.FormatInt(int64(pid), 36) + "x" + strconv.FormatInt(n, 36),
		cfg: cfg,
	}
	subnet := cfg.Subnet
	if subnet == "" {
		subnet = fmt.Sprintf("10.%d.%d.0/24", 100+pid%100, n%250)
	}
	_, ipnet, err := net.ParseCIDR(subnet)
	if err != nil {
		return nil, fmt.Errorf("netlab: subnet %q: %w", subnet, err)
	}
	if ones, bits := ipnet.Mask.Size(); bits != 32 || ones > 24 {
		return nil, fmt.Errorf("netlab: subnet %q: want an IPv4 network of /24 or larger", subnet)
	}
	l.Subnet = ipnet
	switch cfg.Shaping {
	case "", ShapingTBF, ShapingHTB:
	default:
		return nil, fmt.Errorf("netlab: shaping %q: want %q or %q", cfg.Shaping, ShapingTBF, ShapingHTB)
	}
	if cfg.MTU != 0 && (cfg.MTU < 576 || cfg.MTU > 65535) {
		return nil, fmt.Errorf("netlab: MTU %d out of range (576-65535)", cfg.MTU)
	}
	l.Hub = "nlh" + l.id
	l.Bridge = "br0"
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	if err := run(ctx, "ip", "netns", "add", l.Hub); err != nil {
		return nil, err
	}
	snoop := "0"
	if cfg.IGMPSnooping {
		snoop = "1"
	}
	steps := [][]string{
		{"ip", "-n", l.Hub, "link", "set", "lo", "up"},
		{"ip", "-n", l.Hub, "link", "add", l.Bridge, "type", "bridge", "forward_delay", "0",
			"mcast_snooping", snoop, "mcast_querier", snoop, "mcast_igmp_version", "3"},
		{"ip", "-n", l.Hub, "link", "set", l.Bridge, "up"},
	}
	if cfg.MTU != 0 {
		// Set on the bridge itself, so that it does not follow its
		// ports' MTU (it would, were it left to the kernel).
		steps = append(steps, []string{"ip", "-n", l.Hub, "link", "set", l.Bridge, "mtu", strconv.Itoa(cfg.MTU)})
	}
	for _, s := range steps {
		if err := run(ctx, s[0], s[1:]...); err != nil {
			return nil, err
		}
	}
	for i := 0; i < cfg.Nodes; i++ {
		if _, err := l.AddNode(ctx); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// AddNode adds a node to the LAN (a late joiner).
func (l *LAN) AddNode(ctx context.Context) (*Node, error) {
	l.mu.Lock()
	i := l.next
	l.next++
	l.mu.Unlock()
	if i > 240 {
		return nil, fmt.Errorf("netlab: too many nodes (%d)", i+1)
	}
	ip := make(net.IP, 4)
	copy(ip, l.Subnet.IP.To4())
	ip[3] += byte(i + 10)
	ones, _ := l.Subnet.Mask.Size()
	n := &Node{
		Name:      fmt.Sprintf("nl%sn%d", l.id, i),
		Iface:     "eth0",
		IP:        ip,
		Prefix:    ones,
		HostIface: fmt.Sprintf("v%sn%d", l.id, i),
		lan:       l,
	}
	if len(n.HostIface) > 15 {
		return nil, fmt.Errorf("netlab: interface name %q too long", n.HostIface)
	}
	// Record the node first so that Close removes a half-made one.
	l.mu.Lock()
	l.Nodes = append(l.Nodes, n)
	l.mu.Unlock()
	tmp := fmt.Sprintf("t%sn%d", l.id, i)
	steps := [][]string{
		{"ip", "netns", "add", n.Name},
		{"ip", "-n", n.Name, "link", "set", "lo", "up"},
		{"ip", "-n", l.Hub, "link", "add", n.HostIface, "type", "veth", "peer", "name", tmp},
		{"ip", "-n", l.Hub, "link", "set", tmp, "netns", n.Name},
		{"ip", "-n", n.Name, "link", "set", tmp, "name", n.Iface},
		{"ip", "-n", l.Hub, "link", "set", n.HostIface, "master", l.Bridge},
	}
	if mtu := l.cfg.MTU; mtu != 0 {
		steps = append(steps,
			[]string{"ip", "-n", l.Hub, "link", "set", n.HostIface, "mtu", strconv.Itoa(mtu)},
			[]string{"ip", "-n", n.Name, "link", "set", n.Iface, "mtu", strconv.Itoa(mtu)})
	}
	steps = append(steps, [][]string{
		// tx-udp-segmentation off too: with it a UDP_SEGMENT send crosses
		// the veths and the bridge as one packet of up to 64 datagrams
		// (gso off does not stop it), so tc and the loss rule would act
		// on runs instead of frames. Off, the sender's eth0 segments it
		// into wire-size frames, as a NIC does.
		{"ip", "netns", "exec", l.Hub, "ethtool", "-K", n.HostIface, "tso", "off", "gso", "off", "gro", "off", "tx-udp-segmentation", "off"},
		{"ip", "netns", "exec", n.Name, "ethtool", "-K", n.Iface, "tso", "off", "gso", "off", "gro", onOff(l.cfg.GRO), "tx-udp-segmentation", "off"},
		{"ip", "-n", l.Hub, "link", "set", n.HostIface, "up"},
		{"ip", "-n", n.Name, "link", "set", n.Iface, "up"},
	}...)
	if !l.cfg.NoAddress {
		steps = append(steps, []string{"ip", "-n", n.Name, "addr", "add",
			fmt.Sprintf("%s/%d", ip, ones), "brd", "+", "dev", n.Iface})
	}
	for _, s := range steps {
		if err := run(ctx, s[0], s[1:]...); err != nil {
			return nil, fmt.Errorf("add node %d: %w", i, err)
		}
	}
	out, err := output(ctx, "ip", "-n", n.Name, "-o", "link", "show", n.Iface)
	if err != nil {
		return nil, fmt.Errorf("add node %d: %w", i, err)
	}
	mac, err := parseLinkMAC(out)
	if err != nil {
		return nil, fmt.Errorf("add node %d: %w", i, err)
	}
	n.MAC = mac
	if l.cfg.RateBitsPerSec > 0 {
		if err := n.SetRate(l.cfg.RateBitsPerSec); err != nil {
			return nil, fmt.Errorf("add node %d: %w", i, err)
		}
	}
	return n, nil
}

// parseLinkMAC finds the address after "link/ether" in `ip -o link` output.
func parseLinkMAC(out string) (net.HardwareAddr, error) {
	f := strings.Fields(out)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "link/ether" {
			return net.ParseMAC(f[i+1])
		}
	}
	return nil, fmt.Errorf("no link/ether in %q", out)
}

// AddTap adds a tap interface called name to the bridge, inside the hub
// namespace; run QEMU with HubCommand and `-netdev tap,ifname=NAME,script=no,downscript=no`.
// name must be at most 15 characters and unique on the LAN.
func (l *LAN) AddTap(ctx context.Context, name string) error {
	if len(name) > 15 || name == "" {
		return fmt.Errorf("netlab: bad tap name %q", name)
	}
	l.mu.Lock()
	l.taps = append(l.taps, name)
	l.mu.Unlock()
	steps := [][]string{
		{"ip", "-n", l.Hub, "tuntap", "add", "dev", name, "mode", "tap"},
		{"ip", "-n", l.Hub, "link", "set", name, "master", l.Bridge},
		{"ip", "-n", l.Hub, "link", "set", name, "up"},
	}
	if l.cfg.MTU != 0 {
		steps = append(steps, []string{"ip", "-n", l.Hub, "link", "set", name, "mtu", strconv.Itoa(l.cfg.MTU)})
	}
	for _, s := range steps {
		if err := run(ctx, s[0], s[1:]...); err != nil {
			return fmt.Errorf("add tap %s: %w", name, err)
		}
	}
	return nil
}

// HubCommand runs a program inside the hub namespace (where the bridge and
// taps are).
func (l *LAN) HubCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	return nsCommand(ctx, l.Hub, name, args...)
}

// Close removes every namespace and link the LAN made, first killing (by
// PID) any process still running inside them. It returns the first error
// but always tries everything.
func (l *LAN) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l.mu.Lock()
	nodes := append([]*Node(nil), l.Nodes...)
	l.mu.Unlock()
	var errs []error
	names := []string{l.Hub}
	for _, n := range nodes {
		names = append(names, n.Name)
	}
	for _, ns := range names {
		killNetnsPIDs(ctx, ns)
	}
	for _, n := range nodes {
		if err := run(ctx, "ip", "netns", "del", n.Name); err != nil && !notExist(err) {
			errs = append(errs, err)
		}
	}
	// Deleting the hub namespace removes the bridge, the host veth ends
	// (already gone with their peers) and the taps.
	if err := run(ctx, "ip", "netns", "del", l.Hub); err != nil && !notExist(err) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func notExist(err error) bool {
	return strings.Contains(err.Error(), "No such file") || strings.Contains(err.Error(), "Invalid argument")
}

// killNetnsPIDs kills, by PID, each process in namespace ns, and waits a
// little for them to go.
func killNetnsPIDs(ctx context.Context, ns string) {
	for try := 0; try < 20; try++ {
		out, err := output(ctx, "ip", "netns", "pids", ns)
		if err != nil {
			return
		}
		pids := strings.Fields(out)
		if len(pids) == 0 {
			return
		}
		for _, p := range pids {
			pid, err := strconv.Atoi(p)
			if err != nil || pid == os.Getpid() {
				continue
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Command returns a command that runs name with args inside the node's
// namespace (under `ip netns exec`). It is killed when ctx is done.
func (n *Node) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return nsCommand(ctx, n.Name, name, args...)
}

func nsCommand(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Do runs fn on an OS thread switched into the node's namespace. Sockets
// fn opens belong to that namespace and may be used from any goroutine
// afterwards. The thread is discarded after fn, so nothing else ever runs
// in the namespace by accident.
func (n *Node) Do(fn func() error) error {
	return doInNetns(n.Name, fn)
}

// Do runs fn inside the hub namespace, like Node.Do.
func (l *LAN) Do(fn func() error) error {
	return doInNetns(l.Hub, fn)
}

func doInNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the goroutine exits with the thread locked,
		// so the runtime terminates the thread instead of reusing it.
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			errc <- fmt.Errorf("netlab: open netns %s: %w", ns, err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("netlab: setns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// FlushAddrs removes every IPv4 address from the node's eth0 (for DHCP
// clients).
func (n *Node) FlushAddrs() error {
	return run(context.Background(), "ip", "-n", n.Name, "-4", "addr", "flush", "dev", n.Iface)
}

func run(ctx context.Context, name string, args ...string) error {
	_, err := output(ctx, name, args...)
	return err
}

func output(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.String(), nil
}
