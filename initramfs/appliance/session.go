package appliance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/imaging/mcast/fresh"
	"github.com/shoal-project/shoal/imaging/session"
	"github.com/shoal-project/shoal/netboot/api"
	"github.com/shoal-project/shoal/partition"
)

// Session is the Reimager with peers (imaging/session): the node listens
// for a leader already downloading the image and follows it, or leads
// (downloads from the server and multicasts to whoever asks); it falls
// back to the server when the multicast fails. The target passes the same
// checks as SingleNode's (partition.OpenTarget with the boot medium
// excluded) before anything is written, and every chunk is verified.
func Session(ctx context.Context, j Job) (Result, error) {
	if j.SessionKey == nil {
		// No credential, or one without a session key: no peers.
		if j.Log != nil {
			j.Log.Warn("no peer session key in this boot's credential: writing from the repository alone")
		}
		return SingleNode(ctx, j)
	}
	// The session's freshness stamps use the server's clock, as every
	// node learns it from the repository's answers (the machines' own
	// clocks may be minutes apart).
	clock := fresh.NewServerClock()
	repo, err := imaging.NewHTTPRepo(j.Repo, &http.Client{Transport: clock.Transport(imaging.NewTransport())})
	if err != nil {
		return Result{}, fmt.Errorf("repository %s: %w", j.Repo, err)
	}
	// A missing image or a bad signature is final: say so now rather
	// than after the session's server retries.
	pre, pub, err := loadTrusted(ctx, repo, j)
	if err != nil && (finalLoadErr(err) || errors.Is(err, ErrNoKey)) {
		return Result{}, fmt.Errorf("load image %s from %s: %w; the disk was not touched", j.Name, j.Repo, err)
	}
	if err == nil {
		if err := checkImageID(j, pre.ID); err != nil {
			return Result{}, err
		}
	} else { // the session retries the server and checks with this key
		pub = j.Pub
		if j.Insecure {
			pub = nil
		}
	}
	c := session.Config{Server: repo, Name: j.Name, Pub: pub, Relay: j.Relay, Logger: j.Log,
		RateBitsPerSec: j.RateBitsPerSec, Linger: j.Linger, Key: j.SessionKey, Clock: clock.Now}
	if j.Iface != "" {
		if c.Iface, err = net.InterfaceByName(j.Iface); err != nil {
			return Result{}, fmt.Errorf("interface %s: %w", j.Iface, err)
		}
	}
	tg := imaging.NewTarget(j.Disk, imaging.TargetOptions{Checks: partition.TargetOptions{BootDevices: j.Boot}, NoReuse: j.NoReuse, Logger: j.Log})
	var (
		mu   sync.Mutex
		w    *imaging.Writer
		img  *imaging.Image
		role string
	)
	c.Open = func(im *imaging.Image) (*imaging.Writer, error) {
		if err := checkImageID(j, im.ID); err != nil {
			return nil, err
		}
		ww, err := tg.Open(im)
		if err != nil {
			if !tg.Opened() {
				return nil, fmt.Errorf("image %s (needs %d bytes) on %s: %w", j.Name, im.Requirements().MinSizeBytes, j.Disk, err)
			}
			return nil, err
		}
		mu.Lock()
		w, img = ww, im
		mu.Unlock()
		if j.Log != nil {
			j.Log.Info("writing", "image", j.Name, "id", im.ID.String(), "disk", j.Disk, "dataBytes", im.Manifest.DataBytes)
		}
		return ww, nil
	}
	c.Progress = func(s session.Status) {
		mu.Lock()
		ww, im := w, img
		mu.Unlock()
		if j.Progress == nil || ww == nil {
			return
		}
		src := "server"
		switch {
		case s.BytesFromPeers > 0 && s.BytesFromServer > 0:
			src = "peer+server"
		case s.BytesFromPeers > 0:
			src = "peer"
		}
		state := api.StateWriting
		switch {
		case s.Role == session.RoleListening:
			state = api.StateListening
		case s.Role == session.RoleLeader && s.Chunks > 0 && s.ChunksDone == s.Chunks:
			// The image is written and verified; the machine stays to
			// multicast it to peers (linger) before it reports done.
			state = api.StateServing
		}
		// The console's last line names the role the node played, not
		// "done".
		mu.Lock()
		if s.Role != session.RoleDone && s.Role != session.RoleFailed {
			role = s.Role
		}
		r := role
		mu.Unlock()
		j.Progress(Progress{State: state, Role: api.Role(r), Source: src, BytesDone: ww.WrittenBytes() + ww.Scanned().PresentBytes,
			BytesTotal: im.Manifest.DataBytes, FromPeers: s.BytesFromPeers, FromServer: s.BytesFromServer})
	}
	st, err := session.Run(ctx, c)
	mu.Lock()
	defer mu.Unlock()
	if cerr := tg.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if !tg.Opened() {
			return Result{}, fmt.Errorf("image %s from %s: %w; %s", j.Name, j.Repo, err, tg.Outcome())
		}
		return Result{}, fmt.Errorf("write image %s to %s: %w; %s", j.Name, j.Disk, err, tg.Outcome())
	}
	if j.Log != nil {
		j.Log.Info("session done", "role", st.Role, "chunks", st.Chunks, "fromServer", st.BytesFromServer, "fromPeers", st.BytesFromPeers,
			"toPeers", st.BytesToPeers, "led", st.Led, "takeovers", st.Takeovers, "fallbacks", st.Fallbacks)
	}
	if role == "" || role == session.RoleListening {
		role = session.RoleFollower
		if st.Led > 0 {
			role = session.RoleLeader
		}
	}
	return Result{ImageID: img.ID.String()[:16], BytesTotal: img.Manifest.DataBytes, Verified: pub != nil,
		Role: api.Role(role), FromPeers: st.BytesFromPeers, FromServer: st.BytesFromServer,
		OnDiskChunks: tg.Scanned().PresentChunks, OnDiskBytes: tg.Scanned().PresentBytes}, nil
}
