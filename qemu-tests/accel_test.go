package qemutests

import (
	"context"
	"sync"
	"testing"

	"github.com/shoal-project/shoal/internal/vm"
)

var logAccelOnce sync.Once

// testAccel is the accelerator every QEMU test runs its machines under:
// $SHOAL_ACCEL (auto, kvm or tcg; default auto), resolved once per test
// binary by booting Debian's kernel as a probe guest (vm.ResolveEnv). Auto
// falls back to TCG where KVM cannot run a guest; kvm that cannot run one
// fails the test.
func testAccel(t testing.TB) vm.Accel {
	t.Helper()
	a, why, err := vm.ResolveEnv(context.Background(), netbootKernel(t))
	if err != nil {
		t.Fatalf("accelerator ($%s): %v", vm.EnvAccel, err)
	}
	logAccelOnce.Do(func() { t.Logf("QEMU accelerator: %s", why) })
	return a
}

// testCPUArgs are QEMU's accelerator and CPU arguments for testAccel.
func testCPUArgs(t testing.TB) []string {
	t.Helper()
	args, err := vm.CPUArgs(testAccel(t))
	if err != nil {
		t.Fatal(err)
	}
	return args
}
