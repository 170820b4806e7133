// baseline.go: the write baseline: what writing the image to a new file on the targets' filesystem costs, with no network and no protocol (dd).
package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// WriteBaseline is one dd of the image into a new file in the directory
// the tools' targets are in, measured like a tool's receiver (wait4). Every
// receiver writes the same bytes to the same kind of file, so this part of
// its CPU is the platform's, not the tool's: on a VM whose memory the host
// hands out on first touch, it is most of a receiver's cost.
type WriteBaseline struct {
	Seconds          float64 `json:"seconds"`
	CPUSecondsPerGiB float64 `json:"cpuSecondsPerGiB"`
	Error            string  `json:"error,omitempty"`
}

// writeBaseline runs dd of the image's size (128 KiB writes, what zstd's
// raw blocks give shoal's writer) to a new file in dir and removes it.
func (r *Report) writeBaseline(ctx context.Context, dir string) WriteBaseline {
	out := filepath.Join(dir, "dd.target")
	defer os.Remove(out)
	resetCPU()
	// From /dev/zero, not the image: a tool's receiver does not read the
	// image from this filesystem, and tmpfs and disks take zeros as dearly.
	blocks := (r.SizeBytes + 128<<10 - 1) / (128 << 10)
	p, err := start(exec.CommandContext(ctx, "dd", "if=/dev/zero", "of="+out, "bs=128K", fmt.Sprintf("count=%d", blocks), "status=none"), "dd")
	if err != nil {
		return WriteBaseline{Error: err.Error()}
	}
	if err := p.wait(ctx); err != nil {
		return WriteBaseline{Error: fmt.Sprintf("dd: %v", err)}
	}
	resetCPU()
	return WriteBaseline{Seconds: p.end.Sub(p.start).Seconds(), CPUSecondsPerGiB: perGiB(p.cpu, r.SizeBytes)}
}
