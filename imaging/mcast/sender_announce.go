package mcast

// sender_announce.go: announcing the session.

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/shoal-project/shoal/imaging/mcast/fresh"
	"github.com/shoal-project/shoal/imaging/mcast/wire"
)

// startAnnouncing announces from a goroutine of its own, so that the
// announces continue while the source blocks (a leader waiting for its
// download). The function returned stops them and returns their failure.
func (s *sender) startAnnouncing(ctx context.Context, p *ipv4.PacketConn) (stop func() error) {
	annCtx, cancelAnn := context.WithCancel(ctx)
	var annWG sync.WaitGroup
	annWG.Add(1)
	go func() {
		defer annWG.Done()
		if err := s.announceLoop(annCtx, p); err != nil {
			s.mu.Lock()
			s.annErr = err
			s.mu.Unlock()
		}
	}()
	return func() error {
		cancelAnn()
		annWG.Wait()
		return s.announceErr()
	}
}

func (s *sender) announceErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.annErr
}

// announceLoop announces the session every AnnounceInterval until ctx is
// done.
func (s *sender) announceLoop(ctx context.Context, p *ipv4.PacketConn) error {
	t := time.NewTicker(s.cfg.AnnounceInterval)
	defer t.Stop()
	for {
		if err := s.announce(p); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// announce sends one announce of the current state.
func (s *sender) announce(p *ipv4.PacketConn) error {
	s.mu.Lock()
	a := wire.Announce{
		ID: s.cfg.Image.ID, ManifestBytes: uint32(len(s.blob)), Chunks: uint32(s.chunks),
		BlockBytes: uint16(s.cfg.BlockBytes), GroupBlocks: uint16(s.cfg.GroupBlocks),
		ParityBlocks: uint16(s.cfg.ParityBlocks), Flags: s.annFlags,
		CursorChunk: wireChunk(s.annSent.chunk), CursorGroup: uint16(s.annSent.group),
		RateBitsPerSec: uint64(s.annRate), Data: s.cfg.Data, Name: s.cfg.Image.Manifest.Name,
	}
	s.mu.Unlock()
	return s.stamps.Do(func(st fresh.Stamp) error {
		b, err := wire.AppendAnnounce(nil, s.hdr, &a, st, s.cfg.Key)
		if err != nil {
			return err
		}
		if _, err := p.WriteTo(b, nil, udpAddr(s.cfg.Control)); err != nil {
			return fmt.Errorf("announce: %w", err)
		}
		return nil
	})
}
