package imaging

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
)

// TestWriterCommitsFirstMiBLast: an image without a partition table has
// no table to commit it, so the writer holds back the chunks in the first
// CommitBytes (boot sector, superblock) until every other chunk is on the
// disk. A write cut off midway leaves sector 0 as it was (zeros); a
// complete one has it.
func TestWriterCommitsFirstMiBLast(t *testing.T) {
	const chunk = 64 << 10
	data := make([]byte, 2*CommitBytes)
	rand.Read(data)
	_, img := rawImage(t, data, chunk)
	for _, tc := range []struct {
		name  string
		order func(n int) []int
	}{
		{"in disk order", func(n int) []int {
			var o []int
			for i := range n {
				o = append(o, i)
			}
			return o
		}},
		{"in reverse", func(n int) []int {
			var o []int
			for i := n - 1; i >= 0; i-- {
				o = append(o, i)
			}
			return o
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "dst")
			w := newTestWriter(t, img, dst)
			order := tc.order(len(img.Chunks))
			// All but one chunk past the commit region: cut off there.
			last := -1
			for _, i := range order {
				c := img.Chunks[i]
				if last < 0 && c.OffsetBytes >= CommitBytes {
					last = i
					continue
				}
				if err := writePlain(w, i, data[c.OffsetBytes:c.OffsetBytes+c.SizeBytes]); err != nil {
					t.Fatal(err)
				}
			}
			got, _ := os.ReadFile(dst)
			if !bytes.Equal(got[:CommitBytes], make([]byte, CommitBytes)) {
				t.Errorf("a write cut off midway has data in its first %d bytes; want them as before (zeros)", CommitBytes)
			}
			// A chunk held back is still served (a peer leading a session).
			if b, err := w.ReadPlain(0, nil); err != nil || !bytes.Equal(b, data[:chunk]) {
				t.Errorf("ReadPlain(0) of a held chunk = %v, want its bytes", err)
			}
			c := img.Chunks[last]
			if err := writePlain(w, last, data[c.OffsetBytes:c.OffsetBytes+c.SizeBytes]); err != nil {
				t.Fatal(err)
			}
			got, _ = os.ReadFile(dst)
			if !bytes.Equal(got[:512], make([]byte, 512)) {
				t.Errorf("sector 0 written before Finish")
			}
			if err := w.Finish(); err != nil {
				t.Fatal(err)
			}
			got, _ = os.ReadFile(dst)
			if !bytes.Equal(got, data) {
				t.Errorf("target differs from the source after Finish")
			}
		})
	}
}
