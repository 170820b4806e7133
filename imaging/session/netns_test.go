package session

// netns_test.go: the tests' LAN fixture: network namespaces (netlab), an image server, nodes running Run, a sniffer.

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/internal/httpcount"
	"github.com/shoal-project/shoal/internal/imagetest"
	"github.com/shoal-project/shoal/internal/netlab"
	"github.com/shoal-project/shoal/internal/netlabtest"
	"github.com/shoal-project/shoal/internal/testlog"
	"github.com/shoal-project/shoal/partition"
)

// The test LAN: node 0 runs a plain static HTTP server (net/http's
// FileServer over a repository made by imaging.Create) that counts the chunk
// bytes it serves; the other nodes run Run in-process, each with its sockets
// in its own namespace (Config.Netns = Node.Do) and a target file in
// t.TempDir().

// testImage is an image in the lab's repository and the disk it was made of.
type testImage struct {
	name string
	disk []byte
	img  *imaging.Image
}

// storedBytes is the compressed size of the image's chunks.
func (ti *testImage) storedBytes() int64 {
	var n int64
	for _, c := range ti.img.Chunks {
		n += c.StoredBytes
	}
	return n
}

// server is the lab's image server.
type server struct {
	fs     http.Handler
	served atomic.Int64 // chunk bytes served
	down   atomic.Bool  // answer 503 to everything
	delay  atomic.Int64 // nanoseconds before each chunk is served
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	if !strings.HasPrefix(r.URL.Path, "/chunks/") {
		s.fs.ServeHTTP(w, r)
		return
	}
	if d := time.Duration(s.delay.Load()); d > 0 {
		time.Sleep(d)
	}
	s.fs.ServeHTTP(httpcount.Writer{ResponseWriter: w, N: &s.served}, r)
}

type lab struct {
	// prepare, when set, is called with each node's index and target path
	// before the node starts (to put something on its target).
	prepare func(i int, path string)
	t       *testing.T
	lan     *netlab.LAN
	repoDir string
	srv     *server
	url     string
	images  map[string]*testImage
}

// newLab makes a LAN of 1+nodes nodes, a repository with one image per
// name (sizeBytes of random data each, chunkBytes chunks) and the server.
func newLab(t *testing.T, nodes int, sizeBytes, chunkBytes int64, names ...string) *lab {
	t.Helper()
	netlabtest.RequireRoot(t)
	l := &lab{t: t, repoDir: filepath.Join(t.TempDir(), "repo"), images: make(map[string]*testImage)}
	for _, name := range names {
		l.images[name] = makeImage(t, l.repoDir, name, sizeBytes, chunkBytes)
	}
	l.lan = netlabtest.New(t, netlab.Config{Nodes: 1 + nodes})
	l.srv = &server{fs: http.FileServer(http.Dir(l.repoDir))}
	var ln net.Listener
	sn := l.lan.Nodes[0]
	if err := sn.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", sn.IP.String()+":8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: l.srv, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { hs.Close() })
	l.url = "http://" + sn.IP.String() + ":8080/"
	return l
}

func makeImage(t *testing.T, repoDir, name string, sizeBytes, chunkBytes int64) *testImage {
	t.Helper()
	im := imagetest.New(t, imagetest.Options{Name: name, RepoDir: repoDir, SizeBytes: sizeBytes, ChunkBytes: chunkBytes, ZeroRun: true, Compressible: true})
	return &testImage{name: name, disk: im.Disk, img: im.Image}
}

// repoFor returns an HTTP repository of the lab's server whose connections
// are made inside node n's namespace.
func (l *lab) repoFor(n *netlab.Node) imaging.Repo {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := n.Do(func() error {
				var err error
				c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
		MaxIdleConnsPerHost:   16,
		ResponseHeaderTimeout: 10 * time.Second,
	}
	r, err := imaging.NewHTTPRepo(l.url, &http.Client{Transport: tr})
	if err != nil {
		l.t.Fatal(err)
	}
	r.Attempts, r.Backoff = 3, 100*time.Millisecond
	return r
}

// peer is one node running Run.
type peer struct {
	node   *netlab.Node
	id     uint32
	path   string
	cancel context.CancelFunc
	done   chan struct{}
	st     Status
	err    error

	mu      sync.Mutex
	history []stamped // every progress report
}

type stamped struct {
	at time.Time
	st Status
}

func (p *peer) last() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.history) == 0 {
		return Status{}
	}
	return p.history[len(p.history)-1].st
}

// waitFor waits until cond holds for p's progress, or fails the test.
func (p *peer) waitFor(t *testing.T, what string, timeout time.Duration, cond func(Status) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond(p.last()) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("node %d: %s: not within %v (last status %+v)", p.id, what, timeout, p.last())
}

// testConfig has short timers, so that a test runs in seconds.
func testConfig() Config {
	return Config{
		AnnounceInterval: 100 * time.Millisecond,
		ListenWindow:     500 * time.Millisecond,
		// Generous for a loaded machine (the suite runs beside QEMU
		// tests, with the race detector): a starved node must not
		// be taken for a dead one.
		LeaderTimeout:  time.Second,
		ElectionWindow: 700 * time.Millisecond,
		DataTimeout:    5 * time.Second,
		Linger:         time.Second,
		ServerRetry:    200 * time.Millisecond,
		ServerTimeout:  30 * time.Second,
		Workers:        2,
		RateBitsPerSec: 200e6,
	}
}

var nodeIDs atomic.Uint32

// start runs Run on node index i (1-based: node 0 is the server) for image
// name; mod adjusts the configuration.
func (l *lab) start(ctx context.Context, i int, name string, mod func(*Config)) *peer {
	t := l.t
	n := l.lan.Nodes[i]
	p := &peer{node: n, path: filepath.Join(t.TempDir(), fmt.Sprintf("target%d.img", i)), done: make(chan struct{})}
	if l.prepare != nil {
		l.prepare(i, p.path)
	}
	var ifi *net.Interface
	if err := n.Do(func() error {
		var err error
		ifi, err = net.InterfaceByName(n.Iface)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.Server, cfg.Name, cfg.Iface = l.repoFor(n), name, ifi
	cfg.NodeID = 1000*uint32(i) + nodeIDs.Add(1)%1000
	cfg.Netns = n.Do
	cfg.Logger = testLogger(t, fmt.Sprintf("n%d", i))
	var targets []*partition.Target
	var tmu sync.Mutex
	cfg.Open = func(img *imaging.Image) (*imaging.Writer, error) {
		tg, err := partition.OpenTarget(p.path, img.Requirements(), partition.TargetOptions{})
		if err != nil {
			return nil, err
		}
		tmu.Lock()
		targets = append(targets, tg)
		tmu.Unlock()
		return imaging.NewWriter(img, tg, nil)
	}
	cfg.Progress = func(s Status) {
		p.mu.Lock()
		p.history = append(p.history, stamped{time.Now(), s})
		p.mu.Unlock()
	}
	if mod != nil {
		mod(&cfg)
	}
	p.id = cfg.NodeID
	ctx, p.cancel = context.WithCancel(ctx)
	go func() {
		defer close(p.done)
		p.st, p.err = Run(ctx, cfg)
		tmu.Lock()
		for _, tg := range targets {
			tg.Close()
		}
		tmu.Unlock()
	}()
	return p
}

// wait waits for p's Run to return.
func (p *peer) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.cancel()
		<-p.done
		t.Errorf("node %d: Run did not return within %v (status %+v)", p.id, timeout, p.last())
	}
}

// checkDone checks that p's Run succeeded and its target holds the image.
func (l *lab) checkDone(t *testing.T, p *peer, name string) {
	t.Helper()
	t.Logf("node %d: %+v", p.id, p.st)
	if p.err != nil {
		t.Errorf("node %d: Run() = %v", p.id, p.err)
		return
	}
	got, err := os.ReadFile(p.path)
	if err != nil {
		t.Errorf("node %d: %v", p.id, err)
		return
	}
	if want := l.images[name].disk; !bytes.Equal(got, want) {
		t.Errorf("node %d: target (%d bytes) differs from the source disk (%d bytes)", p.id, len(got), len(want))
	}
}

// sniffer collects the control messages broadcast on the LAN, from node 0.
type sniffer struct {
	mu   sync.Mutex
	msgs []Msg
	raw  []recorded // every datagram, as it came
}

// recorded is a datagram and when it came.
type recorded struct {
	at time.Time
	b  []byte
}

func (l *lab) sniff(ctx context.Context) *sniffer {
	s := &sniffer{}
	var c net.PacketConn
	if err := l.lan.Nodes[0].Do(func() error {
		var err error
		c, err = net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", DefaultControlPort))
		return err
	}); err != nil {
		l.t.Fatal(err)
	}
	context.AfterFunc(ctx, func() { c.Close() })
	l.t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.raw = append(s.raw, recorded{time.Now(), bytes.Clone(buf[:n])})
			if m, err := ParseMsg(buf[:n], nil); err == nil {
				s.msgs = append(s.msgs, m)
			}
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *sniffer) count(f func(Msg) bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.msgs {
		if f(m) {
			n++
		}
	}
	return n
}

func testLogger(t *testing.T, name string) *slog.Logger {
	return testlog.New(t, name, slog.LevelInfo)
}
