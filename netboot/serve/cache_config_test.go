package serve

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestCacheKeys: the repository cache's keys in a config file, sizes with
// units; a bad size is an error naming the key.
func TestCacheKeys(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       Config // only the cache's fields
		wantErr    bool
	}{
		{"defaults", "", Config{CacheDir: "cache", CacheBytes: 16 << 30}, false},
		{"set", "upstream = https://images.example.com/repo/\ncache-dir = /var/cache/shoal\ncache-bytes = 200G\ninsecure-upstream = true\n",
			Config{Upstream: "https://images.example.com/repo/", CacheDir: "/var/cache/shoal", CacheBytes: 200 << 30, InsecureUpstream: true}, false},
		{"bytes", "cache-bytes = 1500000\n", Config{CacheDir: "cache", CacheBytes: 1500000}, false},
		{"zero", "cache-bytes = 0\n", Config{}, true},
		{"garbage", "cache-bytes = lots\n", Config{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "serve.conf")
			if err := os.WriteFile(path, []byte(tc.file), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg := Default()
			fs := flag.NewFlagSet("serve", flag.ContinueOnError)
			cfg.RegisterFlags(fs)
			if err := fs.Parse(nil); err != nil {
				t.Fatal(err)
			}
			err := LoadFile(fs, path)
			if (err != nil) != tc.wantErr {
				t.Fatalf("LoadFile = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			got := Config{Upstream: cfg.Upstream, CacheDir: cfg.CacheDir, CacheBytes: cfg.CacheBytes, InsecureUpstream: cfg.InsecureUpstream}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("cache fields (-want +got):\n%s", d)
			}
		})
	}
}
