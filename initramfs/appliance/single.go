package appliance

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/netboot/api"
	"github.com/shoal-project/shoal/partition"
)

// SingleNode is the Reimager without peers: the manifest and every chunk
// from the repository over HTTP (imaging.HTTPRepo), verified and written
// through an imaging.Target, checked by partition.OpenTarget (never the
// boot medium, a mounted disk or one too small), the partition table
// last. Nothing is written when the image cannot be loaded or the disk
// fails a check.
func SingleNode(ctx context.Context, j Job) (Result, error) {
	repo, err := imaging.NewHTTPRepo(j.Repo, nil)
	if err != nil {
		return Result{}, fmt.Errorf("repository %s: %w", j.Repo, err)
	}
	img, pub, err := loadTrusted(ctx, repo, j)
	if err != nil {
		return Result{}, fmt.Errorf("load image %s from %s: %w; the disk was not touched", j.Name, j.Repo, err)
	}
	if err := checkImageID(j, img.ID); err != nil {
		return Result{}, err
	}
	tg := imaging.NewTarget(j.Disk, imaging.TargetOptions{Checks: partition.TargetOptions{BootDevices: j.Boot}, NoReuse: j.NoReuse, Logger: j.Log})
	w, err := tg.Open(img)
	if err != nil {
		tg.Close()
		return Result{}, fmt.Errorf("image %s (needs %d bytes) on %s: %w; %s", j.Name, img.Requirements().MinSizeBytes, j.Disk, err, tg.Outcome())
	}
	total := img.Manifest.DataBytes
	scan := tg.Scanned()
	var fromServer int64
	for _, c := range img.Chunks {
		if !w.Has(c.Index) {
			fromServer += c.StoredBytes
		}
	}
	var done atomic.Int64
	done.Store(scan.PresentBytes)
	progress := func(n int64) {
		d := done.Add(n)
		if j.Progress != nil {
			j.Progress(Progress{State: api.StateWriting, Role: api.RoleServer, Source: "server", BytesDone: d, BytesTotal: total, FromServer: d - scan.PresentBytes})
		}
	}
	if j.Log != nil {
		j.Log.Info("applying", "image", j.Name, "id", img.ID.String(), "disk", j.Disk, "dataBytes", total, "onDiskBytes", scan.PresentBytes)
	}
	err = imaging.Fetch(ctx, w, repo, img.Chunks, imaging.ApplyOptions{Progress: progress})
	if err == nil {
		err = w.Finish()
	}
	if cerr := tg.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Result{}, fmt.Errorf("write image %s to %s: %w; %s", j.Name, j.Disk, err, tg.Outcome())
	}
	return Result{ImageID: img.ID.String()[:16], BytesTotal: total, Verified: pub != nil,
		Role: api.RoleServer, FromServer: fromServer, OnDiskChunks: scan.PresentChunks, OnDiskBytes: scan.PresentBytes}, nil
}
