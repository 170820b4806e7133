package units

import "testing"

// TestParseBytes: the union of what shoal's flags (cmd/shoal parseBytes)
// and the disk selectors (disksel.ParseSize) took before they were one.
func TestParseBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		// The flags' forms.
		{"4MiB", 4 << 20, true}, {"512k", 512 << 10, true}, {"1G", 1 << 30, true}, {"4194304", 4194304, true},
		{"0", 0, true}, {"2KB", 2000, true}, {"3MB", 3e6, true}, {"1GB", 1e9, true}, {"2T", 2 << 40, true},
		{"1TiB", 1 << 40, true}, {"7B", 7, true}, {"4 MiB", 4 << 20, true}, {" 1m ", 1 << 20, true},
		// The selectors' forms.
		{"8G", 8 << 30, true}, {"8GiB", 8 << 30, true}, {"500GB", 500e9, true}, {"1.5T", 3 << 39, true},
		{"4096", 4096, true}, {"8gib", 8 << 30, true}, {"2tb", 2e12, true}, {"1.5", 1, true}, {"0.5K", 512, true},
		// Exact beyond float64's precision; the bound.
		{"9007199254740993", 9007199254740993, true}, {"4611686018427387904", 1 << 62, true},
		{"4611686018427387905", 0, false}, {"4194304T", 1 << 62, true}, {"4194305T", 0, false}, {"4194304.5T", 0, false},
		// Refused by both.
		{"", 0, false}, {"x", 0, false}, {"1Q", 0, false}, {"-1", 0, false}, {"-1G", 0, false},
		{"1e9", 0, false}, {"G", 0, false}, {"1..5G", 0, false}, {"0x10", 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseBytes(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("ParseBytes(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
			}
		})
	}
}
