package httpd

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-project/shoal/netboot/api"
	"github.com/shoal-project/shoal/netboot/inventory"
)

const machinesFile = `52:54:00:12:34:56  reimage  debian-12  /dev/vda
52:54:00:12:34:57  local    debian-12
`

// fixtureNow is the fixture server's clock.
var fixtureNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

type fixture struct {
	srv     *httptest.Server
	handler http.Handler
	invPath string
	inv     *inventory.Store
	dir     string
	s       *Server
}

// fixtureSecret is the fixture server's session secret.
var fixtureSecret = []byte("0123456789abcdef0123456789abcdef")

// fixtureManifest is the manifest of image debian-12 in the fixture's
// repository.
const fixtureManifest = `{"name":"debian-12"}`

// newFixture starts a server on loopback; insecure sets InsecureOpenAPI.
func newFixture(t *testing.T, insecure bool, unknown string) *fixture {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"repo/img", "repo/images/debian-12", "boot"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "repo/img/chunk"), []byte("0123456789abcdef"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "repo/images/debian-12/manifest.json"), []byte(fixtureManifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "boot/vmlinuz"), []byte("kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../secret", filepath.Join(dir, "repo/img/escape")); err != nil {
		t.Fatal(err)
	}
	invPath := filepath.Join(dir, "machines")
	if err := os.WriteFile(invPath, []byte(machinesFile), 0o644); err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.Open(invPath, unknown)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{
		RepoDir:         filepath.Join(dir, "repo"),
		BootDir:         filepath.Join(dir, "boot"),
		BaseURL:         "http://10.0.0.1:8080",
		Inventory:       inv,
		InsecureOpenAPI: insecure,
		SessionSecret:   fixtureSecret,
		Cmdline:         []string{"console=ttyS0"},
		Now:             func() time.Time { return fixtureNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		srv.Close()
		s.Close()
	})
	return &fixture{srv: srv, handler: s.Handler(), invPath: invPath, inv: inv, dir: dir, s: s}
}

func get(t *testing.T, url string, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestStaticFiles(t *testing.T) {
	f := newFixture(t, true, "ignore")
	for _, tc := range []struct {
		name, path string
		hdr        map[string]string
		wantCode   int
		wantBody   string
	}{
		{"repo file", "/repo/img/chunk", nil, 200, "0123456789abcdef"},
		{"range", "/repo/img/chunk", map[string]string{"Range": "bytes=4-7"}, 206, "4567"},
		{"boot", "/boot/vmlinuz", nil, 200, "kernel"},
		{"dotdot", "/repo/../secret", nil, 404, ""},
		{"escaped dotdot", "/repo/%2e%2e/secret", nil, 404, ""},
		{"symlink out", "/repo/img/escape", nil, 403, ""},
		{"missing", "/repo/img/none", nil, 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(t, f.srv.URL+tc.path, tc.hdr)
			if code != tc.wantCode {
				t.Errorf("GET %s = %d, want %d", tc.path, code, tc.wantCode)
			}
			if tc.wantBody != "" && body != tc.wantBody {
				t.Errorf("GET %s body = %q, want %q", tc.path, body, tc.wantBody)
			}
			if strings.Contains(body, "secret") && tc.wantCode >= 400 {
				t.Errorf("GET %s leaked the file outside the root", tc.path)
			}
		})
	}
}

func TestScripts(t *testing.T) {
	f := newFixture(t, true, "ignore")
	for _, tc := range []struct {
		name, mac string
		want      []string
		wantNot   []string
	}{
		{"reimage", "52-54-00-12-34-56", []string{
			"kernel http://10.0.0.1:8080/boot/vmlinuz initrd=shoal-initramfs.cpio.zst shoal.server=http://10.0.0.1:8080 shoal.repo=http://10.0.0.1:8080/repo/ shoal.image=debian-12 shoal.mac=52:54:00:12:34:56 shoal.disk=/dev/vda console=ttyS0",
			"initrd http://10.0.0.1:8080/boot/shoal-initramfs.cpio.zst",
			"\nboot"}, []string{"exit"}},
		{"local", "52:54:00:12:34:57", []string{"\nexit\n"}, []string{"kernel"}},
		{"unknown ignored", "02:00:00:00:00:01", []string{"\nexit\n", "not in the inventory"}, []string{"kernel"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(t, f.srv.URL+"/ipxe/"+tc.mac, nil)
			if code != 200 || !strings.HasPrefix(body, "#!ipxe\n") {
				t.Fatalf("GET /ipxe/%s = %d %q, want 200 and a script", tc.mac, code, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("script lacks %q:\n%s", w, body)
				}
			}
			for _, w := range tc.wantNot {
				if strings.Contains(body, w) {
					t.Errorf("script has %q:\n%s", w, body)
				}
			}
		})
	}
	if code, _ := get(t, f.srv.URL+"/ipxe/notamac", nil); code != 400 {
		t.Errorf("GET /ipxe/notamac = %d, want 400", code)
	}
}

// signed is a status report's authentication: its time (Unix ms) and
// signature; the zero value sends neither header.
type signed struct {
	ms  int64
	sig string
}

// sign signs body for mac at time ms with key.
func sign(key []byte, mac string, ms int64, body []byte) signed {
	return signed{ms, api.SignReport(key, mac, ms, body)}
}

func post(t *testing.T, url string, body []byte, a signed) int {
	t.Helper()
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if a.sig != "" {
		req.Header.Set(SignatureHeader, a.sig)
	}
	if a.ms != 0 {
		req.Header.Set(api.TimeHeader, strconv.FormatInt(a.ms, 10))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestStatusReports(t *testing.T) {
	f := newFixture(t, false, "ignore")
	mac := "52:54:00:12:34:56"
	key := reportKey(t, askCredential(t, f, mac, nil, 200))
	url := f.srv.URL + "/api/v1/machines/" + mac + "/status"
	progress := []byte(`{"state":"writing","role":"leader","progress":0.42,"rateBitsPerSec":90000000,"bytesFromServer":1048576}`)
	done := []byte(`{"state":"done","progress":1,"verified":true}`)
	// Times go up from one case to the next: each accepted report moves
	// the machine's last time on.
	now := fixtureNow.UnixMilli()
	good := sign(key, mac, now+10, progress)
	for _, tc := range []struct {
		name     string
		url      string
		body     []byte
		auth     signed
		wantCode int
	}{
		{"no signature", url, progress, signed{}, 401},
		{"no time", url, progress, signed{sig: api.SignReport(key, mac, 0, progress)}, 401},
		{"wrong key", url, progress, sign([]byte("other"), mac, now, progress), 401},
		{"signed for another MAC", url, progress, sign(key, "52:54:00:12:34:57", now, progress), 401},
		{"signed for another time", url, progress, signed{now + 1, api.SignReport(key, mac, now, progress)}, 401},
		{"unknown machine", f.srv.URL + "/api/v1/machines/02:00:00:00:00:01/status", progress, sign(key, "02:00:00:00:00:01", now, progress), 401},
		{"bad json", url, []byte("{"), sign(key, mac, now+1, []byte("{")), 400},
		{"progress out of range", url, []byte(`{"state":"x","progress":2}`), sign(key, mac, now+2, []byte(`{"state":"x","progress":2}`)), 400},
		{"ten minutes old", url, progress, sign(key, mac, now-10*60*1000, progress), 409},
		{"ten minutes ahead", url, progress, sign(key, mac, now+10*60*1000, progress), 409},
		{"good", url, progress, good, 200},
		{"replayed", url, progress, good, 409},
		{"older than the last", url, progress, sign(key, mac, now+5, progress), 409},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code := post(t, tc.url, tc.body, tc.auth); code != tc.wantCode {
				t.Errorf("POST %s = %d, want %d", tc.name, code, tc.wantCode)
			}
		})
	}
	code, body := get(t, f.srv.URL+"/api/v1/machines", nil)
	if code != 200 {
		t.Fatalf("GET machines = %d", code)
	}
	var ms []inventory.Machine
	if err := json.Unmarshal([]byte(body), &ms); err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 {
		t.Fatalf("machines = %d, want 2", len(ms))
	}
	want := inventory.Status{State: "writing", Role: "leader", Progress: 0.42, RateBitsPerSec: 90000000, BytesFromServer: 1048576}
	if diff := cmp.Diff(want, ms[0].Status); diff != "" {
		t.Errorf("machine status (-want +got):\n%s", diff)
	}
	if ms[0].Silent || ms[1].Silent {
		t.Errorf("machines silent %v %v right after a report / with none, want neither", ms[0].Silent, ms[1].Silent)
	}
	// Five minutes later (the fixture's clock stands still), the machine
	// still writing is silent.
	if _, err := f.inv.Report(mac, inventory.Status{State: "writing", Progress: 0.5}, fixtureNow.Add(-5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	_, body = get(t, f.srv.URL+"/api/v1/machines", nil)
	if err := json.Unmarshal([]byte(body), &ms); err != nil {
		t.Fatal(err)
	}
	if !ms[0].Silent {
		t.Errorf("machine writing, last report five minutes ago: silent = false, want true")
	}
	// A verified success turns the machine local, in the file too, and
	// its next script exits.
	if code := post(t, url, done, sign(key, mac, now+20, done)); code != 200 {
		t.Fatalf("POST done = %d", code)
	}
	data, err := os.ReadFile(f.invPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "52:54:00:12:34:56  local") {
		t.Errorf("inventory file after success:\n%s\nwant the machine local", data)
	}
	if _, body := get(t, f.srv.URL+"/ipxe/"+mac, nil); !strings.Contains(body, "\nexit\n") {
		t.Errorf("script after success = %q, want exit", body)
	}
}

func TestUnknownAllowedByPolicy(t *testing.T) {
	f := newFixture(t, true, "fallback-image")
	mac := "02:00:00:00:00:01"
	_, body := get(t, f.srv.URL+"/ipxe/"+mac, nil)
	if !strings.Contains(body, "shoal.image=fallback-image") {
		t.Errorf("script for unknown MAC with --unknown fallback-image:\n%s", body)
	}
	if code := post(t, f.srv.URL+"/api/v1/machines/"+mac+"/status", []byte(`{"state":"writing","progress":0.1}`), signed{}); code != 200 {
		t.Errorf("report for unknown MAC allowed by policy = %d, want 200", code)
	}
}

func TestMetricsAndDashboard(t *testing.T) {
	f := newFixture(t, true, "ignore")
	post(t, f.srv.URL+"/api/v1/machines/52:54:00:12:34:56/status", []byte(`{"state":"writing","progress":0.5}`), signed{})
	get(t, f.srv.URL+"/repo/img/chunk", nil)
	code, body := get(t, f.srv.URL+"/metrics", nil)
	if code != 200 {
		t.Fatalf("GET /metrics = %d", code)
	}
	for _, want := range []string{
		`shoal_serve_machine_progress_ratio{mac="52:54:00:12:34:56"} 0.5`,
		`shoal_serve_machines{action="reimage",state="writing"} 1`,
		`shoal_serve_status_reports_total{result="accepted"} 1`,
		`shoal_serve_http_requests_total{code="200",route="repo"} 1`,
		`shoal_serve_http_response_bytes_total{route="repo"} 16`, // the 16-byte chunk
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	code, body = get(t, f.srv.URL+"/", nil)
	if code != 200 || !strings.Contains(body, "/api/v1/machines") {
		t.Errorf("GET / = %d, want the dashboard polling /api/v1/machines", code)
	}
	if code, _ := get(t, f.srv.URL+"/nothing", nil); code != 404 {
		t.Errorf("GET /nothing = %d, want 404", code)
	}
}
