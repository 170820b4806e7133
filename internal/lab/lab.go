// Package lab is `shoal lab`, the virtual lab that shows the whole product
// work on one machine: a private network of namespaces, `shoal serve` as
// the DHCP, TFTP and HTTP server with an image in its repository, and N
// QEMU machines that PXE-boot the appliance, reimage their blank disks
// (one leader from the server, the others from it by multicast), reboot
// and come up in the new OS from their own disks. It shows a live table of
// the machines and ends with a summary; it removes everything it made.
package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/initramfs/usb"
	"github.com/shoal-project/shoal/internal/netlab"
	"github.com/shoal-project/shoal/internal/sampleos"
	"github.com/shoal-project/shoal/internal/vm"
	"github.com/shoal-project/shoal/netboot/inventory"
)

// Config configures a lab run.
type Config struct {
	// Nodes is the number of machines (default 3). Their firmware
	// alternates SeaBIOS, OVMF, SeaBIOS, ... unless Firmware is set:
	// "bios" (SeaBIOS, PXE with QEMU's iPXE ROM), "uefi" (OVMF's own PXE
	// client) or "usb" (OVMF booting a copy of Out/shoal-usb.img, its
	// shoal.conf pointed at the lab's server, as a USB stick).
	Nodes    int
	Firmware []string
	// Image is the source disk image (default Out/sample-os.img, built
	// when missing). Machines are checked for its marker after the reboot
	// only when it is the sample OS.
	Image string
	// ChunkSizeBytes is the image's chunk size (default: 1 MiB for the
	// sample OS, so that its 20 MiB make 20 chunks and progress moves
	// smoothly; shoal image create's default otherwise).
	ChunkSizeBytes int64
	// Out holds the boot files: vmlinuz, shoal-initramfs.cpio.zst,
	// undionly.kpxe, ipxe.efi (default "out").
	Out string
	// Shoal is the shoal binary that runs `shoal serve` and `shoal image
	// create` (default: this program).
	Shoal string
	// MemMiB is each machine's memory (default 512).
	MemMiB int
	// Stagger is the delay between machine starts (default 1 s).
	Stagger time.Duration
	// Timeout bounds the whole run (default 15 min).
	Timeout time.Duration
	// Dashboard is the host address the dashboard is proxied to (default
	// 127.0.0.1:8088; "off" for none).
	Dashboard string
	// Cmdline is extra kernel arguments for the appliance.
	Cmdline string
	// RateBitsPerSec is the leaders' multicast rate (shoal.rate=; default
	// 20 Mbit/s: a TCG-emulated machine takes no more).
	RateBitsPerSec int64
	// ServerRateBitsPerSec limits the server's link (tc tbf), as a slow
	// or distant image server would be (0: unlimited).
	ServerRateBitsPerSec int64
	// Table gets the live table and the summary (nil: none).
	Table  io.Writer
	Logger *slog.Logger
	// Keep keeps the work directory (disks, logs) for inspection.
	Keep bool
	// Faults injects failures, for the end-to-end tests.
	Faults Faults
}

// Faults are failures a lab run injects.
type Faults struct {
	// KillLeaderAt kills the QEMU of the machine that reports the leader
	// role once a follower has received this fraction of the image from
	// it (0: never).
	KillLeaderAt float64
	// TinyDisk gives machine number TinyDisk (1-based) a disk too small
	// for the image (0: none).
	TinyDisk int
}

// Summary is what a lab run did; `shoal lab --summary FILE` writes it.
type Summary struct {
	Seconds           float64 `json:"seconds"`
	ImageBytes        int64   `json:"image_bytes"`         // what the server would send once
	ServerEgressBytes int64   `json:"server_egress_bytes"` // what it sent (repository route)
	// KilledLeaderAt is the most a follower had of the image when the
	// lab killed the leader (Faults.KillLeaderAt; 0: no kill).
	KilledLeaderAt float64       `json:"killed_leader_at,omitempty"`
	Nodes          []NodeSummary `json:"nodes"`
}

// NodeSummary is one machine's result.
type NodeSummary struct {
	Name     string `json:"name"`
	MAC      string `json:"mac"`
	Firmware string `json:"firmware"`
	Role     string `json:"role"`
	State    string `json:"state"`
	// Action is the server's inventory entry for the machine's next
	// network boot at the end: "local" once its success was reported.
	Action string `json:"action"`
	// States are the states the machine reported, in order, each once
	// per change (booting, listening, writing, serving, done...).
	States   []string `json:"states,omitempty"`
	Verified bool     `json:"verified"`
	// DiskMatches: with the sample OS, the machine's disk, after it
	// booted its new OS, equals byte for byte a disk of the same size that
	// `shoal image apply` wrote on the host (the sample OS never writes
	// to its disk). Not checked for other images.
	DiskMatches     bool    `json:"disk_matches,omitempty"`
	BootedNewOS     bool    `json:"booted_new_os"`
	BytesFromServer int64   `json:"bytes_from_server"`
	BytesFromPeers  int64   `json:"bytes_from_peers"`
	Seconds         float64 `json:"seconds"`
	Error           string  `json:"error,omitempty"`
	// ConsoleError is the error the appliance showed on the machine's
	// console when it failed ("SHOAL: REIMAGING FAILED").
	ConsoleError string `json:"console_error,omitempty"`
	// Killed: the lab killed this machine (Faults.KillLeaderAt).
	Killed bool `json:"killed,omitempty"`
	// Progress is the last progress the machine reported (0..1).
	Progress float64 `json:"progress"`
}

// ErrNodesFailed means the run ended with at least one machine that was
// not reimaged and booted into its new OS.
var ErrNodesFailed = errors.New("lab: some machines failed")

func (c *Config) defaults() error {
	if c.Nodes <= 0 {
		c.Nodes = 3
	}
	if c.Nodes > 200 {
		return fmt.Errorf("lab: %d machines: at most 200", c.Nodes)
	}
	if len(c.Firmware) == 0 {
		c.Firmware = []string{"bios", "uefi"}
	}
	for _, f := range c.Firmware {
		if f != "bios" && f != "uefi" && f != "usb" {
			return fmt.Errorf("lab: firmware %q: want bios, uefi or usb", f)
		}
	}
	if c.Out == "" {
		c.Out = "out"
	}
	if c.Shoal == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		c.Shoal = exe
	}
	if c.MemMiB == 0 {
		c.MemMiB = 512
	}
	if c.Stagger == 0 {
		c.Stagger = time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 15 * time.Minute
	}
	if c.RateBitsPerSec == 0 {
		c.RateBitsPerSec = 20e6
	}
	if c.Dashboard == "" {
		c.Dashboard = "127.0.0.1:8088"
	}
	if c.Table == nil {
		c.Table = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// BootFiles are the files Out must hold.
var BootFiles = []string{"vmlinuz", "shoal-initramfs.cpio.zst", "undionly.kpxe", "ipxe.efi"}

// USBStick is the stick image in Out that "usb" machines boot.
const USBStick = "shoal-usb.img"

// node is one machine of the lab.
type node struct {
	NodeSummary
	m       *vm.Machine
	dir     string
	disk    string
	started time.Time
	doneAt  time.Time
	tiny    bool // given a disk too small on purpose: must fail
	// stick is the USB stick a "usb" machine boots the appliance from;
	// once the appliance powers it off, the lab starts it again from its
	// disk alone (the stick pulled), once (fromDisk).
	stick    string
	fromDisk bool
	silent   bool // the server marks it: reports stopped while at work
	// rateBitsPerSec is the write rate the machine last reported.
	rateBitsPerSec int64
}

// Run runs the lab and returns its summary. The error wraps
// ErrNodesFailed when any machine failed.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	var sum Summary
	if err := cfg.defaults(); err != nil {
		return sum, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	log := cfg.Logger
	start := time.Now()

	for _, f := range BootFiles {
		if _, err := os.Stat(filepath.Join(cfg.Out, f)); err != nil {
			return sum, fmt.Errorf("lab: boot file %s missing in %s (run ./build.sh): %w", f, cfg.Out, err)
		}
	}
	for _, f := range cfg.Firmware {
		if f == "usb" {
			if _, err := os.Stat(filepath.Join(cfg.Out, USBStick)); err != nil {
				return sum, fmt.Errorf("lab: USB stick %s missing in %s (run ./build.sh): %w", USBStick, cfg.Out, err)
			}
		}
	}
	sample := cfg.Image == ""
	if sample {
		if cfg.ChunkSizeBytes == 0 {
			cfg.ChunkSizeBytes = 1 << 20
		}
		cfg.Image = filepath.Join(cfg.Out, "sample-os.img")
		if _, err := os.Stat(cfg.Image); err != nil {
			log.Info("building the sample OS disk", "path", cfg.Image)
			if err := sampleos.Build(ctx, sampleos.Options{Kernel: filepath.Join(cfg.Out, "vmlinuz"), Out: cfg.Image}); err != nil {
				return sum, err
			}
		}
	}
	fi, err := os.Stat(cfg.Image)
	if err != nil {
		return sum, fmt.Errorf("lab: image: %w", err)
	}

	work, err := os.MkdirTemp("", "shoal-lab-")
	if err != nil {
		return sum, err
	}
	log.Info("work directory", "path", work, "keep", cfg.Keep)
	if cfg.Keep {
		fmt.Fprintf(cfg.Table, "work directory (kept): %s\n", work)
	} else {
		defer os.RemoveAll(work)
	}

	// The repository.
	repo := filepath.Join(work, "repo")
	const imageName = "lab"
	create := []string{"image", "create", "--repo", repo, "--name", imageName}
	if cfg.ChunkSizeBytes > 0 {
		create = append(create, "--chunk-size", fmt.Sprint(cfg.ChunkSizeBytes))
	}
	if out, err := exec.CommandContext(ctx, cfg.Shoal, append(create, cfg.Image)...).CombinedOutput(); err != nil {
		return sum, fmt.Errorf("lab: shoal image create: %w\n%s", err, out)
	}
	dr, err := imaging.OpenRepo(repo)
	if err != nil {
		return sum, err
	}
	img, err := imaging.LoadImage(ctx, dr, imageName, nil)
	if err != nil {
		return sum, err
	}
	sum.ImageBytes = img.Manifest.StoredBytes + int64(len(img.Raw))
	diskBytes := img.Manifest.DiskSizeBytes
	if diskBytes < fi.Size() {
		diskBytes = fi.Size()
	}
	diskBytes = (diskBytes*3/2 + 1<<20 - 1) &^ (1<<20 - 1) // room to grow

	// The network.
	lan, err := netlab.New(ctx, netlab.Config{Nodes: 1, RateBitsPerSec: cfg.ServerRateBitsPerSec})
	if err != nil {
		return sum, err
	}
	defer lan.Close()
	srvNode := lan.Nodes[0]
	log.Info("network", "hub", lan.Hub, "server", srvNode.Name, "ip", srvNode.IP)
	ip := srvNode.IP.To4()
	rng := fmt.Sprintf("%d.%d.%d.100-%d.%d.%d.199", ip[0], ip[1], ip[2], ip[0], ip[1], ip[2])

	nodes := make([]*node, cfg.Nodes)
	var inv strings.Builder
	for i := range nodes {
		n := &node{}
		n.Name = fmt.Sprintf("node%d", i+1)
		n.MAC = fmt.Sprintf("52:54:00:5e:%02x:%02x", (i+1)>>8, (i+1)&0xff)
		n.Firmware = cfg.Firmware[i%len(cfg.Firmware)]
		n.dir = filepath.Join(work, n.Name)
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			return sum, err
		}
		n.disk = filepath.Join(n.dir, "disk.img")
		size := diskBytes
		if cfg.Faults.TinyDisk == i+1 {
			size, n.tiny = 8<<20, true
		}
		if err := makeBlank(n.disk, size); err != nil {
			return sum, err
		}
		if n.Firmware == "usb" {
			n.stick = filepath.Join(n.dir, "stick.img")
			conf := fmt.Sprintf("# shoal lab: %s\nrepo = http://%s:8080/repo/\nserver = http://%s:8080\nimage = %s\ndisk = auto\nafter = poweroff\nrate = %d\n",
				n.Name, srvNode.IP, srvNode.IP, imageName, cfg.RateBitsPerSec)
			if err := copyFile(filepath.Join(cfg.Out, USBStick), n.stick); err != nil {
				return sum, err
			}
			if err := usb.SetConf(n.stick, []byte(conf)); err != nil {
				return sum, fmt.Errorf("lab: %s: %w", n.Name, err)
			}
		}
		if err := lan.AddTap(ctx, fmt.Sprintf("tap%d", i)); err != nil {
			return sum, err
		}
		fmt.Fprintf(&inv, "%s reimage %s /dev/vda\n", n.MAC, imageName)
		nodes[i] = n
	}
	invPath := filepath.Join(work, "machines")
	if err := os.WriteFile(invPath, []byte(inv.String()), 0o644); err != nil {
		return sum, err
	}

	// The server.
	srvLog, err := os.Create(filepath.Join(work, "serve.log"))
	if err != nil {
		return sum, err
	}
	defer srvLog.Close()
	cmdline := strings.TrimSpace(fmt.Sprintf("console=ttyS0 panic=-1 shoal.rate=%d %s", cfg.RateBitsPerSec, cfg.Cmdline))
	srv := srvNode.Command(ctx, cfg.Shoal, "serve", "--iface", "eth0", "--dhcp", "full", "--range", rng,
		"--boot", cfg.Out, "--repo", repo, "--inventory", invPath, "--leases", filepath.Join(work, "leases"),
		"--cmdline", cmdline)
	srv.Stderr = srvLog
	srvOut, err := srv.StdoutPipe()
	if err != nil {
		return sum, err
	}
	if err := srv.Start(); err != nil {
		return sum, fmt.Errorf("lab: shoal serve: %w", err)
	}
	log.Info("shoal serve started", "pid", srv.Process.Pid)
	srvDone := make(chan struct{})
	go func() { srv.Wait(); close(srvDone) }()
	defer func() {
		srv.Process.Kill() // the process this run started, by PID
		<-srvDone
	}()
	line, err := bufio.NewReader(srvOut).ReadString('\n')
	if err != nil || !strings.Contains(line, "http on") {
		b, _ := os.ReadFile(srvLog.Name())
		return sum, fmt.Errorf("lab: shoal serve did not start: %q %v\n%s", line, err, b)
	}
	go io.Copy(io.Discard, srvOut)
	api := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := srvNode.Do(func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
	base := "http://" + net.JoinHostPort(srvNode.IP.String(), "8080")

	if cfg.Dashboard != "off" {
		stop, addr, err := proxyDashboard(ctx, cfg.Dashboard, base, api.Transport)
		if err != nil {
			log.Warn("dashboard proxy", "err", err)
		} else {
			defer stop()
			fmt.Fprintf(cfg.Table, "dashboard: http://%s/\n", addr)
		}
	}

	// The machines.
	kvm := vm.KVMAvailable()
	log.Info("machines", "accelerator", map[bool]string{true: "kvm", false: "tcg"}[kvm])
	for i, n := range nodes {
		if i > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(cfg.Stagger):
			}
		}
		m, err := vm.Start(ctx, n.vmConfig(cfg.MemMiB, i, kvm), lan.HubCommand)
		if err != nil {
			return sum, err
		}
		n.m, n.started = m, time.Now()
		defer func() { n.m.Kill() }()
		log.Info("machine started", "name", n.Name, "mac", n.MAC, "firmware", n.Firmware, "pid", m.PID())
	}

	// Watch.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var runErr error
	killed := false
	var lastSig string
	var lastTable time.Time
	for {
		machines, err := fetchMachines(ctx, api, base)
		if err != nil {
			log.Debug("machines", "err", err)
		}
		allOver := true
		for i, n := range nodes {
			n.update(machines[n.MAC], sample)
			// A USB machine powers off once reimaged: pull the stick and
			// start it again from its disk.
			if n.stick != "" && !n.fromDisk && n.State == "done" && n.exited() {
				n.fromDisk = true
				// Keep the appliance's console: the new QEMU writes its own.
				if err := os.Rename(filepath.Join(n.dir, "serial.log"), filepath.Join(n.dir, "serial-usb.log")); err != nil {
					log.Warn("keep the USB boot's console", "name", n.Name, "err", err)
				}
				m, err := vm.Start(ctx, n.vmConfig(cfg.MemMiB, i, kvm), lan.HubCommand)
				if err != nil {
					return sum, fmt.Errorf("lab: start %s again from its disk: %w", n.Name, err)
				}
				n.m = m
				log.Info("machine started again from its disk, the USB stick pulled", "name", n.Name, "pid", m.PID())
			}
		}
		if at := cfg.Faults.KillLeaderAt; at > 0 && !killed {
			if l, followed := killTarget(nodes, at); l != nil {
				log.Info("killing the leader", "name", l.Name, "followers' progress", followed, "pid", l.m.PID())
				fmt.Fprintf(cfg.Table, "killing the leader %s: every other machine follows it, one has %.0f%% of the image\n", l.Name, 100*followed)
				l.m.Kill()
				l.Killed, killed = true, true
				sum.KilledLeaderAt = followed
			}
		}
		for _, n := range nodes {
			if !n.over() {
				allOver = false
			}
		}
		// A table when something changed, else every 15 s.
		if sig := tableSignature(nodes); sig != lastSig || time.Since(lastTable) >= 15*time.Second || allOver {
			printTable(cfg.Table, nodes, time.Since(start))
			lastSig, lastTable = sig, time.Now()
		}
		if allOver {
			break
		}
		select {
		case <-ctx.Done():
			runErr = fmt.Errorf("lab: %w", ctx.Err())
		case <-tick.C:
		}
		if runErr != nil {
			break
		}
	}
	sum.Seconds = time.Since(start).Seconds()
	if sample {
		if err := checkDisks(ctx, cfg.Shoal, repo, imageName, diskBytes, work, nodes); err != nil {
			log.Warn("comparing the disks with the image", "err", err)
		}
	}
	sum.ServerEgressBytes, err = repoEgress(api, base)
	if err != nil {
		log.Warn("server egress", "err", err)
	}
	failed := 0
	for _, n := range nodes {
		switch {
		case n.Killed:
			// The run killed it.
		case n.tiny:
			if n.State != "failed" {
				failed++
				n.Error = fmt.Sprintf("disk too small, yet state %q", n.State)
			} else if zero, err := allZero(n.disk); err != nil || !zero {
				failed++
				n.Error = fmt.Sprintf("disk too small, yet written to (%v)", err)
			}
		case !n.ok(sample):
			failed++
			if n.Error == "" {
				n.Error = fmt.Sprintf("state %q, booted new OS %v", n.State, n.BootedNewOS)
			}
		}
		sum.Nodes = append(sum.Nodes, n.NodeSummary)
	}
	printSummary(cfg.Table, sum)
	if runErr == nil && failed > 0 {
		runErr = fmt.Errorf("%w: %d of %d", ErrNodesFailed, failed, len(nodes))
	}
	if runErr != nil && cfg.Keep {
		fmt.Fprintf(cfg.Table, "logs: %s (serve.log, node*/serial.log)\n", work)
	}
	return sum, runErr
}

// killTarget returns the leader to kill for Faults.KillLeaderAt, and the
// most a follower has of the image: a leader still writing, once every
// other machine still at work follows it (machines boot tens of seconds
// apart under TCG; a kill before the last one joined would test less) and
// a follower has the fraction at of the image. Nil: not yet (or never: a
// leader that completed is not killed).
func killTarget(nodes []*node, at float64) (*node, float64) {
	var leader *node
	followed := 0.0
	for _, n := range nodes {
		if n.tiny || n.Killed || n.over() || n.started.IsZero() || (n.State == "done" && n.Role != "leader") {
			continue // out of the run, or a follower already complete
		}
		switch {
		case n.Role == "leader" && n.State != "done" && leader == nil:
			leader = n
		case n.Role == "follower":
			followed = max(followed, n.Progress)
		default:
			return nil, 0 // still booting or listening, or a leader done
		}
	}
	if leader == nil || followed < at {
		return nil, followed
	}
	return leader, followed
}

// vmConfig is the QEMU machine for n, on tap number i.
func (n *node) vmConfig(memMiB, i int, kvm bool) vm.Config {
	c := vm.Config{Name: n.Name, Firmware: n.Firmware, MemMiB: memMiB, Dir: n.dir, KVM: kvm,
		Disks:  []vm.Disk{{Path: n.disk}},
		NICs:   []vm.NIC{{Tap: fmt.Sprintf("tap%d", i), MAC: n.MAC, NoROM: n.Firmware != "bios"}},
		Reboot: true,
	}
	if n.stick != "" {
		c.Firmware = "uefi"
		if n.fromDisk {
			c.Boot = "c"
		} else {
			// The appliance powers off when done; the lab starts the
			// machine again without the stick.
			c.Disks = append(c.Disks, vm.Disk{Path: n.stick, USB: true})
			c.Reboot = false
		}
	}
	return c
}

// exited reports whether n's QEMU has exited.
func (n *node) exited() bool {
	if n.m == nil {
		return false
	}
	select {
	case <-n.m.Done():
		return true
	default:
		return false
	}
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// allZero reports whether the file holds only zero bytes.
func allZero(path string) (bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	for _, c := range b {
		if c != 0 {
			return false, nil
		}
	}
	return true, nil
}

func makeBlank(path string, sizeBytes int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f.Truncate(sizeBytes); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// update takes the server's view of the machine and what its console
// shows.
func (n *node) update(m *inventory.Machine, sample bool) {
	if m != nil {
		n.Action = string(m.Action)
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
		if st.State == "done" && n.doneAt.IsZero() {
			n.doneAt = time.Now()
			n.Seconds = n.doneAt.Sub(n.started).Seconds()
		}
	}
	if n.m != nil && n.State == "failed" && n.ConsoleError == "" {
		n.ConsoleError = ConsoleFailure(n.m.Serial())
	}
	if n.m != nil && !n.BootedNewOS {
		if con := n.m.Serial(); sample && strings.Contains(string(con), fmt.Sprintf("%s host=%s ", sampleos.Marker, n.Name)) {
			n.BootedNewOS = true
		}
	}
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

// over: the machine has nothing more to do (failed, or reimaged and then
// booted its new OS, or its QEMU has exited).
func (n *node) over() bool {
	if n.State == "failed" {
		return true
	}
	if n.exited() && (n.stick == "" || n.fromDisk || n.State != "done") {
		return true // a USB machine that powered off done starts again
	}
	return n.BootedNewOS
}

func (n *node) ok(sample bool) bool {
	if n.State != "done" || !n.Verified {
		return false
	}
	return !sample || (n.BootedNewOS && n.DiskMatches)
}

// checkDisks writes the image with `shoal image apply` to a file the size
// of the machines' disks and compares every machine that is done with it
// byte for byte, setting DiskMatches (or Error).
func checkDisks(ctx context.Context, shoal, repo, name string, diskBytes int64, work string, nodes []*node) error {
	ref := filepath.Join(work, "reference.img")
	defer os.Remove(ref)
	if err := makeBlank(ref, diskBytes); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, shoal, "image", "apply", "--repo", repo, "--name", name, ref).CombinedOutput(); err != nil {
		return fmt.Errorf("shoal image apply: %w\n%s", err, out)
	}
	for _, n := range nodes {
		if n.tiny || n.Killed || n.State != "done" {
			continue
		}
		off, err := firstDifference(ref, n.disk)
		switch {
		case err != nil:
			n.Error = fmt.Sprintf("compare the disk with the image: %v", err)
		case off >= 0:
			n.Error = fmt.Sprintf("the disk differs from the image written by shoal image apply at byte %d", off)
		default:
			n.DiskMatches = true
		}
	}
	return nil
}

// firstDifference returns the offset of the first byte where files a and
// b differ (a length difference counts), or -1 when they are equal.
func firstDifference(a, b string) (int64, error) {
	fa, err := os.Open(a)
	if err != nil {
		return 0, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return 0, err
	}
	defer fb.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	var off int64
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		for i := range min(na, nb) {
			if ba[i] != bb[i] {
				return off + int64(i), nil
			}
		}
		if na != nb {
			return off + int64(min(na, nb)), nil
		}
		off += int64(na)
		if errors.Is(ea, io.EOF) || errors.Is(ea, io.ErrUnexpectedEOF) {
			return -1, nil // eb is the same: same lengths
		}
		if ea != nil {
			return 0, ea
		}
		if eb != nil && !errors.Is(eb, io.EOF) && !errors.Is(eb, io.ErrUnexpectedEOF) {
			return 0, eb
		}
	}
}

func fetchMachines(ctx context.Context, c *http.Client, base string) (map[string]*inventory.Machine, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/machines", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET /api/v1/machines: %s", resp.Status)
	}
	var ms []inventory.Machine
	if err := json.NewDecoder(resp.Body).Decode(&ms); err != nil {
		return nil, fmt.Errorf("GET /api/v1/machines: %w", err)
	}
	out := make(map[string]*inventory.Machine, len(ms))
	for i := range ms {
		out[ms[i].MAC] = &ms[i]
	}
	return out, nil
}

// repoEgress reads the bytes the server sent from its repository.
func repoEgress(c *http.Client, base string) (int64, error) {
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	return ParseRepoEgress(string(b))
}

// ParseRepoEgress finds the repository route's response bytes in
// Prometheus text.
func ParseRepoEgress(metrics string) (int64, error) {
	const key = `shoal_serve_http_response_bytes_total{route="repo"} `
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			var f float64
			if _, err := fmt.Sscanf(v, "%g", &f); err != nil {
				return 0, fmt.Errorf("metrics: %q: %w", l, err)
			}
			return int64(f), nil
		}
	}
	return 0, nil // nothing served from the repository yet
}

// proxyDashboard serves the server's HTTP (dashboard, API) on a host
// address, dialing into the namespace; it returns a stop function.
func proxyDashboard(ctx context.Context, addr, base string, tr http.RoundTripper) (func(), string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, "", err
		}
	}
	u, _ := url.Parse(base)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = tr
	hs := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); hs.Serve(ln) }()
	return func() { hs.Close(); wg.Wait() }, ln.Addr().String(), nil
}

// tableSignature changes when a row of the table would.
func tableSignature(nodes []*node) string {
	var b strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&b, "%s|%s|%s|%s|%s|%v|%v|%v;", n.State, n.Role, mib(n.BytesFromServer), mib(n.BytesFromPeers), n.Error, n.BootedNewOS, n.Killed, n.silent)
	}
	return b.String()
}

func printTable(w io.Writer, nodes []*node, elapsed time.Duration) {
	fmt.Fprintf(w, "\n%s  %-8s %-5s %-17s %-12s %-9s %5s %11s %-11s %9s %9s %-8s\n", fmtDur(elapsed),
		"machine", "fw", "mac", "state", "role", "done", "rate", "source", "server", "peers", "new OS")
	sorted := append([]*node(nil), nodes...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, n := range sorted {
		state := n.State
		switch {
		case n.Killed:
			state = "killed"
		case n.silent:
			state = "silent"
		case state == "":
			state = "booting"
		}
		os := "-"
		if n.BootedNewOS {
			os = "booted"
		}
		rate, source := "-", "-"
		if n.rateBitsPerSec > 0 && n.State == "writing" {
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
		fmt.Fprintf(w, "%8s  %-8s %-5s %-17s %-12s %-9s %4.0f%% %11s %-11s %9s %9s %-8s\n", "", n.Name, n.Firmware, n.MAC, state, n.Role,
			100*n.Progress, rate, source, mib(n.BytesFromServer), mib(n.BytesFromPeers), os)
	}
}

func printSummary(w io.Writer, s Summary) {
	fmt.Fprintf(w, "\nsummary: %.1f s; image %s; server sent %s (%.2fx the image)\n",
		s.Seconds, mib(s.ImageBytes), mib(s.ServerEgressBytes), ratio(s.ServerEgressBytes, s.ImageBytes))
	for _, n := range s.Nodes {
		note := n.Error
		if n.Killed {
			note = "killed by the lab (--kill-leader-at)"
		}
		fmt.Fprintf(w, "  %-8s %-5s %-9s verified=%-5v disk_matches=%-5v booted_new_os=%-5v server=%s peers=%s %.1f s %s\n",
			n.Name, n.Firmware, n.Role, n.Verified, n.DiskMatches, n.BootedNewOS, mib(n.BytesFromServer), mib(n.BytesFromPeers), n.Seconds, note)
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
