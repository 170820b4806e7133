package etcdstore

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-project/shoal/netboot/api"
)

// TestNewer: a status read from etcd never takes the cache back: each
// time is the later of the two, the report the later one's.
func TestNewer(t *testing.T) {
	t1, t2, t3 := time.Unix(100, 0), time.Unix(200, 0), time.Unix(300, 0)
	writing := api.Status{State: api.StateWriting, Progress: 0.5}
	done := api.Status{State: api.StateDone, Progress: 1, Verified: true}
	for _, tc := range []struct {
		name             string
		cache, got, want StatusRecord
	}{
		{"etcd newer", StatusRecord{Status: writing, LastReport: t1, FirstSeen: t1, Server: "a"},
			StatusRecord{Status: done, LastReport: t2, FirstSeen: t1, Server: "b"},
			StatusRecord{Status: done, LastReport: t2, FirstSeen: t1, Server: "b"}},
		{"our echo, older than the cache", StatusRecord{Status: done, LastReport: t2, LastBoot: t1, FirstSeen: t1, Server: "a"},
			StatusRecord{Status: writing, LastReport: t1, LastBoot: t1, FirstSeen: t1, Server: "a"},
			StatusRecord{Status: done, LastReport: t2, LastBoot: t1, FirstSeen: t1, Server: "a"}},
		{"a boot elsewhere, our report newer", StatusRecord{Status: done, LastReport: t3, LastBoot: t1, FirstSeen: t1, Server: "a"},
			StatusRecord{LastBoot: t2, FirstSeen: t1, Server: "b"},
			StatusRecord{Status: done, LastReport: t3, LastBoot: t2, FirstSeen: t1, Server: "a"}},
		{"nothing in the cache", StatusRecord{},
			StatusRecord{Status: writing, LastReport: t1, FirstSeen: t1, Server: "b"},
			StatusRecord{Status: writing, LastReport: t1, FirstSeen: t1, Server: "b"}},
		{"nothing in etcd", StatusRecord{Status: writing, LastReport: t1, FirstSeen: t1, Server: "a"},
			StatusRecord{},
			StatusRecord{Status: writing, LastReport: t1, FirstSeen: t1, Server: "a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, newer(tc.cache, tc.got)); diff != "" {
				t.Errorf("newer (-want +got):\n%s", diff)
			}
		})
	}
}
