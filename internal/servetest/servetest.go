// Package servetest runs shoal serve's real HTTP side (netboot/httpd, with
// an inventory parsed from text) on loopback for tests of the machine API's
// clients: the api client, the appliance's reporter, the appliance.
package servetest

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/netboot/api"
	"github.com/shoal-project/shoal/netboot/httpd"
	"github.com/shoal-project/shoal/netboot/inventory"
)

// Options says what the server holds. Empty directories are temporary.
type Options struct {
	Inventory       string // inventory file text: "MAC ACTION IMAGE DISK" lines
	RepoDir         string
	BootDir         string
	InsecureOpenAPI bool
}

// Server is a running test server.
type Server struct {
	Inventory *inventory.Store
	HTTPD     *httpd.Server
	URL       string // http://127.0.0.1:PORT, serving HTTPD's handler
	Client    *api.Client
}

// New starts the server; it stops when the test ends.
func New(t testing.TB, o Options) *Server {
	t.Helper()
	if o.RepoDir == "" {
		o.RepoDir = t.TempDir()
	}
	if o.BootDir == "" {
		o.BootDir = t.TempDir()
	}
	inv, err := inventory.Parse([]byte(o.Inventory), "")
	if err != nil {
		t.Fatalf("inventory: %v", err)
	}
	srv, err := httpd.New(httpd.Config{RepoDir: o.RepoDir, BootDir: o.BootDir, Inventory: inv, InsecureOpenAPI: o.InsecureOpenAPI})
	if err != nil {
		t.Fatalf("httpd.New: %v", err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
	})
	return &Server{Inventory: inv, HTTPD: srv, URL: hs.URL, Client: &api.Client{BaseURL: hs.URL + "/", HTTP: hs.Client()}}
}

// Boot fetches mac's iPXE script from the server at base (a URL): a new
// boot, whose credential may then be asked for.
func Boot(t testing.TB, base, mac string) {
	t.Helper()
	resp, err := http.Get(strings.TrimSuffix(base, "/") + "/ipxe/" + mac)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /ipxe/%s: %s", mac, resp.Status)
	}
}
