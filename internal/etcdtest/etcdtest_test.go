package etcdtest

import (
	"strings"
	"testing"
)

// TestCluster: three members start healthy, a key put through etcdctl is
// read back, and with the leader killed the other two elect another and
// still serve it.
func TestCluster(t *testing.T) {
	c := Start(t, 3)
	c.Etcdctl("put", "/etcdtest/k", "v1")
	leader := c.Leader()
	c.Kill(leader)
	if pid := c.PID(leader); pid != 0 {
		t.Fatalf("member %d still has pid %d after Kill", leader, pid)
	}
	if again := c.Leader(); again == leader {
		t.Fatalf("leader is still the killed member %d", leader)
	}
	got := c.Etcdctl("get", "--print-value-only", "/etcdtest/k")
	if strings.TrimSpace(got) != "v1" {
		t.Fatalf("get after a member was killed = %q, want v1", got)
	}
	c.Restart(leader)
	c.WaitHealthy()
}
