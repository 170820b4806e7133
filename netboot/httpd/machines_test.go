package httpd

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-project/shoal/netboot/api"
)

// TestMachine: GET /api/v1/machines/{mac} over a real HTTP server gives
// the machine's api.Machine (any MAC spelling), with what the server
// learnt from its boot and reports; 404 for a MAC the server does not
// boot, and the unknown-machine policy's entry for one it lets in.
func TestMachine(t *testing.T) {
	f := newFixture(t, true, "ignore")
	mac := "52:54:00:12:34:56"
	fetchScript(t, f, http.DefaultClient, mac)
	body := []byte(`{"state":"writing","role":"leader","progress":0.5,"bytesDone":5,"bytesTotal":10}`)
	if code := postWith(t, f, http.DefaultClient, mac, nil, 0, body); code != 200 {
		t.Fatalf("POST status = %d", code)
	}
	writing := api.Machine{MAC: mac, Action: api.Reimage, Image: "debian-12", Disk: "/dev/vda", Known: true,
		Status:    api.Status{State: api.StateWriting, Role: api.RoleLeader, Progress: 0.5, BytesDone: 5, BytesTotal: 10},
		FirstSeen: fixtureNow, LastBoot: fixtureNow, LastReport: fixtureNow}
	for _, tc := range []struct {
		name     string
		path     string
		now      time.Time
		wantCode int
		want     api.Machine
	}{
		{"reporting", "/api/v1/machines/" + mac, fixtureNow, 200, writing},
		{"dashes", "/api/v1/machines/52-54-00-12-34-56", fixtureNow, 200, writing},
		{"silent", "/api/v1/machines/" + mac, fixtureNow.Add(time.Hour), 200, func() api.Machine { m := writing; m.Silent = true; return m }()},
		{"local, default disk", "/api/v1/machines/52:54:00:12:34:57", fixtureNow, 200,
			api.Machine{MAC: "52:54:00:12:34:57", Action: api.Local, Image: "debian-12", Known: true}},
		{"unknown", "/api/v1/machines/02:00:00:00:00:01", fixtureNow, 404, api.Machine{}},
		{"bad MAC", "/api/v1/machines/nope", fixtureNow, 400, api.Machine{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.s.cfg.Now = func() time.Time { return tc.now }
			t.Cleanup(func() { f.s.cfg.Now = func() time.Time { return fixtureNow } })
			code, got := get(t, f.srv.URL+tc.path, nil)
			if code != tc.wantCode {
				t.Fatalf("GET %s = %d %s, want %d", tc.path, code, got, tc.wantCode)
			}
			if code != 200 {
				return
			}
			var m api.Machine
			if err := json.Unmarshal([]byte(got), &m); err != nil {
				t.Fatalf("GET %s: %v in %q", tc.path, err, got)
			}
			if diff := cmp.Diff(tc.want, m); diff != "" {
				t.Errorf("GET %s (-want +got):\n%s", tc.path, diff)
			}
		})
	}
}

// TestMachineUnknownPolicy: a MAC let in by the unknown-machine policy is
// that policy's entry, as its boot script says.
func TestMachineUnknownPolicy(t *testing.T) {
	f := newFixture(t, false, "fallback-image")
	code, got := get(t, f.srv.URL+"/api/v1/machines/02:00:00:00:00:01", nil)
	if code != 200 {
		t.Fatalf("GET = %d %s, want 200", code, got)
	}
	var m api.Machine
	if err := json.Unmarshal([]byte(got), &m); err != nil {
		t.Fatal(err)
	}
	want := api.Machine{MAC: "02:00:00:00:00:01", Action: api.Reimage, Image: "fallback-image"}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Errorf("unknown machine let in by the policy (-want +got):\n%s", diff)
	}
}
