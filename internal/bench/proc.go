// proc.go: supervising the tools' processes: starting, waiting, killing by PID, their CPU time.
package bench

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// proc is a started program and when it ended.
type proc struct {
	name  string
	cmd   *exec.Cmd
	out   bytes.Buffer
	start time.Time
	end   time.Time
	cpu   time.Duration
	err   error
	done  chan struct{}
}

func start(cmd *exec.Cmd, name string) (*proc, error) {
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		p.end = time.Now()
		if st := cmd.ProcessState; st != nil {
			p.cpu = st.UserTime() + st.SystemTime()
		}
		cpuMu.Lock()
		cpuByRole[p.role()] += p.cpu
		cpuMu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// CPU time of the processes of the current run, by role.
var (
	cpuMu     sync.Mutex
	cpuByRole = map[string]time.Duration{}
)

func resetCPU() map[string]time.Duration {
	cpuMu.Lock()
	defer cpuMu.Unlock()
	old := cpuByRole
	cpuByRole = map[string]time.Duration{}
	return old
}

// role is "rx" for receiving processes, "tx" for the sender.
func (p *proc) role() string {
	for _, s := range []string{"receive", "receiver", "uftpd", "curl"} {
		if strings.Contains(p.name, s) {
			return "rx"
		}
	}
	return "tx"
}

func (p *proc) wait(ctx context.Context) error {
	select {
	case <-p.done:
	case <-ctx.Done():
		<-p.done // the command's context kills it
	}
	if p.err != nil {
		return fmt.Errorf("%s: %w: %s", p.name, p.err, lastLines(p.out.String(), 5))
	}
	return nil
}

// stop kills p by its PID (the `ip netns exec` wrapper execs the program, so
// the PID is the program's) and waits for it.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

// waitAll waits for the receivers, then the sender, and returns the time
// from t0 to the last receiver's end.
func waitAll(ctx context.Context, t0 time.Time, rx []*proc, tx *proc) (time.Duration, error) {
	var last time.Time
	for _, p := range rx {
		if err := p.wait(ctx); err != nil {
			return 0, err
		}
		if p.end.After(last) {
			last = p.end
		}
	}
	if tx != nil {
		if err := tx.wait(ctx); err != nil {
			return 0, err
		}
	}
	return last.Sub(t0), nil
}
