package httpd

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"

	"github.com/shoal-project/shoal/netboot/inventory"
)

// FuzzStatusReport posts what the network could bring to the status API
// of a server with a site key: any MAC in the path, any time header, any
// body, signed with the key or not. The answer is one of the documented
// codes, never a server error; a report that is accepted is stored as
// sent.
func FuzzStatusReport(f *testing.F) {
	f.Add("52:54:00:12:34:56", "1767323045000", []byte(`{"state":"writing","progress":0.5}`), true)
	f.Add("52:54:00:12:34:56", "1767323045000", []byte(`{"state":"done","progress":1,"verified":true}`), true)
	f.Add("52-54-00-12-34-56", "1767323045001", []byte(`{"state":"writing","progress":2}`), true)
	f.Add("52:54:00:12:34:56", "0", []byte(`{"state":"x"}`), true)
	f.Add("02:00:00:00:00:01", "1767323045000", []byte(`{"state":"x"}`), true)
	f.Add("52:54:00:12:34:56", "-9223372036854775808", []byte(`{}`), true)
	f.Add("nonsense", "", []byte(`{`), false)
	f.Add("52:54:00:12:34:56", "1767323045000", []byte(`{"state":"x","extra":1}`), true)
	f.Add("52:54:00:12:34:56", "1767323045002", []byte(`{"state":"x"} {"state":"y"}`), true)
	key := []byte("site key")
	f.Fuzz(func(t *testing.T, mac, sentHeader string, body []byte, signWithKey bool) {
		fx := newFixture(t, key, "ignore")
		req := httptest.NewRequest("POST", "/api/v1/machines/"+url.PathEscape(mac)+"/status", bytes.NewReader(body))
		req.Header.Set(inventory.TimeHeader, sentHeader)
		if signWithKey {
			sent, _ := strconv.ParseInt(sentHeader, 10, 64)
			canon, err := inventory.CanonicalMAC(mac)
			if err != nil {
				canon = mac
			}
			req.Header.Set(SignatureHeader, inventory.SignReport(key, canon, sent, body))
		}
		rec := httptest.NewRecorder()
		fx.handler.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK:
			var want inventory.Status
			if err := json.Unmarshal(body, &want); err != nil {
				t.Fatalf("accepted a body that is not JSON: %q", body)
			}
			m, err := fx.inv.Lookup(mac)
			if err != nil {
				t.Fatalf("accepted a report for %q, and the machine is not there: %v", mac, err)
			}
			if m.Status != want {
				t.Errorf("stored status %+v, sent %+v", m.Status, want)
			}
		case http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound, http.StatusConflict, http.StatusMethodNotAllowed:
		default:
			t.Errorf("POST status for %q with time %q: %d %s", mac, sentHeader, rec.Code, rec.Body.String())
		}
	})
}
