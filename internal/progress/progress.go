// Package progress shows the progress of long work (bytes, rate, ETA) on a
// terminal, and stays quiet when its output is not a terminal.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"
)

// Bar prints "label  done / total  rate  ETA" on one terminal line, redrawn
// a few times a second.
type Bar struct {
	w       io.Writer
	label   string
	total   int64
	done    atomic.Int64
	start   time.Time
	stop    chan struct{}
	stopped sync.WaitGroup
	once    sync.Once
	now     func() time.Time
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// New starts a bar on w for total bytes. When w is not a terminal the bar
// prints nothing, and Add only counts.
func New(w io.Writer, label string, total int64) *Bar {
	b := &Bar{w: w, label: label, total: total, start: time.Now(), stop: make(chan struct{}), now: time.Now}
	if IsTerminal(w) {
		b.stopped.Add(1)
		go b.loop()
	}
	return b
}

// Add counts n more bytes done. It is safe for concurrent use.
func (b *Bar) Add(n int64) { b.done.Add(n) }

// Done returns the bytes counted so far.
func (b *Bar) Done() int64 { return b.done.Load() }

// Elapsed returns the time since the bar started.
func (b *Bar) Elapsed() time.Duration { return b.now().Sub(b.start) }

// Finish stops redrawing and ends the line.
func (b *Bar) Finish() {
	b.once.Do(func() {
		close(b.stop)
		b.stopped.Wait()
		if IsTerminal(b.w) {
			fmt.Fprintf(b.w, "\r\033[K%s\n", b.Line())
		}
	})
}

func (b *Bar) loop() {
	defer b.stopped.Done()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			fmt.Fprintf(b.w, "\r\033[K%s", b.Line())
		}
	}
}

// Line renders the bar's current state.
func (b *Bar) Line() string {
	done := b.done.Load()
	el := b.Elapsed().Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(done) / el
	}
	pct := 100.0
	if b.total > 0 {
		pct = 100 * float64(done) / float64(b.total)
	}
	eta := "-"
	if rate > 0 && done < b.total {
		eta = time.Duration(float64(b.total-done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	return fmt.Sprintf("%s %5.1f%%  %s / %s  %s/s  ETA %s", b.label, pct, Bytes(done), Bytes(b.total), Bytes(int64(rate)), eta)
}

// Bytes formats n with a binary unit: 1.5 GiB.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
