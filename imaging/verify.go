package imaging

import (
	"context"
	"fmt"
	"runtime"

	"golang.org/x/sync/errgroup"
)

// VerifyStats says what Verify checked.
type VerifyStats struct {
	Chunks      int
	DataBytes   int64
	StoredBytes int64
}

// Verify fetches every chunk of img from repo and checks that it decodes to
// the bytes the manifest names. It stops at the first bad or missing chunk.
func Verify(ctx context.Context, img *Image, repo Repo, opts ApplyOptions) (VerifyStats, error) {
	var st VerifyStats
	codec := opts.Codec
	if codec == nil {
		codec = NewCodec(0)
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = max(4, 2*runtime.GOMAXPROCS(0))
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	// Each in-flight check holds its own buffers; the pool caps memory.
	type bufs struct{ stored, plain []byte }
	pool := make(chan *bufs, workers)
	for range workers {
		pool <- &bufs{}
	}
	for _, r := range img.Chunks {
		if gctx.Err() != nil {
			break
		}
		b := <-pool
		g.Go(func() error {
			defer func() { pool <- b }()
			var err error
			b.stored, err = repo.Chunk(gctx, r.Chunk, b.stored[:0])
			if err != nil {
				return fmt.Errorf("chunk %d at offset %d: %w", r.Index, r.OffsetBytes, err)
			}
			b.plain, err = codec.Decode(b.plain[:0], b.stored, r.Chunk)
			if err != nil {
				return fmt.Errorf("chunk %d at offset %d: %w", r.Index, r.OffsetBytes, err)
			}
			if opts.Progress != nil {
				opts.Progress(r.SizeBytes)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return st, err
	}
	if err := ctx.Err(); err != nil {
		return st, err
	}
	m := img.Manifest
	return VerifyStats{Chunks: len(img.Chunks), DataBytes: m.DataBytes, StoredBytes: m.StoredBytes}, nil
}
