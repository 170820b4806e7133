// repo.go makes the lab's image repository and compares the machines'
// disks with the image.

package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/netboot/api"
)

// imageName is the image's name in the lab's repository.
const imageName = "lab"

// stateArgs are the --state flag of the shoal commands the lab runs: the
// image is signed, and checked, with the state directory's key, which
// ./build.sh bakes into the machines' initramfs.
func (l *lab) stateArgs() []string {
	if l.cfg.State == "" {
		return nil
	}
	return []string{"--state", l.cfg.State}
}

// repository is the lab's image repository.
type repository struct {
	dir string
	// diskBytes is the size of the machines' disks: room for the image
	// to grow.
	diskBytes int64
}

// makeRepo makes the image of cfg.Image in a repository in the work
// directory.
func (l *lab) makeRepo(ctx context.Context) (repository, error) {
	r := repository{dir: filepath.Join(l.work, "repo")}
	create := []string{"image", "create", "--repo", r.dir, "--name", imageName}
	create = append(create, l.stateArgs()...)
	if l.cfg.ChunkSizeBytes > 0 {
		create = append(create, "--chunk-size", fmt.Sprint(l.cfg.ChunkSizeBytes))
	}
	if out, err := exec.CommandContext(ctx, l.cfg.Shoal, append(create, l.cfg.Image)...).CombinedOutput(); err != nil {
		return r, fmt.Errorf("lab: shoal image create: %w\n%s", err, out)
	}
	dr, err := imaging.OpenRepo(r.dir)
	if err != nil {
		return r, err
	}
	img, err := imaging.LoadImage(ctx, dr, imageName, nil)
	if err != nil {
		return r, err
	}
	l.sum.ImageBytes = img.Manifest.StoredBytes + int64(len(img.Raw))
	fi, err := os.Stat(l.cfg.Image)
	if err != nil {
		return r, fmt.Errorf("lab: image: %w", err)
	}
	r.diskBytes = max(img.Manifest.DiskSizeBytes, fi.Size())
	r.diskBytes = (r.diskBytes*3/2 + 1<<20 - 1) &^ (1<<20 - 1) // room to grow
	return r, nil
}

// checkDisks writes the image with `shoal image apply` to a file the size
// of the machines' disks and compares every machine that is done with it
// byte for byte, setting DiskMatches (or Error).
func (l *lab) checkDisks(ctx context.Context, r repository) error {
	ref := filepath.Join(l.work, "reference.img")
	defer os.Remove(ref)
	if err := makeBlank(ref, r.diskBytes); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, l.cfg.Shoal, append([]string{"image", "apply", "--repo", r.dir, "--name", imageName, ref}, l.stateArgs()...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("shoal image apply: %w\n%s", err, out)
	}
	for _, n := range l.nodes {
		if n.tiny || n.Killed || n.State != api.StateDone {
			continue
		}
		off, err := firstDifference(ref, n.disk)
		switch {
		case err != nil:
			n.Error = fmt.Sprintf("compare the disk with the image: %v", err)
		case off >= 0:
			n.Error = fmt.Sprintf("the disk differs from the image written by shoal image apply at byte %d", off)
		default:
			n.DiskMatches = true
		}
	}
	return nil
}

// firstDifference returns the offset of the first byte where files a and
// b differ (a length difference counts), or -1 when they are equal.
func firstDifference(a, b string) (int64, error) {
	fa, err := os.Open(a)
	if err != nil {
		return 0, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return 0, err
	}
	defer fb.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	var off int64
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		for i := range min(na, nb) {
			if ba[i] != bb[i] {
				return off + int64(i), nil
			}
		}
		if na != nb {
			return off + int64(min(na, nb)), nil
		}
		off += int64(na)
		if errors.Is(ea, io.EOF) || errors.Is(ea, io.ErrUnexpectedEOF) {
			return -1, nil // eb is the same: same lengths
		}
		if ea != nil {
			return 0, ea
		}
		if eb != nil && !errors.Is(eb, io.EOF) && !errors.Is(eb, io.ErrUnexpectedEOF) {
			return 0, eb
		}
	}
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// allZero reports whether the file holds only zero bytes.
func allZero(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	b := make([]byte, 1<<20)
	for {
		n, err := f.Read(b)
		for _, c := range b[:n] {
			if c != 0 {
				return false, nil
			}
		}
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}

func makeBlank(path string, sizeBytes int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f.Truncate(sizeBytes); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
