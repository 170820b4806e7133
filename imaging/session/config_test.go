package session

// config_test.go: the defaults a zero Config takes are DefaultConfig's.

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/shoal-project/shoal/imaging"
)

func TestDefaults(t *testing.T) {
	d := DefaultConfig()
	if d.LeaderTimeout != 5*d.AnnounceInterval {
		t.Errorf("DefaultConfig: LeaderTimeout %v, want 5 announce intervals (%v)", d.LeaderTimeout, 5*d.AnnounceInterval)
	}
	withInterval := d
	withInterval.AnnounceInterval, withInterval.LeaderTimeout = 300*time.Millisecond, 1500*time.Millisecond
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want Config
	}{
		{"zero", func(*Config) {}, d},
		{"interval set: leader timeout derived from it", func(c *Config) { c.AnnounceInterval = 300 * time.Millisecond }, withInterval},
		{"explicit values kept", func(c *Config) {
			c.Relay, c.LeaderTimeout, c.Workers = RelayAfter, 3*time.Second, 9
		}, func() Config { c := d; c.Relay, c.LeaderTimeout, c.Workers = RelayAfter, 3*time.Second, 9; return c }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Server: imaging.DirRepo(t.TempDir()), Name: "img", NodeID: 1,
				Open: func(*imaging.Image) (*imaging.Writer, error) { return nil, nil }}
			tc.mod(&c)
			if err := c.defaults(); err != nil {
				t.Fatal(err)
			}
			// The fields DefaultConfig leaves to the caller or the run.
			ignore := cmpopts.IgnoreFields(Config{}, "Server", "Name", "Open", "Clock", "Logger", "NodeID", "Netns")
			if diff := cmp.Diff(tc.want, c, ignore, cmpopts.EquateComparable(netip.Prefix{}, netip.AddrPort{})); diff != "" {
				t.Errorf("defaults() (-want +got):\n%s", diff)
			}
		})
	}
}
