package imaging

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/imaging/sign"
	"github.com/shoal-project/shoal/internal/atomicfile"
	"github.com/shoal-project/shoal/partition"
)

// CreateOptions tunes Create.
type CreateOptions struct {
	// ChunkSizeBytes is the logical chunk size (default 4 MiB).
	ChunkSizeBytes int64
	// SignKey, when set, signs the manifest.
	SignKey ed25519.PrivateKey
	// Grow picks the partition that grows on a larger target: "auto" (the
	// default: the last partition, when it reaches the end of the source's
	// usable space), "none", or a partition number.
	Grow string
	// Workers hash and compress chunks in parallel (default: one per CPU).
	Workers int
	// Progress, when set, is called with the source bytes of each chunk read.
	Progress func(bytes int64)
	// Codec compresses the chunks (default NewCodec(CreateLevel)).
	Codec *Codec
	// Log gets one line per damaged chunk found and replaced and one per
	// partition whose free blocks are left out (default slog.Default()).
	Log *slog.Logger
	// AllBlocks stores every block of every partition, as for a file
	// system this shoal does not know, rather than leave out the blocks
	// that an ext2/3/4 or FAT file system does not use.
	AllBlocks bool
}

// CreateLevel is the zstd level Create compresses with by default: better
// than zstd's default (about its level 7 rather than 3). An image is
// compressed once and sent to every LAN and written by every machine, whose
// decoding costs the same at any level, so the extra CPU of create buys
// bytes that every transfer saves.
const CreateLevel = zstd.SpeedBetterCompression

// CreateStats says what Create did.
type CreateStats struct {
	SourceBytes    int64 // bytes of the source read
	NewChunks      int   // chunks added to the repository
	NewStoredBytes int64 // their compressed size
	// RepairedChunks counts chunk files the repository held that did not
	// decode to their name (damaged) and were written again.
	RepairedChunks int
	// FreeBytes counts the bytes of free blocks left out: not read, not
	// stored (whole chunks), or stored as zeros (within a chunk).
	FreeBytes int64
}

// Create reads the disk (image file or block device) at src and writes
// image name to the repository in directory repoDir: new chunks under
// chunks/, each fsynced, then the manifest and then its signature under
// images/NAME/, each with atomicfile.Write.
func Create(ctx context.Context, src, repoDir, name string, opts CreateOptions) (*Image, CreateStats, error) {
	var stats CreateStats
	if err := ValidName(name); err != nil {
		return nil, stats, err
	}
	if opts.ChunkSizeBytes == 0 {
		opts.ChunkSizeBytes = DefaultChunkBytes
	}
	if opts.ChunkSizeBytes < MinChunkBytes || opts.ChunkSizeBytes > MaxChunkBytes || opts.ChunkSizeBytes%4096 != 0 {
		return nil, stats, fmt.Errorf("chunk size %d: want a multiple of 4096 between %d and %d", opts.ChunkSizeBytes, MinChunkBytes, MaxChunkBytes)
	}
	if opts.Codec == nil {
		opts.Codec = NewCodec(CreateLevel)
	}
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	f, sizeBytes, sectorBytes, err := openSource(src)
	if err != nil {
		return nil, stats, err
	}
	defer f.Close()
	layout, err := partition.ReadLayout(f, sizeBytes, sectorBytes)
	if err != nil {
		return nil, stats, fmt.Errorf("source %s: %w", src, err)
	}
	if err := chooseGrow(layout, opts.Grow); err != nil {
		return nil, stats, err
	}
	regions := planRegions(layout, sizeBytes)
	if err := os.MkdirAll(filepath.Join(repoDir, "images", name), 0o755); err != nil {
		return nil, stats, fmt.Errorf("repository %s: %w", repoDir, err)
	}
	var free [][]Extent
	if !opts.AllBlocks {
		if free, err = freeExtents(f, regions, log); err != nil {
			return nil, stats, fmt.Errorf("source %s: %w", src, err)
		}
	}
	chunked, st, err := chunkRegions(ctx, f, repoDir, regions, free, opts)
	stats = st
	if err != nil {
		return nil, stats, fmt.Errorf("source %s: %w", src, err)
	}
	serial, err := nextSerial(repoDir, name, log)
	if err != nil {
		return nil, stats, err
	}
	m := &Manifest{
		Version:        MinFormatVersion,
		Name:           name,
		Serial:         serial,
		DiskSizeBytes:  sizeBytes,
		ChunkSizeBytes: opts.ChunkSizeBytes,
		Table:          *layout,
	}
	var dataEnd int64
	for _, r := range chunked {
		if r.Kind == RegionGap && len(r.Chunks) == 0 {
			continue // zeros outside partitions are not recorded
		}
		m.Regions = append(m.Regions, r)
		if len(r.Free) > 0 {
			m.Version = FormatVersion
		}
		dataEnd = max(dataEnd, r.End())
		for _, c := range r.Chunks {
			m.DataBytes += c.SizeBytes
			m.StoredBytes += c.StoredBytes
		}
	}
	m.Target = TargetRequirements{
		MinSizeBytes:       min(layout.MinDiskBytes(dataEnd), sizeBytes),
		LogicalSectorBytes: sectorBytes,
		Table:              layout.Table,
	}
	m.ContentHash = m.ComputeContentHash()
	raw, err := m.Marshal()
	if err != nil {
		return nil, stats, err
	}
	if err := m.Validate(); err != nil {
		return nil, stats, fmt.Errorf("source %s made an invalid manifest: %w", src, err)
	}
	// The chunks are durable (each written by atomicfile). Now the
	// manifest, then its signature: a reader that finds a signature finds
	// the manifest it signs. An old signature goes first, so that for a
	// moment the image is unsigned (refused by a reader with a key), never
	// signed by a signature over other bytes.
	dir := filepath.Join(repoDir, "images", name)
	sigPath := filepath.Join(repoDir, filepath.FromSlash(SigPath(name)))
	if err := os.Remove(sigPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, stats, fmt.Errorf("remove old signature: %w", err)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return nil, stats, err
	}
	if err := writeFile(filepath.Join(repoDir, filepath.FromSlash(ManifestPath(name))), raw, atomicfile.Options{Perm: 0o644, ForcePerm: true}); err != nil {
		return nil, stats, fmt.Errorf("write manifest: %w", err)
	}
	var sig []byte
	if opts.SignKey != nil {
		sig = sign.Sign(opts.SignKey, raw)
		if err := writeFile(sigPath, sig, atomicfile.Options{Perm: 0o644, ForcePerm: true}); err != nil {
			return nil, stats, fmt.Errorf("write signature: %w", err)
		}
	}
	return &Image{Manifest: m, Raw: raw, Sig: sig, ID: ImageID(raw), Chunks: m.Chunks()}, stats, nil
}

// openSource opens a disk image file or block device for reading and
// returns its size and logical sector size.
func openSource(path string) (*os.File, int64, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("open source: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, 0, fmt.Errorf("source %s: %w", path, err)
	}
	switch {
	case st.Mode().IsRegular():
		if st.Size() == 0 || st.Size()%512 != 0 {
			f.Close()
			return nil, 0, 0, fmt.Errorf("source %s: size %d is not a positive multiple of 512 bytes", path, st.Size())
		}
		return f, st.Size(), 512, nil
	case st.Mode()&fs.ModeDevice != 0 && st.Mode()&fs.ModeCharDevice == 0:
		size, err := unix.IoctlGetUint64(int(f.Fd()), unix.BLKGETSIZE64)
		if err != nil {
			f.Close()
			return nil, 0, 0, fmt.Errorf("source %s: size: %w", path, err)
		}
		ssz, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET)
		if err != nil {
			f.Close()
			return nil, 0, 0, fmt.Errorf("source %s: sector size: %w", path, err)
		}
		return f, int64(size), int64(ssz), nil
	}
	f.Close()
	return nil, 0, 0, fmt.Errorf("source %s: not a regular file or block device", path)
}

// chooseGrow marks the growing partition.
func chooseGrow(l *partition.Layout, grow string) error {
	if len(l.Partitions) == 0 || grow == "none" {
		return nil
	}
	last := &l.Partitions[len(l.Partitions)-1]
	if grow == "" || grow == "auto" {
		s := l.LogicalSectorBytes
		limit := l.DiskSizeBytes
		if l.Table == partition.TableGPT {
			limit = int64(l.LastUsableLBA+1) * s
		}
		// Reaching to within 1 MiB (alignment) of the end means "fill the disk".
		last.Grow = limit-last.EndBytes(s) < 1<<20
		return nil
	}
	n, err := strconv.Atoi(grow)
	if err != nil {
		return fmt.Errorf("grow %q: want auto, none or a partition number", grow)
	}
	if last.Number != n {
		return fmt.Errorf("grow %d: only the last partition on the disk (%d) can grow", n, last.Number)
	}
	last.Grow = true
	return nil
}

// planRegions lists the regions of a source: the whole disk when it has no
// table; else the boot code, each partition, and the gaps between them that
// the table does not own.
func planRegions(l *partition.Layout, sizeBytes int64) []Region {
	if l.Table == partition.TableNone {
		return []Region{{Kind: RegionDisk, OffsetBytes: 0, SizeBytes: sizeBytes}}
	}
	s := l.LogicalSectorBytes
	var rs []Region
	rs = append(rs, Region{Kind: RegionBoot, OffsetBytes: 0, SizeBytes: partition.BootCodeBytes})
	// Everything else that is neither table nor partition is a gap.
	taken := l.TableExtents(sizeBytes)
	taken = append(taken, partition.Extent{OffsetBytes: 0, SizeBytes: 512}) // sector 0
	for _, p := range l.Partitions {
		rs = append(rs, Region{Kind: RegionPartition, Partition: p.Number, OffsetBytes: p.StartBytes(s), SizeBytes: p.SizeBytes})
		taken = append(taken, partition.Extent{OffsetBytes: p.StartBytes(s), SizeBytes: p.SizeBytes})
	}
	sort.Slice(taken, func(i, j int) bool { return taken[i].OffsetBytes < taken[j].OffsetBytes })
	var pos int64
	for _, e := range taken {
		if e.OffsetBytes > pos {
			rs = append(rs, Region{Kind: RegionGap, OffsetBytes: pos, SizeBytes: e.OffsetBytes - pos})
		}
		pos = max(pos, e.End())
	}
	if pos < sizeBytes {
		rs = append(rs, Region{Kind: RegionGap, OffsetBytes: pos, SizeBytes: sizeBytes - pos})
	}
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].OffsetBytes < rs[j].OffsetBytes })
	return rs
}

type createJob struct {
	region int
	seq    int
	off    int64
	buf    *[]byte
}

type createResult struct {
	region int
	seq    int
	chunk  Chunk
	zero   bool
}

// chunkRegions reads the regions, stores their non-zero chunks and fills in
// each region's chunk list. free[i], when given, lists region i's free
// extents: a chunk wholly inside them is neither read nor stored but
// becomes one of the region's free extents; within a chunk their bytes
// are stored as zeros.
func chunkRegions(ctx context.Context, src io.ReaderAt, repoDir string, regions []Region, free [][]Extent, opts CreateOptions) ([]Region, CreateStats, error) {
	var stats CreateStats
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	bufs := make(chan *[]byte, workers+2)
	for range workers + 2 {
		b := make([]byte, opts.ChunkSizeBytes)
		bufs <- &b
	}
	g, ctx := errgroup.WithContext(ctx)
	jobs := make(chan createJob, workers)
	results := make(chan createResult, workers)
	var mu sync.Mutex
	freeChunks := make([][]Extent, len(regions))
	g.Go(func() error {
		defer close(jobs)
		seq := 0
		for ri, r := range regions {
			var mask freeMask
			if ri < len(free) {
				mask.free = free[ri]
			}
			for off := r.OffsetBytes; off < r.End(); off += opts.ChunkSizeBytes {
				n := min(opts.ChunkSizeBytes, r.End()-off)
				inside, whole := mask.cover(off, n)
				if whole {
					mu.Lock()
					stats.FreeBytes += n
					freeChunks[ri] = appendExtent(freeChunks[ri], Extent{OffsetBytes: off, SizeBytes: n})
					mu.Unlock()
					if opts.Progress != nil {
						opts.Progress(n)
					}
					continue
				}
				var bp *[]byte
				select {
				case bp = <-bufs:
				case <-ctx.Done():
					return ctx.Err()
				}
				b := (*bp)[:n]
				if _, err := src.ReadAt(b, off); err != nil {
					return fmt.Errorf("read at offset %d: %w", off, err)
				}
				for _, e := range inside {
					clear(b[e.OffsetBytes-off : e.End()-off])
					mu.Lock()
					stats.FreeBytes += e.SizeBytes
					mu.Unlock()
				}
				*bp = b
				select {
				case jobs <- createJob{ri, seq, off, bp}:
				case <-ctx.Done():
					return ctx.Err()
				}
				seq++
			}
		}
		return nil
	})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		g.Go(func() error {
			defer wg.Done()
			var out []byte
			for j := range jobs {
				b := *j.buf
				res := createResult{region: j.region, seq: j.seq}
				if isZero(b) {
					res.zero = true
				} else {
					h := Hash(sha256.Sum256(b))
					stored, state, err := storeChunk(repoDir, h, b, opts.Codec, &out)
					if err != nil {
						return fmt.Errorf("store chunk at offset %d: %w", j.off, err)
					}
					res.chunk = Chunk{OffsetBytes: j.off, SizeBytes: int64(len(b)), StoredBytes: stored, Hash: h}
					if state == chunkRepaired {
						log.Warn("image create: damaged chunk in the repository written again", "chunk", h.String(), "offset", j.off, "repo", repoDir)
					}
					if state != chunkReused {
						mu.Lock()
						stats.NewChunks++
						stats.NewStoredBytes += stored
						if state == chunkRepaired {
							stats.RepairedChunks++
						}
						mu.Unlock()
					}
				}
				n := int64(len(b))
				*j.buf = (*j.buf)[:cap(*j.buf)]
				bufs <- j.buf
				if opts.Progress != nil {
					opts.Progress(n)
				}
				mu.Lock()
				stats.SourceBytes += n
				mu.Unlock()
				select {
				case results <- res:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		})
	}
	go func() {
		wg.Wait()
		close(results)
	}()
	byRegion := make([][]createResult, len(regions))
	for r := range results {
		if !r.zero {
			byRegion[r.region] = append(byRegion[r.region], r)
		}
	}
	if err := g.Wait(); err != nil {
		return nil, stats, err
	}
	out := make([]Region, len(regions))
	for i, r := range regions {
		rs := byRegion[i]
		sort.Slice(rs, func(a, b int) bool { return rs[a].seq < rs[b].seq })
		r.Chunks = make([]Chunk, 0, len(rs))
		for _, x := range rs {
			r.Chunks = append(r.Chunks, x.chunk)
		}
		r.Free = freeChunks[i]
		out[i] = r
	}
	return out, stats, nil
}

// chunkState says what storeChunk found and did.
type chunkState int

const (
	chunkReused   chunkState = iota // the repository's file decoded to the chunk
	chunkNew                        // no file: written
	chunkRepaired                   // a file that did not decode to the chunk: written again
)

// storeChunk writes plain's compressed form under its hash and returns its
// stored size. A file already there is reused only when it decodes to
// plain's hash: one that does not (a damaged disk, a cut-short copy) is
// written again, so a new manifest never names a damaged chunk.
func storeChunk(repoDir string, h Hash, plain []byte, codec *Codec, scratch *[]byte) (int64, chunkState, error) {
	path := filepath.Join(repoDir, filepath.FromSlash(ChunkPath(h)))
	state := chunkNew
	if old, err := readFileMax(path, MaxStoredBytes(int64(len(plain)))); err == nil {
		c := Chunk{SizeBytes: int64(len(plain)), StoredBytes: int64(len(old)), Hash: h}
		out, err := codec.Decode((*scratch)[:0], old, c)
		*scratch = out[:0]
		if err == nil {
			return int64(len(old)), chunkReused, nil
		}
		state = chunkRepaired
	} else if !errors.Is(err, fs.ErrNotExist) {
		state = chunkRepaired // unreadable or too long: replace it
	}
	z, err := codec.Compress((*scratch)[:0], plain)
	if err != nil {
		return 0, state, err
	}
	*scratch = z
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return 0, state, err
		}
		// The new folder's own entry must be durable too.
		if err := atomicfile.SyncDir(filepath.Dir(dir)); err != nil {
			return 0, state, err
		}
	}
	if err := writeFile(path, z, atomicfile.Options{Perm: 0o644, ForcePerm: true}); err != nil {
		return 0, state, err
	}
	return int64(len(z)), state, nil
}

// writeFile is atomicfile.Write; tests watch the order of writes through it.
var writeFile = atomicfile.Write
