package mcast

// receiver_write.go: the writer pool (verify and write chunks to the sink) and finishing the sink.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/imaging/mcast/wire"
)

func (r *receiver) writeLoop(ctx context.Context) {
	for {
		var p *partial
		select {
		case <-ctx.Done():
			return
		case p = <-r.writeQ:
		}
		err := r.sink.WriteStored(p.chunk, p.buf[:p.l.storedBytes])
		r.mu.Lock()
		delete(r.writing, p.chunk)
		if len(r.free) < r.cfg.BufferChunks {
			r.free = append(r.free, p.buf)
		}
		switch {
		case err == nil:
			if !r.written[p.chunk] {
				r.written[p.chunk] = true
				r.nwritten++
				r.stats.WrittenBytes += r.img.Chunks[p.chunk].SizeBytes
				if r.nwritten == r.chunks {
					close(r.finished)
				}
			}
		case errors.Is(err, imaging.ErrCorrupt):
			r.stats.Corrupt++
			r.log.Warn("chunk failed its hash; asking again", "chunk", p.chunk, "err", err)
			if r.stats.Corrupt > r.cfg.MaxCorrupt {
				r.fail(fmt.Errorf("%w: %d chunks failed their hash (last: %v)", ErrBadSender, r.stats.Corrupt, err))
			}
		default:
			r.fail(fmt.Errorf("write chunk %d: %w", p.chunk, err))
		}
		r.mu.Unlock()
	}
}

// finish writes the table and tells the sender.
func (r *receiver) finish(ctx context.Context) error {
	if err := r.sink.Finish(); err != nil {
		r.sendStatus(wire.StateFailed)
		return fmt.Errorf("finish: %w", err)
	}
	for i := range 3 {
		r.sendStatus(wire.StateDone)
		if i < 2 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}
