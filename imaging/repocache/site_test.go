package repocache

// site_test.go: the measurement of a site's caches. A backbone LAN holds
// the origin (node 0), the site's cache (node 1, upstream the origin) and
// the uplinks of the LAN caches (nodes 2...). Each machine LAN has its own
// cache at node 0 (listening there, fetching from the site cache through
// its uplink on the backbone) and nodes that reach only it, each imaging
// with the real peer session (session.Run in-process, its sockets in the
// node's namespace). Every server counts the body bytes it sends.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/imaging/session"
	"github.com/shoal-project/shoal/internal/httpcount"
	"github.com/shoal-project/shoal/internal/imagetest"
	"github.com/shoal-project/shoal/internal/netlab"
	"github.com/shoal-project/shoal/internal/netlabtest"
	"github.com/shoal-project/shoal/internal/testlog"
	"github.com/shoal-project/shoal/partition"
)

// siteKey signs the site's image.
var siteKey = func() ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}()

// siteResult is what a site run measured.
type siteResult struct {
	storedBytes     int64   // the image's chunks, each once
	originBytes     int64   // body bytes the origin sent
	siteCacheBytes  int64   // body bytes the site cache sent (to the LAN caches)
	lanCacheBytes   []int64 // body bytes each LAN cache sent (to its nodes)
	lanCacheFetched []int64 // body bytes each LAN cache received from the site cache
	took            time.Duration
}

func (r siteResult) ratio(n int64) float64 { return float64(n) / float64(r.storedBytes) }

// serveIn serves h on node n's address, port 8080, until the test ends,
// and returns the URL.
func serveIn(tb testing.TB, n *netlab.Node, h http.Handler) string {
	tb.Helper()
	var ln net.Listener
	if err := n.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", n.IP.String()+":8080")
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	tb.Cleanup(func() { hs.Close() })
	return "http://" + n.IP.String() + ":8080/"
}

// clientIn is an HTTP client whose connections are made in node n's
// namespace.
func clientIn(n *netlab.Node) *http.Client {
	tr := imaging.NewTransport()
	tr.Proxy = nil
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := n.Do(func() error {
			var err error
			c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return &http.Client{Transport: tr}
}

// runSite images nodes machines on each of lans LANs from one origin
// through the site cache and the LANs' caches, checks every target, and
// returns the bytes each server sent.
func runSite(tb testing.TB, lans, nodes int, sizeBytes, chunkBytes int64) siteResult {
	tb.Helper()
	netlabtest.RequireRoot(tb)
	im := imagetest.New(tb, imagetest.Options{Name: "site", SizeBytes: sizeBytes, ChunkBytes: chunkBytes, ZeroRun: true, Compressible: true, SignKey: siteKey})
	var res siteResult
	seen := map[imaging.Hash]bool{}
	for _, c := range im.Image.Chunks {
		if !seen[c.Hash] {
			seen[c.Hash] = true
			res.storedBytes += c.StoredBytes
		}
	}
	pub := siteKey.Public().(ed25519.PublicKey)

	backbone := netlabtest.New(tb, netlab.Config{Nodes: 2 + lans})
	origin := &httpcount.Handler{H: WithCacheControl(http.FileServer(http.Dir(im.RepoDir)))}
	originURL := serveIn(tb, backbone.Nodes[0], origin)
	newCache := func(name, upstream string, via *netlab.Node) *Cache {
		c, err := New(Config{Upstream: upstream, Dir: tb.TempDir(), Pub: pub, Client: clientIn(via),
			Log: testlog.New(tb, name, slog.LevelInfo)})
		if err != nil {
			tb.Fatal(err)
		}
		return c
	}
	siteCache := newCache("site-cache", originURL, backbone.Nodes[1])
	siteCounted := &httpcount.Handler{H: siteCache}
	siteURL := serveIn(tb, backbone.Nodes[1], siteCounted)

	type lan struct {
		net   *netlab.LAN
		cache *Cache
		sent  *httpcount.Handler
		url   string
	}
	ls := make([]lan, lans)
	for i := range ls {
		ls[i].net = netlabtest.New(tb, netlab.Config{Nodes: 1 + nodes})
		ls[i].cache = newCache(fmt.Sprintf("lan%d-cache", i), siteURL, backbone.Nodes[2+i])
		ls[i].sent = &httpcount.Handler{H: ls[i].cache}
		ls[i].url = serveIn(tb, ls[i].net.Nodes[0], ls[i].sent)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, lans*nodes)
	for i, l := range ls {
		for j := 1; j <= nodes; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := runNode(ctx, tb, l.net.Nodes[j], l.url, uint32(100*(i+1)+j), im, pub); err != nil {
					errs <- fmt.Errorf("LAN %d node %d: %w", i, j, err)
				}
			}()
		}
	}
	wg.Wait()
	res.took = time.Since(start)
	close(errs)
	for err := range errs {
		tb.Error(err)
	}
	res.originBytes = origin.Sent.Load()
	res.siteCacheBytes = siteCounted.Sent.Load()
	for _, l := range ls {
		res.lanCacheBytes = append(res.lanCacheBytes, l.sent.Sent.Load())
		res.lanCacheFetched = append(res.lanCacheFetched, l.cache.Stats().UpstreamBytes)
	}
	return res
}

// runNode images one node with session.Run from the LAN cache at url
// and checks that its target holds the image's disk.
func runNode(ctx context.Context, tb testing.TB, n *netlab.Node, url string, id uint32, im *imagetest.Image, pub ed25519.PublicKey) error {
	var ifi *net.Interface
	if err := n.Do(func() error {
		var err error
		ifi, err = net.InterfaceByName(n.Iface)
		return err
	}); err != nil {
		return err
	}
	repo, err := imaging.NewHTTPRepo(url, clientIn(n))
	if err != nil {
		return err
	}
	repo.Attempts, repo.Backoff = 3, 100*time.Millisecond
	path := filepath.Join(tb.TempDir(), "target.img")
	var mu sync.Mutex
	var targets []*partition.Target
	cfg := session.Config{
		Server: repo, Name: im.Name, Pub: pub, Iface: ifi, NodeID: id, Netns: n.Do,
		Key:    session.DeriveKey([]byte("the site's session secret"), im.Image.ID),
		Logger: testlog.New(tb, fmt.Sprintf("n%d", id), slog.LevelWarn),
		// The session tests' short timers (imaging/session netns_test.go).
		AnnounceInterval: 100 * time.Millisecond,
		ListenWindow:     500 * time.Millisecond,
		LeaderTimeout:    time.Second,
		ElectionWindow:   700 * time.Millisecond,
		DataTimeout:      5 * time.Second,
		Linger:           time.Second,
		ServerRetry:      200 * time.Millisecond,
		ServerTimeout:    30 * time.Second,
		Workers:          2,
		RateBitsPerSec:   200e6,
		Open: func(img *imaging.Image) (*imaging.Writer, error) {
			tg, err := partition.OpenTarget(path, img.Requirements(), partition.TargetOptions{})
			if err != nil {
				return nil, err
			}
			mu.Lock()
			targets = append(targets, tg)
			mu.Unlock()
			return imaging.NewWriter(img, tg, nil)
		},
	}
	st, err := session.Run(ctx, cfg)
	for _, tg := range targets {
		tg.Close()
	}
	if err != nil {
		return fmt.Errorf("session.Run: %w (status %+v)", err, st)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, im.Disk) {
		return fmt.Errorf("target (%d bytes) differs from the source disk (%d bytes)", len(got), len(im.Disk))
	}
	return nil
}

// report logs r and checks the targets: the origin sent at most 1.05
// images for the whole site, each LAN cache at most 1.05 to its nodes,
// and each LAN cache fetched at most 1.05 from the site cache.
func report(tb testing.TB, r siteResult) {
	tb.Helper()
	const target = 1.05
	tb.Logf("image %d stored bytes; took %v; origin sent %.3f images, the site cache %.3f", r.storedBytes, r.took.Round(time.Millisecond), r.ratio(r.originBytes), r.ratio(r.siteCacheBytes))
	if got := r.ratio(r.originBytes); got > target || got < 1 {
		tb.Errorf("origin egress = %.3f images for the whole site, want 1 to %v", got, target)
	}
	for i, b := range r.lanCacheBytes {
		tb.Logf("LAN %d cache: sent %.3f images to its nodes, fetched %.3f", i, r.ratio(b), r.ratio(r.lanCacheFetched[i]))
		if got := r.ratio(b); got > target || got < 1 {
			tb.Errorf("LAN %d cache egress = %.3f images, want 1 to %v", i, got, target)
		}
		if got := r.ratio(r.lanCacheFetched[i]); got > target {
			tb.Errorf("LAN %d cache fetched %.3f images from the site cache, want at most %v", i, got, target)
		}
	}
}

// TestSiteCache: 2 LANs of 2 nodes behind one origin: the origin sends
// the image about once for the whole site, each LAN's cache about once to
// its nodes (the peer session relays it between them), and every node's
// disk is the image's.
func TestSiteCache(t *testing.T) {
	report(t, runSite(t, 2, 2, 8<<20, 256<<10))
}

// BenchmarkSiteCache: 4 LANs of 4 nodes behind one origin (run it with
// -benchtime 1x). Metrics: origin/image (the whole site), the site cache's
// egress/image, the largest LAN cache's egress/image.
func BenchmarkSiteCache(b *testing.B) {
	for range b.N {
		r := runSite(b, 4, 4, 32<<20, 1<<20)
		report(b, r)
		maxLAN := 0.0
		for _, n := range r.lanCacheBytes {
			maxLAN = max(maxLAN, r.ratio(n))
		}
		b.ReportMetric(r.ratio(r.originBytes), "origin/image")
		b.ReportMetric(r.ratio(r.siteCacheBytes), "sitecache/image")
		b.ReportMetric(maxLAN, "maxlancache/image")
		b.ReportMetric(r.took.Seconds(), "s/site")
	}
}
