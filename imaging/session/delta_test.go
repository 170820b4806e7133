// delta_test.go: a session whose nodes' disks already hold different parts of the image: only what someone lacks moves.
package session

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/shoal-project/shoal/imaging"
)

// scanFirst makes c's Open scan the target, as imaging.Target does for a
// target that was there before.
func scanFirst(c *Config) {
	open := c.Open
	c.Open = func(img *imaging.Image) (*imaging.Writer, error) {
		w, err := open(img)
		if err != nil {
			return nil, err
		}
		if _, err := w.Scan(context.Background(), imaging.ScanOptions{}); err != nil {
			return nil, err
		}
		return w, nil
	}
}

// TestDeltaSession: three nodes whose targets each hold all of the image
// but four chunks (different ones) scan them first. The leader downloads
// only what it lacks (and the commit region, always written last, and the
// last chunk, whose end the wipe clears); its first pass skips what both
// followers hold; everyone ends with the image.
func TestDeltaSession(t *testing.T) {
	l := newLab(t, 3, testSizeBytes, testChunkBytes, "img")
	ti := l.images["img"]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lacks := map[int][2]int64{1: {20, 24}, 2: {30, 34}, 3: {40, 44}}
	l.prepare = func(i int, path string) {
		disk := append([]byte(nil), ti.disk...)
		clear(disk[lacks[i][0]*testChunkBytes : lacks[i][1]*testChunkBytes])
		if err := os.WriteFile(path, disk, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	scan := func(c *Config) {
		// Slow enough that the followers' haves come before the first
		// pass passes the chunks they name.
		c.RateBitsPerSec = 20e6
		scanFirst(c)
	}
	var peers []*peer
	for i := 1; i <= 3; i++ {
		p := l.start(ctx, i, "img", scan)
		peers = append(peers, p)
		if i == 1 {
			p.waitFor(t, "leading", 20*time.Second, func(s Status) bool { return s.Role == RoleLeader })
		}
	}
	for _, p := range peers {
		p.wait(t, 90*time.Second)
		l.checkDone(t, p, "img")
	}
	chunkStored := ti.storedBytes() / int64(len(ti.img.Chunks))
	// The leader's four, the commit region's, the last; two for a retry.
	maxChunks := 4 + int64(imaging.CommitBytes/testChunkBytes) + 1 + 2
	if got := l.srv.served.Load(); got > maxChunks*chunkStored {
		t.Errorf("server served %d bytes, want at most %d (what the leader lacked) of %d", got, maxChunks*chunkStored, ti.storedBytes())
	}
	for _, p := range peers[1:] {
		if p.st.BytesFromPeers > ti.storedBytes()/2 {
			t.Errorf("follower %d received %d bytes from peers, want at most half the image (%d)", p.id, p.st.BytesFromPeers, ti.storedBytes()/2)
		}
	}
}

// TestDeltaGather: four nodes whose targets hold the image but the same
// four chunks (v1 where v2 changed them) start 0.8 s apart. The leader's
// first pass gathers its followers (GatherQuiet 1.5 s) for longer than
// their DataTimeout (1 s): its announces say so and they wait, none
// falls back to the server, and what it multicasts is about once the
// chunks they lack.
func TestDeltaGather(t *testing.T) {
	l := newLab(t, 4, testSizeBytes, testChunkBytes, "img")
	ti := l.images["img"]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const lackFrom, lackTo = 20, 24
	l.prepare = func(i int, path string) {
		disk := append([]byte(nil), ti.disk...)
		clear(disk[lackFrom*testChunkBytes : lackTo*testChunkBytes])
		if err := os.WriteFile(path, disk, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// What every node lacks: the four, the commit region's chunks and
	// the last (see TestDeltaSession).
	var needBytes int64
	for _, c := range ti.img.Chunks {
		if c.Index >= lackFrom && c.Index < lackTo || c.OffsetBytes < imaging.CommitBytes || c.Index == len(ti.img.Chunks)-1 {
			needBytes += c.StoredBytes
		}
	}
	mod := func(c *Config) {
		c.RateBitsPerSec = 20e6
		c.DataTimeout = time.Second
		c.GatherQuiet, c.GatherMax = 1500*time.Millisecond, 8*time.Second
		// The leader holds so little to fetch that it would be done, and
		// gone, before the second node asks.
		c.Linger = 3 * time.Second
		scanFirst(c)
	}
	var peers []*peer
	for i := 1; i <= 4; i++ {
		p := l.start(ctx, i, "img", mod)
		peers = append(peers, p)
		if i == 1 {
			p.waitFor(t, "leading", 20*time.Second, func(s Status) bool { return s.Role == RoleLeader })
			continue
		}
		time.Sleep(800 * time.Millisecond)
	}
	var multicast int64
	for _, p := range peers {
		p.wait(t, 90*time.Second)
		l.checkDone(t, p, "img")
		multicast += p.st.BytesToPeers
		if p.st.Fallbacks != 0 {
			t.Errorf("node %d fell back to the server %d times (the gather outlasted its DataTimeout)", p.id, p.st.Fallbacks)
		}
	}
	for _, p := range peers[1:] {
		if p.st.BytesFromServer != 0 {
			t.Errorf("follower %d took %d bytes from the server, want none", p.id, p.st.BytesFromServer)
		}
	}
	t.Logf("multicast %d bytes; every node lacked %d", multicast, needBytes)
	if float64(multicast) > 1.3*float64(needBytes) {
		t.Errorf("multicast %d bytes, want about once what the nodes lack (%d, at most 1.3x)", multicast, needBytes)
	}
}
