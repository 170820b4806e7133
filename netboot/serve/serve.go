// Package serve runs shoal's netboot server: DHCP (full or proxy), TFTP
// and HTTP together, from one Config whose every field is also a command
// line flag and a config-file key.
//
// Opening sockets (Listen) is apart from serving them (Server.Serve), so
// that tests can open them inside a network namespace.
package serve

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/shoal-project/shoal/imaging/repocache"
	"github.com/shoal-project/shoal/internal/units"
	"github.com/shoal-project/shoal/netboot/dhcpd"
	"github.com/shoal-project/shoal/netboot/httpd"
	"github.com/shoal-project/shoal/netboot/inventory"
	"github.com/shoal-project/shoal/netboot/ra"
	"github.com/shoal-project/shoal/netboot/tftpd"
)

// Config is everything shoal serve can be told. Each field but
// SessionSecret and SigningPub is a flag of the same name (see
// RegisterFlags) and a key of the config file.
type Config struct {
	Iface     string // provisioning interface (needed for DHCP)
	DHCP      string // full, proxy or off
	Range     string // FIRST-LAST, full mode
	HTTP      string // HTTP listen address
	TFTP      string // TFTP listen address; "off" disables TFTP
	Repo      string // repository directory, served at /repo/
	Boot      string // boot files directory, served at /boot/ and over TFTP
	Inventory string // machines file (Store "file")
	Store     string // "file" (Inventory) or etcd://HOST:PORT,… or etcds://… (store.go)
	StoreCA   string // etcds://: CA bundle (PEM) that signed etcd's certificates; default: the system's
	StoreCert string // etcds://: client certificate (PEM) for etcd's --client-cert-auth
	StoreKey  string // etcds://: its private key (PEM)
	Unknown   string // ignore, or the image unknown machines get
	Key       string // refused: the site key is gone (see ErrKeyFlag)
	// InsecureOpenAPI accepts unsigned status reports of machines without
	// a credential (old appliances); logged loudly at start.
	InsecureOpenAPI bool
	// SessionSecret is the site's session secret (sitekeys, from the
	// state directory; not a flag): credentials carry the session key of
	// their image derived from it. nil: no session key, and appliances
	// write from the server alone, without peers.
	SessionSecret []byte
	ServerIP      string        // address machines reach this server at; default: the interface's
	Leases        string        // leases file, full mode
	Router        string        // router option, full mode
	DNS           string        // comma-separated DNS servers, full mode
	LeaseTime     time.Duration // lease duration, full mode
	Cmdline       string        // extra kernel arguments for the appliance
	Kernel        string        // kernel file name in Boot
	Initrd        string        // initramfs file name in Boot
	RA            bool          // answer IPv6 router solicitations (saves iPXE's wait for them)
	// Upstream, when set, is the URL of a repository this server does not
	// hold: /repo/ is then a cache of it (imaging/repocache) in CacheDir,
	// bounded to CacheBytes, instead of Repo.
	Upstream   string
	CacheDir   string
	CacheBytes int64
	// InsecureUpstream serves the upstream's unsigned manifests; logged
	// loudly.
	InsecureUpstream bool
	// SigningPub is the site's signing public key (sitekeys; not a flag):
	// the cache serves only manifests it signed.
	SigningPub ed25519.PublicKey
}

// Default returns the defaults.
func Default() Config {
	return Config{
		DHCP:       "off",
		HTTP:       "", // the boot interface's address, port DefaultHTTPPort
		TFTP:       "", // the boot interface's address, port DefaultTFTPPort
		Repo:       "repo",
		Boot:       "out",
		Store:      StoreFile,
		Unknown:    inventory.Ignore,
		LeaseTime:  time.Hour,
		Kernel:     "vmlinuz",
		Initrd:     "shoal-initramfs.cpio.zst",
		RA:         true,
		CacheDir:   "cache",
		CacheBytes: repocache.DefaultMaxBytes,
	}
}

// RegisterFlags adds a flag for each field of c to fs, with c's values as
// defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Iface, "iface", c.Iface, "provisioning network interface (DHCP listens here)")
	fs.StringVar(&c.DHCP, "dhcp", c.DHCP, "DHCP mode: full (lease addresses from --range), proxy (boot information only, beside the site's DHCP server) or off")
	fs.StringVar(&c.Range, "range", c.Range, "address range FIRST-LAST for --dhcp full")
	fs.StringVar(&c.HTTP, "http", c.HTTP, `HTTP listen address (default: --iface's address, port 8080; ":8080" listens on every address, logged as a warning)`)
	fs.StringVar(&c.TFTP, "tftp", c.TFTP, `TFTP listen address, or "off" (default: --iface's address, port 69; ":69" listens on every address, logged as a warning)`)
	fs.StringVar(&c.Repo, "repo", c.Repo, "image repository directory, served at /repo/")
	fs.StringVar(&c.Boot, "boot", c.Boot, "directory with vmlinuz, the initramfs, undionly.kpxe and ipxe.efi")
	fs.StringVar(&c.Inventory, "inventory", c.Inventory, "machines file (format: docs/netboot.md)")
	fs.StringVar(&c.Store, "store", c.Store, `where the inventory is: "file" (the --inventory file), or etcd://HOST[:PORT][,HOST[:PORT]…] (etcds:// for TLS), shared by every server on the cluster (docs/netboot.md, "Inventory on etcd")`)
	fs.StringVar(&c.StoreCA, "store-ca", c.StoreCA, "with --store etcds://: CA certificates (PEM) to check etcd's server certificates against (default: the system's)")
	fs.StringVar(&c.StoreCert, "store-cert", c.StoreCert, "with --store etcds://: client certificate (PEM) shown to etcd (for its --client-cert-auth)")
	fs.StringVar(&c.StoreKey, "store-key", c.StoreKey, "with --store etcds://: the client certificate's private key (PEM)")
	fs.StringVar(&c.Unknown, "unknown", c.Unknown, `what unknown machines get: "ignore" or an image name to reimage them with`)
	fs.StringVar(&c.Key, "key", c.Key, "removed: refused (reports are signed with a per-boot credential, docs/security.md)")
	fs.BoolVar(&c.InsecureOpenAPI, "insecure-open-api", c.InsecureOpenAPI, "INSECURE: accept unsigned status reports from machines without a credential (appliances older than the credential); anyone reaching the server can then mark them done")
	fs.StringVar(&c.ServerIP, "server-ip", c.ServerIP, "address machines reach this server at (default: the interface's first IPv4 address)")
	fs.StringVar(&c.Leases, "leases", c.Leases, "leases file for --dhcp full (default: beside the inventory, or in memory)")
	fs.StringVar(&c.Router, "router", c.Router, "router to hand out in --dhcp full")
	fs.StringVar(&c.DNS, "dns", c.DNS, "comma-separated DNS servers to hand out in --dhcp full")
	fs.DurationVar(&c.LeaseTime, "lease-time", c.LeaseTime, "lease duration in --dhcp full")
	fs.StringVar(&c.Cmdline, "cmdline", c.Cmdline, `extra kernel arguments for the appliance, e.g. "console=ttyS0"`)
	fs.StringVar(&c.Kernel, "kernel", c.Kernel, "kernel file name in --boot")
	fs.StringVar(&c.Initrd, "initrd", c.Initrd, "initramfs file name in --boot")
	fs.StringVar(&c.Upstream, "upstream", c.Upstream, "URL of a repository to serve at /repo/ through a cache in --cache-dir, instead of --repo")
	fs.StringVar(&c.CacheDir, "cache-dir", c.CacheDir, "directory of the --upstream cache")
	fs.Func("cache-bytes", fmt.Sprintf("bound of the --upstream cache's chunks, e.g. 200G (default %d)", c.CacheBytes), func(v string) error {
		n, err := units.ParseBytes(v)
		if err != nil {
			return err
		}
		if n <= 0 {
			return fmt.Errorf("%q: want a size above 0", v)
		}
		c.CacheBytes = n
		return nil
	})
	fs.BoolVar(&c.InsecureUpstream, "insecure-upstream", c.InsecureUpstream, "INSECURE: serve --upstream's manifests without a valid signature of the site's key")
	fs.BoolVar(&c.RA, "ra", c.RA, "answer IPv6 router solicitations on --iface with an empty advertisement (iPXE otherwise waits ~13 s for one)")
}

// LoadFile reads a config file of "key = value" lines ('#' starts a
// comment; keys are flag names) and sets each flag that was not given on
// the command line. Call it after fs.Parse.
func LoadFile(fs *flag.FlagSet, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	given := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("config %s:%d: want key = value", path, n)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		}
		if fs.Lookup(k) == nil || k == "config" {
			return fmt.Errorf("config %s:%d: unknown key %q", path, n, k)
		}
		if given[k] {
			continue // the command line wins
		}
		if err := fs.Set(k, v); err != nil {
			return fmt.Errorf("config %s:%d: %s: %w", path, n, k, err)
		}
	}
	return sc.Err()
}

// Server is a running netboot server.
type Server struct {
	cfg Config
	ls  *Listeners
	log *slog.Logger

	inv   inventory.Backend
	http  *httpd.Server
	tftp  *tftpd.Server
	dhcp  *dhcpd.Server
	reg   *prometheus.Registry
	baseU string
}

// New builds a server for cfg on the listeners ls (which it owns from now
// on: Serve closes them).
func New(cfg Config, ls *Listeners, log *slog.Logger) (_ *Server, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, ls: ls, log: log, reg: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if cfg.Unknown == "" {
		cfg.Unknown = inventory.Ignore
	}
	if cfg.Key != "" || hasKeyArg(cfg.Cmdline) {
		return nil, ErrKeyFlag
	}
	if s.inv, err = openInventory(cfg, ls.HTTP.Addr().String(), log); err != nil {
		return nil, err
	}
	if err := storeMetrics(s.reg, s.inv); err != nil {
		return nil, err
	}
	port := ls.HTTP.Addr().(*net.TCPAddr).Port
	if ls.ServerIP != nil {
		s.baseU = fmt.Sprintf("http://%s:%d", ls.ServerIP, port)
	}
	var cmdline []string
	if cfg.Cmdline != "" {
		cmdline = strings.Fields(cfg.Cmdline)
	}
	var repo http.Handler
	if cfg.Upstream != "" {
		if repo, err = repocache.New(repocache.Config{
			Upstream:         cfg.Upstream,
			Dir:              cfg.CacheDir,
			MaxBytes:         cfg.CacheBytes,
			Pub:              cfg.SigningPub,
			InsecureUnsigned: cfg.InsecureUpstream,
			Registry:         s.reg,
			Log:              log,
		}); err != nil {
			return nil, err
		}
	}
	if s.http, err = httpd.New(httpd.Config{
		RepoDir:         cfg.Repo,
		Repo:            repo,
		BootDir:         cfg.Boot,
		BaseURL:         s.baseU,
		Inventory:       s.inv,
		InsecureOpenAPI: cfg.InsecureOpenAPI,
		SessionSecret:   cfg.SessionSecret,
		Leases:          dhcpLeases{s},
		Kernel:          cfg.Kernel,
		Initrd:          cfg.Initrd,
		Cmdline:         cmdline,
		Registry:        s.reg,
		Log:             log,
	}); err != nil {
		return nil, err
	}
	if ls.TFTP != nil {
		if s.tftp, err = tftpd.New(cfg.Boot, log); err != nil {
			return nil, err
		}
		tftpFiles := prometheus.NewCounter(prometheus.CounterOpts{Name: "shoal_serve_tftp_transfers_total", Help: "Files sent over TFTP."})
		tftpBytes := prometheus.NewCounter(prometheus.CounterOpts{Name: "shoal_serve_tftp_bytes_total", Help: "Bytes sent over TFTP."})
		s.reg.MustRegister(tftpFiles, tftpBytes)
		s.tftp.Sent = func(_ string, n int64) {
			tftpFiles.Inc()
			tftpBytes.Add(float64(n))
		}
	}
	if ls.DHCP != nil {
		replies := prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_serve_dhcp_replies_total", Help: "DHCP replies sent, by message type and client kind."},
			[]string{"type", "kind"})
		s.reg.MustRegister(replies)
		dc := dhcpd.Config{
			Mode:          dhcpd.Mode(cfg.DHCP),
			ServerIP:      ls.ServerIP,
			Netmask:       ls.Netmask,
			LeaseDuration: cfg.LeaseTime,
			Booter:        &booter{inv: s.inv, baseURL: s.baseU},
			Log:           log,
			Replied: func(mt dhcpv4.MessageType, k dhcpd.Kind) {
				replies.WithLabelValues(mt.String(), k.String()).Inc()
			},
		}
		if cfg.DHCP == "full" {
			first, last, err := dhcpd.ParseRange(cfg.Range)
			if err != nil {
				return nil, err
			}
			leasePath := cfg.Leases
			if leasePath == "" && cfg.Inventory != "" {
				leasePath = cfg.Inventory + ".leases.json"
			}
			if dc.Leases, err = dhcpd.OpenFileLeases(leasePath, first, last, log); err != nil {
				return nil, err
			}
			if cfg.Router != "" {
				if dc.Router = net.ParseIP(cfg.Router).To4(); dc.Router == nil {
					return nil, fmt.Errorf("--router %q: not an IPv4 address", cfg.Router)
				}
			}
			for _, d := range strings.Split(cfg.DNS, ",") {
				if d = strings.TrimSpace(d); d == "" {
					continue
				}
				ip := net.ParseIP(d).To4()
				if ip == nil {
					return nil, fmt.Errorf("--dns %q: not an IPv4 address", d)
				}
				dc.DNS = append(dc.DNS, ip)
			}
		}
		if s.dhcp, err = dhcpd.New(dc); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Server) close() {
	s.ls.Close()
	if s.http != nil {
		s.http.Close()
	}
	if s.tftp != nil {
		s.tftp.Close()
	}
	if s.inv != nil {
		if err := s.inv.Close(); err != nil {
			s.log.Warn("inventory: close", "err", err)
		}
	}
}

// Serve runs every part until ctx is done or one of them fails; it then
// stops the others, closes the listeners and returns the first error.
func (s *Server) Serve(ctx context.Context) error {
	defer s.close()
	g, ctx := errgroup.WithContext(ctx)
	start := func(name string, fn func(context.Context) error) {
		g.Go(func() error {
			if err := fn(ctx); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	}
	start("http", func(ctx context.Context) error { return s.http.Serve(ctx, s.ls.HTTP) })
	if s.tftp != nil {
		start("tftp", func(ctx context.Context) error { return s.tftp.Serve(ctx, s.ls.TFTP) })
	}
	if s.dhcp != nil {
		start("dhcp", func(ctx context.Context) error { return s.dhcp.Serve(ctx, s.ls.DHCP) })
		if s.ls.PXE != nil {
			start("pxe", func(ctx context.Context) error { return s.dhcp.Serve(ctx, s.ls.PXE) })
		}
	}
	if s.ls.RAErr != nil {
		s.log.Warn("not answering IPv6 router solicitations; iPXE may wait ~13 s for them", "err", s.ls.RAErr)
	}
	if s.ls.RA != nil {
		start("ra", func(ctx context.Context) error { return ra.Serve(ctx, s.ls.RA, s.ls.ifIndex, s.log) })
	}
	for name, a := range map[string]net.Addr{"http": s.ls.HTTP.Addr(), "tftp": tftpAddr(s.ls.TFTP)} {
		if a != nil && Unspecified(a.String()) {
			s.log.Warn(name+" listens on every address, not only the boot interface's: reachable from every network this host is on", "addr", a.String())
		}
	}
	if s.cfg.InsecureOpenAPI {
		s.log.Warn("INSECURE: --insecure-open-api: unsigned status reports are accepted for machines without a credential; anyone who reaches the HTTP port can mark such a machine done and make it boot its local disk")
	}
	s.log.Info("serving", "http", s.ls.HTTP.Addr().String(), "server", s.baseU,
		"dhcp", s.cfg.DHCP, "tftp", s.tftp != nil, "repo", s.repoDesc(), "boot", s.cfg.Boot)
	return g.Wait()
}

// repoDesc says where /repo/ comes from.
func (s *Server) repoDesc() string {
	if s.cfg.Upstream != "" {
		return "cache of " + s.cfg.Upstream + " in " + s.cfg.CacheDir
	}
	return s.cfg.Repo
}

func tftpAddr(c net.PacketConn) net.Addr {
	if c == nil {
		return nil
	}
	return c.LocalAddr()
}

// hasKeyArg reports whether a kernel command line carries shoal.key=.
func hasKeyArg(cmdline string) bool {
	for _, f := range strings.Fields(cmdline) {
		if strings.HasPrefix(f, "shoal.key=") {
			return true
		}
	}
	return false
}
