package imaging

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/partition"
)

// CommitBytes is the writer's commit region: chunks that lie in the
// first CommitBytes of the disk (boot code, a boot sector or file system
// superblock of an image without a partition table) are held in memory
// and written by Finish, after every other chunk is flushed, just before
// the partition table.
const CommitBytes = 1 << 20

// ErrIncomplete is returned by Finish when chunks are missing.
var ErrIncomplete = errors.New("image incomplete")

// Writer puts an image on a target in any order: each chunk is verified
// against the manifest before it is written. What makes the disk look
// whole is written last, by Finish, once every other chunk is on the
// disk: the chunks in the commit region (the first CommitBytes, held in
// memory until then), then the partition table. An interrupted write so
// leaves neither a table nor a boot sector or superblock, with a table or
// without. It is safe for concurrent use.
type Writer struct {
	img   *Image
	t     *partition.Target
	codec *Codec
	plain sync.Pool // *[]byte of chunk size

	mu        sync.Mutex
	held      map[int][]byte // verified chunks of the commit region, by index
	have      []bool
	remaining int
	written   atomic.Int64
	table     atomic.Bool // the partition table is written (Finish succeeded)
	scan      ScanStats   // what Scan found on the target
}

// NewWriter prepares t for img: it wipes the old partition tables at both
// ends of t, zeroes the parts of the image's regions that hold no chunk and
// discards their free blocks (the file system does not use them: they are
// left as they are where the target cannot discard).
// t must have passed partition.OpenTarget's checks for img.Requirements().
func NewWriter(img *Image, t *partition.Target, codec *Codec) (*Writer, error) {
	if codec == nil {
		codec = NewCodec(0)
	}
	w := &Writer{img: img, t: t, codec: codec, held: map[int][]byte{}, have: make([]bool, len(img.Chunks)), remaining: len(img.Chunks)}
	if t.Created {
		// A new sparse file reads as zeros everywhere.
		return w, nil
	}
	if err := t.Wipe(); err != nil {
		return nil, err
	}
	for _, r := range img.Manifest.Regions {
		if err := prepareRegion(t, r); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// Image returns the image being written.
func (w *Writer) Image() *Image { return w.img }

// Has reports whether chunk i is on the disk.
func (w *Writer) Has(i int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return i >= 0 && i < len(w.have) && w.have[i]
}

// Remaining returns the number of chunks not yet written.
func (w *Writer) Remaining() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.remaining
}

// Missing returns the indexes of the chunks not yet written.
func (w *Writer) Missing() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []int
	for i, h := range w.have {
		if !h {
			out = append(out, i)
		}
	}
	return out
}

// WrittenBytes returns the uncompressed bytes written so far.
func (w *Writer) WrittenBytes() int64 { return w.written.Load() }

func (w *Writer) ref(i int) (ChunkRef, error) {
	if i < 0 || i >= len(w.img.Chunks) {
		return ChunkRef{}, fmt.Errorf("chunk %d: out of range (image has %d)", i, len(w.img.Chunks))
	}
	return w.img.Chunks[i], nil
}

// WriteStored decodes chunk i's stored bytes, verifies them and writes them.
// Stored bytes that do not verify wrap ErrCorrupt and write nothing. A chunk
// already written is not written again.
func (w *Writer) WriteStored(i int, stored []byte) error {
	ref, err := w.ref(i)
	if err != nil {
		return err
	}
	if w.Has(i) {
		return nil
	}
	if ref.OffsetBytes >= CommitBytes {
		if done, err := w.writeRaw(ref, stored); done {
			return err
		}
	}
	bp, _ := w.plain.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, 0, w.img.Manifest.ChunkSizeBytes)
		bp = &b
	}
	defer w.plain.Put(bp)
	plain, err := w.codec.Decode((*bp)[:0], stored, ref.Chunk)
	*bp = plain[:0]
	if err != nil {
		return fmt.Errorf("chunk %d: %w", i, err)
	}
	return w.write(ref, plain)
}

func (w *Writer) write(ref ChunkRef, plain []byte) error {
	if ref.OffsetBytes < CommitBytes {
		// Commit region: kept (plain is the caller's or a pooled
		// buffer) and written by Finish.
		w.mu.Lock()
		if !w.have[ref.Index] {
			w.held[ref.Index] = bytes.Clone(plain)
			w.have[ref.Index] = true
			w.remaining--
			w.written.Add(ref.SizeBytes)
		}
		w.mu.Unlock()
		return nil
	}
	return w.writeParts(ref, [][]byte{plain})
}

// writeParts writes the verified chunk ref, whose bytes are parts in
// order, to the target, beyond the commit region.
func (w *Writer) writeParts(ref ChunkRef, parts [][]byte) error {
	off := ref.OffsetBytes
	for _, p := range parts {
		if _, err := w.t.File.WriteAt(p, off); err != nil {
			return fmt.Errorf("write chunk %d at offset %d of %s: %w", ref.Index, off, w.t.Path, err)
		}
		off += int64(len(p))
	}
	// Start writeback now, so the device writes while the next chunks are
	// decoded and the final flush has little left to do. Best effort: the
	// flush in Finish is what makes the data durable.
	_ = unix.SyncFileRange(int(w.t.File.Fd()), ref.OffsetBytes, off-ref.OffsetBytes, unix.SYNC_FILE_RANGE_WRITE)
	w.mu.Lock()
	if !w.have[ref.Index] {
		w.have[ref.Index] = true
		w.remaining--
		w.written.Add(ref.SizeBytes)
	}
	w.mu.Unlock()
	return nil
}

// Finish flushes the chunks and then writes the partition table. It fails
// with ErrIncomplete, writing no table, while any chunk is missing.
func (w *Writer) Finish() error {
	if n := w.Remaining(); n > 0 {
		return fmt.Errorf("%w: %d of %d chunks missing; no partition table written", ErrIncomplete, n, len(w.have))
	}
	if err := w.t.File.Sync(); err != nil {
		return fmt.Errorf("flush %s: %w", w.t.Path, err)
	}
	// Every other chunk is verified and on the disk: now the commit
	// region, flushed, then the table.
	w.mu.Lock()
	held := make([]int, 0, len(w.held))
	for i := range w.held {
		held = append(held, i)
	}
	w.mu.Unlock()
	sort.Ints(held)
	for _, i := range held {
		ref := w.img.Chunks[i]
		w.mu.Lock()
		plain := w.held[i]
		w.mu.Unlock()
		if _, err := w.t.File.WriteAt(plain, ref.OffsetBytes); err != nil {
			return fmt.Errorf("write chunk %d at offset %d of %s: %w", i, ref.OffsetBytes, w.t.Path, err)
		}
	}
	if len(held) > 0 {
		if err := w.t.File.Sync(); err != nil {
			return fmt.Errorf("flush %s: %w", w.t.Path, err)
		}
	}
	if err := w.t.WriteTable(&w.img.Manifest.Table); err != nil {
		return err
	}
	w.table.Store(true)
	return nil
}

// TableWritten reports whether Finish wrote the partition table: the image
// is complete on the target.
func (w *Writer) TableWritten() bool { return w.table.Load() }

// ApplyOptions tunes Target.Apply, Fetch and Verify.
type ApplyOptions struct {
	// Workers is the number of chunks in flight (default 2 per CPU, at
	// least 4): each fetches, decodes, verifies and writes its chunk.
	Workers int
	// Progress, when set, is called with the bytes of each chunk written.
	Progress func(bytes int64)
	Codec    *Codec
}

// Fetch fetches refs from repo into w, several at a time.
func Fetch(ctx context.Context, w *Writer, repo Repo, refs []ChunkRef, opts ApplyOptions) error {
	workers := opts.Workers
	if workers <= 0 {
		workers = max(4, 2*runtime.GOMAXPROCS(0))
	}
	g, ctx := errgroup.WithContext(ctx)
	next := make(chan ChunkRef)
	g.Go(func() error {
		defer close(next)
		for _, r := range refs {
			select {
			case next <- r:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	for range workers {
		g.Go(func() error {
			var buf []byte
			for r := range next {
				if w.Has(r.Index) {
					continue
				}
				var err error
				buf, err = repo.Chunk(ctx, r.Chunk, buf[:0])
				if err != nil {
					return fmt.Errorf("chunk %d at offset %d from %s: %w", r.Index, r.OffsetBytes, repo, err)
				}
				if err := w.WriteStored(r.Index, buf); err != nil {
					return fmt.Errorf("from %s: %w", repo, err)
				}
				if opts.Progress != nil {
					opts.Progress(r.SizeBytes)
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// prepareRegion zeroes the gaps between r's chunks, except its free
// extents, which it discards.
func prepareRegion(t *partition.Target, r Region) error {
	next := r.OffsetBytes
	gap := func(end int64) error {
		err := t.Zero(partition.Extent{OffsetBytes: next, SizeBytes: end - next})
		if err != nil {
			return fmt.Errorf("region at %d: %w", r.OffsetBytes, err)
		}
		return nil
	}
	ci, fi := 0, 0
	for ci < len(r.Chunks) || fi < len(r.Free) {
		var start, end int64
		if fi == len(r.Free) || (ci < len(r.Chunks) && r.Chunks[ci].OffsetBytes < r.Free[fi].OffsetBytes) {
			start, end = r.Chunks[ci].OffsetBytes, r.Chunks[ci].OffsetBytes+r.Chunks[ci].SizeBytes
			ci++
		} else {
			e := r.Free[fi]
			start, end = e.OffsetBytes, e.End()
			fi++
			t.Discard(partition.Extent{OffsetBytes: start, SizeBytes: end - start})
		}
		if err := gap(start); err != nil {
			return err
		}
		next = end
	}
	return gap(r.End())
}
