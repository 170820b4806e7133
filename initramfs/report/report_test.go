package report

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/internal/servetest"
	"github.com/shoal-project/shoal/netboot/api"
	"github.com/shoal-project/shoal/netboot/httpd"
	"github.com/shoal-project/shoal/netboot/inventory"
)

const mac = "52:54:00:12:34:56"

// newServe returns shoal serve's HTTP side with an inventory that lists
// mac.
func newServe(t *testing.T) (*inventory.Store, *httpd.Server) {
	t.Helper()
	s := servetest.New(t, servetest.Options{Inventory: mac + " reimage debian-12 /dev/vda\n"})
	return s.Inventory, s.HTTPD
}

// boot fetches mac's iPXE script from hs (a new boot) and takes its
// credential.
func boot(t *testing.T, base string) *api.Credential {
	t.Helper()
	servetest.Boot(t, base, mac)
	c, err := (&api.Client{BaseURL: base}).Credential(context.Background(), mac)
	if err != nil {
		t.Fatalf("Credential: %v", err)
	}
	if _, err := (&api.Client{BaseURL: base}).Credential(context.Background(), mac); err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("second Credential of one boot = %v, want a 409 error", err)
	}
	return &c
}

// TestReportToServe posts to the real shoal serve HTTP handler (on
// loopback): a signed success turns the machine local; a report signed
// with the wrong key is refused.
func TestReportToServe(t *testing.T) {
	inv, srv := newServe(t)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()

	ctx := context.Background()
	unsigned := &Reporter{Server: hs.URL, MAC: mac}
	if err := unsigned.Send(ctx, Status{State: "writing", Progress: 0.5}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("Send without a credential = %v, want a 401 error", err)
	}
	cred := boot(t, hs.URL)
	wrong := *cred
	wrong.Token = strings.Repeat("00", 32)
	bad := &Reporter{Server: hs.URL, MAC: mac, Credential: &wrong}
	if err := bad.Send(ctx, Status{State: "writing", Progress: 0.5}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("Send with the wrong token = %v, want a 401 error", err)
	}
	r := &Reporter{Server: hs.URL, MAC: mac, Credential: cred}
	if err := r.Send(ctx, Status{State: "writing", Role: "server", Progress: 0.5, BytesTotal: 100, BytesDone: 50}); err != nil {
		t.Fatalf("Send(writing) = %v", err)
	}
	m, err := inv.Lookup(mac)
	if err != nil {
		t.Fatal(err)
	}
	if m.Status.State != "writing" || m.Status.BytesDone != 50 || m.Action != inventory.Reimage {
		t.Errorf("after writing: machine = %+v", m)
	}
	if err := r.Send(ctx, Status{State: "done", Progress: 1, Verified: true}); err != nil {
		t.Fatalf("Send(done) = %v", err)
	}
	if m, _ := inv.Lookup(mac); m.Action != inventory.Local {
		t.Errorf("after a verified success: action = %q, want local", m.Action)
	}
	// Progress is rate limited: the second call within the interval is dropped.
	r.Progress(ctx, Status{State: "writing", Progress: 0.1})
	r.Progress(ctx, Status{State: "failed", Progress: 0.2, Error: "x"})
	if m, _ := inv.Lookup(mac); m.Status.State != "writing" {
		t.Errorf("after two quick progress reports: state = %q, want writing (the second dropped)", m.Status.State)
	}
	var off *Reporter
	if off.Enabled() || (&Reporter{}).Send(ctx, Status{}) != nil {
		t.Error("a reporter without a server should do nothing")
	}
}

// TestClockSkew: a machine whose clock is an hour behind the server's (no
// RTC, no NTP in the appliance) still reports with a site key: the first
// report is refused for its time (409), the reporter takes the server's
// time from the answer and sends it again; later reports go through at
// once. A report the server saw is not taken twice.
func TestClockSkew(t *testing.T) {
	inv, srv := newServe(t)
	var stale, sent int
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		sent++
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		if rec.Code == http.StatusConflict {
			stale++
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	defer hs.Close()
	ctx := context.Background()
	cred := boot(t, hs.URL)
	sent, stale = 0, 0
	cred.ServerTimeMs = 0 // as if the credential had not said the server's time
	r := &Reporter{Server: hs.URL, MAC: mac, Credential: cred, Now: func() time.Time { return time.Now().Add(-time.Hour) }}
	if err := r.Send(ctx, Status{State: "writing", Progress: 0.5}); err != nil {
		t.Fatalf("Send with a clock an hour behind = %v, want it sent again with the server's time", err)
	}
	if stale != 1 || sent != 2 {
		t.Errorf("first report: %d sent, %d refused for their time; want 2 and 1", sent, stale)
	}
	for i := range 3 {
		if err := r.Send(ctx, Status{State: "writing", Progress: 0.6 + float64(i)/10}); err != nil {
			t.Fatalf("Send %d = %v", i, err)
		}
	}
	if stale != 1 || sent != 5 {
		t.Errorf("after the offset was learnt: %d sent, %d refused; want 5 and 1", sent, stale)
	}
	if m, _ := inv.Lookup(mac); m.Status.Progress != 0.8 {
		t.Errorf("progress at the server = %v, want the last report's 0.8", m.Status.Progress)
	}
}

// TestCredentialClock: the credential's server time sets the reporter's
// clock, so a machine an hour behind is not refused even once.
func TestCredentialClock(t *testing.T) {
	_, srv := newServe(t)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	var skew time.Duration
	r := &Reporter{Server: hs.URL, MAC: mac, Now: func() time.Time { return time.Now().Add(skew) }}
	skew = -time.Hour
	r.Credential = boot(t, hs.URL)
	if code, _, err := r.post(context.Background(), []byte(`{"state":"writing","progress":0.5}`)); code != 200 {
		t.Errorf("first report with a clock an hour behind = %d %v, want 200", code, err)
	}
}
