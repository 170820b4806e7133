// delta.go: the session bench's delta run: every node's disk holds v1, an image that differs from the one fetched (v2) in a few percent of its chunks.
package bench

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/shoal-project/shoal/imaging"
)

// makeV1 writes v1: the bench's image with every k-th chunk of
// chunkBytes (k about 100/percent) replaced by random bytes, and returns
// its path and how many chunks differ.
func (rep *SessionReport) makeV1(dir string, percent float64) (string, int, error) {
	src, err := os.ReadFile(rep.r.src)
	if err != nil {
		return "", 0, err
	}
	const chunkBytes = imaging.DefaultChunkBytes
	every := max(1, int(100/percent+0.5))
	changed := 0
	for i := 0; int64(i)*chunkBytes < int64(len(src)); i += every {
		off := int64(i) * chunkBytes
		rand.Read(src[off:min(off+chunkBytes, int64(len(src)))])
		changed++
	}
	path := filepath.Join(dir, "v1.raw")
	if err := os.WriteFile(path, src, 0o644); err != nil {
		return "", 0, err
	}
	return path, changed, nil
}

// copyFile makes dst a copy of src.
func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return out.Close()
}

// fetchStats is what the bench reads of a node's `shoal fetch --stats`.
type fetchStats struct {
	BytesFromServer int64
	BytesFromPeers  int64
	BytesToPeers    int64
}

// multicastBytes sums what the nodes multicast to peers (their leaders'
// BytesToPeers), from each node's --stats file.
func multicastBytes(paths []string) (int64, error) {
	var sum int64
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return 0, err
		}
		var st fetchStats
		if err := json.Unmarshal(b, &st); err != nil {
			return 0, fmt.Errorf("%s: %w", p, err)
		}
		sum += st.BytesToPeers
	}
	return sum, nil
}
