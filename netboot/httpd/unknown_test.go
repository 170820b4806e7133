package httpd

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/netboot/inventory"
)

// TestUnknownScriptFetchesBounded: with --unknown IMAGE, 2,000
// unauthenticated GET /ipxe/{mac} for made-up MACs each get a boot script
// but add no machine and no metrics series (inventory.MaxPending bounds
// what is kept of them).
func TestUnknownScriptFetchesBounded(t *testing.T) {
	fx := newFixture(t, false, "img")
	for i := range 2000 {
		rec := httptest.NewRecorder()
		fx.handler.ServeHTTP(rec, httptest.NewRequest("GET", fmt.Sprintf("/ipxe/02:00:00:00:%02x:%02x", i>>8, i&0xff), nil))
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), "shoal.image=img") {
			t.Fatalf("GET %d: %d %q", i, rec.Code, rec.Body.String())
		}
	}
	if n := len(fx.inv.Machines()); n != 2 {
		t.Errorf("%d machines after 2,000 unknown script fetches, want the file's 2", n)
	}
	if n := fx.inv.Pending(); n > inventory.MaxPending {
		t.Errorf("%d pending, want <= %d", n, inventory.MaxPending)
	}
	rec := httptest.NewRecorder()
	fx.handler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if n := strings.Count(rec.Body.String(), "shoal_serve_machine_progress_ratio{"); n != 2 {
		t.Errorf("%d progress series, want 2", n)
	}
}
