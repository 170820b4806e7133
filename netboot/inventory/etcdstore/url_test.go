package etcdstore

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestParseURL: --store values and what each gives or why it is refused.
func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr string
	}{
		{"etcd://10.0.0.5:2379,10.0.0.6", []string{"http://10.0.0.5:2379", "http://10.0.0.6:2379"}, ""},
		{"etcd://[::1]:2380,[fe80::1]", []string{"http://[::1]:2380", "http://[fe80::1]:2379"}, ""},
		{"etcds://a,b:2380", []string{"https://a:2379", "https://b:2380"}, ""},
		{"etcd://::1", nil, "brackets"},
		{"etcd://a:99999", nil, "port"},
		{"etcd://a,a:2379", nil, "twice"},
		{"etcd://a/b", nil, "not allowed"},
		{"etcd://", nil, "empty host"},
		{"file", nil, "want etcd://"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseURL(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseURL(%q) = %v, %v; want an error containing %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseURL(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}
