// proc.go: supervising the tools' processes: starting, waiting, killing by PID, their CPU time (wait4's rusage).
package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shoal-project/shoal/internal/netlab"
	"github.com/shoal-project/shoal/internal/syncbuf"
)

// proc is a started program and when it ended.
type proc struct {
	name  string
	cmd   *exec.Cmd
	out   syncbuf.Buffer
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
		// wait4's rusage: the process's threads and the children it
		// waited for (RUSAGE_BOTH), killed or not.
		if st := cmd.ProcessState; st != nil {
			p.cpu = st.UserTime() + st.SystemTime()
		}
		cpuMu.Lock()
		cpuRecords = append(cpuRecords, procCPU{name: p.name, role: p.role(), cpu: p.cpu})
		cpuMu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// procCPU is the CPU time of one process that ended.
type procCPU struct {
	name, role string
	cpu        time.Duration
}

// CPU time of the processes of the current run, one record per process.
var (
	cpuMu      sync.Mutex
	cpuRecords []procCPU
)

func resetCPU() []procCPU {
	cpuMu.Lock()
	defer cpuMu.Unlock()
	old := cpuRecords
	cpuRecords = nil
	return old
}

// cpuCost is the CPU of a run's processes: the senders' summed, the
// receivers' summed, their mean over the receiving processes and the
// largest of them.
type cpuCost struct {
	tx, rxSum, rxMean, rxMax time.Duration
}

func costOf(recs []procCPU) cpuCost {
	var c cpuCost
	n := 0
	for _, r := range recs {
		if r.role != "rx" {
			c.tx += r.cpu
			continue
		}
		n++
		c.rxSum += r.cpu
		c.rxMax = max(c.rxMax, r.cpu)
	}
	if n > 0 {
		c.rxMean = c.rxSum / time.Duration(n)
	}
	return c
}

// perGiB is seconds of CPU per GiB of bytes.
func perGiB(d time.Duration, sizeBytes int64) float64 {
	if sizeBytes <= 0 {
		return 0
	}
	return d.Seconds() / (float64(sizeBytes) / (1 << 30))
}

// role is "rx" for receiving processes, "tx" for the sender.
func (p *proc) role() string {
	for _, s := range []string{"receive", "receiver", "uftpd", "curl", "sink"} {
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

// signal sends sig to p by its PID, unless it has ended.
func (p *proc) signal(sig syscall.Signal) {
	select {
	case <-p.done:
	default:
		if p.cmd.Process != nil {
			_ = p.cmd.Process.Signal(sig)
		}
	}
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

// strays fails when a process is left in one of the LAN's namespaces after
// every process the bench started there has ended: it forked away from
// the PID whose rusage is measured (a daemon), so its CPU was not counted.
func strays(ctx context.Context, lan *netlab.LAN) error {
	for _, n := range lan.Nodes {
		out, err := exec.CommandContext(ctx, "ip", "netns", "pids", n.Name).Output()
		if err != nil {
			return fmt.Errorf("ip netns pids %s: %w", n.Name, err)
		}
		// Not the bench itself: a thread netlab's Do switched into the
		// namespace can be its main thread, which the Go runtime parks
		// there for good instead of ending it.
		self := strconv.Itoa(os.Getpid())
		pids := slices.DeleteFunc(strings.Fields(string(out)), func(p string) bool { return p == self })
		if len(pids) > 0 {
			var cmds []string
			for _, pid := range pids {
				cmdline, _ := os.ReadFile("/proc/" + pid + "/cmdline")
				cmds = append(cmds, fmt.Sprintf("%s %q", pid, strings.ReplaceAll(string(cmdline), "\x00", " ")))
			}
			return fmt.Errorf("processes left in %s after the run (forked away from the PIDs measured): %s", n.Name, strings.Join(cmds, ", "))
		}
	}
	return nil
}

// waitOutput waits until p has printed s, p has ended, or timeout passed.
func (p *proc) waitOutput(ctx context.Context, s string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.out.String(), s) {
		select {
		case <-p.done:
			return fmt.Errorf("%s ended before saying %q: %v: %s", p.name, s, p.err, lastLines(p.out.String(), 3))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not say %q within %v", p.name, s, timeout)
		}
	}
	return nil
}
