package serve

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/internal/etcdtest"
	"github.com/shoal-project/shoal/internal/testlog"
	"github.com/shoal-project/shoal/netboot/api"
	"github.com/shoal-project/shoal/netboot/inventory/etcdstore"
)

// etcdServer runs a whole netboot server (HTTP only, on loopback) whose
// inventory is the etcd cluster at store, until the test ends.
func etcdServer(t *testing.T, name, store string) (*Server, *api.Client) {
	t.Helper()
	cfg := Default()
	cfg.Store = store
	return etcdServerWith(t, name, cfg)
}

// etcdServerWith runs cfg's server as etcdServer does (HTTP on loopback,
// no TFTP, temporary directories).
func etcdServerWith(t *testing.T, name string, cfg Config) (*Server, *api.Client) {
	t.Helper()
	cfg.HTTP, cfg.TFTP, cfg.RA = "127.0.0.1:0", "off", false
	cfg.Repo, cfg.Boot = t.TempDir(), t.TempDir()
	ls, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, ls, testlog.New(t, name, slog.LevelInfo))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("%s: Serve: %v", name, err)
		}
	})
	return s, &api.Client{BaseURL: "http://" + ls.HTTP.Addr().String()}
}

// putMachine sets a machine as an operator does, with etcdctl.
func putMachine(c *etcdtest.Cluster, mac, img string, a api.Action) {
	c.Etcdctl("put", etcdstore.Layout{Prefix: etcdstore.DefaultPrefix}.Machine(mac), string(etcdstore.MachineRecord{Image: img, Action: a}.Encode()))
}

// script fetches mac's iPXE script from c's server.
func script(t *testing.T, c *api.Client, mac string) string {
	t.Helper()
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Get(c.BaseURL + "/ipxe/" + mac)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /ipxe/%s: %s %v", mac, resp.Status, err)
	}
	return string(b)
}

// signedReport boots mac from c's server (its iPXE script, then this
// boot's credential) and returns a function that sends signed reports.
func signedReport(t *testing.T, c *api.Client, mac string) func(api.Status) error {
	t.Helper()
	script(t, c, mac)
	ctx := context.Background()
	cred, err := c.Credential(ctx, mac)
	if err != nil {
		t.Fatalf("credential of %s: %v", mac, err)
	}
	tok, err := cred.TokenBytes()
	if err != nil {
		t.Fatal(err)
	}
	key := api.ReportKey(tok)
	last := int64(0)
	return func(st api.Status) error {
		body, _ := json.Marshal(st)
		ms := max(time.Now().UnixMilli(), last+1)
		last = ms
		_, err := c.PostStatus(ctx, mac, body, key, ms)
		return err
	}
}

// waitMachine polls c's machine API until mac satisfies ok, failing after
// limit; it returns how long it took.
func waitMachine(t *testing.T, c *api.Client, mac string, limit time.Duration, ok func(api.Machine) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		m, err := c.Machine(context.Background(), mac)
		if err == nil && ok(m) {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s on %s after %v: %+v (err %v)", mac, c.BaseURL, limit, m, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var doneStatus = api.Status{State: api.StateDone, Role: api.RoleServer, Progress: 1, Verified: true}

// TestTwoServersOnEtcd: two servers, each its own HTTP listener, on one
// 3-member etcd cluster. A machine booted from and reported done through
// server A is local on server B (its machine API and its iPXE script),
// and an operator's etcdctl put reaches both within 1 s.
func TestTwoServersOnEtcd(t *testing.T) {
	c := etcdtest.Start(t, 3)
	const done, edited = "52:54:00:00:03:01", "52:54:00:00:03:02"
	putMachine(c, done, "debian-12", api.Reimage)
	putMachine(c, edited, "debian-12", api.Reimage)
	_, a := etcdServer(t, "A", c.StoreURL())
	_, b := etcdServer(t, "B", c.StoreURL())

	if s := script(t, b, done); !strings.Contains(s, "shoal.image=debian-12") {
		t.Fatalf("B's script for %s before the report: want a boot of debian-12, got\n%s", done, s)
	}
	report := signedReport(t, a, done)
	for _, st := range []api.Status{{State: api.StateWriting, Role: api.RoleServer, Progress: 0.5}, doneStatus} {
		if err := report(st); err != nil {
			t.Fatalf("report to A: %v", err)
		}
	}
	took := waitMachine(t, b, done, time.Second, func(m api.Machine) bool {
		return m.Action == api.Local && m.Status.State == api.StateDone && m.Status.Verified
	})
	t.Logf("done through A, local on B after %v", took.Round(time.Millisecond))
	if s := script(t, b, done); !strings.Contains(s, "booting the local disk") {
		t.Errorf("B's script for %s after its success: want the local script, got\n%s", done, s)
	}
	if got := c.Etcdctl("get", "--print-value-only", etcdstore.Layout{Prefix: etcdstore.DefaultPrefix}.Machine(done)); !strings.Contains(got, `"action":"local"`) {
		t.Errorf("machine key in etcd after the success = %s, want action local", got)
	}

	putMachine(c, edited, "debian-13", api.Reimage)
	for name, srv := range map[string]*api.Client{"A": a, "B": b} {
		took := waitMachine(t, srv, edited, time.Second, func(m api.Machine) bool { return m.Image == "debian-13" })
		t.Logf("etcdctl put seen by %s's machine API within %v", name, took.Round(time.Millisecond))
		if s := script(t, srv, edited); !strings.Contains(s, "shoal.image=debian-13") {
			t.Errorf("%s's script for %s after the edit: want debian-13, got\n%s", name, edited, s)
		}
	}
}

// TestStoreDown: with every etcd member stopped, the server still answers
// the iPXE script of known machines from its cache (reimage and local),
// issues credentials and accepts signed reports, which are queued; once
// the members are back the reports and the turn to local land in etcd,
// and an etcdctl edit reaches the server again within 1 s.
func TestStoreDown(t *testing.T) {
	c := etcdtest.Start(t, 3)
	const reimage, local = "52:54:00:00:04:01", "52:54:00:00:04:02"
	putMachine(c, reimage, "debian-12", api.Reimage)
	putMachine(c, local, "debian-12", api.Local)
	srv, a := etcdServer(t, "A", c.StoreURL())
	store := srv.inv.(*etcdstore.Store)
	for i := range c.Members {
		c.Kill(i)
	}
	if s := script(t, a, local); !strings.Contains(s, "booting the local disk") {
		t.Errorf("script for %s with the store down: want the local script, got\n%s", local, s)
	}
	report := signedReport(t, a, reimage) // its script too, from the cache
	for i, st := range []api.Status{
		{State: api.StateWriting, Role: api.RoleServer, Progress: 0.25},
		{State: api.StateWriting, Role: api.RoleServer, Progress: 0.75},
		doneStatus,
	} {
		if err := report(st); err != nil {
			t.Fatalf("report %d with the store down: %v", i, err)
		}
	}
	m, err := a.Machine(context.Background(), reimage)
	if err != nil || m.Action != api.Local {
		t.Errorf("machine after its success with the store down = %+v %v, want local (from the cache)", m, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !store.Down() {
		if time.Now().After(deadline) {
			t.Fatal("store not marked down 10 s after every member was killed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := store.Queued(); n == 0 {
		t.Fatal("nothing queued while the store is down, want the reports")
	}
	if m := metrics(t, a); !strings.Contains(m, "shoal_serve_inventory_store_up 0\n") || strings.Contains(m, "shoal_serve_inventory_store_queued 0\n") {
		t.Errorf("metrics with the store down: want store_up 0 and writes queued, got\n%s", grepLines(m, "inventory_store"))
	}
	for i := range c.Members {
		c.Restart(i)
	}
	c.WaitHealthy()
	back := time.Now()
	for store.Queued() > 0 || store.Down() {
		if time.Since(back) > 10*time.Second {
			t.Fatalf("10 s after the members are back: %d queued, down %v", store.Queued(), store.Down())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("queue written %v after the cluster was healthy again", time.Since(back).Round(time.Millisecond))
	if m := metrics(t, a); !strings.Contains(m, "shoal_serve_inventory_store_up 1\n") || !strings.Contains(m, "shoal_serve_inventory_store_queued 0\n") {
		t.Errorf("metrics with the store back: want store_up 1 and nothing queued, got\n%s", grepLines(m, "inventory_store"))
	}
	keys := etcdstore.Layout{Prefix: etcdstore.DefaultPrefix}
	if got := c.Etcdctl("get", "--print-value-only", keys.Machine(reimage)); !strings.Contains(got, `"action":"local"`) {
		t.Errorf("machine key after the store is back = %s, want action local", got)
	}
	st, err := etcdstore.DecodeStatus([]byte(strings.TrimSpace(c.Etcdctl("get", "--print-value-only", keys.Status(reimage)))))
	if err != nil || st.Status.State != api.StateDone {
		t.Errorf("status key after the store is back = %+v %v, want done", st, err)
	}
	if n := strings.Count(c.Etcdctl("get", "--prefix", "--keys-only", keys.History(reimage)), keys.History(reimage)); n != 3 {
		t.Errorf("%d events in etcd after the store is back, want the 3 reports", n)
	}
	// The watch follows again: an edit reaches the server.
	putMachine(c, local, "debian-13", api.Reimage)
	took := waitMachine(t, a, local, time.Second, func(m api.Machine) bool { return m.Image == "debian-13" && m.Action == api.Reimage })
	t.Logf("an etcdctl put after the store is back seen within %v", took.Round(time.Millisecond))
}

// metrics returns c's server's /metrics text.
func metrics(t *testing.T, c *api.Client) string {
	t.Helper()
	resp, err := http.Get(c.BaseURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
