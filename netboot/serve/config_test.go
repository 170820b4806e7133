package serve

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLoadFileFlagsWin(t *testing.T) {
	path := filepath.Join(t.TempDir(), "serve.conf")
	conf := `# a comment
dhcp = full
range = 10.0.0.100-10.0.0.200
http = ":9090"
lease-time = 2h
ra = false
unknown = fallback
store = etcd://10.0.0.5:2379,10.0.0.6
`
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Default()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse([]string{"--http", ":7070", "--iface", "eth1"}); err != nil {
		t.Fatal(err)
	}
	if err := LoadFile(fs, path); err != nil {
		t.Fatalf("LoadFile: %v", err)
	}
	want := Default()
	want.DHCP = "full"
	want.Range = "10.0.0.100-10.0.0.200"
	want.HTTP = ":7070" // the command line wins
	want.Iface = "eth1"
	want.LeaseTime = 2 * time.Hour
	want.RA = false
	want.Unknown = "fallback"
	want.Store = "etcd://10.0.0.5:2379,10.0.0.6"
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("config mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadFileErrors(t *testing.T) {
	for _, tc := range []struct{ name, conf, want string }{
		{"unknown key", "colour = blue\n", "unknown key"},
		{"no equals", "dhcp full\n", "key = value"},
		{"bad value", "lease-time = soon\n", "lease-time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "serve.conf")
			if err := os.WriteFile(path, []byte(tc.conf), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg := Default()
			fs := flag.NewFlagSet("serve", flag.ContinueOnError)
			cfg.RegisterFlags(fs)
			fs.Parse(nil)
			err := LoadFile(fs, path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadFile(%q) = %v, want an error containing %q", tc.conf, err, tc.want)
			}
		})
	}
}

func TestListenRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"dhcp without iface", func(c *Config) { c.DHCP = "full" }, "needs --iface"},
		{"bad mode", func(c *Config) { c.DHCP = "half" }, "want full, proxy or off"},
		{"bad server ip", func(c *Config) { c.ServerIP = "nope" }, "server-ip"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			cfg.HTTP = "127.0.0.1:0"
			cfg.TFTP = "off"
			tc.mod(&cfg)
			ls, err := Listen(cfg)
			if err == nil {
				ls.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Listen = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestSampleConfigParses keeps docs/serve.sample.conf in step with the flags.
func TestSampleConfigParses(t *testing.T) {
	cfg := Default()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	fs.Parse(nil)
	if err := LoadFile(fs, "../../docs/serve.sample.conf"); err != nil {
		t.Fatalf("sample config: %v", err)
	}
	if cfg.DHCP != "full" || cfg.Iface != "eth1" || cfg.Cmdline != "console=ttyS0,115200 console=tty0" {
		t.Errorf("sample config gave %+v", cfg)
	}
}
