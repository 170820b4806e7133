package etcdstore

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shoal-project/shoal/internal/etcdtest"
	"github.com/shoal-project/shoal/internal/testlog"
	"github.com/shoal-project/shoal/netboot/api"
)

// TestTurnLocal: the turn to local of a success is written only while the
// machine's key still says to reimage with the image and disk that
// succeeded, whatever happened to the key between the success and the
// write (the transaction's mod revision compare, then a fresh read).
func TestTurnLocal(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cli := newClient(t, c.Endpoints())
	s, err := Open(Config{Endpoints: c.Endpoints(), Prefix: "/turnlocal/", Server: "a", Log: testlog.New(t, "store", slog.LevelInfo)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	succeeded := MachineRecord{Image: "debian-12", Disk: "/dev/vda", Action: api.Reimage}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i, tc := range []struct {
		name  string
		exist bool             // the key exists at the success
		after func(key string) // what happens to it before the write
		want  *MachineRecord   // the key's value after the write; nil: none
		write bool             // whether turnLocal writes the key
	}{
		{"unchanged", true, nil, &MachineRecord{Image: "debian-12", Disk: "/dev/vda", Action: api.Local}, true},
		{"the same value put again", true, func(k string) { put(t, cli, k, succeeded.Encode()) },
			&MachineRecord{Image: "debian-12", Disk: "/dev/vda", Action: api.Local}, true},
		{"another image since", true, func(k string) {
			put(t, cli, k, MachineRecord{Image: "debian-13", Disk: "/dev/vda", Action: api.Reimage}.Encode())
		}, &MachineRecord{Image: "debian-13", Disk: "/dev/vda", Action: api.Reimage}, false},
		{"another disk since", true, func(k string) {
			put(t, cli, k, MachineRecord{Image: "debian-12", Disk: "/dev/sdb", Action: api.Reimage}.Encode())
		}, &MachineRecord{Image: "debian-12", Disk: "/dev/sdb", Action: api.Reimage}, false},
		{"local by another server", true, func(k string) {
			put(t, cli, k, MachineRecord{Image: "debian-12", Disk: "/dev/vda", Action: api.Local}.Encode())
		}, &MachineRecord{Image: "debian-12", Disk: "/dev/vda", Action: api.Local}, false},
		{"removed since", true, func(k string) {
			if _, err := cli.Delete(ctx, k); err != nil {
				t.Fatal(err)
			}
		}, nil, false},
		{"unknown machine: created", false, nil, &MachineRecord{Image: "debian-12", Disk: "/dev/vda", Action: api.Local}, true},
		{"unknown machine the operator added since", false, func(k string) {
			put(t, cli, k, MachineRecord{Image: "debian-13", Action: api.Reimage}.Encode())
		}, &MachineRecord{Image: "debian-13", Action: api.Reimage}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := s.keys.Machine(macN(i))
			op := localOp{MachineRecord: MachineRecord{Image: succeeded.Image, Disk: succeeded.Disk, Action: api.Local}, key: key}
			if tc.exist {
				resp, err := cli.Put(ctx, key, string(succeeded.Encode()))
				if err != nil {
					t.Fatal(err)
				}
				op.modRev = resp.Header.Revision
			}
			if tc.after != nil {
				tc.after(key)
			}
			before := modRev(t, cli, key)
			if err := s.turnLocal(ctx, macN(i), op); err != nil {
				t.Fatalf("turnLocal: %v", err)
			}
			resp, err := cli.Get(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			var got *MachineRecord
			if len(resp.Kvs) == 1 {
				r, err := DecodeMachine(resp.Kvs[0].Value)
				if err != nil {
					t.Fatal(err)
				}
				got = &r
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("key after the write (-want +got):\n%s", diff)
			}
			if wrote := modRev(t, cli, key) != before; wrote != tc.write {
				t.Errorf("turnLocal wrote the key: %v, want %v", wrote, tc.write)
			}
		})
	}
}

func macN(i int) string { return fmt.Sprintf("52:54:00:00:08:%02x", i) }

func modRev(t *testing.T, cli *clientv3.Client, key string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return 0
	}
	return resp.Kvs[0].ModRevision
}

// TestTwoServersOneSuccess: the same success reported to two servers at
// once is written once: one transaction wins, the other finds the key
// local and writes nothing; both caches end local.
func TestTwoServersOneSuccess(t *testing.T) {
	c := etcdtest.Start(t, 3)
	cli := newClient(t, c.Endpoints())
	keys := Layout{DefaultPrefix}
	const mac = "52:54:00:00:09:01"
	put(t, cli, keys.Machine(mac), MachineRecord{Image: "debian-12", Action: api.Reimage}.Encode())
	before := modRev(t, cli, keys.Machine(mac))
	var stores []*Store
	for _, name := range []string{"a", "b"} {
		s, err := Open(Config{Endpoints: c.Endpoints(), Server: name, Log: testlog.New(t, name, slog.LevelInfo)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
	}
	done := api.Status{State: api.StateDone, Progress: 1, Verified: true}
	now := time.Now()
	for _, s := range stores {
		if _, err := s.Report(mac, done, now); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range stores {
		waitFor(t, s, mac, func(m api.Machine) bool { return m.Action == api.Local })
		for deadline := time.Now().Add(5 * time.Second); s.Queued() > 0; {
			if time.Now().After(deadline) {
				t.Fatalf("%s: writes still queued after 5 s", s.cfg.Server)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	resp, err := cli.Get(context.Background(), keys.Machine(mac))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Kvs[0].Version; got != 2 {
		t.Errorf("machine key version %d after two servers' successes, want 2 (the operator's put and one turn to local)", got)
	}
	if resp.Kvs[0].ModRevision <= before {
		t.Errorf("machine key not written (mod revision %d, was %d)", resp.Kvs[0].ModRevision, before)
	}
}
