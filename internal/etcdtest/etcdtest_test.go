package etcdtest

import (
	"strings"
	"testing"
)

// TestCluster: three members start healthy, a key put through etcdctl is
// read back, and with one member killed the other two still serve it.
func TestCluster(t *testing.T) {
	c := Start(t, 3)
	c.Etcdctl("put", "/etcdtest/k", "v1")
	c.Kill(0)
	if pid := c.PID(0); pid != 0 {
		t.Fatalf("member 0 still has pid %d after Kill", pid)
	}
	got := c.Etcdctl("get", "--print-value-only", "/etcdtest/k")
	if strings.TrimSpace(got) != "v1" {
		t.Fatalf("get after a member was killed = %q, want v1", got)
	}
	c.Restart(0)
	c.WaitHealthy()
}
