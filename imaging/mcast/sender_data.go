package mcast

// sender_data.go: a job's datagrams: parity encoded, blocks framed, handed to the pacer.

import (
	"context"
	"fmt"

	"github.com/shoal-project/shoal/imaging/mcast/wire"
)

// sendJob builds the job's datagrams and sends them, paced.
func (s *sender) sendJob(ctx context.Context, out *output, j job, stored []byte) error {
	l := s.layout(j.key.chunk)
	if len(stored) != l.storedBytes {
		return fmt.Errorf("chunk %d: source gave %d bytes, manifest says %d", j.key.chunk, len(stored), l.storedBytes)
	}
	kd := l.groupData(j.key.group)
	var parity [][]byte
	for _, sh := range j.shards {
		if sh >= kd {
			if p, ok := s.parity.get(j.key); ok {
				parity = p
				break
			}
			pad := make([]byte, l.blockBytes)
			shards := groupShards(l, stored, j.key.group, pad)
			enc, err := s.codecs.get(kd)
			if err != nil {
				return err
			}
			parity = make([][]byte, kd)
			for i := range parity {
				parity[i] = make([]byte, l.blockBytes)
			}
			if err := enc.Encode(append(shards, parity...)); err != nil {
				return fmt.Errorf("chunk %d group %d: parity: %w", j.key.chunk, j.key.group, err)
			}
			s.parity.put(j.key, parity)
			break
		}
	}
	var flags uint8
	if j.firstPass {
		flags = wire.DataFirstPass
	}
	var dataBytes int64
	for _, sh := range j.shards {
		d := wire.Data{Chunk: wireChunk(j.key.chunk), Group: uint16(j.key.group), Shard: uint16(sh), Flags: flags}
		if sh < kd {
			off := l.offset(j.key.group, sh)
			d.Block = stored[off : off+l.blockLen(j.key.group, sh)]
		} else {
			d.Block = parity[sh-kd]
		}
		dataBytes += int64(len(d.Block))
		d.Seq = out.seq
		out.seq++
		if err := out.add(ctx, wire.AppendData(out.buf(), s.hdr, &d)); err != nil {
			return err
		}
	}
	if err := out.flush(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	s.stats.DataBytes += dataBytes
	if j.firstPass {
		s.stats.FirstPassBytes += dataBytes
	} else {
		s.stats.RepairBytes += dataBytes
	}
	s.stats.SentBytes, s.stats.Datagrams = out.sentBytes, out.datagrams
	s.mu.Unlock()
	return nil
}
