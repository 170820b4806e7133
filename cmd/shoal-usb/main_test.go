package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/initramfs/appliance"
	"github.com/shoal-project/shoal/initramfs/config"
	"github.com/shoal-project/shoal/initramfs/usb"
	"github.com/shoal-project/shoal/internal/testdisk"
)

// TestRun writes a stick with the default shoal.conf template, which the
// appliance's reader finds and its parser accepts.
func TestRun(t *testing.T) {
	testdisk.Need(t, "objcopy")
	if _, err := os.Stat(usb.DefaultStub); err != nil {
		testdisk.Missing(t, "%s missing (apt-get install systemd-boot-efi)", usb.DefaultStub)
	}
	dir := t.TempDir()
	k, i, out := filepath.Join(dir, "k"), filepath.Join(dir, "i"), filepath.Join(dir, "stick.img")
	os.WriteFile(k, []byte("kernel"), 0o644)
	os.WriteFile(i, []byte("initramfs"), 0o644)
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"--kernel", k, "--initramfs", i, "--out", out}, &stdout, &stderr); err != nil {
		t.Fatalf("run = %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "wrote "+out) {
		t.Errorf("stdout = %q", stdout.String())
	}
	b, err := appliance.ReadConf(out)
	if err != nil || string(b) != usb.ConfTemplate {
		t.Errorf("shoal.conf on the stick = %q, %v; want the template", b, err)
	}
	c, err := config.ParseConf(bytes.NewReader(b))
	if err == nil {
		err = c.Finish()
	}
	if err != nil || c.Image != "debian-12" || c.Disk != "auto" {
		t.Errorf("the template parses to %+v, %v", c, err)
	}
	if err := run(context.Background(), []string{"--kernel", k}, &stdout, &stderr); err == nil {
		t.Error("run without --initramfs and --out succeeded")
	}

	// --set-conf points the stick at another server.
	conf := filepath.Join(dir, "my.conf")
	want := "repo = http://10.9.9.9:8080/repo/\nimage = lab\n"
	os.WriteFile(conf, []byte(want), 0o644)
	if err := run(context.Background(), []string{"--conf", conf, "--set-conf", out}, &stdout, &stderr); err != nil {
		t.Fatalf("run --set-conf = %v", err)
	}
	if b, err := appliance.ReadConf(out); err != nil || string(b) != want {
		t.Errorf("shoal.conf after --set-conf = %q, %v; want %q", b, err, want)
	}
	if err := run(context.Background(), []string{"--set-conf", out}, &stdout, &stderr); err == nil {
		t.Error("run --set-conf without --conf succeeded")
	}
}
