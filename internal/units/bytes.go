// bytes.go parses byte sizes, for shoal's flags and the appliance's disk
// selectors.

package units

import (
	"fmt"
	"strconv"
	"strings"
)

// byteUnits are the units of ParseBytes, by lower-case suffix: K, M, G, T
// and KiB... are binary, KB, MB, GB, TB decimal, B is a byte.
var byteUnits = map[string]float64{"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
}

// maxBytes bounds a size (4 EiB).
const maxBytes = 1 << 62

// ParseBytes parses a size such as 4MiB, 512k, 1.5T, 500GB or 4194304: a
// number (a fraction is allowed) with an optional unit, in any case, blanks
// allowed around it. K, M, G, T and KiB, MiB, GiB, TiB are binary; KB, MB,
// GB, TB decimal; B is a byte. A fraction of a byte is dropped.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := byteUnits[unit]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q: want B, K, KiB, KB, M, MiB, MB, G, GiB, GB, T, TiB or TB", s, t[i:])
	}
	if !strings.Contains(num, ".") {
		// Whole numbers exactly, beyond float64's 2^53.
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n > maxBytes/int64(mult) {
			return 0, fmt.Errorf("size %q: want a number from 0 to 4EiB with an optional unit, e.g. 4MiB", s)
		}
		return n * int64(mult), nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f*mult > maxBytes {
		return 0, fmt.Errorf("size %q: want a number from 0 to 4EiB with an optional unit, e.g. 1.5GiB", s)
	}
	return int64(f * mult), nil
}
