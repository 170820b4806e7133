package etcdstore

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shoal-project/shoal/internal/etcdtest"
	"github.com/shoal-project/shoal/internal/testlog"
	"github.com/shoal-project/shoal/netboot/api"
	"github.com/shoal-project/shoal/netboot/inventory"
	"github.com/shoal-project/shoal/netboot/inventory/inventorytest"
)

// TestConformance runs the Backend suite against a real 3-member etcd
// cluster: each inventory under a prefix of its own, edits as etcdctl
// would make them (a put of the machine's JSON), a reopening as a second
// server on the same keys.
func TestConformance(t *testing.T) {
	c := etcdtest.Start(t, 3)
	cli := newClient(t, c.Endpoints())
	var n atomic.Int64
	inventorytest.Run(t, func(t *testing.T, setup inventorytest.Setup) inventorytest.Fixture {
		prefix := fmt.Sprintf("/conformance/%d/", n.Add(1))
		keys := Layout{prefix}
		for _, m := range setup.Machines {
			put(t, cli, keys.Machine(m.MAC), MachineRecord{Image: m.Image, Disk: m.Disk, Action: m.Action}.Encode())
		}
		open := func(t *testing.T, server string) *Store {
			s, err := Open(Config{Endpoints: c.Endpoints(), Prefix: prefix, Unknown: setup.Unknown, Server: server, Log: testlog.New(t, server, slog.LevelInfo)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		s := open(t, "a")
		return inventorytest.Fixture{
			Backend: s,
			Edit: func(t *testing.T, m api.Machine) {
				put(t, cli, keys.Machine(m.MAC), MachineRecord{Image: m.Image, Disk: m.Disk, Action: m.Action}.Encode())
				waitFor(t, s, m.MAC, func(got api.Machine) bool {
					return got.Image == m.Image && got.Action == m.Action && got.Disk == m.Disk
				})
			},
			Reopen: func(t *testing.T) inventory.Backend { return open(t, "b") },
		}
	})
}

func newClient(t *testing.T, eps []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func put(t *testing.T, cli *clientv3.Client, key string, val []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, key, string(val)); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// waitFor waits up to 5 s until s's Lookup of mac satisfies ok.
func waitFor(t *testing.T, s inventory.Backend, mac string, ok func(api.Machine) bool) time.Duration {
	t.Helper()
	start := time.Now()
	var m api.Machine
	var err error
	for time.Since(start) < 5*time.Second {
		if m, err = s.Lookup(mac); err == nil && ok(m) {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("after 5 s, %s is %+v (err %v)", mac, m, err)
	return 0
}
