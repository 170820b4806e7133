// Package report sends the appliance's status to shoal serve: POST
// /api/v1/machines/{mac}/status with a JSON inventory.Status, signed with
// an HMAC-SHA256 of the MAC and body when a site key is set (see
// docs/netboot.md). Progress reports are rate-limited; a report that fails
// is logged and dropped, never allowed to stop the imaging.
package report

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/shoal-project/shoal/netboot/inventory"
)

// Status is what a report carries.
type Status = inventory.Status

// Reporter posts status reports. The zero Server makes every call a no-op.
type Reporter struct {
	Server   string // base URL of shoal serve, e.g. http://10.0.0.1:8080
	MAC      string // canonical, lower case with colons
	Key      []byte // site key; nil sends unsigned reports
	Interval time.Duration
	Client   *http.Client
	Log      *slog.Logger

	mu   sync.Mutex
	last time.Time
}

// Enabled reports whether reports go anywhere.
func (r *Reporter) Enabled() bool { return r != nil && r.Server != "" && r.MAC != "" }

// Progress sends s unless a report went out less than Interval (default
// 2 s) ago.
func (r *Reporter) Progress(ctx context.Context, s Status) {
	if !r.Enabled() {
		return
	}
	iv := r.Interval
	if iv == 0 {
		iv = 2 * time.Second
	}
	r.mu.Lock()
	if time.Since(r.last) < iv {
		r.mu.Unlock()
		return
	}
	r.last = time.Now()
	r.mu.Unlock()
	if err := r.Send(ctx, s); err != nil && r.Log != nil {
		r.Log.Warn("status report failed", "err", err)
	}
}

// Send posts s now and returns what went wrong.
func (r *Reporter) Send(ctx context.Context, s Status) error {
	if !r.Enabled() {
		return nil
	}
	body, err := json.Marshal(s)
	if err != nil {
		return err
	}
	u := strings.TrimSuffix(r.Server, "/") + "/api/v1/machines/" + url.PathEscape(r.MAC) + "/status"
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("status report: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if len(r.Key) > 0 {
		req.Header.Set("X-Shoal-Signature", Sign(r.Key, r.MAC, body))
	}
	c := r.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("status report to %s: %w", u, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("status report to %s: %s: %s", u, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// Sign returns the X-Shoal-Signature header value: "sha256=" and the hex
// HMAC-SHA256, keyed with key, of the MAC, a newline and the body.
func Sign(key []byte, mac string, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(mac + "\n"))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}
