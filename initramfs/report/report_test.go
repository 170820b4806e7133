package report

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/netboot/httpd"
	"github.com/shoal-project/shoal/netboot/inventory"
)

// TestReportToServe posts to the real shoal serve HTTP handler (on
// loopback): a signed success turns the machine local; a report signed
// with the wrong key is refused.
func TestReportToServe(t *testing.T) {
	const mac = "52:54:00:12:34:56"
	dir := t.TempDir()
	inv, err := inventory.Parse([]byte(mac+" reimage debian-12 /dev/vda\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := httpd.New(httpd.Config{RepoDir: dir, BootDir: dir, Inventory: inv, Key: []byte("site-key")})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()

	if got, want := Sign([]byte("k"), mac, []byte("{}")), httpd.Sign([]byte("k"), mac, []byte("{}")); got != want {
		t.Errorf("Sign = %s, want httpd.Sign's %s", got, want)
	}

	ctx := context.Background()
	bad := &Reporter{Server: hs.URL, MAC: mac, Key: []byte("wrong")}
	if err := bad.Send(ctx, Status{State: "writing", Progress: 0.5}); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("Send with the wrong key = %v, want a 403 error", err)
	}
	r := &Reporter{Server: hs.URL, MAC: mac, Key: []byte("site-key")}
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
