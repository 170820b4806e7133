// Package appliance is what cmd/shoal-init does, from boot to a reimaged
// disk: load the kernel modules, find the USB stick's shoal.conf, bring
// the network up, gather the configuration (kernel command line, then the
// server's answer, then shoal.conf), choose the target disk, reimage it
// through the Reimage seam while showing progress on the console and
// reporting it to shoal serve, and then reboot, kexec, power off or hand
// over to a shell. A failure prints what failed, naming the image, the
// disk and the URL, and what to do, reports it, and returns the error so
// that init starts a shell: never a reboot loop, never a silent hang.
package appliance

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/imaging/sign"
	"github.com/shoal-project/shoal/initramfs/config"
	"github.com/shoal-project/shoal/initramfs/disksel"
	"github.com/shoal-project/shoal/initramfs/kmod"
	"github.com/shoal-project/shoal/initramfs/netup"
	"github.com/shoal-project/shoal/initramfs/report"
	"github.com/shoal-project/shoal/internal/progress"
	"github.com/shoal-project/shoal/netboot/api"
)

// Job is one reimaging: what the seam gets.
type Job struct {
	Repo string            // repository URL
	Name string            // image name
	Disk string            // target device path
	Pub  ed25519.PublicKey // the built-in key (nil: none)
	// Insecure (shoal.insecure=unsigned) accepts an image whose signature
	// cannot be checked by Pub; the Result then says not verified.
	Insecure bool
	Boot     []string // devices never written (the USB stick)
	Server   string   // shoal serve, for the peer session
	Iface    string   // the interface with the first lease
	Relay    string
	// NoReuse writes every chunk instead of scanning the disk first for
	// the chunks it already holds (shoal.reuse=off).
	NoReuse bool
	// SessionKey is the peer session's key from this boot's credential;
	// nil: no peer session (Session writes from the repository alone).
	SessionKey []byte
	// ImageID is the image ID from the credential (zero: none): a
	// manifest with another ID is refused.
	ImageID [32]byte
	// RateBitsPerSec is the highest multicast rate when leading (0: the
	// session's default); Linger how long a complete machine stays to lead
	// for machines that boot later.
	RateBitsPerSec int64
	Linger         time.Duration
	// Progress is called as data reaches the disk.
	Progress func(Progress)
	Log      *slog.Logger
}

// Progress is the state of a reimaging.
type Progress struct {
	State      api.State // listening, writing, serving, ...
	Role       api.Role  // leader, follower, server
	Source     string    // where bytes come from: server, peer
	BytesDone  int64
	BytesTotal int64
	FromPeers  int64
	FromServer int64
}

// Result is what a finished reimaging did.
type Result struct {
	ImageID    string
	BytesTotal int64
	// Verified: the manifest's signature was checked against the built-in
	// key (and every chunk against the manifest).
	Verified   bool
	Role       api.Role // the role the node played (leader, follower, server)
	FromPeers  int64    // stored bytes received from peers
	FromServer int64    // stored bytes fetched from the server
	// OnDisk is what the scan found already on the disk: neither moved
	// nor written.
	OnDiskChunks int
	OnDiskBytes  int64
}

// Reimager writes j's image to j's disk. It is the seam between the
// appliance and the transport: Session (the peer session, the default) or
// SingleNode (the server only).
type Reimager func(ctx context.Context, j Job) (Result, error)

type run struct {
	o       Options
	log     *slog.Logger
	con     io.Writer
	start   time.Time
	cfg     config.Config
	disk    string
	boot    []string
	leases  []netup.Lease
	rep     *report.Reporter
	cred    *api.Credential // this boot's credential; nil: none
	conMu   sync.Mutex
	pubNote string
}

// Run runs the appliance. It returns nil after a successful reimaging whose
// after-action returned (shell), or the *Failure that was shown.
func Run(ctx context.Context, o Options) error {
	o = o.withDefaults()
	if o.Reimage == nil {
		o.Reimage = Session
	}
	if o.After == nil {
		o.After = After
	}
	if o.Console == nil {
		o.Console = os.Stdout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(o.Console, nil))
	}
	if o.Net == nil {
		log := o.Log
		o.Net = func(ctx context.Context) ([]netup.Lease, error) { return netup.Up(ctx, netup.Options{Log: log}) }
	}
	r := &run{o: o, log: o.Log, con: o.Console, start: time.Now()}
	err := r.run(ctx)
	if err != nil {
		r.fail(ctx, err)
	}
	return err
}

// say prints one line on the console.
func (r *run) say(format string, args ...any) {
	r.conMu.Lock()
	defer r.conMu.Unlock()
	// The uptime, as the kernel's own messages show it, times each step.
	var ts unix.Timespec
	up := ""
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) == nil {
		up = fmt.Sprintf("[%5d.%03d] ", ts.Sec, ts.Nsec/1e6)
	}
	fmt.Fprintf(r.con, up+"shoal: "+format+"\n", args...)
}

func (r *run) run(ctx context.Context) error {
	r.say("appliance starting")
	pub, err := loadPub(r.o.PubKey)
	if err != nil {
		return &Failure{Step: "public key", Err: err}
	}
	if pub != nil {
		r.pubNote = fmt.Sprintf("images must be signed by the built-in key %x", pub[:8])
		r.say("%s", r.pubNote)
	}

	modStart := time.Now()
	if loaded, err := kmod.LoadDir(r.o.ModulesDir, r.log); err != nil {
		r.log.Warn("modules", "err", err)
	} else if len(loaded) > 0 {
		r.say("loaded %d kernel modules in %.1f s", len(loaded), time.Since(modStart).Seconds())
	}

	raw, err := os.ReadFile(r.o.Cmdline)
	if err != nil {
		return &Failure{Step: "kernel command line", Err: err}
	}
	cmd, err := config.ParseCmdline(string(raw))
	if err != nil {
		return &Failure{Step: "kernel command line", Err: err}
	}
	insecure := cmd.Insecure == config.InsecureUnsigned
	if insecure {
		r.pubNote = insecureWarning
		r.say("%s", insecureWarning)
	} else if pub == nil {
		r.pubNote = "no image-signing key is built in: this appliance refuses to reimage (build with ./build.sh, which bakes the site's key, or PUBKEY=file)"
		r.say("%s", r.pubNote)
	}
	// shoal.conf on a USB stick: needed when the command line does not
	// say what to write; also marks the stick as the boot medium.
	var conf config.Config
	wait := time.Duration(0)
	if cmd.Repo == "" || cmd.Image == "" {
		wait = r.o.ConfWait
		r.say("no shoal.repo/shoal.image on the kernel command line: looking for shoal.conf on a USB stick (up to %v)", wait)
	}
	fromStick := false
	if c, dev, err := r.findConf(ctx, wait); err != nil {
		return &Failure{Step: "shoal.conf", Disk: dev, Err: err}
	} else if dev != "" {
		fromStick = true
		conf = c
		r.boot = append(r.boot, dev)
		r.say("read shoal.conf from %s (the boot medium: never written)", dev)
	}

	r.say("bringing the network up")
	r.leases, err = r.o.Net(ctx)
	if err != nil {
		return &Failure{Step: "network", Err: err}
	}
	for _, l := range r.leases {
		r.say("DHCP lease: %s (%.1f s after start)", l, l.Took.Seconds())
	}

	c := cmd.Merge(conf)
	if c.MAC == "" {
		c.MAC = r.leases[0].MAC.String()
	}
	var srv config.Config
	if c.Server != "" {
		srv, err = askServer(ctx, c.Server, c.MAC)
		switch {
		case errors.Is(err, api.ErrUnknownMachine):
			r.log.Info("the server has no entry for this machine", "server", c.Server, "mac", c.MAC)
		case err != nil:
			r.log.Warn("no answer from the server", "server", c.Server, "err", err)
		}
	}
	r.cfg = cmd.Merge(srv).Merge(conf)
	if fromStick {
		// A reboot would boot the stick again and reimage again.
		r.cfg.Default("after", config.AfterPoweroff, "default when booted from a USB stick: pull it, then power on")
	}
	if r.cfg.MAC == "" {
		r.cfg.MAC = c.MAC
		r.cfg.Source["mac"] = "link " + r.leases[0].Iface
	}
	if err := r.cfg.Finish(); err != nil {
		return &Failure{Step: "configuration", Err: err}
	}
	r.say("configuration:\n%s", strings.TrimRight(r.cfg.String(), "\n"))
	if r.cfg.Key != "" {
		r.say("warning: shoal.key= is ignored: reports are signed with this boot's credential")
	}
	if err := r.credential(ctx); err != nil {
		return err
	}
	if r.cred == nil {
		r.cfg.Server = "" // no credential, no reports
	}
	r.rep = &report.Reporter{Server: r.cfg.Server, MAC: r.cfg.MAC, Credential: r.cred, Log: r.log}
	r.rep.Progress(ctx, report.Status{State: api.StateBooting})

	if err := checkKey(pub, insecure); err != nil {
		return &Failure{Step: "image-signing key", Image: r.cfg.Image, URL: r.cfg.Repo, Err: err}
	}

	disk, err := r.chooseDisk(ctx)
	if err != nil {
		return &Failure{Step: "target disk", Image: r.cfg.Image, Disk: r.cfg.Disk, URL: r.cfg.Repo, Err: err}
	}
	r.disk = disk.Path
	r.say("target disk: %s (chosen by %q)", disk, r.cfg.Disk)

	res, err := r.reimage(ctx, pub, insecure)
	if err != nil {
		return &Failure{Step: "reimaging", Image: r.cfg.Image, Disk: r.disk, URL: r.cfg.Repo, Err: err}
	}
	bootEntry, err := r.bootEntry(ctx)
	if err != nil {
		return err
	}
	if res.Verified {
		r.say("SUCCESS: image %s (%s) written to %s and verified, %.1f s after start", r.cfg.Image, res.ImageID, r.disk, time.Since(r.start).Seconds())
	} else {
		r.say("SUCCESS (NOT verified): image %s (%s) written to %s, its signature NOT checked (shoal.insecure=unsigned), %.1f s after start", r.cfg.Image, res.ImageID, r.disk, time.Since(r.start).Seconds())
	}
	done := report.Status{State: api.StateDone, Role: res.Role, Progress: 1, BytesTotal: res.BytesTotal, BytesDone: res.BytesTotal,
		BytesFromPeers: res.FromPeers, BytesFromServer: res.FromServer, Verified: res.Verified, BootEntry: bootEntry,
		ChunksOnDisk: res.OnDiskChunks, BytesOnDisk: res.OnDiskBytes}
	if err := r.rep.Send(ctx, done); err != nil {
		r.say("warning: the success report to %s failed: %v", r.cfg.Server, err)
	}
	r.say("after-action: %s", r.cfg.After)
	if err := r.o.After(ctx, r.cfg.After, r.disk, r.log); err != nil {
		return &Failure{Step: "after-action " + Step(r.cfg.After), Image: r.cfg.Image, Disk: r.disk, Err: err}
	}
	return nil
}

func loadPub(path string) (ed25519.PublicKey, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return sign.LoadPublic(path)
}

// askServer asks shoal serve for its entry for mac and returns the
// configuration it gives.
func askServer(ctx context.Context, server, mac string) (config.Config, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := (&api.Client{BaseURL: server}).Machine(ctx, mac)
	if err != nil {
		return config.Config{}, err
	}
	return config.FromMachine(m), nil
}

// chooseDisk selects the target, waiting up to DiskWait for it to appear.
func (r *run) chooseDisk(ctx context.Context) (disksel.Disk, error) {
	deadline := time.Now().Add(r.o.DiskWait)
	for {
		disks, err := disksel.List(r.o.SysBlock, r.o.DevDir)
		if err != nil {
			return disksel.Disk{}, err
		}
		d, err := disksel.Select(disks, r.cfg.Disk, r.boot, filepath.EvalSymlinks)
		if err == nil || !errors.Is(err, disksel.ErrNoDisk) || time.Now().After(deadline) {
			return d, err
		}
		select {
		case <-ctx.Done():
			return d, err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (r *run) reimage(ctx context.Context, pub ed25519.PublicKey, insecure bool) (Result, error) {
	var iface string
	if len(r.leases) > 0 {
		iface = r.leases[0].Iface
	}
	var mu sync.Mutex
	var last Progress
	var first time.Time // the first bytes written: the rate counts from there
	lastLine := time.Time{}
	line := func(p Progress) {
		rate := 0.0
		if !first.IsZero() {
			rate = float64(p.BytesDone) / max(time.Since(first).Seconds(), 0.001)
		}
		eta := "?"
		if rate > 0 && p.BytesTotal > 0 {
			eta = time.Duration(float64(p.BytesTotal-p.BytesDone) / rate * float64(time.Second)).Round(time.Second).String()
		}
		pct := 0.0
		if p.BytesTotal > 0 {
			pct = 100 * float64(p.BytesDone) / float64(p.BytesTotal)
		}
		r.say("%s %s -> %s: %s / %s (%.0f%%) %s/s ETA %s role %s source %s", p.State, r.cfg.Image, r.disk,
			progress.Bytes(p.BytesDone), progress.Bytes(p.BytesTotal), pct, progress.Bytes(int64(rate)), eta, p.Role, p.Source)
		st := report.Status{State: p.State, Role: p.Role, BytesTotal: p.BytesTotal, BytesDone: p.BytesDone,
			BytesFromPeers: p.FromPeers, BytesFromServer: p.FromServer, RateBitsPerSec: int64(rate * 8)}
		if p.BytesTotal > 0 {
			st.Progress = min(1, float64(p.BytesDone)/float64(p.BytesTotal))
		}
		r.rep.Progress(ctx, st)
	}
	job := Job{
		Repo: r.cfg.Repo, Name: r.cfg.Image, Disk: r.disk, Pub: pub, Insecure: insecure, Boot: r.boot,
		Server: r.cfg.Server, Iface: iface, Relay: r.cfg.Relay, Log: r.log, NoReuse: r.cfg.Reuse == "off",
		RateBitsPerSec: r.cfg.RateBitsPerSec, Linger: r.cfg.Linger,
		Progress: func(p Progress) {
			mu.Lock()
			defer mu.Unlock()
			last = p
			if first.IsZero() && p.BytesDone > 0 {
				first = time.Now()
			}
			if time.Since(lastLine) >= 3*time.Second {
				lastLine = time.Now()
				line(p)
			}
		},
	}
	if err := r.jobCredential(&job); err != nil {
		return Result{}, err
	}
	r.say("reimaging %s with image %s from %s", r.disk, r.cfg.Image, r.cfg.Repo)
	res, err := r.o.Reimage(ctx, job)
	mu.Lock()
	if err == nil {
		last.BytesDone, last.BytesTotal = res.BytesTotal, res.BytesTotal
		last.State = api.StateWritten
	}
	if last.BytesTotal > 0 {
		line(last)
	}
	mu.Unlock()
	return res, err
}

// findConf looks for shoal.conf on the disks, waiting up to wait for one
// to appear. It returns the config and the device it was on ("" if none).
func (r *run) findConf(ctx context.Context, wait time.Duration) (config.Config, string, error) {
	deadline := time.Now().Add(wait)
	for {
		disks, _ := disksel.List(r.o.SysBlock, r.o.DevDir)
		for _, d := range disks {
			b, err := ReadConf(d.Path)
			if err != nil {
				// No shoal.conf, or a damaged filesystem (ErrFilesystem):
				// not a stick of ours.
				r.log.Debug("no shoal.conf", "disk", d.Path, "err", err)
				continue
			}
			c, err := config.ParseConf(strings.NewReader(string(b)))
			return c, d.Path, err
		}
		if time.Now().After(deadline) {
			return config.Config{}, "", nil
		}
		select {
		case <-ctx.Done():
			return config.Config{}, "", ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func withSlash(u string) string {
	if u == "" || strings.HasSuffix(u, "/") {
		return u
	}
	return u + "/"
}
