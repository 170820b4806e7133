package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/shoal-project/shoal/internal/etcdtest"
	"github.com/shoal-project/shoal/netboot/api"
	"github.com/shoal-project/shoal/netboot/inventory/etcdstore"
	"github.com/shoal-project/shoal/netboot/serve"
)

// TestServeCommandEtcd runs `shoal serve` with `store = etcd://…` in its
// config file against a real cluster: the machine put with etcdctl is in
// its machine list; --inventory beside it is refused.
func TestServeCommandEtcd(t *testing.T) {
	c := etcdtest.Start(t, 3)
	const mac = "52:54:00:aa:bb:01"
	c.Etcdctl("put", etcdstore.Layout{Prefix: etcdstore.DefaultPrefix}.Machine(mac), `{"image":"debian-12","disk":"/dev/vda","action":"reimage"}`)
	dir := t.TempDir()
	for _, d := range []string{"repo", "boot", "state"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "serve.conf")
	confText := "dhcp = off\ntftp = off\nra = false\nhttp = 127.0.0.1:0\nrepo = " + filepath.Join(dir, "repo") +
		"\nboot = " + filepath.Join(dir, "boot") + "\nstore = " + c.StoreURL() + "\n"
	if err := os.WriteFile(conf, []byte(confText), 0o644); err != nil {
		t.Fatal(err)
	}
	state := "--state=" + filepath.Join(dir, "state")
	err := run(context.Background(), []string{"serve", "--config", conf, state, "--inventory", filepath.Join(dir, "machines")}, io.Discard, io.Discard)
	if !errors.Is(err, serve.ErrInventoryWithEtcd) {
		t.Errorf("shoal serve --store etcd://… --inventory FILE = %v, want ErrInventoryWithEtcd", err)
	}

	ctx := context.Background()
	cl := &api.Client{BaseURL: serveFor(t, "--config", conf, state)}
	ms, err := cl.Machines(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].MAC != mac || ms[0].Image != "debian-12" || ms[0].Disk != "/dev/vda" || ms[0].Action != api.Reimage || !ms[0].Known {
		t.Errorf("machines of shoal serve on etcd = %+v, want the one put with etcdctl", ms)
	}
}
