package main

// target.go: the options of a target that a command writes (apply, fetch, receive): created when missing, scanned first for the chunks it already holds.

import (
	"flag"
	"fmt"
	"io"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/internal/progress"
)

// targetFlags are the flags of a written target.
type targetFlags struct {
	noReuse *bool
}

func (f *targetFlags) register(fs *flag.FlagSet) {
	f.noReuse = fs.Bool("no-reuse", false, "write every chunk: do not first scan the target for the chunks it already holds")
}

// options are the target's options: a missing target is created, one that
// was there is scanned (with a progress bar on stderr) unless --no-reuse.
func (f *targetFlags) options(stderr io.Writer) imaging.TargetOptions {
	o := imaging.TargetOptions{Create: true, NoReuse: *f.noReuse, Logger: cmdLog(stderr)}
	var (
		bar  *progress.Bar
		last int64
	)
	// Scan calls these one at a time, Done last.
	o.Scan.Progress = func(scanned, total int64) {
		if bar == nil {
			bar = progress.New(stderr, "scan", total)
		}
		bar.Add(scanned - last)
		last = scanned
	}
	o.Scan.Done = func(imaging.ScanStats) {
		if bar != nil {
			bar.Finish()
		}
	}
	return o
}

// reused is the summary's clause on what the target already held.
func reused(st imaging.ScanStats) string {
	if st.ScannedChunks == 0 {
		return ""
	}
	return fmt.Sprintf("; %d chunks (%s) were already on the target", st.PresentChunks, progress.Bytes(st.PresentBytes))
}
