package httpd

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"

	"github.com/shoal-project/shoal/netboot/api"
	"github.com/shoal-project/shoal/netboot/inventory"
)

// FuzzStatusReport posts what the network could bring to the status API
// of a server where machine 52:54:00:12:34:56 has its credential: any MAC
// in the path, any time header, any body, signed with the credential or
// not. The answer is one of the documented
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
	f.Fuzz(func(t *testing.T, mac, sentHeader string, body []byte, signWithKey bool) {
		fx := newFixture(t, false, "ignore")
		key := handlerCredential(t, fx, "52:54:00:12:34:56")
		req := httptest.NewRequest("POST", "/api/v1/machines/"+url.PathEscape(mac)+"/status", bytes.NewReader(body))
		req.Header.Set(api.TimeHeader, sentHeader)
		if signWithKey {
			sent, _ := strconv.ParseInt(sentHeader, 10, 64)
			canon, err := inventory.CanonicalMAC(mac)
			if err != nil {
				canon = mac
			}
			req.Header.Set(SignatureHeader, api.SignReport(key, canon, sent, body))
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
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusConflict, http.StatusMethodNotAllowed:
		default:
			t.Errorf("POST status for %q with time %q: %d %s", mac, sentHeader, rec.Code, rec.Body.String())
		}
	})
}

// handlerCredential boots mac and takes its credential through the
// handler (from httptest's client address), returning the report key.
func handlerCredential(t *testing.T, fx *fixture, mac string) []byte {
	t.Helper()
	fx.handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/ipxe/"+mac, nil))
	rec := httptest.NewRecorder()
	fx.handler.ServeHTTP(rec, httptest.NewRequest("POST", "/api/v1/machines/"+mac+"/credential", nil))
	var c api.Credential
	if err := json.Unmarshal(rec.Body.Bytes(), &c); err != nil {
		t.Fatalf("credential %d %q: %v", rec.Code, rec.Body, err)
	}
	return reportKey(t, c)
}

// FuzzCredentialRequest asks for credentials with any MAC, any body and
// from any address, after the machine booted: the answer is one of the
// documented codes, a credential goes only to the address that fetched
// the script, and only once.
func FuzzCredentialRequest(f *testing.F) {
	f.Add("52:54:00:12:34:56", []byte(""), "192.0.2.1:1234", 1)
	f.Add("52:54:00:12:34:56", []byte("{}"), "192.0.2.2:1234", 1)
	f.Add("52-54-00-12-34-56", []byte("x"), "192.0.2.1:1", 2)
	f.Add("52:54:00:12:34:57", []byte(""), "192.0.2.1:1234", 1)
	f.Add("02:00:00:00:00:01", []byte(""), "192.0.2.1:1234", 1)
	f.Add("nonsense", []byte("{"), "garbage", 1)
	f.Add("52:54:00:12:34:56", []byte(""), "[::ffff:192.0.2.1]:80", 3)
	f.Fuzz(func(t *testing.T, mac string, body []byte, remote string, times int) {
		fx := newFixture(t, false, "ignore")
		fx.handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/ipxe/52:54:00:12:34:56", nil))
		issued := 0
		for range min(max(times, 1), 4) {
			req := httptest.NewRequest("POST", "/api/v1/machines/"+url.PathEscape(mac)+"/credential", bytes.NewReader(body))
			req.RemoteAddr = remote
			rec := httptest.NewRecorder()
			fx.handler.ServeHTTP(rec, req)
			switch rec.Code {
			case http.StatusOK:
				issued++
				canon, err := inventory.CanonicalMAC(mac)
				if err != nil || canon != "52:54:00:12:34:56" || remoteAddrOf(remote) != "192.0.2.1" {
					t.Fatalf("credential for %q issued to %q: want only 52:54:00:12:34:56 from 192.0.2.1", mac, remote)
				}
			case http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound, http.StatusConflict, http.StatusMethodNotAllowed:
			default:
				t.Errorf("POST credential for %q from %q: %d %s", mac, remote, rec.Code, rec.Body.String())
			}
		}
		if issued > 1 {
			t.Errorf("%d credentials for one boot", issued)
		}
	})
}

// remoteAddrOf is the address of a RemoteAddr, as the server reads it.
func remoteAddrOf(remote string) string {
	return remoteAddr(&http.Request{RemoteAddr: remote}).String()
}
