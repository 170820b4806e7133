package appliance

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestWithDefaults(t *testing.T) {
	set := Options{Cmdline: "c", ModulesDir: "m", PubKey: "p", SysBlock: "s", DevDir: "d", ConfWait: time.Second, DiskWait: 2 * time.Second, EFIFirmware: "e"}
	for _, tc := range []struct {
		name string
		in   Options
		want Options
	}{
		{"zero: the defaults", Options{}, DefaultOptions()},
		{"set: kept", set, set},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tc.in.withDefaults()); diff != "" {
				t.Errorf("withDefaults (-want +got):\n%s", diff)
			}
		})
	}
}
