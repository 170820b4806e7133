package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/initramfs/report"
	"github.com/shoal-project/shoal/netboot/api"
	"github.com/shoal-project/shoal/netboot/serve"
)

// TestServeCommand runs `shoal serve` (DHCP and TFTP off, HTTP on
// loopback) from a config file, reports a status and reads it back.
func TestServeCommand(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"repo", "boot"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	inv := filepath.Join(dir, "machines")
	if err := os.WriteFile(inv, []byte("52:54:00:aa:bb:cc reimage img /dev/vda\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "serve.conf")
	confText := "dhcp = off\ntftp = off\nhttp = 127.0.0.1:0\nrepo = " + filepath.Join(dir, "repo") +
		"\nboot = " + filepath.Join(dir, "boot") + "\ninventory = " + inv + "\n"
	if err := os.WriteFile(conf, []byte(confText), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	base := serveFor(t, "--config", conf, "--server-ip", "10.9.8.7")
	// Unsigned: refused by default. After a boot (the script fetch) and
	// its credential, a signed report is taken.
	resp, err := http.Post(base+"/api/v1/machines/52:54:00:aa:bb:cc/status", "application/json",
		strings.NewReader(`{"state":"writing","progress":0.25}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unsigned POST status = %d, want 401", resp.StatusCode)
	}
	if resp, err = http.Get(base + "/ipxe/52:54:00:aa:bb:cc"); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cred, err := (&api.Client{BaseURL: base}).Credential(ctx, "52:54:00:aa:bb:cc")
	if err != nil {
		t.Fatal(err)
	}
	rep := &report.Reporter{Server: base, MAC: "52:54:00:aa:bb:cc", Credential: &cred}
	if err := rep.Send(ctx, report.Status{State: "writing", Progress: 0.25}); err != nil {
		t.Fatalf("signed report: %v", err)
	}
	ms, err := (&api.Client{BaseURL: base}).Machines(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Status.State != api.StateWriting {
		t.Errorf("machines = %+v, want one writing", ms)
	}
	// The script uses --server-ip for its URLs.
	resp2, err := http.Get(base + "/ipxe/52:54:00:aa:bb:cc")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if !strings.Contains(string(b), "shoal.repo=http://10.9.8.7:") {
		t.Errorf("script = %q, want URLs on --server-ip", b)
	}
}

func TestServeUsageErrors(t *testing.T) {
	err := run(context.Background(), []string{"serve", "extra"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "unexpected argument") {
		t.Errorf("shoal serve extra = %v, want a usage error", err)
	}
	err = run(context.Background(), []string{"serve", "--dhcp", "full", "--http", "127.0.0.1:0", "--tftp", "off"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--iface") {
		t.Errorf("shoal serve --dhcp full without --iface = %v, want an error naming --iface", err)
	}
}

// TestServeRepositoryForImageClient serves a repository made by
// `shoal image create` and verifies the image through shoal serve's /repo/
// with `shoal image verify` (chunks fetched over HTTP).
func TestServeRepositoryForImageClient(t *testing.T) {
	dir := t.TempDir()
	repo, boot := filepath.Join(dir, "repo"), filepath.Join(dir, "boot")
	for _, d := range []string{repo, boot} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	disk := filepath.Join(dir, "disk.img")
	data := make([]byte, 16<<20)
	for i := 1 << 20; i < 5<<20; i++ {
		data[i] = byte(i*7 + i>>11)
	}
	if err := os.WriteFile(disk, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := run(ctx, []string{"image", "create", "--repo", repo, "--name", "img", disk}, io.Discard, io.Discard); err != nil {
		t.Fatalf("image create: %v", err)
	}
	base := startServe(t, "--repo", repo, "--boot", boot)
	var out strings.Builder
	if err := run(ctx, []string{"image", "verify", "--repo", base + "/repo/", "--name", "img"}, &out, &out); err != nil {
		t.Fatalf("image verify through shoal serve: %v\n%s", err, out.String())
	}
}

func TestServeRefusesKey(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--key", "k", "--http", "127.0.0.1:0", "--tftp", "off"},
		{"serve", "--cmdline", "console=ttyS0 shoal.key=k", "--http", "127.0.0.1:0", "--tftp", "off"},
	} {
		err := run(context.Background(), args, io.Discard, io.Discard)
		if !errors.Is(err, serve.ErrKeyFlag) {
			t.Errorf("%v: %v, want ErrKeyFlag", args, err)
		}
	}
}
