// Package httpd is the HTTP side of shoal serve: the image repository and
// boot files (static, with Range), the per-machine iPXE scripts, the status
// API the appliance reports to, the machine list, Prometheus metrics and the
// live dashboard.
//
// Routes:
//
//	GET  /repo/...                           the repository directory (or Config.Repo: the cache)
//	GET  /boot/...                           kernel, initramfs, iPXE binaries
//	GET  /ipxe/{mac}                         the machine's iPXE script
//	GET  /api/v1/machines                    every machine as JSON (api.Machine)
//	GET  /api/v1/machines/{mac}              one machine as JSON (404: unknown)
//	POST /api/v1/machines/{mac}/credential   the machine's per-boot credential (JSON api.Credential)
//	POST /api/v1/machines/{mac}/status       a status report (JSON api.Status), signed
//	GET  /metrics                            Prometheus metrics
//	GET  /                                   the dashboard
//
// A status report must come from the address the boot's credential was
// issued to and carry the headers "X-Shoal-Time: MS" (Unix milliseconds,
// the server's clock) and "X-Shoal-Signature: sha256=HEX", HEX being
// HMAC-SHA256(SHA-256(token), MAC "\n" MS "\n" BODY) with MAC in lower case
// with colons (api.SignReport, api.ReportKey); else 401 (no or a bad
// signature) or 403 (another address). A time more than MaxReportSkew from
// the server's, or not after the last accepted for the MAC (a replay),
// gives 409 with the server's time in X-Shoal-Time. Only InsecureOpenAPI
// accepts unsigned reports, of machines without a credential.
package httpd

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shoal-project/shoal/imaging/repocache"
	"github.com/shoal-project/shoal/netboot/api"
	"github.com/shoal-project/shoal/netboot/inventory"
	"github.com/shoal-project/shoal/netboot/ipxe"
)

// Config configures a Server.
type Config struct {
	RepoDir string // served under /repo/
	// Repo, when set, serves /repo/ instead of RepoDir (the repository
	// cache, imaging/repocache), with the paths below /repo/.
	Repo    http.Handler
	BootDir string // served under /boot/
	// BaseURL is how machines reach this server, e.g. "http://10.0.0.1:8080";
	// empty: taken from each request's Host.
	BaseURL   string
	Inventory inventory.Backend
	// InsecureOpenAPI accepts unsigned status reports from machines that
	// have no credential (appliances older than the credential); anyone
	// who reaches the server can then report for them.
	InsecureOpenAPI bool
	// SessionSecret is the site's session secret (sitekeys): a credential
	// carries the key of its image's peer session derived from it; nil:
	// credentials carry no session key.
	SessionSecret []byte
	// Leases says which address is leased to a MAC, for machines that ask
	// for a credential without having fetched an iPXE script; nil: none.
	Leases Leases
	// CredentialTTL is how long a credential is accepted (default
	// DefaultCredentialTTL).
	CredentialTTL time.Duration
	// MaxReportSkew is how far a signed report's time may be from the
	// server's clock (default DefaultMaxReportSkew).
	MaxReportSkew time.Duration
	// SilentAfter: a machine at work whose reports stopped for longer is
	// marked silent in the machine list and on the dashboard (default
	// DefaultSilentAfter; the appliance reports every 2 s).
	SilentAfter time.Duration
	// Kernel and Initrd are the file names in BootDir the appliance boots.
	Kernel, Initrd string
	// Cmdline holds extra kernel arguments for every machine (e.g.
	// "console=ttyS0").
	Cmdline []string
	// Registry gets the server's metrics and is served at /metrics; nil
	// makes a new one.
	Registry *prometheus.Registry
	Log      *slog.Logger
	Now      func() time.Time // nil: time.Now
	// Limits bound connections, timeouts and sizes (limits.go); zero
	// fields take the defaults.
	Limits Limits
}

// Server serves HTTP as its Config says.
type Server struct {
	cfg        Config
	repo, boot *os.Root
	log        *slog.Logger
	mux        *http.ServeMux

	requests *prometheus.CounterVec
	sent     *prometheus.CounterVec
	reports  *prometheus.CounterVec

	lastMu     sync.Mutex
	lastReport map[string]int64 // MAC: time of the last signed report accepted

	creds credentials
}

// SignatureHeader is the header that carries a status report's HMAC.
const SignatureHeader = api.SignatureHeader

// DefaultMaxReportSkew is Config.MaxReportSkew's default: a captured
// signed report can be replayed for at most this long, and only before a
// newer one from the machine.
const DefaultMaxReportSkew = 2 * time.Minute

// DefaultSilentAfter is Config.SilentAfter's default.
const DefaultSilentAfter = 30 * time.Second

// maxReportBytes bounds a status report's body.
const maxReportBytes = 64 << 10

// New opens the repository and boot directories and builds the routes.
func New(cfg Config) (*Server, error) {
	if cfg.Inventory == nil {
		return nil, errors.New("httpd: no inventory")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Kernel == "" {
		cfg.Kernel = "vmlinuz"
	}
	if cfg.Initrd == "" {
		cfg.Initrd = "shoal-initramfs.cpio.zst"
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.MaxReportSkew <= 0 {
		cfg.MaxReportSkew = DefaultMaxReportSkew
	}
	if cfg.CredentialTTL <= 0 {
		cfg.CredentialTTL = DefaultCredentialTTL
	}
	if cfg.SilentAfter <= 0 {
		cfg.SilentAfter = DefaultSilentAfter
	}
	cfg.Limits = cfg.Limits.withDefaults()
	s := &Server{cfg: cfg, log: cfg.Log, mux: http.NewServeMux(), lastReport: map[string]int64{},
		creds: credentials{boots: map[string]*boot{}}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if cfg.Repo == nil {
		if s.repo, err = os.OpenRoot(cfg.RepoDir); err != nil {
			return nil, fmt.Errorf("httpd: repository: %w", err)
		}
	}
	if s.boot, err = os.OpenRoot(cfg.BootDir); err != nil {
		s.Close()
		return nil, fmt.Errorf("httpd: boot files: %w", err)
	}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoal_serve_http_requests_total",
		Help: "HTTP requests served, by route and status code.",
	}, []string{"route", "code"})
	s.sent = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoal_serve_http_response_bytes_total",
		Help: "Response body bytes sent, by route (route repo is the image data the server sent).",
	}, []string{"route"})
	s.reports = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoal_serve_status_reports_total",
		Help: "Status reports received, by result (accepted, no_credential, bad_signature, wrong_address, expired, stale, unknown_machine, bad_request).",
	}, []string{"result"})
	for _, c := range []prometheus.Collector{s.requests, s.sent, s.reports, machineCollector{cfg.Inventory}} {
		if err := cfg.Registry.Register(c); err != nil {
			s.Close()
			return nil, fmt.Errorf("httpd: metrics: %w", err)
		}
	}
	repo := cfg.Repo
	if repo == nil {
		repo = repocache.WithCacheControl(http.FileServerFS(rootFS{s.repo.FS()}))
	}
	s.route("GET /repo/", "repo", http.StripPrefix("/repo/", repo))
	s.route("GET /boot/", "boot", http.StripPrefix("/boot/", http.FileServerFS(rootFS{s.boot.FS()})))
	s.route("GET /ipxe/{mac}", "ipxe", http.HandlerFunc(s.script))
	s.route("GET /api/v1/machines", "machines", http.HandlerFunc(s.machines))
	s.route("GET /api/v1/machines/{mac}", "machine", http.HandlerFunc(s.machine))
	s.route("POST /api/v1/machines/{mac}/credential", "credential", http.HandlerFunc(s.credential))
	s.route("POST /api/v1/machines/{mac}/status", "status", http.HandlerFunc(s.status))
	s.route("GET /metrics", "metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{}))
	s.route("GET /{$}", "dashboard", http.HandlerFunc(s.dashboard))
	return s, nil
}

// Close releases the served directories.
func (s *Server) Close() error {
	var errs []error
	for _, r := range []*os.Root{s.repo, s.boot} {
		if r != nil {
			errs = append(errs, r.Close())
		}
	}
	return errors.Join(errs...)
}

// Handler returns the server's routes.
func (s *Server) Handler() http.Handler { return s.mux }

// Serve serves HTTP on ln until ctx is done, then shuts down (waiting up to
// 5 s for requests in flight) and returns nil. Config.Limits bound the
// connections.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := s.cfg.Limits.httpServer(s.mux)
	hs.ErrorLog = slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	done := make(chan error, 1)
	go func() { done <- hs.Serve(s.cfg.Limits.listener(ln)) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil {
			hs.Close()
		}
		<-done
		return nil
	case err := <-done:
		return fmt.Errorf("httpd: %w", err)
	}
}

// rootFS turns os.Root's refusals (a path or symlink leading out of the
// root) into fs.ErrPermission, which the file server answers with 403
// instead of 500.
type rootFS struct{ fsys fs.FS }

func (r rootFS) Open(name string) (fs.File, error) {
	f, err := r.fsys.Open(name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrPermission}
	}
	return f, err
}

// statusWriter records the status code and the body bytes for metrics.
type statusWriter struct {
	http.ResponseWriter
	code      int
	sentBytes int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.sentBytes += int64(n)
	return n, err
}

// Flush lets streaming handlers flush through the wrapper.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) route(pattern, name string, h http.Handler) {
	s.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		s.requests.WithLabelValues(name, strconv.Itoa(sw.code)).Inc()
		s.sent.WithLabelValues(name).Add(float64(sw.sentBytes))
		s.log.Debug("http", "method", r.Method, "path", r.URL.Path, "code", sw.code, "remote", r.RemoteAddr)
	}))
}

func (s *Server) baseURL(r *http.Request) string {
	if s.cfg.BaseURL != "" {
		return strings.TrimSuffix(s.cfg.BaseURL, "/")
	}
	return "http://" + r.Host
}

func (s *Server) script(w http.ResponseWriter, r *http.Request) {
	mac, err := inventory.CanonicalMAC(r.PathValue("mac"))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	m, err := s.cfg.Inventory.Lookup(mac)
	switch {
	case errors.Is(err, inventory.ErrUnknown):
		io.WriteString(w, ipxe.LocalScript(mac+" is not in the inventory; booting the next device"))
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.cfg.Inventory.MarkBoot(mac, s.cfg.Now())
	// A new boot: the old credential is void, the fetcher may ask for one.
	s.creds.newBoot(mac, remoteAddr(r))
	if m.Action == inventory.Local {
		io.WriteString(w, ipxe.LocalScript(mac+" is done; booting the local disk"))
		return
	}
	base := s.baseURL(r)
	args := []string{
		"shoal.server=" + base,
		"shoal.repo=" + base + "/repo/",
		"shoal.image=" + m.Image,
		"shoal.mac=" + mac,
	}
	if m.Disk != "" {
		args = append(args, "shoal.disk="+m.Disk)
	}
	args = append(args, s.cfg.Cmdline...)
	io.WriteString(w, ipxe.BootScript(ipxe.Boot{
		BaseURL: base,
		Kernel:  s.cfg.Kernel,
		Initrd:  s.cfg.Initrd,
		Cmdline: args,
	}))
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	mac, err := inventory.CanonicalMAC(r.PathValue("mac"))
	if err != nil {
		s.reports.WithLabelValues("bad_request").Inc()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReportBytes))
	if err != nil {
		s.reports.WithLabelValues("bad_request").Inc()
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	now := s.cfg.Now()
	w.Header().Set(api.TimeHeader, strconv.FormatInt(now.UnixMilli(), 10))
	if no := s.checkReport(mac, r, body, now); no != nil {
		s.reports.WithLabelValues(no.result).Inc()
		s.log.Warn("status report refused", "mac", mac, "from", r.RemoteAddr, "result", no.result, "why", no.msg)
		http.Error(w, no.msg, no.code)
		return
	}
	var st inventory.Status
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		s.reports.WithLabelValues("bad_request").Inc()
		http.Error(w, "bad status: "+err.Error(), http.StatusBadRequest)
		return
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		// One JSON object and nothing after it: what the HMAC covers is
		// what is stored.
		s.reports.WithLabelValues("bad_request").Inc()
		http.Error(w, "bad status: data after the JSON object", http.StatusBadRequest)
		return
	}
	if st.Progress < 0 || st.Progress > 1 || st.State == "" {
		s.reports.WithLabelValues("bad_request").Inc()
		http.Error(w, "bad status: want a state and 0 <= progress <= 1", http.StatusBadRequest)
		return
	}
	m, err := s.cfg.Inventory.Report(mac, st, s.cfg.Now())
	if errors.Is(err, inventory.ErrUnknown) {
		s.reports.WithLabelValues("unknown_machine").Inc()
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	if err != nil {
		s.log.Error("http: status report", "mac", mac, "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.reports.WithLabelValues("accepted").Inc()
	s.log.Info("status", "mac", mac, "state", st.State, "progress", st.Progress, "action", m.Action)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(m)
}

// checkReportTime takes a signed report's time: within MaxReportSkew of
// now and after the last one accepted for mac, or it says why not.
func (s *Server) checkReportTime(mac string, sentMs int64, now time.Time) string {
	skew := time.Duration(now.UnixMilli()-sentMs) * time.Millisecond
	if skew > s.cfg.MaxReportSkew || -skew > s.cfg.MaxReportSkew {
		return fmt.Sprintf("report time %d is %v from the server's %d (more than %v): send it again with the server's time (%s)",
			sentMs, skew.Abs().Round(time.Millisecond), now.UnixMilli(), s.cfg.MaxReportSkew, api.TimeHeader)
	}
	s.lastMu.Lock()
	defer s.lastMu.Unlock()
	if last := s.lastReport[mac]; sentMs <= last {
		return fmt.Sprintf("report time %d is not after the last accepted for %s (%d): a replay, or out of order", sentMs, mac, last)
	}
	s.lastReport[mac] = sentMs
	return ""
}

//go:embed dashboard.html
var dashboardHTML []byte

func (s *Server) dashboard(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(dashboardHTML)
}
