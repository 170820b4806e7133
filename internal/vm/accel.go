// accel.go chooses QEMU's accelerator: KVM only once a guest has been seen
// to run under it, TCG otherwise.

package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

// Accel is QEMU's accelerator.
type Accel string

const (
	// AccelAuto: KVM if a probe guest runs under it, else TCG.
	AccelAuto Accel = "auto"
	// AccelKVM: KVM, and an error if it cannot run a guest.
	AccelKVM Accel = "kvm"
	// AccelTCG: QEMU's emulator, on any host.
	AccelTCG Accel = "tcg"
)

// EnvAccel is the environment variable that chooses the accelerator of
// every QEMU test and of `shoal lab` (auto, kvm or tcg; default auto).
const EnvAccel = "SHOAL_ACCEL"

// ParseAccel parses auto, kvm or tcg ("" is auto).
func ParseAccel(s string) (Accel, error) {
	switch a := Accel(s); a {
	case "":
		return AccelAuto, nil
	case AccelAuto, AccelKVM, AccelTCG:
		return a, nil
	}
	return "", fmt.Errorf("vm: accelerator %q: want auto, kvm or tcg", s)
}

// CPUArgs are QEMU's accelerator and CPU arguments for a ("" is TCG).
func CPUArgs(a Accel) ([]string, error) {
	switch a {
	case "", AccelTCG:
		// -cpu max: RDRAND, without which the guest's getrandom blocks.
		return []string{"-accel", "tcg", "-cpu", "max"}, nil
	case AccelKVM:
		return []string{"-accel", "kvm", "-cpu", "host"}, nil
	}
	return nil, fmt.Errorf("vm: accelerator %q: resolve it to kvm or tcg first", a)
}

// ErrAccel means the accelerator cannot run a guest on this host.
var ErrAccel = errors.New("accelerator cannot run a guest")

// ProbeMarker is what the probe guest prints when it has booted: the
// kernel, given no root file system, panics after all its drivers are up.
const ProbeMarker = "Kernel panic - not syncing"

// DefaultProbeTimeout bounds the probe. A kernel boots to its panic in
// about a second under KVM; a broken KVM aborts at once or hangs for
// minutes.
const DefaultProbeTimeout = 10 * time.Second

// Probe is a test boot that proves an accelerator.
type Probe struct {
	// Kernel is a bzImage (required): it boots with no initramfs and no
	// root, to its panic.
	Kernel string
	// Timeout bounds the wait for ProbeMarker (DefaultProbeTimeout).
	Timeout time.Duration
	// Extra is appended to QEMU's arguments (tests inject faults).
	Extra []string
}

// Run boots p.Kernel under a and waits for ProbeMarker. The error wraps
// ErrAccel with QEMU's own error when QEMU exits without the marker, or
// "no marker in N s" when the guest hangs.
func (p Probe) Run(ctx context.Context, a Accel) error {
	if p.Kernel == "" {
		return errors.New("vm: probe: no kernel")
	}
	if _, err := os.Stat(p.Kernel); err != nil {
		return fmt.Errorf("vm: probe: %w", err)
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultProbeTimeout
	}
	dir, err := os.MkdirTemp("", "shoal-vm-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	m, err := Start(ctx, Config{Name: "probe", Dir: dir, MemMiB: 256, Accel: a,
		Kernel: p.Kernel, Append: "console=ttyS0 panic=-1 shoal.probe=1", Extra: p.Extra}, exec.CommandContext)
	if err != nil {
		return err
	}
	defer m.Kill()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if bytes.Contains(m.Serial(), []byte(ProbeMarker)) {
			return nil
		}
		select {
		case <-m.Done():
			if bytes.Contains(m.Serial(), []byte(ProbeMarker)) {
				return nil
			}
			if ctx.Err() != nil {
				return fmt.Errorf("%w: %s: no marker in %v (last console line %q)", ErrAccel, a, timeout, LastLine(string(m.Serial())))
			}
			return fmt.Errorf("%w: %s: %s", ErrAccel, a, m.ExitReason())
		case <-tick.C:
		}
	}
}

// Resolve turns want into the accelerator to run machines with. auto
// probes KVM (when /dev/kvm is there) and falls back to TCG; why says in
// one line what was chosen and, on a fallback, QEMU's error or the
// missing marker. kvm probes too, and is an error wrapping ErrAccel when
// KVM cannot run the probe. tcg needs no probe.
func Resolve(ctx context.Context, want Accel, p Probe) (got Accel, why string, err error) {
	switch want {
	case AccelTCG:
		return AccelTCG, "tcg (asked for)", nil
	case "", AccelAuto, AccelKVM:
	default:
		return "", "", fmt.Errorf("vm: accelerator %q: want auto, kvm or tcg", want)
	}
	if _, err := os.Stat("/dev/kvm"); err != nil {
		if want == AccelKVM {
			return "", "", fmt.Errorf("%w: kvm: %v", ErrAccel, err)
		}
		return AccelTCG, "tcg: no /dev/kvm", nil
	}
	start := time.Now()
	if err := p.Run(ctx, AccelKVM); err != nil {
		if want == AccelKVM || !errors.Is(err, ErrAccel) {
			return "", "", err
		}
		return AccelTCG, fmt.Sprintf("tcg: KVM does not work here (%v)", err), nil
	}
	return AccelKVM, fmt.Sprintf("kvm: a probe guest booted in %.1f s", time.Since(start).Seconds()), nil
}

// FromEnv returns the accelerator EnvAccel asks for (auto when unset).
func FromEnv() (Accel, error) {
	a, err := ParseAccel(os.Getenv(EnvAccel))
	if err != nil {
		return "", fmt.Errorf("%s: %w", EnvAccel, err)
	}
	return a, nil
}

var (
	envOnce  sync.Once
	envAccel Accel
	envWhy   string
	envErr   error
)

// ResolveEnv resolves FromEnv's accelerator once per process with kernel
// as the probe guest, and returns the same answer to every later call (a
// test binary probes once, not once per machine).
func ResolveEnv(ctx context.Context, kernel string) (Accel, string, error) {
	envOnce.Do(func() {
		want, err := FromEnv()
		if err != nil {
			envErr = err
			return
		}
		envAccel, envWhy, envErr = Resolve(ctx, want, Probe{Kernel: kernel})
	})
	return envAccel, envWhy, envErr
}

// KernelForProbe returns a kernel for the probe: the first of paths that
// exists (absolute).
func KernelForProbe(paths ...string) string {
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			if a, err := filepath.Abs(p); err == nil {
				return a
			}
			return p
		}
	}
	return ""
}
