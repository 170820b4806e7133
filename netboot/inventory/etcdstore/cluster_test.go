package etcdstore

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shoal-project/shoal/internal/etcdtest"
	"github.com/shoal-project/shoal/internal/testlog"
	"github.com/shoal-project/shoal/netboot/api"
	"github.com/shoal-project/shoal/netboot/inventory"
)

// TestMemberKilled: 300 reports (10 machines, 30 each) while one of the
// three etcd members, the leader, is killed by PID at the 100th: every report lands
// in its machine's history, and each status key holds the last report.
func TestMemberKilled(t *testing.T) {
	c := etcdtest.Start(t, 3)
	cli := newClient(t, c.Endpoints())
	const machines, perMachine = 10, 30
	mac := func(i int) string { return fmt.Sprintf("52:54:00:00:01:%02x", i) }
	for i := range machines {
		put(t, cli, Layout{DefaultPrefix}.Machine(mac(i)), MachineRecord{Image: "debian-12", Action: api.Reimage}.Encode())
	}
	s, err := Open(Config{Endpoints: c.Endpoints(), Server: "a", Log: testlog.New(t, "store", slog.LevelInfo)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	t0 := time.Now()
	for n := range machines * perMachine {
		if n == 100 {
			c.Kill(c.Leader())
		}
		i, r := n%machines, n/machines
		st := api.Status{State: api.StateWriting, Progress: float64(r+1) / perMachine}
		if _, err := s.Report(mac(i), st, t0.Add(time.Duration(n)*time.Millisecond)); err != nil {
			t.Fatalf("report %d: %v", n, err)
		}
		time.Sleep(time.Millisecond) // about 300 reports a second, as many machines at work
	}
	start := time.Now()
	for s.Queued() > 0 {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("after 20 s, %d writes still queued", s.Queued())
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("queue empty %v after the last report", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	keys := Layout{DefaultPrefix}
	for i := range machines {
		resp, err := cli.Get(ctx, keys.History(mac(i)), clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != perMachine {
			t.Errorf("%s: %d events in etcd, want %d", mac(i), len(resp.Kvs), perMachine)
		}
		for j, kv := range resp.Kvs {
			e, err := DecodeEvent(kv.Value)
			if err != nil {
				t.Fatal(err)
			}
			if want := float64(j+1) / perMachine; e.Status.Progress != want {
				t.Errorf("%s: event %d has progress %v, want %v (in order)", mac(i), j, e.Status.Progress, want)
			}
		}
		sr, err := cli.Get(ctx, keys.Status(mac(i)))
		if err != nil || len(sr.Kvs) != 1 {
			t.Fatalf("%s: status key: %v %v", mac(i), sr, err)
		}
		rec, err := DecodeStatus(sr.Kvs[0].Value)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Status.Progress != 1 {
			t.Errorf("%s: status in etcd has progress %v, want the last report's 1", mac(i), rec.Status.Progress)
		}
	}
}

// TestHistoryTrimmed: past EventsKept, the oldest events of a machine go.
func TestHistoryTrimmed(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cli := newClient(t, c.Endpoints())
	keys := Layout{DefaultPrefix}
	const mac = "52:54:00:00:02:01"
	put(t, cli, keys.Machine(mac), MachineRecord{Image: "debian-12", Action: api.Reimage}.Encode())
	s, err := Open(Config{Endpoints: c.Endpoints(), Server: "a", EventsKept: 5})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	t0 := time.Now()
	for n := range 12 {
		if _, err := s.Report(mac, api.Status{State: api.StateWriting, Progress: float64(n) / 100}, t0.Add(time.Duration(n)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := cli.Get(ctx, keys.History(mac), clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		var got []float64
		for _, kv := range resp.Kvs {
			e, _ := DecodeEvent(kv.Value)
			got = append(got, e.Status.Progress)
		}
		if fmt.Sprint(got) == "[0.07 0.08 0.09 0.1 0.11]" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("history = %v, want the 5 newest [0.07 … 0.11]", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBadValueLeftOut: a machine whose value an operator mistyped (an
// unknown field) is no machine, at the load and through the watch; fixed,
// it boots again.
func TestBadValueLeftOut(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cli := newClient(t, c.Endpoints())
	keys := Layout{DefaultPrefix}
	const atLoad, byWatch = "52:54:00:00:05:01", "52:54:00:00:05:02"
	put(t, cli, keys.Machine(atLoad), []byte(`{"imgae":"debian-12","action":"reimage"}`))
	put(t, cli, keys.Machine(byWatch), MachineRecord{Image: "debian-12", Action: api.Reimage}.Encode())
	s, err := Open(Config{Endpoints: c.Endpoints(), Server: "a", Log: testlog.New(t, "store", slog.LevelInfo)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Lookup(atLoad); !errors.Is(err, inventory.ErrUnknown) {
		t.Errorf("Lookup of a bad value at the load = %v, want ErrUnknown", err)
	}
	put(t, cli, keys.Machine(byWatch), []byte(`{"image":"debian-12","action":"wipe"}`))
	deadline := time.Now().Add(5 * time.Second)
	for _, err := s.Lookup(byWatch); !errors.Is(err, inventory.ErrUnknown); _, err = s.Lookup(byWatch) {
		if time.Now().After(deadline) {
			t.Fatalf("5 s after a bad put, Lookup = %v, want ErrUnknown", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	put(t, cli, keys.Machine(atLoad), MachineRecord{Image: "debian-12", Action: api.Local}.Encode())
	waitFor(t, s, atLoad, func(m api.Machine) bool { return m.Action == api.Local })
}

// TestQueueBounded: with the cluster down, 12 reports against a bound of
// 5 queued events: once it is back, the history holds the newest 5 in
// order and the status the last report.
func TestQueueBounded(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cli := newClient(t, c.Endpoints())
	keys := Layout{DefaultPrefix}
	const mac = "52:54:00:00:07:01"
	put(t, cli, keys.Machine(mac), MachineRecord{Image: "debian-12", Action: api.Reimage}.Encode())
	s, err := Open(Config{Endpoints: c.Endpoints(), Server: "a", MaxQueuedEvents: 5, RequestTimeout: 500 * time.Millisecond,
		Log: testlog.New(t, "store", slog.LevelInfo)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c.Kill(0)
	t0 := time.Now()
	for n := range 12 {
		if _, err := s.Report(mac, api.Status{State: api.StateWriting, Progress: float64(n) / 100}, t0.Add(time.Duration(n)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if q := s.Queued(); q > 5+1 {
		t.Errorf("%d writes queued, want at most 5 events and 1 status", q)
	}
	c.Restart(0)
	c.WaitHealthy()
	deadline := time.Now().Add(10 * time.Second)
	for s.Queued() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("10 s after the cluster is back, %d writes queued", s.Queued())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, keys.History(mac), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var got []float64
	for _, kv := range resp.Kvs {
		e, err := DecodeEvent(kv.Value)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.Status.Progress)
	}
	if want := []float64{0.07, 0.08, 0.09, 0.1, 0.11}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("history after the queue overflowed = %v, want the newest 5 %v", got, want)
	}
	sr, err := cli.Get(ctx, keys.Status(mac))
	if err != nil || len(sr.Kvs) != 1 {
		t.Fatalf("status key: %v %v", sr, err)
	}
	if rec, err := DecodeStatus(sr.Kvs[0].Value); err != nil || rec.Status.Progress != 0.11 {
		t.Errorf("status after the store is back = %+v %v, want the last report's progress 0.11", rec, err)
	}
}

// TestEditLatency: 100 edits put through a client of a 3-member cluster,
// each seen by two servers' caches within 1 s; logs the median and the
// slowest from the put's return to the second server's Lookup.
func TestEditLatency(t *testing.T) {
	c := etcdtest.Start(t, 3)
	cli := newClient(t, c.Endpoints())
	keys := Layout{DefaultPrefix}
	const mac = "52:54:00:00:0a:01"
	put(t, cli, keys.Machine(mac), MachineRecord{Image: "img-0", Action: api.Reimage}.Encode())
	var stores []*Store
	for _, name := range []string{"a", "b"} {
		s, err := Open(Config{Endpoints: c.Endpoints(), Server: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
	}
	var took []time.Duration
	for i := 1; i <= 100; i++ {
		img := fmt.Sprintf("img-%d", i)
		put(t, cli, keys.Machine(mac), MachineRecord{Image: img, Action: api.Reimage}.Encode())
		start := time.Now()
		for _, s := range stores {
			for {
				if m, err := s.Lookup(mac); err == nil && m.Image == img {
					break
				}
				if time.Since(start) > time.Second {
					t.Fatalf("edit %d not seen by %s within 1 s", i, s.cfg.Server)
				}
				time.Sleep(100 * time.Microsecond)
			}
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	t.Logf("100 edits, both servers: median %v, 99th %v, slowest %v", took[49], took[98], took[99])
}

// TestInsecureWarning: opening the store over plain HTTP logs one
// INSECURE: line; over TLS (etcds://, the cluster's CA and a client
// certificate) none.
func TestInsecureWarning(t *testing.T) {
	certs := etcdtest.MakeCerts(t)
	plain := etcdtest.Start(t, 1)
	secure := etcdtest.StartWith(t, 1, etcdtest.Options{TLS: &certs})
	pair, err := tls.LoadX509KeyPair(certs.ClientCert, certs.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(certs.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	for _, tc := range []struct {
		name  string
		cfg   Config
		warns int
	}{
		{"etcd://", Config{Endpoints: plain.Endpoints()}, 1},
		{"etcds://", Config{Endpoints: secure.Endpoints(), TLS: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			tc.cfg.Log = slog.New(slog.NewTextHandler(&logs, nil))
			s, err := Open(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			if got := strings.Count(logs.String(), "INSECURE:"); got != tc.warns {
				t.Errorf("%d INSECURE: lines, want %d:\n%s", got, tc.warns, logs.String())
			}
		})
	}
}

// TestWatchCompacted: a server whose only member is away while the
// others take edits and compact past its watch's revision loads the
// inventory again once the member is back: the edits made meanwhile
// (a change and a removal) reach its cache.
func TestWatchCompacted(t *testing.T) {
	c := etcdtest.Start(t, 3)
	keys := Layout{DefaultPrefix}
	const changed, removed = "52:54:00:00:0c:01", "52:54:00:00:0c:02"
	for _, mac := range []string{changed, removed} {
		c.Etcdctl("put", keys.Machine(mac), string(MachineRecord{Image: "debian-12", Action: api.Reimage}.Encode()))
	}
	s, err := Open(Config{Endpoints: c.Endpoints()[:1], Server: "a", RequestTimeout: 500 * time.Millisecond,
		Log: testlog.New(t, "store", slog.LevelDebug)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c.Kill(0)
	// When the member killed led, the edits wait for the others to elect
	// one (which may outlast etcdctl's timeout on a loaded machine).
	c.Leader()
	others := "--endpoints=" + strings.Join(c.Endpoints()[1:], ",")
	c.Etcdctl(others, "put", keys.Machine(changed), string(MachineRecord{Image: "debian-13", Action: api.Local}.Encode()))
	c.Etcdctl(others, "del", keys.Machine(removed))
	for range 5 { // revisions past the edits, then compact them all away
		c.Etcdctl(others, "put", "/elsewhere", "x")
	}
	out := c.Etcdctl(others, "get", "/elsewhere", "-w", "json")
	var resp struct {
		Header struct {
			Revision int64 `json:"revision"`
		} `json:"header"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("etcdctl get -w json: %v\n%s", err, out)
	}
	c.Etcdctl(others, "compact", strconv.FormatInt(resp.Header.Revision, 10))
	if m, _ := s.Lookup(changed); m.Image != "debian-12" {
		t.Fatalf("the cache changed while its member was away: %+v", m)
	}
	c.Restart(0)
	c.WaitHealthy()
	waitFor(t, s, changed, func(m api.Machine) bool { return m.Image == "debian-13" && m.Action == api.Local })
	deadline := time.Now().Add(5 * time.Second)
	for _, err := s.Lookup(removed); !errors.Is(err, inventory.ErrUnknown); _, err = s.Lookup(removed) {
		if time.Now().After(deadline) {
			t.Fatalf("5 s after the member is back, the removed machine is still there")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
