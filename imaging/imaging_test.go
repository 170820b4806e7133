package imaging

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// rawImage creates an image from a raw disk file (no partition table) of
// the given bytes and returns the repository and the image.
func rawImage(t testing.TB, data []byte, chunkBytes int64) (string, *Image) {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(dir, "repo")
	img, _, err := Create(context.Background(), src, repo, "raw", CreateOptions{ChunkSizeBytes: chunkBytes})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return repo, img
}

func testData(n int) []byte {
	b := make([]byte, n)
	rand.Read(b[:n/4])                                   // incompressible
	copy(b[n/4:], bytes.Repeat([]byte("shoal "), n/4/6)) // compressible
	copy(b[3*n/4:], bytes.Repeat([]byte{0x01}, n/8))     // a run of ones
	return b                                             // and zeros at the end
}

func TestCreateSkipsZerosAndDedupes(t *testing.T) {
	const chunk = 64 << 10
	data := make([]byte, 16*chunk)
	rand.Read(data[0:chunk])
	copy(data[5*chunk:], data[0:chunk]) // the same chunk twice
	data[9*chunk+100] = 1               // a chunk of nearly all zeros
	repo, img := rawImage(t, data, chunk)
	var offsets []int64
	for _, c := range img.Chunks {
		offsets = append(offsets, c.OffsetBytes)
	}
	if diff := cmp.Diff([]int64{0, 5 * chunk, 9 * chunk}, offsets); diff != "" {
		t.Errorf("chunk offsets (-want +got):\n%s", diff)
	}
	files, _ := filepath.Glob(filepath.Join(repo, "chunks", "*", "*.zst"))
	if len(files) != 2 {
		t.Errorf("repository holds %d chunk files, want 2 (one deduplicated)", len(files))
	}
	if img.Manifest.DataBytes != 3*chunk {
		t.Errorf("DataBytes = %d, want %d", img.Manifest.DataBytes, 3*chunk)
	}
	// Creating it again adds nothing and gives the same manifest bytes.
	src := filepath.Join(t.TempDir(), "again.raw")
	os.WriteFile(src, data, 0o644)
	img2, st, err := Create(context.Background(), src, repo, "raw", CreateOptions{ChunkSizeBytes: chunk})
	if err != nil {
		t.Fatal(err)
	}
	if st.NewChunks != 0 {
		t.Errorf("second Create stored %d new chunks, want 0", st.NewChunks)
	}
	// The same content under the same name: the same content hash, a
	// higher serial and so a new image ID.
	if img2.Manifest.ContentHash != img.Manifest.ContentHash {
		t.Errorf("second Create gave content hash %s, want %s (same content)", img2.Manifest.ContentHash, img.Manifest.ContentHash)
	}
	if img2.Manifest.Serial != img.Manifest.Serial+1 || img2.ID == img.ID {
		t.Errorf("second Create: serial %d, ID %s; want serial %d and a new ID", img2.Manifest.Serial, img2.ID, img.Manifest.Serial+1)
	}
}

func TestApplyFromHTTPRetries(t *testing.T) {
	data := testData(1 << 20)
	repo, img := rawImage(t, data, 64<<10)
	var fails atomic.Int32
	fs := http.FileServer(http.Dir(repo))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every chunk fails twice (500, then a cut-short body) before it
		// is served whole.
		if strings.HasPrefix(r.URL.Path, "/chunks/") {
			switch fails.Add(1) % 3 {
			case 1:
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			case 2:
				w.Header().Set("Content-Length", "100000")
				w.Write([]byte("short"))
				return
			}
		}
		fs.ServeHTTP(w, r)
	}))
	defer srv.Close()
	h, err := NewHTTPRepo(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.Backoff = time.Millisecond
	dst := filepath.Join(t.TempDir(), "dst")
	if err := applyTo(t, img, h, dst, ApplyOptions{Workers: 1}); err != nil {
		t.Fatalf("Apply over a flaky server: %v", err)
	}
	got, _ := os.ReadFile(dst)
	if !bytes.Equal(got, data) {
		t.Errorf("applied bytes differ from the source")
	}
}

func TestHTTPErrorOutlivesRetries(t *testing.T) {
	repo, img := rawImage(t, testData(256<<10), 64<<10)
	var chunkGets atomic.Int32
	fs := http.FileServer(http.Dir(repo))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/chunks/") {
			chunkGets.Add(1)
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		fs.ServeHTTP(w, r)
	}))
	defer srv.Close()
	h, _ := NewHTTPRepo(srv.URL, nil)
	h.Backoff, h.Attempts = time.Millisecond, 3
	err := applyTo(t, img, h, filepath.Join(t.TempDir(), "dst"), ApplyOptions{Workers: 1})
	if err == nil || !strings.Contains(err.Error(), "502") || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Errorf("Apply = %v, want an error naming the 502 and the attempts", err)
	}
	if n := chunkGets.Load(); n != 3 {
		t.Errorf("chunk GETs = %d, want 3 (one chunk, three attempts, then stop)", n)
	}
}

func applyTo(t *testing.T, img *Image, repo Repo, dst string, opts ApplyOptions) error {
	t.Helper()
	tg := NewTarget(dst, TargetOptions{Create: true})
	defer tg.Close()
	return tg.Apply(context.Background(), img, repo, opts)
}

func TestWriterRefusesBadData(t *testing.T) {
	data := testData(512 << 10)
	repo, img := rawImage(t, data, 64<<10)
	dst := filepath.Join(t.TempDir(), "dst")
	w := newTestWriter(t, img, dst)
	r := DirRepo(repo)
	good, err := r.Chunk(context.Background(), img.Chunks[1].Chunk, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		i    int
		b    []byte
	}{
		{"another chunk's bytes", 0, good},
		{"truncated", 1, good[:len(good)-1]},
		{"flipped bit", 1, func() []byte { b := bytes.Clone(good); b[len(b)/2] ^= 1; return b }()},
		{"garbage", 1, bytes.Repeat([]byte{0xfd}, len(good))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := w.WriteStored(tc.i, tc.b); !errors.Is(err, ErrCorrupt) {
				t.Errorf("WriteStored(%d, %s) = %v, want %v", tc.i, tc.name, err, ErrCorrupt)
			}
			if w.Has(tc.i) {
				t.Errorf("chunk %d marked written after bad data", tc.i)
			}
		})
	}
	if err := w.WriteStored(99, good); err == nil {
		t.Errorf("WriteStored(99) = nil, want an out-of-range error")
	}
	if err := w.Finish(); !errors.Is(err, ErrIncomplete) {
		t.Errorf("Finish with chunks missing = %v, want %v", err, ErrIncomplete)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, make([]byte, len(data))) {
		t.Errorf("bad data reached the target")
	}
	// Now feed every chunk, plain and stored, in reverse order.
	for i := len(img.Chunks) - 1; i >= 0; i-- {
		c := img.Chunks[i]
		if i%2 == 0 {
			plain := data[c.OffsetBytes : c.OffsetBytes+c.SizeBytes]
			if err := writePlain(w, i, plain); err != nil {
				t.Fatal(err)
			}
			continue
		}
		b, err := r.Chunk(context.Background(), c.Chunk, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteStored(i, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
		t.Errorf("target differs from the source after all chunks")
	}
}
