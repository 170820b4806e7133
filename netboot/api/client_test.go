package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/shoal-project/shoal/internal/servetest"
	"github.com/shoal-project/shoal/netboot/api"
	"github.com/shoal-project/shoal/netboot/inventory"
)

const (
	mac   = "52:54:00:12:34:56"
	other = "52:54:00:12:34:57"
)

// newServe runs shoal serve's real HTTP handler on loopback, with two
// machines, and returns a client of it.
func newServe(t *testing.T, insecure bool) (*inventory.Store, *api.Client) {
	t.Helper()
	s := servetest.New(t, servetest.Options{Inventory: mac + " reimage debian-12 /dev/vda\n" + other + " local debian-12\n", InsecureOpenAPI: insecure})
	return s.Inventory, s.Client
}

var ignoreTimes = cmpopts.IgnoreFields(api.Machine{}, "FirstSeen", "LastBoot", "LastReport")

func TestClientMachines(t *testing.T) {
	_, c := newServe(t, false)
	ctx := context.Background()
	ms, err := c.Machines(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []api.Machine{
		{MAC: mac, Action: api.Reimage, Image: "debian-12", Disk: "/dev/vda", Known: true},
		{MAC: other, Action: api.Local, Image: "debian-12", Known: true},
	}
	if diff := cmp.Diff(want, ms); diff != "" {
		t.Errorf("Machines (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		mac     string
		want    api.Machine
		unknown bool
	}{
		{mac, want[0], false},
		{"52-54-00-12-34-57", want[1], false},
		{"02:00:00:00:00:01", api.Machine{}, true},
	} {
		t.Run(tc.mac, func(t *testing.T) {
			m, err := c.Machine(ctx, tc.mac)
			if got := errors.Is(err, api.ErrUnknownMachine); got != tc.unknown {
				t.Fatalf("Machine(%s) = %v; unknown %v, want %v", tc.mac, err, got, tc.unknown)
			}
			var he *api.HTTPError
			if tc.unknown && (!errors.As(err, &he) || he.Code != http.StatusNotFound) {
				t.Errorf("Machine(%s) = %v, want an *HTTPError 404", tc.mac, err)
			}
			if diff := cmp.Diff(tc.want, m); diff != "" {
				t.Errorf("Machine(%s) (-want +got):\n%s", tc.mac, diff)
			}
		})
	}
}

// TestClientCredentialAndStatus: a credential once per boot, a signed
// report accepted and stored, a badly signed or stale one refused with the
// server's time.
func TestClientCredentialAndStatus(t *testing.T) {
	inv, c := newServe(t, false)
	ctx := context.Background()
	if _, err := c.Credential(ctx, mac); err == nil {
		t.Fatal("Credential without a boot: no error, want a 403")
	}
	servetest.Boot(t, c.BaseURL, mac)
	cred, err := c.Credential(ctx, mac)
	if err != nil {
		t.Fatalf("Credential: %v", err)
	}
	if cred.MAC != mac || cred.Image != "debian-12" || cred.Disk != "/dev/vda" {
		t.Errorf("Credential = %+v, want this machine's entry", cred)
	}
	var he *api.HTTPError
	if _, err := c.Credential(ctx, mac); !errors.As(err, &he) || he.Code != http.StatusConflict {
		t.Errorf("second Credential of one boot = %v, want an *HTTPError 409", err)
	}
	tok, err := cred.TokenBytes()
	if err != nil {
		t.Fatal(err)
	}
	key := api.ReportKey(tok)
	st := api.Status{State: api.StateWriting, Role: api.RoleServer, Progress: 0.5, BytesDone: 5, BytesTotal: 10}
	body, _ := json.Marshal(st)
	now := time.Now().UnixMilli()
	for _, tc := range []struct {
		name     string
		key      []byte
		sentMs   int64
		wantCode int // 0: accepted
	}{
		{"unsigned", nil, now, http.StatusUnauthorized},
		{"other key", api.ReportKey([]byte("other")), now, http.StatusUnauthorized},
		{"an hour old", key, now - time.Hour.Milliseconds(), http.StatusConflict},
		{"good", key, now, 0},
		{"replayed", key, now, http.StatusConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			serverMs, err := c.PostStatus(ctx, mac, body, tc.key, tc.sentMs)
			if serverMs == 0 {
				t.Errorf("PostStatus: no server time in the answer")
			}
			if tc.wantCode == 0 {
				if err != nil {
					t.Fatalf("PostStatus = %v", err)
				}
				return
			}
			if !errors.As(err, &he) || he.Code != tc.wantCode || he.ServerTimeMs != serverMs {
				t.Errorf("PostStatus = %v, want an *HTTPError %d with the server's time", err, tc.wantCode)
			}
		})
	}
	m, err := c.Machine(ctx, mac)
	if err != nil {
		t.Fatal(err)
	}
	want := api.Machine{MAC: mac, Action: api.Reimage, Image: "debian-12", Disk: "/dev/vda", Known: true, Status: st}
	if diff := cmp.Diff(want, m, ignoreTimes); diff != "" {
		t.Errorf("Machine after the report (-want +got):\n%s", diff)
	}
	if stored, _ := inv.Lookup(mac); stored.LastReport.IsZero() {
		t.Errorf("the inventory has no report time after an accepted report")
	}
}

// TestClientUnsignedInsecure: without a key the report goes unsigned,
// which a server with InsecureOpenAPI takes for a machine without a
// credential.
func TestClientUnsignedInsecure(t *testing.T) {
	_, c := newServe(t, true)
	body, _ := json.Marshal(api.Status{State: api.StateFailed, Error: "x"})
	if _, err := c.PostStatus(context.Background(), mac, body, nil, 0); err != nil {
		t.Fatalf("unsigned PostStatus to an insecure server = %v", err)
	}
	m, err := c.Machine(context.Background(), mac)
	if err != nil {
		t.Fatal(err)
	}
	if m.Status.State != api.StateFailed || m.Status.Error != "x" {
		t.Errorf("status after the report = %+v, want failed, x", m.Status)
	}
}

// TestClientServerDown: a server that does not answer is an error, not an
// *HTTPError.
func TestClientServerDown(t *testing.T) {
	hs := httptest.NewServer(http.NotFoundHandler())
	base := hs.URL
	hs.Close()
	c := &api.Client{BaseURL: base}
	var he *api.HTTPError
	if _, err := c.Machines(context.Background()); err == nil || errors.As(err, &he) {
		t.Errorf("Machines of a closed server = %v, want a transport error", err)
	}
}
