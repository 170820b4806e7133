package httpd

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-project/shoal/internal/testdisk"
	"github.com/shoal-project/shoal/netboot/inventory"
)

// chromium finds Debian's chromium, skipping (failing in CI) without it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testdisk.Missing(t, "chromium not found (apt-get install chromium)")
	return ""
}

// TestDashboardInChromium loads the dashboard in headless Chromium. The
// page's first poll sees the machine with no report; the test then posts
// a status, and the DOM Chromium dumps later shows the machine's progress,
// role and source: the page updated itself without a reload. A second
// machine whose last report (writing) is five minutes old shows as silent.
func TestDashboardInChromium(t *testing.T) {
	bin := chromium(t)
	f := newFixture(t, true, "ignore")
	mac, silentMAC := "52:54:00:12:34:56", "52:54:00:12:34:57"
	if _, err := f.inv.Report(silentMAC, inventory.Status{State: "writing", Progress: 0.3}, fixtureNow.Add(-5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	var (
		mu             sync.Mutex
		pageLoads      int
		polls          int
		reportedBefore bool
	)
	report := []byte(`{"state":"writing","role":"follower","progress":0.42,"rateBitsPerSec":180000000,"bytesFromPeers":3221225472,"bytesFromServer":1048576}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.handler.ServeHTTP(w, r)
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/":
			pageLoads++
		case "/api/v1/machines":
			polls++
			if polls == 1 {
				// After the first poll was answered: the appliance reports.
				if _, err := f.inv.Report(mac, mustStatus(t, report), time.Now()); err != nil {
					t.Errorf("Report: %v", err)
				}
				reportedBefore = true
			}
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=8000", "--dump-dom", srv.URL+"/")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	dom := string(out)
	mu.Lock()
	defer mu.Unlock()
	if !reportedBefore || polls < 2 {
		t.Fatalf("dashboard polled %d times, want at least 2 (before and after the report)", polls)
	}
	if pageLoads != 1 {
		t.Errorf("dashboard page loaded %d times, want 1 (updates without reloading)", pageLoads)
	}
	row := regexp.MustCompile(`(?s)<tr data-mac="` + regexp.QuoteMeta(mac) + `">.*?</tr>`).FindString(dom)
	if row == "" {
		t.Fatalf("no row for %s in the dumped DOM:\n%s", mac, dom)
	}
	for _, want := range []string{"writing", "follower", " 42%", "180.0 Mbit/s", "3.0 GiB", "1.0 MiB", "width: 42%"} {
		if !strings.Contains(row, want) {
			t.Errorf("row for %s lacks %q:\n%s", mac, want, row)
		}
	}
	if strings.Contains(row, "silent") {
		t.Errorf("row for %s, which just reported, says silent:\n%s", mac, row)
	}
	silentRow := regexp.MustCompile(`(?s)<tr data-mac="` + regexp.QuoteMeta(silentMAC) + `">.*?</tr>`).FindString(dom)
	if !strings.Contains(silentRow, `<td class="silent">writing (silent)</td>`) {
		t.Errorf("row for %s, silent for five minutes, lacks its silent state cell:\n%s", silentMAC, silentRow)
	}
}

func mustStatus(t *testing.T, b []byte) inventory.Status {
	t.Helper()
	var st inventory.Status
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st
}
