// credential.go is the per-boot credential a machine gets from shoal
// serve, as Ironic's agent token: issued once per boot, to the machine's
// first request, from the address leased to its MAC; then required on
// every report.

package api

import (
	"encoding/hex"
	"fmt"
)

// Credential is the answer to POST /api/v1/machines/{mac}/credential.
// Nothing in it is served to anyone else: the server keeps only a hash
// of the token, and a second request for the same boot is refused.
type Credential struct {
	MAC string `json:"mac"`
	// Token is the report key: hex of 32 random bytes, new at every boot.
	Token string `json:"token"`
	// Image and Disk are the machine's inventory entry (Disk "" for the
	// appliance's default).
	Image string `json:"image"`
	Disk  string `json:"disk,omitempty"`
	// ImageID is the SHA-256 of the image's manifest (hex), and
	// SessionKey (hex) the key of that image's peer session: derived from
	// the site's session secret and the image ID, so that a machine holds
	// the key of its own image only.
	ImageID    string `json:"imageId,omitempty"`
	SessionKey string `json:"sessionKey,omitempty"`
	// ServerTimeMs is the server's clock (Unix ms) when it answered.
	ServerTimeMs int64 `json:"serverTimeMs"`
	// ExpiresMs is when the token stops being accepted (Unix ms, the
	// server's clock).
	ExpiresMs int64 `json:"expiresMs"`
}

// TokenBytes decodes the token.
func (c Credential) TokenBytes() ([]byte, error) {
	b, err := hex.DecodeString(c.Token)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("api: credential token: want 64 hex digits")
	}
	return b, nil
}

// SessionKeyBytes decodes the session key (nil when there is none).
func (c Credential) SessionKeyBytes() ([]byte, error) {
	if c.SessionKey == "" {
		return nil, nil
	}
	b, err := hex.DecodeString(c.SessionKey)
	if err != nil || len(b) < 16 {
		return nil, fmt.Errorf("api: credential session key: want hex of at least 16 bytes")
	}
	return b, nil
}

// ImageIDBytes decodes the image ID (zero when there is none).
func (c Credential) ImageIDBytes() ([32]byte, error) {
	var id [32]byte
	if c.ImageID == "" {
		return id, nil
	}
	b, err := hex.DecodeString(c.ImageID)
	if err != nil || len(b) != 32 {
		return id, fmt.Errorf("api: credential image ID: want 64 hex digits")
	}
	copy(id[:], b)
	return id, nil
}
