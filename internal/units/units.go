// Package units parses the quantities shoal's flags and the appliance's
// configuration take: rates such as 500Mbit, sizes such as 4MiB.
package units

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseRate parses a rate such as 500Mbit, 1Gbit, 200M or 1e9 (bits per
// second), from 100 Kbit/s to 1000 Gbit/s.
func ParseRate(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := 1.0
	for _, u := range []struct {
		suffix string
		mult   float64
	}{{"Gbit", 1e9}, {"Mbit", 1e6}, {"Kbit", 1e3}, {"kbit", 1e3}, {"bit", 1}, {"G", 1e9}, {"M", 1e6}, {"K", 1e3}, {"k", 1e3}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSuffix(t, u.suffix), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f <= 0 || f*mult < 1e5 || f*mult > 1e12 {
		return 0, fmt.Errorf("rate %q: want bits per second from 100Kbit to 1000Gbit, e.g. 500Mbit", s)
	}
	return int64(f * mult), nil
}
