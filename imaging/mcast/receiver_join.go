package mcast

// receiver_join.go: joining the sender's session: its announces, then its manifest.

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/imaging/mcast/fresh"
	"github.com/shoal-project/shoal/imaging/mcast/wire"
)

// announce handles an announce from src; r.mu is held. The first fresh
// announce of our image (of cfg.Session and from cfg.Source, when set) is
// joined; from then on only that sender's (session, address and nonce).
func (r *receiver) announce(now time.Time, h wire.Header, a wire.Announce, st fresh.Stamp, src netip.Addr) {
	if !r.joined {
		if r.cfg.ImageID != (imaging.ID{}) && imaging.ID(a.ID) != r.cfg.ImageID || r.cfg.Session != 0 && h.Session != r.cfg.Session ||
			r.cfg.Source.IsValid() && src != r.cfg.Source {
			r.stats.Foreign++
			return
		}
		if r.cfg.Name != "" && a.Name != r.cfg.Name {
			r.stats.Foreign++
			return
		}
		if int(a.BlockBytes) > wire.MaxBlockBytes || a.GroupBlocks > 128 || int64(a.ManifestBytes) > maxBlobBytes {
			r.stats.Malformed++
			return
		}
		if err := r.guard.Check(st); err != nil {
			r.stats.Refused++
			return
		}
		r.joined, r.ann, r.hdr = true, a, wire.Header{IDPrefix: h.IDPrefix, Session: h.Session}
		r.src, r.nonce = src, st.Nonce
		r.log.Info("joined session", "image", a.Name, "id", imaging.ID(a.ID), "session", h.Session, "data", a.Data, "sender", src)
		close(r.annCh)
		r.accept(now, a)
		return
	}
	if h.Session != r.hdr.Session || a.ID != r.ann.ID || src != r.src || st.Nonce != r.nonce {
		r.stats.Foreign++
		return
	}
	if err := r.guard.Check(st); err != nil {
		r.stats.Refused++
		return
	}
	r.accept(now, a)
}

// accept takes what an announce of the joined session says; r.mu is held.
func (r *receiver) accept(now time.Time, a wire.Announce) {
	r.heard = now
	r.ann.Flags, r.ann.RateBitsPerSec = a.Flags, a.RateBitsPerSec
	if a.Flags&wire.FlagFirstPassDone != 0 && r.fpDoneAt.IsZero() {
		r.fpDoneAt = now
	}
	if a.Flags&wire.FlagSending != 0 && r.sendingAt.IsZero() {
		r.sendingAt = now
	}
	if a.Flags&wire.FlagGathering != 0 {
		r.gatherHeard = now // no data is due yet
	}
	if a.Flags&wire.FlagEnding != 0 {
		r.ending = true
	}
}

// maxBlobBytes bounds the manifest blob an announce may promise (the
// receiver holds it in memory): the largest manifest, its length and a
// signature.
const maxBlobBytes = imaging.MaxManifestBytes + 4 + 1024

// manifest checks the manifest blob and opens the sink; r.mu is held.
func (r *receiver) manifest(p *partial) {
	blob := p.buf[:p.l.storedBytes]
	bad := func(format string, a ...any) {
		r.stats.Corrupt++
		r.log.Warn("manifest blob rejected", "why", fmt.Sprintf(format, a...))
		if r.stats.Corrupt > r.cfg.MaxCorrupt {
			r.fail(fmt.Errorf("%w: the manifest failed %d times", ErrBadSender, r.stats.Corrupt))
		}
	}
	if len(blob) < 4 {
		bad("%d bytes", len(blob))
		return
	}
	n := int(binary.BigEndian.Uint32(blob))
	if n > len(blob)-4 {
		bad("manifest length %d in a blob of %d", n, len(blob))
		return
	}
	raw, sig := blob[4:4+n], blob[4+n:]
	if sha256.Sum256(raw) != r.ann.ID || r.cfg.ImageID != (imaging.ID{}) && imaging.ID(r.ann.ID) != r.cfg.ImageID {
		bad("manifest hash is not the image ID")
		return
	}
	if len(sig) == 0 {
		sig = nil
	}
	img, err := imaging.NewImage(append([]byte(nil), raw...), append([]byte(nil), sig...), r.cfg.Pub)
	if err != nil {
		// The manifest is ours (its hash is the ID) but the sender's
		// signature of it is bad (or the manifest invalid): a bad peer,
		// whose data is not worth waiting for.
		r.stats.Corrupt++
		r.fail(fmt.Errorf("%w: its manifest of image %x: %w", ErrBadSender, r.ann.ID[:8], err))
		return
	}
	if int(r.ann.Chunks) != len(img.Chunks) {
		r.fail(fmt.Errorf("announce says %d chunks, manifest has %d", r.ann.Chunks, len(img.Chunks)))
		return
	}
	if r.cfg.Name != "" && img.Manifest.Name != r.cfg.Name {
		r.fail(fmt.Errorf("manifest names image %q, want %q", img.Manifest.Name, r.cfg.Name))
		return
	}
	// Opening the target may take a while (wiping): not under the lock.
	r.opening = true
	r.mu.Unlock()
	sink, err := r.cfg.Open(img)
	r.mu.Lock()
	r.opening = false
	if err != nil {
		r.fail(fmt.Errorf("open target: %w", err))
		return
	}
	r.img, r.sink = img, sink
	r.chunks = len(img.Chunks)
	r.written = make([]bool, r.chunks)
	for i := range r.written {
		if sink.Has(i) {
			r.written[i] = true
			r.nwritten++
		}
	}
	for _, c := range img.Chunks {
		r.storedSize += c.StoredBytes
	}
	// Tell the sender what the target already holds (its scan found it),
	// so that it need not send what every receiver has.
	r.have = wire.HaveRanges(r.chunks, func(i int) bool { return r.written[i] })
	r.stats.Image = img.ID
	r.log.Info("manifest verified", "image", img.Manifest.Name, "chunks", r.chunks)
	if r.nwritten == r.chunks {
		close(r.finished)
	}
}
