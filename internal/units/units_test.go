package units

import "testing"

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"500Mbit", 500e6, true}, {"1Gbit", 1e9, true}, {"200M", 200e6, true}, {"1e9", 1e9, true},
		{"100Kbit", 1e5, true}, {" 20Mbit ", 20e6, true},
		{"", 0, false}, {"fast", 0, false}, {"-5Mbit", 0, false}, {"10Kbit", 0, false}, {"2000Gbit", 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseRate(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("ParseRate(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
			}
		})
	}
}

// TestParseRateForms: the forms shoal send --rate took before ParseRate
// moved here.
func TestParseRateForms(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"500Mbit", 500e6}, {"1Gbit", 1e9}, {"200M", 200e6}, {"1.5Gbit", 1.5e9}, {"100Kbit", 100e3}, {"250000000", 250e6},
		{"", 0}, {"fast", 0}, {"-5M", 0}, {"10bit", 0}, {"0M", 0},
	}
	for _, tc := range tests {
		got, err := ParseRate(tc.in)
		if (err != nil) != (tc.want == 0) || got != tc.want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}
