// Package report sends the appliance's status to shoal serve: POST
// /api/v1/machines/{mac}/status with a JSON api.Status, signed with
// an HMAC-SHA256 of the MAC, the time and the body keyed with this boot's
// credential (api.Client.Credential; api.SignReport, api.ReportKey; see
// docs/netboot.md). Without a credential reports go unsigned, which only a
// server started with --insecure-open-api takes. The time is the server's:
// a report the server refuses for its time (409) is sent once more with
// the offset learnt from the server's answer, so a machine with a wrong
// clock still reports. Progress reports are rate-limited; a report that
// fails is logged and dropped, never allowed to stop the imaging.
package report

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/shoal-project/shoal/netboot/api"
)

// Status is what a report carries.
type Status = api.Status

// Reporter posts status reports. The zero Server makes every call a no-op.
type Reporter struct {
	Server string // base URL of shoal serve, e.g. http://10.0.0.1:8080
	MAC    string // canonical, lower case with colons
	// Credential is this boot's credential; nil sends unsigned reports.
	Credential *api.Credential
	Interval   time.Duration
	Client     *http.Client
	Log        *slog.Logger
	Now        func() time.Time // the machine's clock; nil: time.Now

	mu       sync.Mutex
	key      []byte // api.ReportKey of the credential's token
	keyDone  bool
	last     time.Time
	offsetMs int64 // the server's clock minus ours, learnt from a 409
	sentMs   int64 // time of the last report sent
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
	code, serverMs, err := r.post(ctx, body)
	if code == http.StatusConflict && serverMs != 0 && len(r.reportKey()) > 0 {
		// Our clock is not the server's (or a report crossed this one):
		// take the server's time and send once more.
		r.mu.Lock()
		r.offsetMs = serverMs - r.now().UnixMilli()
		r.mu.Unlock()
		_, _, err = r.post(ctx, body)
	}
	return err
}

// reportKey is the HMAC key from the credential (nil without one). The
// first call also takes the server's clock from the credential.
func (r *Reporter) reportKey() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.keyDone {
		r.keyDone = true
		if r.Credential != nil {
			if tok, err := r.Credential.TokenBytes(); err == nil {
				r.key = api.ReportKey(tok)
				if r.Credential.ServerTimeMs != 0 {
					r.offsetMs = r.Credential.ServerTimeMs - r.now().UnixMilli()
				}
			}
		}
	}
	return r.key
}

func (r *Reporter) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// post sends one report; it returns the HTTP status and the server's time
// (0 when the answer has none).
func (r *Reporter) post(ctx context.Context, body []byte) (code int, serverMs int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var sent int64
	key := r.reportKey()
	if len(key) > 0 {
		r.mu.Lock()
		sent = max(r.now().UnixMilli()+r.offsetMs, r.sentMs+1) // never twice the same
		r.sentMs = sent
		r.mu.Unlock()
	}
	c := api.Client{BaseURL: r.Server, HTTP: r.Client}
	serverMs, err = c.PostStatus(ctx, r.MAC, body, key, sent)
	var he *api.HTTPError
	if errors.As(err, &he) {
		return he.Code, serverMs, err
	}
	if err != nil {
		return 0, 0, err
	}
	return http.StatusOK, serverMs, nil
}
