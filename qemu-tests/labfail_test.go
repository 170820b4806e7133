package qemutests

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/internal/lab"
	"github.com/shoal-project/shoal/internal/syncbuf"
	"github.com/shoal-project/shoal/internal/vm"
)

// TestLabMachineFailures: a machine whose QEMU exits at once (an unknown
// device, as QEMU aborts on a broken KVM) and one whose guest hangs (-S:
// its CPU never starts, as a guest hung on a broken KVM) each say why, in
// the table and in the summary's machine_error, and the run ends within
// the silence bound instead of its timeout.
func TestLabMachineFailures(t *testing.T) {
	out, shoal := fleetSetup(t)
	var table syncbuf.Buffer
	start := time.Now()
	sum, err := lab.Run(context.Background(), lab.Config{
		Nodes: 2, Firmware: []string{"bios"},
		Out: out, Shoal: shoal, Dashboard: "off", Table: &table, Accel: testAccel(t),
		Timeout: 5 * time.Minute, Silence: 20 * time.Second, Stagger: 100 * time.Millisecond,
		Faults: lab.Faults{QEMUArgs: map[int][]string{
			1: {"-device", "shoal-no-such-device"},
			2: {"-S"},
		}},
	})
	took := time.Since(start)
	t.Logf("lab:\n%s", lastTable(table.String()))
	if !errors.Is(err, lab.ErrNodesFailed) {
		t.Fatalf("lab.Run: %v, want ErrNodesFailed", err)
	}
	if took > 2*time.Minute {
		t.Errorf("the run took %v, want it to end soon after the 20 s silence bound", took)
	}
	exited, hung := sum.Nodes[0], sum.Nodes[1]
	if !strings.Contains(exited.MachineError, "qemu exited (exit status 1)") || !strings.Contains(exited.MachineError, "shoal-no-such-device") {
		t.Errorf("node1 machine_error %q, want QEMU's exit status and its error", exited.MachineError)
	}
	if exited.Error != exited.MachineError {
		t.Errorf("node1 error %q, want the machine error", exited.Error)
	}
	if !strings.Contains(hung.MachineError, "console silent for") || !strings.Contains(hung.MachineError, "printed nothing") {
		t.Errorf("node2 machine_error %q, want a silent console that printed nothing", hung.MachineError)
	}
	tab := table.String()
	for _, want := range []string{"qemu-exited", "stuck", "node1: qemu exited", "node2: console silent"} {
		if !strings.Contains(tab, want) {
			t.Errorf("the table lacks %q", want)
		}
	}
}

// TestLabAccelKVMRefused: where KVM cannot run a guest (this host's
// /dev/kvm opens, QEMU aborts), `shoal lab --accel kvm` is a clear error
// before any machine starts; auto falls back to TCG saying why.
func TestLabAccelKVMRefused(t *testing.T) {
	out, shoal := fleetSetup(t)
	auto, why, err := vm.Resolve(context.Background(), vm.AccelAuto, vm.Probe{Kernel: netbootKernel(t)})
	if err != nil {
		t.Fatal(err)
	}
	if auto == vm.AccelKVM {
		t.Skipf("KVM runs guests on this host (%s): nothing to refuse", why)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(shoal, "lab", "--nodes", "1", "--accel", "kvm", "--out", out, "--dashboard", "off", "-v")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("shoal lab --accel kvm: %v, want exit status 1\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "accelerator kvm") || !strings.Contains(stderr.String(), vm.ErrAccel.Error()) {
		t.Errorf("stderr does not say KVM cannot run a guest:\n%s", stderr.String())
	}
	if strings.Contains(stderr.String(), "machine started") || strings.Contains(stderr.String(), "shoal serve started") {
		t.Errorf("a machine or the server started before the error:\n%s", stderr.String())
	}
	t.Logf("refused in %v: %s", time.Since(start).Round(100*time.Millisecond), strings.TrimSpace(stderr.String()))
}
