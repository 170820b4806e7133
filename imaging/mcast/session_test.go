package mcast

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/internal/netlab"
	"github.com/shoal-project/shoal/partition"
)

// testImage makes an image of sizeBytes of random data (with a zero run in
// the middle, which is not a chunk) and returns its source file, repository
// and loaded image.
func testImage(t *testing.T, sizeBytes int64, chunkBytes int64) (src string, repo imaging.Repo, img *imaging.Image) {
	t.Helper()
	dir := t.TempDir()
	src = filepath.Join(dir, "disk.raw")
	data := make([]byte, sizeBytes)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	clear(data[sizeBytes/2 : sizeBytes/2+chunkBytes])
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	repoDir := filepath.Join(dir, "repo")
	if _, _, err := imaging.Create(ctx, src, repoDir, "test", imaging.CreateOptions{ChunkSizeBytes: chunkBytes}); err != nil {
		t.Fatalf("imaging.Create: %v", err)
	}
	repo, err := imaging.OpenRepo(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	img, err = imaging.LoadImage(ctx, repo, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	return src, repo, img
}

// writerSink is the real sink: target checks, imaging.Writer, table last.
type writerSink struct {
	*imaging.Writer
	t *partition.Target
	// delay, when set, slows every chunk write (a slow disk).
	delay time.Duration
}

func (s *writerSink) WriteStored(i int, b []byte) error {
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	return s.Writer.WriteStored(i, b)
}

func (s *writerSink) Finish() error {
	if err := s.Writer.Finish(); err != nil {
		s.t.Close()
		return err
	}
	return s.t.Close()
}

func openTarget(path string, delay time.Duration) func(img *imaging.Image) (Sink, error) {
	return func(img *imaging.Image) (Sink, error) {
		t, err := partition.OpenTarget(path, img.Requirements(), partition.TargetOptions{})
		if err != nil {
			return nil, err
		}
		w, err := imaging.NewWriter(img, t, nil)
		if err != nil {
			t.Close()
			return nil, err
		}
		return &writerSink{Writer: w, t: t, delay: delay}, nil
	}
}

func listenIn(n *netlab.Node, group netip.AddrPort) (net.PacketConn, *net.Interface, error) {
	var c net.PacketConn
	var ifi *net.Interface
	err := n.Do(func() error {
		var err error
		ifi, err = net.InterfaceByName(n.Iface)
		if err != nil {
			return err
		}
		c, err = ListenGroup(context.Background(), ifi, group, GroupOptions{})
		return err
	})
	return c, ifi, err
}

func testLogger(t *testing.T, name string) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("who", name)
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(b)))
	return len(b), nil
}

// rxSpec describes one receiver of a session test.
type rxSpec struct {
	lossPermille int
	joinAfter    time.Duration // start late
	killAfter    time.Duration // cancel mid-way (expect failure)
	writeDelay   time.Duration // slow disk: per chunk
}

type rxResult struct {
	stats ReceiverStats
	err   error
	path  string
}

type sessionSpec struct {
	rateBitsPerSec int64 // sender pacing
	linkBitsPerSec int64 // netlab link rate (0: none)
	fecParity      int
	rx             []rxSpec
	// garbage, when set, runs alongside in an extra node.
	garbage func(ctx context.Context, n *netlab.Node, img *imaging.Image) error
}

// runSession runs a sender and receivers on a netlab LAN and returns the
// results, with the sender's stats.
func runSession(t *testing.T, img *imaging.Image, repo imaging.Repo, spec sessionSpec) (SenderStats, []rxResult) {
	t.Helper()
	nodes := 1 + len(spec.rx)
	if spec.garbage != nil {
		nodes++
	}
	lan := netlab.NewForTest(t, netlab.Config{Nodes: nodes, RateBitsPerSec: spec.linkBitsPerSec})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()

	sc, _, err := listenIn(lan.Nodes[0], DefaultControl)
	if err != nil {
		t.Fatalf("sender socket: %v", err)
	}
	defer sc.Close()
	results := make([]rxResult, len(spec.rx))
	var wg sync.WaitGroup
	for i, rs := range spec.rx {
		n := lan.Nodes[1+i]
		if rs.lossPermille > 0 {
			if err := n.SetLoss(rs.lossPermille); err != nil {
				t.Fatal(err)
			}
		}
		results[i].path = filepath.Join(dir, fmt.Sprintf("target%d.img", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := &results[i]
			rctx := ctx
			if rs.killAfter > 0 {
				var c context.CancelFunc
				rctx, c = context.WithTimeout(ctx, rs.killAfter)
				defer c()
			}
			if rs.joinAfter > 0 {
				time.Sleep(rs.joinAfter)
			}
			c, ifi, err := listenIn(n, DefaultControl)
			if err != nil {
				res.err = err
				return
			}
			defer c.Close()
			res.stats, res.err = Receive(rctx, c, ReceiverConfig{
				Name:  img.Manifest.Name,
				Open:  openTarget(res.path, rs.writeDelay),
				Iface: ifi,
				OpenData: func(ctx context.Context, g netip.AddrPort) (net.PacketConn, error) {
					c, _, err := listenIn(n, g)
					return c, err
				},
				Logger: testLogger(t, fmt.Sprintf("rx%d", i)),
			})
		}()
	}
	if spec.garbage != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gctx, gc := context.WithCancel(ctx)
			defer gc()
			go func() { wg.Wait(); gc() }()
			if err := spec.garbage(gctx, lan.Nodes[nodes-1], img); err != nil && gctx.Err() == nil {
				t.Errorf("garbage: %v", err)
			}
		}()
	}
	minRx := 0
	for _, rs := range spec.rx {
		if rs.joinAfter == 0 {
			minRx++
		}
	}
	st, err := Send(ctx, sc, SenderConfig{
		Image: img, Source: RepoSource{Repo: repo, Image: img},
		RateBitsPerSec: spec.rateBitsPerSec, ParityBlocks: spec.fecParity,
		MinReceivers: minRx, MaxWait: 20 * time.Second, Linger: 300 * time.Millisecond,
		ReceiverTimeout: 2 * time.Second,
		Logger:          testLogger(t, "tx"),
	})
	if err != nil {
		t.Errorf("Send() = %v", err)
	}
	wg.Wait()
	return st, results
}

func checkTarget(t *testing.T, src, target string) {
	t.Helper()
	want, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(target)
	if err != nil {
		t.Fatalf("read target: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("target %s (%d bytes) differs from source (%d bytes)", target, len(got), len(want))
	}
}

func TestSession(t *testing.T) {
	netlab.RequireRoot(t)
	src, repo, img := testImage(t, 8<<20, 1<<20)
	tests := []struct {
		name      string
		receivers int
		loss      int // permille
	}{
		{"1rx-0loss", 1, 0},
		{"4rx-1loss", 4, 10},
		{"8rx-5loss", 8, 50},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := sessionSpec{rateBitsPerSec: 200e6}
			for range tc.receivers {
				spec.rx = append(spec.rx, rxSpec{lossPermille: tc.loss})
			}
			st, res := runSession(t, img, repo, spec)
			for i, r := range res {
				if r.err != nil {
					t.Errorf("receiver %d: Receive() = %v", i, r.err)
					continue
				}
				checkTarget(t, src, r.path)
				t.Logf("receiver %d: %+v", i, r.stats)
			}
			t.Logf("sender: %+v (image stored %d bytes)", st, img.Manifest.StoredBytes)
		})
	}
}
