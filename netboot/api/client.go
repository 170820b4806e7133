// client.go is the client of shoal serve's machine API, for the appliance
// and the lab.

package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// ErrUnknownMachine is wrapped by the errors of requests for a MAC the
// server does not know (404).
var ErrUnknownMachine = errors.New("machine unknown to the server")

// HTTPError is an answer of the server other than 2xx.
type HTTPError struct {
	Method, URL string
	Code        int    // the HTTP status code
	Status      string // e.g. "409 Conflict"
	Body        string // the start of the answer's body
	// ServerTimeMs is the server's clock in the answer's TimeHeader (0:
	// none): a report refused for its time (409) can be sent again with it.
	ServerTimeMs int64
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("%s %s: %s: %s", e.Method, e.URL, e.Status, e.Body)
}

// Unwrap makes a 404 match ErrUnknownMachine.
func (e *HTTPError) Unwrap() error {
	if e.Code == http.StatusNotFound {
		return ErrUnknownMachine
	}
	return nil
}

// Client talks to shoal serve's machine API. Callers bound each call with
// ctx.
type Client struct {
	BaseURL string       // shoal serve, e.g. http://10.0.0.1:8080
	HTTP    *http.Client // nil: http.DefaultClient
}

// maxAnswerBytes bounds what the client reads of an answer (a machine
// list of thousands of machines fits).
const maxAnswerBytes = 16 << 20

func (c *Client) url(path string) string { return strings.TrimSuffix(c.BaseURL, "/") + path }

func machinePath(mac string) string { return "/api/v1/machines/" + url.PathEscape(mac) }

// do sends a request and returns the answer's body and the server's time
// (0: none); an answer other than 2xx is an *HTTPError.
func (c *Client) do(ctx context.Context, method, path string, body []byte, hdr http.Header) ([]byte, int64, error) {
	u := c.url(path)
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, 0, fmt.Errorf("%s %s: %w", method, u, err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	serverMs, _ := strconv.ParseInt(resp.Header.Get(TimeHeader), 10, 64)
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if resp.StatusCode/100 != 2 {
		msg := strings.TrimSpace(string(b[:min(len(b), 512)]))
		return nil, serverMs, &HTTPError{Method: method, URL: u, Code: resp.StatusCode, Status: resp.Status, Body: msg, ServerTimeMs: serverMs}
	}
	if err != nil {
		return nil, serverMs, fmt.Errorf("%s %s: %w", method, u, err)
	}
	return b, serverMs, nil
}

// getJSON decodes the answer to GET path into v.
func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	b, _, err := c.do(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s: %w", c.url(path), err)
	}
	return nil
}

// Machines returns every machine the server lists (GET /api/v1/machines).
func (c *Client) Machines(ctx context.Context) ([]Machine, error) {
	var ms []Machine
	if err := c.getJSON(ctx, "/api/v1/machines", &ms); err != nil {
		return nil, err
	}
	return ms, nil
}

// Machine returns the server's entry for mac (GET /api/v1/machines/{mac});
// a MAC the server does not know gives an error wrapping
// ErrUnknownMachine.
func (c *Client) Machine(ctx context.Context, mac string) (Machine, error) {
	var m Machine
	if err := c.getJSON(ctx, machinePath(mac), &m); err != nil {
		return Machine{}, err
	}
	return m, nil
}

// Credential asks for this boot's credential of mac (POST
// /api/v1/machines/{mac}/credential). The server gives it once per boot,
// to the address that fetched the machine's iPXE script (or holds its
// lease): a 409 means someone else already took it. The token, session
// key and image ID are checked to decode.
func (c *Client) Credential(ctx context.Context, mac string) (Credential, error) {
	path := machinePath(mac) + "/credential"
	b, _, err := c.do(ctx, http.MethodPost, path, nil, nil)
	if err != nil {
		return Credential{}, fmt.Errorf("credential: %w", err)
	}
	var cr Credential
	if err := json.Unmarshal(b, &cr); err != nil {
		return Credential{}, fmt.Errorf("credential from %s: %w", c.url(path), err)
	}
	if _, err := cr.TokenBytes(); err != nil {
		return Credential{}, fmt.Errorf("credential from %s: %w", c.url(path), err)
	}
	if _, err := cr.SessionKeyBytes(); err != nil {
		return Credential{}, fmt.Errorf("credential from %s: %w", c.url(path), err)
	}
	if _, err := cr.ImageIDBytes(); err != nil {
		return Credential{}, fmt.Errorf("credential from %s: %w", c.url(path), err)
	}
	return cr, nil
}

// PostStatus posts a status report of mac (POST
// /api/v1/machines/{mac}/status): body is a JSON Status, signed with key
// (ReportKey of the credential's token) at sentMs, the server's clock as
// the sender knows it; key nil sends it unsigned. It returns the server's
// time from the answer (0: none); a refusal is an *HTTPError, which
// carries that time too.
func (c *Client) PostStatus(ctx context.Context, mac string, body, key []byte, sentMs int64) (serverMs int64, err error) {
	hdr := http.Header{"Content-Type": {"application/json"}}
	if len(key) > 0 {
		hdr.Set(TimeHeader, strconv.FormatInt(sentMs, 10))
		hdr.Set(SignatureHeader, SignReport(key, mac, sentMs, body))
	}
	_, serverMs, err = c.do(ctx, http.MethodPost, machinePath(mac)+"/status", body, hdr)
	if err != nil {
		return serverMs, fmt.Errorf("status report: %w", err)
	}
	return serverMs, nil
}
