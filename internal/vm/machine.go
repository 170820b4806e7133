// machine.go runs one QEMU and tells whether (and why not) it is running.

package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/shoal-project/shoal/internal/syncbuf"
)

// Machine is a running QEMU.
type Machine struct {
	Config
	SerialPath string
	started    time.Time
	cmd        *exec.Cmd
	out        syncbuf.Buffer
	done       chan struct{}
	err        error
}

// Start starts QEMU for c. wrap, when set, makes the command (for example
// netlab's HubCommand, to run QEMU inside a namespace); nil runs it here.
// The machine is killed when ctx is done.
func Start(ctx context.Context, c Config, wrap func(ctx context.Context, name string, args ...string) *exec.Cmd) (*Machine, error) {
	args, err := c.Args()
	if err != nil {
		return nil, err
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return nil, fmt.Errorf("vm: qemu-system-x86_64 (apt-get install qemu-system-x86): %w", err)
	}
	if wrap == nil {
		wrap = exec.CommandContext
	}
	m := &Machine{Config: c, SerialPath: filepath.Join(c.Dir, "serial.log"), done: make(chan struct{})}
	// A console from an earlier start would count as this one's.
	if err := os.Remove(m.SerialPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("vm %s: %w", c.Name, err)
	}
	m.cmd = wrap(ctx, qemu, args...)
	m.cmd.Stdout, m.cmd.Stderr = &m.out, &m.out
	m.started = time.Now()
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("vm %s: start qemu: %w", c.Name, err)
	}
	go func() { m.err = m.cmd.Wait(); close(m.done) }()
	return m, nil
}

// PID is QEMU's process ID.
func (m *Machine) PID() int { return m.cmd.Process.Pid }

// Serial returns what the machine has printed on its serial console.
func (m *Machine) Serial() []byte {
	b, _ := os.ReadFile(m.SerialPath)
	return b
}

// Done is closed when QEMU has exited.
func (m *Machine) Done() <-chan struct{} { return m.done }

// Exited reports whether QEMU has exited.
func (m *Machine) Exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// Err is QEMU's exit error, once Done is closed.
func (m *Machine) Err() error { <-m.done; return m.err }

// QEMUOutput is what QEMU itself printed (errors).
func (m *Machine) QEMUOutput() string { <-m.done; return m.out.String() }

// ConsoleIdle is how long the serial console has printed nothing: since
// its last write, or since QEMU started when it has printed nothing yet.
func (m *Machine) ConsoleIdle() time.Duration {
	last := m.started
	if fi, err := os.Stat(m.SerialPath); err == nil && fi.Size() > 0 && fi.ModTime().After(last) {
		last = fi.ModTime()
	}
	return time.Since(last)
}

// ExitReason says why QEMU exited: its exit status and the last line it
// printed; "" while it runs.
func (m *Machine) ExitReason() string {
	if !m.Exited() {
		return ""
	}
	status := "exit status 0"
	if m.err != nil {
		status = m.err.Error()
	}
	if l := LastLine(m.out.String()); l != "" {
		return fmt.Sprintf("qemu exited (%s): %s", status, l)
	}
	return fmt.Sprintf("qemu exited (%s)", status)
}

// Stuck says why a machine that still runs is taken for stuck: its
// console has printed nothing for at least silence (the last line it
// printed, or that it printed nothing at all). "" when it is not.
func (m *Machine) Stuck(silence time.Duration) string {
	if m.Exited() || silence <= 0 {
		return ""
	}
	idle := m.ConsoleIdle()
	if idle < silence {
		return ""
	}
	if l := LastLine(string(m.Serial())); l != "" {
		return fmt.Sprintf("console silent for %.0f s; last line: %q", idle.Seconds(), l)
	}
	return fmt.Sprintf("console silent for %.0f s: the machine printed nothing", idle.Seconds())
}

// LastLine returns the last line of s with text in it, without terminal
// escape sequences and control characters, at most 200 bytes.
func LastLine(s string) string {
	lines := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(stripEscapes(lines[i]))
		if l == "" {
			continue
		}
		if len(l) > 200 {
			l = l[:200]
		}
		return l
	}
	return ""
}

// stripEscapes drops ANSI escape sequences (ESC [ ... final byte, and
// two-byte ESC x) and other control characters.
func stripEscapes(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 0x1b && i+1 < len(s) && s[i+1] == '[':
			i += 2
			for i < len(s) && (s[i] < 0x40 || s[i] > 0x7e) {
				i++
			}
		case c == 0x1b:
			i++
		case c < 0x20 && c != '\t', c == 0x7f:
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// ErrExited means QEMU exited before the awaited text appeared.
var ErrExited = errors.New("qemu exited")

// WaitFor waits until the serial console holds text, polling it, and
// returns the console. It fails when ctx is done or QEMU exits without it.
func (m *Machine) WaitFor(ctx context.Context, text string) ([]byte, error) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		b := m.Serial()
		if bytes.Contains(b, []byte(text)) {
			return b, nil
		}
		select {
		case <-ctx.Done():
			return b, fmt.Errorf("vm %s: waiting for %q: %w", m.Name, text, ctx.Err())
		case <-m.done:
			b = m.Serial()
			if bytes.Contains(b, []byte(text)) {
				return b, nil
			}
			return b, fmt.Errorf("vm %s: waiting for %q: %w (%v) %s", m.Name, text, ErrExited, m.err, strings.TrimSpace(m.out.String()))
		case <-tick.C:
		}
	}
}

// Kill ends QEMU (if still running) and waits for it.
func (m *Machine) Kill() {
	select {
	case <-m.done:
	default:
		m.cmd.Process.Kill()
		<-m.done
	}
}
