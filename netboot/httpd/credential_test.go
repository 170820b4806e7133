package httpd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/shoal-project/shoal/internal/sitekeys"
	"github.com/shoal-project/shoal/netboot/api"
)

// clientFrom is an HTTP client whose connections come from the loopback
// address src (127.0.0.1 when empty): another host, for the server.
func clientFrom(src string) *http.Client {
	if src == "" {
		return http.DefaultClient
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}}}
}

// fetchScript fetches mac's iPXE script with c: a new boot.
func fetchScript(t *testing.T, f *fixture, c *http.Client, mac string) string {
	t.Helper()
	resp, err := c.Get(f.srv.URL + "/ipxe/" + mac)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// askCredential boots mac (a script fetch from 127.0.0.1) unless c is
// given, then asks for its credential with c and wants code.
func askCredential(t *testing.T, f *fixture, mac string, c *http.Client, code int) api.Credential {
	t.Helper()
	if c == nil {
		c = http.DefaultClient
		fetchScript(t, f, c, mac)
	}
	resp, err := c.Post(f.srv.URL+"/api/v1/machines/"+mac+"/credential", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != code {
		t.Fatalf("POST credential for %s = %d %s, want %d", mac, resp.StatusCode, b, code)
	}
	var cr api.Credential
	if code == 200 {
		if err := json.Unmarshal(b, &cr); err != nil {
			t.Fatalf("credential %q: %v", b, err)
		}
	}
	return cr
}

func reportKey(t *testing.T, c api.Credential) []byte {
	t.Helper()
	tok, err := c.TokenBytes()
	if err != nil {
		t.Fatal(err)
	}
	return api.ReportKey(tok)
}

// postWith posts a report of mac signed with key at ms, with c.
func postWith(t *testing.T, f *fixture, c *http.Client, mac string, key []byte, ms int64, body []byte) int {
	t.Helper()
	req, _ := http.NewRequest("POST", f.srv.URL+"/api/v1/machines/"+mac+"/status", bytes.NewReader(body))
	if key != nil {
		req.Header.Set(api.TimeHeader, strconv.FormatInt(ms, 10))
		req.Header.Set(api.SignatureHeader, api.SignReport(key, mac, ms, body))
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestCredentialOncePerBoot(t *testing.T) {
	f := newFixture(t, false, "ignore")
	mac := "52:54:00:12:34:56"
	c := askCredential(t, f, mac, nil, 200)
	id := sha256.Sum256([]byte(fixtureManifest))
	want := api.Credential{MAC: mac, Image: "debian-12", Disk: "/dev/vda", ImageID: hex.EncodeToString(id[:]),
		SessionKey:   hex.EncodeToString(sitekeys.SessionKey(fixtureSecret, id)),
		ServerTimeMs: fixtureNow.UnixMilli(), ExpiresMs: fixtureNow.Add(DefaultCredentialTTL).UnixMilli()}
	if diff := cmp.Diff(want, c, cmpopts.IgnoreFields(api.Credential{}, "Token")); diff != "" {
		t.Errorf("credential (-want +got):\n%s", diff)
	}
	if _, err := c.TokenBytes(); err != nil {
		t.Errorf("token %q: %v", c.Token, err)
	}
	// The same boot again, from the machine or from another host: 409.
	askCredential(t, f, mac, http.DefaultClient, http.StatusConflict)
	askCredential(t, f, mac, clientFrom("127.0.0.2"), http.StatusConflict)
	// A new boot: a new credential, the old one void.
	c2 := askCredential(t, f, mac, nil, 200)
	if c2.Token == c.Token {
		t.Errorf("second boot got the first boot's token")
	}
	body := []byte(`{"state":"writing","progress":0.1}`)
	if code := postWith(t, f, http.DefaultClient, mac, reportKey(t, c), fixtureNow.UnixMilli(), body); code != http.StatusUnauthorized {
		t.Errorf("report signed with the last boot's token = %d, want 401", code)
	}
	if code := postWith(t, f, http.DefaultClient, mac, reportKey(t, c2), fixtureNow.UnixMilli(), body); code != 200 {
		t.Errorf("report signed with this boot's token = %d, want 200", code)
	}
}

func TestCredentialRefused(t *testing.T) {
	f := newFixture(t, false, "ignore")
	mac := "52:54:00:12:34:56"
	// No boot known (no script fetched, no lease): refused.
	askCredential(t, f, mac, http.DefaultClient, http.StatusForbidden)
	// The script fetched by 127.0.0.1, the credential asked by another
	// host: refused, and the machine can still have its own.
	fetchScript(t, f, http.DefaultClient, mac)
	askCredential(t, f, mac, clientFrom("127.0.0.2"), http.StatusForbidden)
	askCredential(t, f, mac, http.DefaultClient, 200)
	// Unknown machine, bad MAC.
	askCredential(t, f, "02:00:00:00:00:01", http.DefaultClient, http.StatusNotFound)
	askCredential(t, f, "nonsense", http.DefaultClient, http.StatusBadRequest)
}

// fakeLeases leases one address to every MAC.
type fakeLeases struct{ addr string }

func (l fakeLeases) LeasedTo(net.HardwareAddr) (netip.Addr, bool) {
	return netip.MustParseAddr(l.addr), true
}

func TestCredentialByLease(t *testing.T) {
	f := newFixture(t, false, "ignore")
	f.s.cfg.Leases = fakeLeases{"127.0.0.3"}
	mac := "52:54:00:12:34:56"
	askCredential(t, f, mac, http.DefaultClient, http.StatusForbidden)
	askCredential(t, f, mac, clientFrom("127.0.0.3"), 200)
}

func TestForgedDoneFromAnotherHost(t *testing.T) {
	done := []byte(`{"state":"done","progress":1,"verified":true}`)
	for _, tc := range []struct {
		name     string
		insecure bool
		key      func(api.Credential) []byte
		from     string
		wantCode int
	}{
		{"unsigned, secure default", false, nil, "127.0.0.2", http.StatusForbidden},
		{"unsigned, insecure, machine has a credential", true, nil, "127.0.0.2", http.StatusForbidden},
		{"unsigned, from the machine's address", false, nil, "", http.StatusUnauthorized},
		{"with the token, from another host", false, func(c api.Credential) []byte { return reportKey(t, c) }, "127.0.0.2", http.StatusForbidden},
		{"wrong token, from the machine's address", false, func(api.Credential) []byte { return []byte("guess") }, "", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.insecure, "ignore")
			mac := "52:54:00:12:34:56"
			c := askCredential(t, f, mac, nil, 200)
			var key []byte
			if tc.key != nil {
				key = tc.key(c)
			}
			if code := postWith(t, f, clientFrom(tc.from), mac, key, fixtureNow.UnixMilli(), done); code != tc.wantCode {
				t.Errorf("forged done = %d, want %d", code, tc.wantCode)
			}
			data, err := os.ReadFile(f.invPath)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(data), mac+"  reimage") {
				t.Errorf("machines file after a forged done:\n%s\nwant the machine still reimage", data)
			}
		})
	}
}

func TestInsecureOpenAPIWithoutCredential(t *testing.T) {
	body := []byte(`{"state":"writing","progress":0.1}`)
	for _, insecure := range []bool{false, true} {
		f := newFixture(t, insecure, "ignore")
		want := http.StatusUnauthorized
		if insecure {
			want = 200
		}
		if code := postWith(t, f, http.DefaultClient, "52:54:00:12:34:56", nil, 0, body); code != want {
			t.Errorf("insecure %v: unsigned report of a machine without a credential = %d, want %d", insecure, code, want)
		}
	}
}

func TestCredentialExpires(t *testing.T) {
	f := newFixture(t, false, "ignore")
	s := f.s
	mac := "52:54:00:12:34:56"
	key := reportKey(t, askCredential(t, f, mac, nil, 200))
	later := fixtureNow.Add(DefaultCredentialTTL + time.Second)
	s.cfg.Now = func() time.Time { return later }
	if code := postWith(t, f, http.DefaultClient, mac, key, later.UnixMilli(), []byte(`{"state":"x"}`)); code != http.StatusUnauthorized {
		t.Errorf("report after the credential expired = %d, want 401", code)
	}
}

// TestNoSecretUnauthenticated fetches every route an unauthenticated
// client can read, after a credential was issued, and looks for the
// token, the session key and the session secret in the answers.
func TestNoSecretUnauthenticated(t *testing.T) {
	f := newFixture(t, false, "ignore")
	mac := "52:54:00:12:34:56"
	c := askCredential(t, f, mac, nil, 200)
	tok, _ := c.TokenBytes()
	secrets := map[string]string{
		"token": c.Token, "session key": c.SessionKey, "report key": hex.EncodeToString(api.ReportKey(tok)),
		"session secret": string(fixtureSecret), "session secret hex": hex.EncodeToString(fixtureSecret),
		"shoal.key=": "shoal.key=",
	}
	for _, path := range []string{"/ipxe/" + mac, "/ipxe/52:54:00:12:34:57", "/api/v1/machines", "/api/v1/machines/" + mac, "/", "/metrics", "/boot/", "/boot/vmlinuz", "/repo/"} {
		_, body := get(t, f.srv.URL+path, nil)
		for what, v := range secrets {
			if v != "" && strings.Contains(body, v) {
				t.Errorf("GET %s shows the %s", path, what)
			}
		}
	}
}
