package api

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestSignReport(t *testing.T) {
	key := ReportKey([]byte("token"))
	body := []byte(`{"state":"writing"}`)
	sig := SignReport(key, "52:54:00:12:34:56", 5, body)
	for _, tc := range []struct {
		name string
		key  []byte
		mac  string
		ms   int64
		body string
		sig  string
		want bool
	}{
		{"good", key, "52:54:00:12:34:56", 5, string(body), sig, true},
		{"other key", ReportKey([]byte("other")), "52:54:00:12:34:56", 5, string(body), sig, false},
		{"no key", nil, "52:54:00:12:34:56", 5, string(body), SignReport(nil, "52:54:00:12:34:56", 5, body), false},
		{"other mac", key, "52:54:00:12:34:57", 5, string(body), sig, false},
		{"other time", key, "52:54:00:12:34:56", 6, string(body), sig, false},
		{"other body", key, "52:54:00:12:34:56", 5, `{"state":"done"}`, sig, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := CheckReport(tc.key, tc.mac, tc.ms, []byte(tc.body), tc.sig); got != tc.want {
				t.Errorf("CheckReport = %v, want %v", got, tc.want)
			}
		})
	}
}

// FuzzCredential decodes what a server (or a host posing as one) could
// answer to a credential request: the decoders never panic, and what they
// accept has the documented sizes.
func FuzzCredential(f *testing.F) {
	f.Add([]byte(`{"mac":"52:54:00:12:34:56","token":"` + strings.Repeat("ab", 32) + `","image":"x","imageId":"` + strings.Repeat("01", 32) + `","sessionKey":"` + strings.Repeat("02", 32) + `"}`))
	f.Add([]byte(`{"token":"zz","imageId":"0","sessionKey":"00"}`))
	f.Add([]byte(`{"token":"` + strings.Repeat("ab", 31) + `"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Credential
		if json.Unmarshal(b, &c) != nil {
			return
		}
		if tok, err := c.TokenBytes(); err == nil && len(tok) != 32 {
			t.Errorf("token of %d bytes accepted", len(tok))
		}
		if k, err := c.SessionKeyBytes(); err == nil && k != nil && len(k) < 16 {
			t.Errorf("session key of %d bytes accepted", len(k))
		}
		c.ImageIDBytes()
	})
}

// TestSignReportVector pins the signature's format (docs/netboot.md) to a
// value computed with another tool:
//
//	printf '52:54:00:12:34:56\n1700000000000\n{"state":"done"}' | openssl dgst -sha256 -hmac 'site key'
func TestSignReportVector(t *testing.T) {
	const want = "sha256=2488ccbe661bbe0b1e90ce9afd82b15faab2ff16ce0f7296b5984a34ff1613c6"
	if got := SignReport([]byte("site key"), "52:54:00:12:34:56", 1700000000000, []byte(`{"state":"done"}`)); got != want {
		t.Errorf("SignReport() = %s, want %s", got, want)
	}
}
