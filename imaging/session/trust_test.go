package session

// Tests of what a node trusts: replayed control messages, rogue peers of
// an image of the same name, floods of forged messages.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/imaging/mcast/fresh"
	"github.com/shoal-project/shoal/imaging/sign"
)

var trustKey = []byte("session key of the trust tests")

// lastDone runs nodes 1..k of l at once on image img with the key and
// returns how long until the last of them had the whole image verified.
func runAll(t *testing.T, l *lab, ctx context.Context, k int, mod func(*Config)) (time.Duration, []*peer) {
	t.Helper()
	start := time.Now()
	var ps []*peer
	for i := 1; i <= k; i++ {
		ps = append(ps, l.start(ctx, i, "img", mod))
	}
	var last time.Time
	for _, p := range ps {
		p.wait(t, 40*time.Second)
		l.checkDone(t, p, "img")
		if at := p.completedAt(); at.After(last) {
			last = at
		}
	}
	return last.Sub(start), ps
}

// replay sends the datagrams recorded, from node i to the broadcast
// address, at their original pace, until ctx ends.
func (l *lab) replay(ctx context.Context, i int, rec []recorded) {
	c, dst, err := l.broadcastConn(i)
	if err != nil {
		l.t.Errorf("replay from node %d: %v", i, err)
		return
	}
	defer c.Close()
	start := time.Now()
	for _, r := range rec {
		d := time.Until(start.Add(r.at.Sub(rec[0].at)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		_, _ = c.WriteTo(r.b, dst)
	}
}

// Replay: a run's control messages (announces, requests, takeovers, each
// with a good HMAC), recorded and replayed at their original pace during
// a new run of the same image and key, neither make a node follow a
// ghost, nor yield, nor wait: the new run takes about as long as the
// first, and every node is verified.
func TestReplay(t *testing.T) {
	l := newLab(t, 3, testSizeBytes, testChunkBytes, "img")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The server's pace sets the run's length (about 3 s of download),
	// so that the listening window's jitter is small beside it.
	l.srv.delay.Store(int64(100 * time.Millisecond))
	key := func(c *Config) { c.Key = trustKey }
	sn := l.sniff(ctx)
	clean1, _ := runAll(t, l, ctx, 3, key)
	sn.mu.Lock()
	rec := append([]recorded(nil), sn.raw...)
	sn.mu.Unlock()
	if len(rec) < 10 {
		t.Fatalf("recorded %d control datagrams, want many", len(rec))
	}
	// Replayed runs alternate with fault-free ones, so that the load of
	// the machine weighs on both alike. The first replay comes seconds
	// after the recording (its messages are within the freshness window:
	// the echo rule stops them), the second later (stale as well).
	underReplay := func() time.Duration {
		rctx, stop := context.WithCancel(ctx)
		defer stop()
		go l.replay(rctx, 0, rec)
		d, ps := runAll(t, l, ctx, 3, key)
		ours := map[uint32]bool{0: true}
		for _, p := range ps {
			ours[p.id] = true
		}
		for _, p := range ps {
			if p.st.Fallbacks != 0 || p.st.BadPeers != 0 {
				t.Errorf("node %d under replay: %+v: want no fallback, no bad peer", p.id, p.st)
			}
			p.mu.Lock()
			for _, h := range p.history {
				if !ours[h.st.Leader] {
					t.Errorf("node %d followed node %d, a ghost of the recorded run", p.id, h.st.Leader)
					break
				}
			}
			p.mu.Unlock()
		}
		return d
	}
	replay1 := underReplay()
	clean2, _ := runAll(t, l, ctx, 3, key)
	replay2 := underReplay()
	clean, replayed := clean1+clean2, replay1+replay2
	ratio := float64(replayed) / float64(clean)
	t.Logf("fault-free runs %v and %v, runs under replay of the first one's %d control datagrams %v and %v: ratio %.2f",
		clean1.Round(time.Millisecond), clean2.Round(time.Millisecond), len(rec), replay1.Round(time.Millisecond), replay2.Round(time.Millisecond), ratio)
	if ratio > 1.2 {
		t.Errorf("runs under replay took %.2f times the fault-free runs, want at most 1.2", ratio)
	}
}

// forgedFlood sends count control datagrams with a bad HMAC (each of
// another random nonce, with a fresh time) to node i's control port
// from node j, as fast as the socket takes them.
func (l *lab) forgedFlood(t *testing.T, j int, count int) {
	t.Helper()
	c, dst, err := l.broadcastConn(j)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ti := l.images["img"]
	wrong := []byte("not the session key")
	var m Msg
	var b []byte
	for k := range count {
		var r [8]byte
		_, _ = rand.Read(r[:])
		m = Msg{Type: MsgType(1 + k%3), ID: ti.img.ID, Epoch: uint32(k), Node: binary.BigEndian.Uint32(r[:]), Name: "img",
			Group: netip.MustParseAddrPort("239.255.78.7:7711"),
			Stamp: fresh.Stamp{TimeMs: time.Now().UnixMilli(), Nonce: binary.BigEndian.Uint64(r[:]) | 1, Seq: 1}}
		b, _ = AppendMsg(b[:0], &m, wrong)
		_, _ = c.WriteTo(b, dst)
	}
}

func heapBytes() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// A million forged control datagrams (a bad HMAC, each of its own nonce)
// at a node leading with the key: none leaves state, the heap grows by
// less than 4 MiB, and the node completes.
func TestForgedFlood(t *testing.T) {
	const count = 1_000_000
	l := newLab(t, 2, testSizeBytes/4, testChunkBytes, "img")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l.srv.delay.Store(int64(20 * time.Millisecond))
	a := l.start(ctx, 1, "img", func(c *Config) { c.Key = trustKey; c.Linger = time.Minute })
	a.waitFor(t, "leading with the whole image", 20*time.Second, func(s Status) bool { return s.Role == RoleLeader && s.ChunksDone == s.Chunks })
	before := heapBytes()
	l.forgedFlood(t, 2, count)
	time.Sleep(300 * time.Millisecond) // the socket's backlog read
	after := heapBytes()
	st := a.last()
	delta := int64(after) - int64(before)
	t.Logf("%d forged datagrams sent, %d refused by the node (the rest dropped by the socket buffer); heap %d -> %d bytes (%+d)", count, st.Refused, before, after, delta)
	if st.Refused < count/10 {
		t.Errorf("node refused %d datagrams, want at least %d: the flood did not reach it", st.Refused, count/10)
	}
	if delta > 4<<20 {
		t.Errorf("heap grew by %d bytes under the flood, want less than 4 MiB", delta)
	}
	a.cancel()
	a.wait(t, 10*time.Second)
}

// A peer whose manifest is ours but whose signature of it is forged (a
// key holder serving a tampered repository) is a bad peer: counted, left,
// and the node falls back to the server, which it completes from; its
// run does not end at the bad signature.
func TestForgedManifestSignature(t *testing.T) {
	l := newLab(t, 2, testSizeBytes/2, testChunkBytes, "img")
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(l.repoDir, filepath.FromSlash(imaging.ManifestPath("img"))))
	if err != nil {
		t.Fatal(err)
	}
	sigPath := filepath.FromSlash(imaging.SigPath("img"))
	if err := os.WriteFile(filepath.Join(l.repoDir, sigPath), sign.Sign(priv, raw), 0o644); err != nil {
		t.Fatal(err)
	}
	rogueDir := filepath.Join(t.TempDir(), "repo")
	if out, err := exec.Command("cp", "-a", l.repoDir, rogueDir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	forged := make([]byte, ed25519.SignatureSize)
	_, _ = rand.Read(forged)
	if err := os.WriteFile(filepath.Join(rogueDir, sigPath), forged, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rctx, stopRogue := context.WithCancel(ctx)
	defer stopRogue()
	r := l.start(rctx, 2, "img", func(c *Config) {
		c.Key, c.Server, c.Linger = trustKey, imaging.DirRepo(rogueDir), time.Minute
	})
	r.waitFor(t, "the rogue leading", 20*time.Second, func(s Status) bool { return s.Role == RoleLeader })
	a := l.start(ctx, 1, "img", func(c *Config) { c.Key, c.Pub = trustKey, pub })
	a.wait(t, 40*time.Second)
	stopRogue()
	l.checkDone(t, a, "img")
	// Following shows in a sampled status, or, when the bad manifest came
	// faster than a sample, in the bad peer it counted.
	followed := a.st.BadPeers > 0
	a.mu.Lock()
	for _, h := range a.history {
		followed = followed || h.st.Leader == r.id
	}
	a.mu.Unlock()
	if !followed {
		t.Fatalf("the node never followed the peer (%+v): nothing tested", a.st)
	}
	if a.st.BadPeers == 0 || a.st.Fallbacks != 1 || a.st.BytesFromPeers != 0 {
		t.Errorf("status %+v: want the peer counted bad, one fallback, nothing from peers", a.st)
	}
}
