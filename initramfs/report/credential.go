package report

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/shoal-project/shoal/netboot/api"
)

// RequestCredential asks shoal serve for this boot's credential (POST
// /api/v1/machines/{mac}/credential). The server gives it once per boot,
// to the address that fetched the machine's iPXE script (or holds its
// lease): a 409 means someone else already took it. c nil is
// http.DefaultClient.
func RequestCredential(ctx context.Context, server, mac string, c *http.Client) (api.Credential, error) {
	u := strings.TrimSuffix(server, "/") + "/api/v1/machines/" + url.PathEscape(mac) + "/credential"
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return api.Credential{}, fmt.Errorf("credential: %w", err)
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return api.Credential{}, fmt.Errorf("credential from %s: %w", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return api.Credential{}, fmt.Errorf("credential from %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return api.Credential{}, fmt.Errorf("credential from %s: %s: %s", u, resp.Status, strings.TrimSpace(string(b)))
	}
	var cr api.Credential
	if err := json.Unmarshal(b, &cr); err != nil {
		return api.Credential{}, fmt.Errorf("credential from %s: %w", u, err)
	}
	if _, err := cr.TokenBytes(); err != nil {
		return api.Credential{}, fmt.Errorf("credential from %s: %w", u, err)
	}
	if _, err := cr.SessionKeyBytes(); err != nil {
		return api.Credential{}, fmt.Errorf("credential from %s: %w", u, err)
	}
	if _, err := cr.ImageIDBytes(); err != nil {
		return api.Credential{}, fmt.Errorf("credential from %s: %w", u, err)
	}
	return cr, nil
}
