// have_test.go: receivers whose targets already hold parts of the image say so, and the sender skips what all hold.
package mcast

import (
	"os"
	"testing"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/internal/netlabtest"
)

// prefill writes to path the bytes of src's chunks i of img for which
// hold(i): a target that holds part of the image already.
func prefill(t *testing.T, src, path string, img *imaging.Image, hold func(i int) bool) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(data))
	for _, c := range img.Chunks {
		if hold(c.Index) {
			copy(out[c.OffsetBytes:c.OffsetBytes+c.SizeBytes], data[c.OffsetBytes:])
		}
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSendSkipsWhatAllHold: two receivers whose targets hold parts of the
// image already (the even chunks; the first half) scan them and say so; the
// sender's first pass skips the chunks both hold, and sends the rest; both
// end with the image.
func TestSendSkipsWhatAllHold(t *testing.T) {
	netlabtest.RequireRoot(t)
	src, repo, img := testImage(t, 8<<20, 512<<10)
	n := len(img.Chunks)
	both := 0
	for i := range n {
		if i%2 == 0 && i < n/2 && img.Chunks[i].OffsetBytes >= imaging.CommitBytes {
			both++
		}
	}
	// Slow enough that the haves come before the first pass passes them.
	st, res := runSession(t, img, repo, sessionSpec{rateBitsPerSec: 20e6, src: src, rx: []rxSpec{
		{hold: func(i int) bool { return i%2 == 0 }},
		{hold: func(i int) bool { return i < n/2 }},
	}})
	checkAll(t, src, res)
	t.Logf("sender: %+v; chunks %d, held by both %d", st, n, both)
	// The last chunk of the disk is wiped before the scan, and one of the
	// held may come before the haves: allow two fewer.
	if st.HeldChunks < both-2 || st.HeldChunks > both {
		t.Errorf("the first pass skipped %d chunks as held, want about %d", st.HeldChunks, both)
	}
}

// TestGatherSendsDeltaOnce: three receivers whose targets hold all of the
// image but the same three chunks join 0.3 s apart. With GatherQuiet the
// sender holds its short first pass until they have all joined, and sends
// what they lack about once; without it, the first pass goes to the first
// receiver alone and the later ones ask for the same chunks again, whole.
func TestGatherSendsDeltaOnce(t *testing.T) {
	netlabtest.RequireRoot(t)
	src, repo, img := testImage(t, 16<<20, 512<<10)
	n := len(img.Chunks)
	lacks := func(i int) bool { return i >= 5 && i <= 7 }
	// What every receiver needs: the three, the chunks of the commit
	// region (always written last) and the disk's last chunk (the wipe
	// clears its end).
	var needBytes int64
	for _, c := range img.Chunks {
		if lacks(c.Index) || c.OffsetBytes < imaging.CommitBytes || c.Index == n-1 {
			needBytes += c.StoredBytes
		}
	}
	run := func(quiet time.Duration) SenderStats {
		var rx []rxSpec
		for k := range 3 {
			rx = append(rx, rxSpec{joinAfter: time.Duration(k) * 300 * time.Millisecond, hold: func(i int) bool { return !lacks(i) }})
		}
		st, res := runSession(t, img, repo, sessionSpec{rateBitsPerSec: 20e6, src: src, rx: rx, gatherQuiet: quiet})
		checkAll(t, src, res)
		return st
	}
	with := run(time.Second)
	without := run(0)
	t.Logf("needed by every receiver: %d bytes; sent with a gather %d (first pass %d, repairs %d), without %d (first pass %d, repairs %d)",
		needBytes, with.DataBytes, with.FirstPassBytes, with.RepairBytes, without.DataBytes, without.FirstPassBytes, without.RepairBytes)
	if float64(with.DataBytes) > 1.25*float64(needBytes) {
		t.Errorf("with a gather the sender sent %d bytes, want about once what the receivers need (%d, at most 1.25x)", with.DataBytes, needBytes)
	}
	if float64(without.DataBytes) < 1.5*float64(needBytes) {
		t.Errorf("without a gather the sender sent %d bytes, less than 1.5x what the receivers need (%d): the test no longer shows what the gather saves", without.DataBytes, needBytes)
	}
}
