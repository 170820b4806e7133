package config

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-project/shoal/netboot/api"
)

func TestParseCmdline(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[string]string
		err      error
	}{
		{"netboot", `BOOT_IMAGE=vmlinuz initrd=shoal-initramfs.cpio.zst console=ttyS0 shoal.server=http://10.0.0.1:8080 shoal.repo=http://10.0.0.1:8080/repo/ shoal.image=debian-12 shoal.mac=52:54:00:12:34:56 shoal.disk=/dev/vda`,
			map[string]string{"server": "http://10.0.0.1:8080", "repo": "http://10.0.0.1:8080/repo/", "image": "debian-12", "mac": "52:54:00:12:34:56", "disk": "/dev/vda"}, nil},
		{"quoted", `shoal.disk="model=Samsung SSD*" quiet`, map[string]string{"disk": "model=Samsung SSD*"}, nil},
		{"none", "console=ttyS0 panic=-1", map[string]string{}, nil},
		{"unknown", "shoal.imgae=x", nil, ErrSyntax},
		{"novalue", "shoal.image", nil, ErrSyntax},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseCmdline(tc.in)
			if !errors.Is(err, tc.err) {
				t.Fatalf("ParseCmdline(%q) error = %v, want %v", tc.in, err, tc.err)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tc.want, values(c)); diff != "" {
				t.Errorf("ParseCmdline(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func values(c Config) map[string]string {
	m := map[string]string{}
	for _, k := range Keys {
		if v := c.Get(k); v != "" {
			m[k] = v
		}
	}
	return m
}

func TestParseConf(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[string]string
		err      error
	}{
		{"example", "# shoal.conf\nrepo = http://images.example/repo/\nimage=debian-12  # the fleet's\n\nshoal.disk = \"size=8G\"\nAFTER = poweroff\n",
			map[string]string{"repo": "http://images.example/repo/", "image": "debian-12", "disk": "size=8G", "after": "poweroff"}, nil},
		{"empty", "", map[string]string{}, nil},
		{"noequals", "repo http://x/\n", nil, ErrSyntax},
		{"unknown", "colour = blue\n", nil, ErrSyntax},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConf(strings.NewReader(tc.in))
			if !errors.Is(err, tc.err) {
				t.Fatalf("ParseConf(%q) error = %v, want %v", tc.in, err, tc.err)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tc.want, values(c)); diff != "" {
				t.Errorf("ParseConf(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestFromMachine(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    api.Machine
		want map[string]string
	}{
		{"image and disk", api.Machine{MAC: "52:54:00:00:00:01", Action: api.Reimage, Image: "a", Disk: "/dev/sda"}, map[string]string{"image": "a", "disk": "/dev/sda"}},
		{"default disk", api.Machine{MAC: "52:54:00:00:00:02", Action: api.Reimage, Image: "b"}, map[string]string{"image": "b"}},
		{"nothing", api.Machine{}, map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := FromMachine(tc.m)
			if diff := cmp.Diff(tc.want, values(c)); diff != "" {
				t.Errorf("FromMachine (-want +got):\n%s", diff)
			}
			for k := range tc.want {
				if c.Source[k] != SourceServer {
					t.Errorf("Source[%s] = %q, want %q", k, c.Source[k], SourceServer)
				}
			}
		})
	}
}

// TestPrecedence: the command line wins over the server, the server over
// shoal.conf; Finish fills the defaults.
func TestPrecedence(t *testing.T) {
	cmd, _ := ParseCmdline("shoal.image=fromcmd shoal.server=http://s/")
	srv := FromMachine(api.Machine{MAC: "52:54:00:00:00:01", Image: "fromserver", Disk: "/dev/vdb"})
	conf, _ := ParseConf(strings.NewReader("image = fromconf\ndisk = /dev/sda\nrepo = http://r/repo/\n"))
	c := cmd.Merge(srv).Merge(conf)
	if err := c.Finish(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"image": "fromcmd", "server": "http://s/", "disk": "/dev/vdb", "repo": "http://r/repo/", "after": "reboot", "linger": "30s", "reuse": "on"}
	if diff := cmp.Diff(want, values(c)); diff != "" {
		t.Errorf("merged (-want +got):\n%s", diff)
	}
	wantSrc := map[string]string{"image": SourceCmdline, "server": SourceCmdline, "disk": SourceServer, "repo": SourceConf, "after": SourceDefault, "linger": SourceDefault, "reuse": SourceDefault}
	if diff := cmp.Diff(wantSrc, c.Source); diff != "" {
		t.Errorf("sources (-want +got):\n%s", diff)
	}
}

func TestFinish(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Config
		err  error
	}{
		{"ok", Config{Repo: "http://r/", Image: "a"}, nil},
		{"norepo", Config{Image: "a"}, ErrMissing},
		{"noimage", Config{Repo: "http://r/"}, ErrMissing},
		{"ftp", Config{Repo: "ftp://r/", Image: "a"}, ErrInvalid},
		{"badname", Config{Repo: "http://r/", Image: "../a"}, ErrInvalid},
		{"after", Config{Repo: "http://r/", Image: "a", After: "explode"}, ErrInvalid},
		{"mac", Config{Repo: "http://r/", Image: "a", MAC: "nope"}, ErrInvalid},
		{"reuse off", Config{Repo: "http://r/", Image: "a", Reuse: "off"}, nil},
		{"reuse bad", Config{Repo: "http://r/", Image: "a", Reuse: "maybe"}, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.c.Finish(); !errors.Is(err, tc.err) {
				t.Errorf("Finish(%+v) = %v, want %v", tc.c, err, tc.err)
			}
		})
	}
}

// FuzzParse: no input makes a parser panic, and what parses and finishes
// is a valid configuration.
func FuzzParse(f *testing.F) {
	f.Add("shoal.repo=http://a/ shoal.image=x shoal.disk=\"model=A B\"")
	f.Add("repo = http://a/\nimage = x # c\n")
	f.Add(`{"mac":"52:54:00:00:00:01","image":"x","disk":"/dev/sda"}`)
	f.Add("\"\"\"shoal.after=")
	f.Fuzz(func(t *testing.T, s string) {
		for _, parse := range []func(string) (Config, error){
			ParseCmdline,
			func(s string) (Config, error) { return ParseConf(strings.NewReader(s)) },
			func(s string) (Config, error) {
				var m api.Machine
				err := json.Unmarshal([]byte(s), &m)
				return FromMachine(m), err
			},
		} {
			c, err := parse(s)
			if err != nil {
				continue
			}
			if c.Finish() == nil {
				if c.Repo == "" || c.Image == "" || c.Disk == "" || c.After == "" {
					t.Errorf("Finish accepted %+v", c)
				}
			}
			_ = c.String()
		}
	})
}

// TestRateAndLinger checks the multicast rate and linger keys: parsed
// once, by Finish, into typed fields, or a clear error.
func TestRateAndLinger(t *testing.T) {
	for _, tc := range []struct {
		cmdline    string
		wantRate   int64
		wantLinger time.Duration
		err        string // "": no error
	}{
		{"shoal.rate=20Mbit shoal.linger=5s", 20e6, 5 * time.Second, ""},
		{"", 0, DefaultLinger, ""},
		{"shoal.linger=0s", 0, 0, ""},
		{"shoal.rate=1Gbit", 1e9, DefaultLinger, ""},
		{"shoal.rate=fast", 0, 0, `rate (from kernel command line): rate "fast"`},
		{"shoal.rate=10Kbit", 0, 0, `rate "10Kbit"`},
		{"shoal.linger=soon", 0, 0, `linger "soon" (from kernel command line): want a duration`},
		{"shoal.linger=-1s", 0, 0, `linger "-1s"`},
	} {
		t.Run(tc.cmdline, func(t *testing.T) {
			c, err := ParseCmdline("shoal.repo=http://r/ shoal.image=img " + tc.cmdline)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Finish()
			if tc.err != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Finish() = %v, want ErrInvalid saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Finish() = %v", err)
			}
			if c.RateBitsPerSec != tc.wantRate || c.Linger != tc.wantLinger {
				t.Errorf("Finish: rate %d, linger %v; want %d, %v", c.RateBitsPerSec, c.Linger, tc.wantRate, tc.wantLinger)
			}
		})
	}
}
