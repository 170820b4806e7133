package vm

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/internal/testdisk"
)

// probeKernel is Debian's kernel from build/deps.d/kernel.sh's cache.
func probeKernel(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SHOAL_KERNEL_CACHE")
	if dir == "" {
		dir = "/var/cache/shoal/kernel"
	}
	k := dir + "/vmlinuz"
	if _, err := os.Stat(k); err != nil {
		testdisk.Missing(t, "kernel (build/deps.d/kernel.sh): %v", err)
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		testdisk.Missing(t, "%v", err)
	}
	return k
}

func TestParseAccel(t *testing.T) {
	for in, want := range map[string]Accel{"": AccelAuto, "auto": AccelAuto, "kvm": AccelKVM, "tcg": AccelTCG} {
		if got, err := ParseAccel(in); err != nil || got != want {
			t.Errorf("ParseAccel(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseAccel("hvf"); err == nil {
		t.Errorf("ParseAccel(hvf) = nil error, want one")
	}
}

// TestProbe boots the probe guest under TCG (works on any host) and under
// two faults injected into QEMU's arguments: QEMU exiting at once (an
// unknown device, as a broken KVM aborts) must give QEMU's own error, and
// a guest that never runs (-S: its CPU stays stopped, as a hung KVM guest)
// must give "no marker" within the bound.
func TestProbe(t *testing.T) {
	kernel := probeKernel(t)
	ctx := context.Background()
	t.Run("tcg boots", func(t *testing.T) {
		start := time.Now()
		if err := (Probe{Kernel: kernel, Timeout: 2 * time.Minute}).Run(ctx, AccelTCG); err != nil {
			t.Fatalf("probe under TCG: %v", err)
		}
		t.Logf("probe guest booted under TCG in %v", time.Since(start).Round(100*time.Millisecond))
	})
	t.Run("qemu exits at once", func(t *testing.T) {
		err := (Probe{Kernel: kernel, Extra: []string{"-device", "shoal-no-such-device"}}).Run(ctx, AccelTCG)
		if !errors.Is(err, ErrAccel) || !strings.Contains(err.Error(), "shoal-no-such-device") || !strings.Contains(err.Error(), "qemu exited") {
			t.Errorf("probe with a bad device: %v; want ErrAccel with QEMU's exit and its message", err)
		}
	})
	t.Run("guest hangs", func(t *testing.T) {
		start := time.Now()
		err := (Probe{Kernel: kernel, Timeout: 3 * time.Second, Extra: []string{"-S"}}).Run(ctx, AccelTCG)
		if !errors.Is(err, ErrAccel) || !strings.Contains(err.Error(), "no marker in 3s") {
			t.Errorf("probe of a stopped guest: %v; want ErrAccel saying no marker in 3s", err)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("probe of a stopped guest took %v, want about its 3 s bound", took)
		}
	})
}

// TestResolve checks that auto and kvm agree on this host, whatever it
// is: where auto falls back to TCG (no /dev/kvm, or a /dev/kvm that cannot
// run a guest) it says why, and kvm forced is an error wrapping ErrAccel;
// where auto chose KVM, kvm forced chooses it too.
func TestResolve(t *testing.T) {
	kernel := probeKernel(t)
	ctx := context.Background()
	if got, _, err := Resolve(ctx, AccelTCG, Probe{}); got != AccelTCG || err != nil {
		t.Errorf("Resolve(tcg) = %q, %v; want tcg without a probe", got, err)
	}
	auto, why, err := Resolve(ctx, AccelAuto, Probe{Kernel: kernel})
	if err != nil {
		t.Fatalf("Resolve(auto): %v", err)
	}
	t.Logf("auto: %s", why)
	forced, _, ferr := Resolve(ctx, AccelKVM, Probe{Kernel: kernel})
	switch auto {
	case AccelTCG:
		if !strings.HasPrefix(why, "tcg: ") || len(why) < 10 {
			t.Errorf("auto fell back to TCG saying %q, want the reason", why)
		}
		if !errors.Is(ferr, ErrAccel) {
			t.Errorf("Resolve(kvm) where auto fell back = %q, %v; want an error wrapping ErrAccel", forced, ferr)
		}
	case AccelKVM:
		if forced != AccelKVM || ferr != nil {
			t.Errorf("Resolve(kvm) where auto chose KVM = %q, %v; want kvm", forced, ferr)
		}
	default:
		t.Errorf("Resolve(auto) = %q, want kvm or tcg", auto)
	}
}

// TestMachineHealth: a machine whose QEMU exits says so with its status
// and QEMU's last line; one whose console stays silent says for how long.
func TestMachineHealth(t *testing.T) {
	kernel := probeKernel(t)
	ctx := context.Background()
	m, err := Start(ctx, Config{Name: "bad", Dir: t.TempDir(), Kernel: kernel, Extra: []string{"-device", "shoal-no-such-device"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-m.Done()
	if r := m.ExitReason(); !strings.Contains(r, "qemu exited (exit status 1)") || !strings.Contains(r, "shoal-no-such-device") {
		t.Errorf("ExitReason() = %q, want the exit status and QEMU's error", r)
	}
	s, err := Start(ctx, Config{Name: "stopped", Dir: t.TempDir(), Kernel: kernel, Extra: []string{"-S"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Kill()
	if r := s.Stuck(time.Minute); r != "" {
		t.Errorf("Stuck(1m) at once = %q, want \"\"", r)
	}
	time.Sleep(1500 * time.Millisecond)
	if r := s.Stuck(time.Second); !strings.Contains(r, "printed nothing") {
		t.Errorf("Stuck(1s) of a stopped guest = %q, want it silent, printing nothing", r)
	}
	if r := s.ExitReason(); r != "" {
		t.Errorf("ExitReason() of a running machine = %q, want \"\"", r)
	}
}
