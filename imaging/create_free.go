// create_free.go: the free blocks of a source's file systems, which image
// create leaves out.

package imaging

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/shoal-project/shoal/imaging/fsalloc"
	"github.com/shoal-project/shoal/internal/progress"
)

// freeExtents maps the free blocks of each partition (or of an
// unpartitioned disk) of src, as extents on the disk. A file system that
// fsalloc does not know, or will not map, is copied whole: nil for it.
func freeExtents(src io.ReaderAt, regions []Region, log *slog.Logger) ([][]Extent, error) {
	out := make([][]Extent, len(regions))
	for i, r := range regions {
		if r.Kind != RegionPartition && r.Kind != RegionDisk {
			continue
		}
		what := "the disk"
		if r.Kind == RegionPartition {
			what = fmt.Sprintf("partition %d", r.Partition)
		}
		m, err := fsalloc.Read(io.NewSectionReader(src, r.OffsetBytes, r.SizeBytes), r.SizeBytes)
		switch {
		case errors.Is(err, fsalloc.ErrUnknown):
			log.Info("image create: no file system known here: every block stored", "region", what)
			continue
		case errors.Is(err, fsalloc.ErrUnsupported):
			log.Warn("image create: every block stored", "region", what, "why", err)
			continue
		case err != nil:
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		for _, e := range m.Free {
			out[i] = append(out[i], Extent{OffsetBytes: r.OffsetBytes + e.OffsetBytes, SizeBytes: e.SizeBytes})
		}
		log.Info("image create: free blocks left out", "region", what, "fs", m.FS,
			"free", progress.Bytes(m.FreeBytes()), "of", progress.Bytes(r.SizeBytes))
	}
	return out, nil
}

// freeMask answers, for chunks asked about in disk order, which parts of
// each lie in the free extents.
type freeMask struct {
	free []Extent
	next int // the first extent that may reach a later chunk
}

// cover returns the parts of [off, off+n) inside free extents, and whether
// they make up all of it.
func (m *freeMask) cover(off, n int64) ([]Extent, bool) {
	for m.next < len(m.free) && m.free[m.next].End() <= off {
		m.next++
	}
	var parts []Extent
	var covered int64
	for _, e := range m.free[m.next:] {
		if e.OffsetBytes >= off+n {
			break
		}
		p := Extent{OffsetBytes: max(off, e.OffsetBytes)}
		p.SizeBytes = min(off+n, e.End()) - p.OffsetBytes
		parts = append(parts, p)
		covered += p.SizeBytes
	}
	return parts, covered == n
}

// appendExtent appends e to es, merging it with the last when they touch.
func appendExtent(es []Extent, e Extent) []Extent {
	if k := len(es); k > 0 && es[k-1].End() == e.OffsetBytes {
		es[k-1].SizeBytes += e.SizeBytes
		return es
	}
	return append(es, e)
}
