package mcast

// Tests of what a receiver trusts: the image ID it was given, the key, the
// sender's signature.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/internal/imagetest"
	"github.com/shoal-project/shoal/internal/netlab"
	"github.com/shoal-project/shoal/internal/netlabtest"
)

// signedTestImage makes an image named "test" of random data, signed by
// priv, in its own repository.
func signedTestImage(t *testing.T, sizeBytes, chunkBytes int64, priv ed25519.PrivateKey) (string, imaging.Repo, *imaging.Image) {
	t.Helper()
	im := imagetest.New(t, imagetest.Options{SizeBytes: sizeBytes, ChunkBytes: chunkBytes, SignKey: priv})
	return im.Src, im.Repo, im.Image
}

// A rogue sender of another image of the same name (and, with the site's
// key, an older image signed by the site: a rollback) speaks first on the
// same groups, slowly, so that its data overlaps the session: the receiver, given the right image's ID, joins only the
// right sender and writes exactly its image; without the key the rogue's
// announces are refused, with it they are another image's.
func TestRogueSender(t *testing.T) {
	netlabtest.RequireRoot(t)
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	src, repo, img := signedTestImage(t, 4<<20, 1<<20, priv)
	for _, tc := range []struct {
		name   string
		rogueK []byte // nil: no key
	}{{"no key", nil}, {"older image signed by the site, with the key", testKey}} {
		t.Run(tc.name, func(t *testing.T) {
			_, rogueRepo, rogueImg := signedTestImage(t, 4<<20, 1<<20, priv)
			rogue := func(ctx context.Context, n *netlab.Node, _ *imaging.Image) error {
				c, _, err := listenIn(n, DefaultControl)
				if err != nil {
					return err
				}
				defer c.Close()
				_, err = Send(ctx, c, SenderConfig{Image: rogueImg, Source: RepoSource{rogueRepo, rogueImg},
					Key: tc.rogueK, Quiet: true, RateBitsPerSec: 20e6, MaxWait: 30 * time.Second})
				if errors.Is(err, context.Canceled) {
					return nil
				}
				return err
			}
			st, res := runSession(t, img, repo, sessionSpec{rateBitsPerSec: 100e6, rx: []rxSpec{{}}, pub: pub,
				garbage: rogue, senderDelay: 500 * time.Millisecond})
			checkAll(t, src, res)
			t.Logf("sender %+v", st)
			rs := res[0].stats
			if rs.Image != img.ID {
				t.Errorf("received image %s, want %s", rs.Image, img.ID)
			}
			if tc.rogueK == nil && rs.Refused == 0 {
				t.Errorf("receiver refused no unauthenticated datagram (%+v): the rogue was not heard", rs)
			}
			if rs.Foreign == 0 {
				t.Errorf("receiver counted no foreign datagram (%+v): the rogue was not heard", rs)
			}
		})
	}
}

// A sender whose manifest is the right one but whose signature is forged
// is a bad sender, left at once: ErrBadSender, and the target never
// opened.
func TestForgedSignature(t *testing.T) {
	netlabtest.RequireRoot(t)
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	_, repo, img := signedTestImage(t, 4<<20, 1<<20, priv)
	forged := *img
	forged.Sig = make([]byte, ed25519.SignatureSize)
	if _, err := rand.Read(forged.Sig); err != nil {
		t.Fatal(err)
	}
	_, res := runSession(t, img, repo, sessionSpec{rateBitsPerSec: 100e6, rx: []rxSpec{{}}, pub: pub, sendImage: &forged})
	if !errors.Is(res[0].err, ErrBadSender) {
		t.Errorf("Receive() from a sender with a forged signature = %v, want ErrBadSender", res[0].err)
	}
	if _, err := os.Stat(res[0].path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("target %s: %v; want it never created", res[0].path, err)
	}
}

// An empty (not nil) key is refused by both sides.
func TestEmptyKey(t *testing.T) {
	img := &imaging.Image{}
	if _, err := Send(context.Background(), nil, SenderConfig{Image: img, Key: []byte{}}); err == nil {
		t.Errorf("Send with an empty key = nil error")
	}
	if _, err := Receive(context.Background(), nil, ReceiverConfig{Key: []byte{}}); err == nil {
		t.Errorf("Receive with an empty key = nil error")
	}
}
