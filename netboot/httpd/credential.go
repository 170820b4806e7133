// credential.go issues the per-boot credential (POST
// /api/v1/machines/{mac}/credential) and checks the status reports signed
// with it, as Ironic's agent token: one credential per boot, to the
// address that fetched the machine's iPXE script (or was leased to it),
// and every report signed with it, from that address, with a fresh time.

package httpd

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/internal/sitekeys"
	"github.com/shoal-project/shoal/netboot/api"
)

// Leases says which address is leased to a MAC (netboot/dhcpd's
// LeasedTo). The server asks it for a machine that did not fetch its iPXE
// script from this server (e.g. booted from a USB stick).
type Leases interface {
	LeasedTo(mac net.HardwareAddr) (netip.Addr, bool)
}

// DefaultCredentialTTL is Config.CredentialTTL's default: long enough for
// the largest reimaging, short enough that a credential of a machine that
// died is not good for days.
const DefaultCredentialTTL = 12 * time.Hour

// boot is what the server knows of a machine's current boot.
type boot struct {
	fetchAddr netip.Addr // who fetched the iPXE script of this boot
	issued    bool
	addr      netip.Addr // whom the credential went to
	key       []byte     // api.ReportKey(token): the token itself is not kept
	expires   time.Time
}

// credentials are the boots of every machine, by canonical MAC.
type credentials struct {
	mu    sync.Mutex
	boots map[string]*boot
}

// newBoot starts a new boot of mac, whose script remote fetched: a new
// credential may be issued, the old one is no longer accepted.
func (c *credentials) newBoot(mac string, remote netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.boots[mac] = &boot{fetchAddr: remote}
}

func (c *credentials) get(mac string) (boot, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.boots[mac]
	if !ok {
		return boot{}, false
	}
	return *b, true
}

// remoteAddr is the request's peer address, unmapped.
func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// credential answers POST /api/v1/machines/{mac}/credential.
func (s *Server) credential(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, 4<<10))
	m, ok := s.lookup(w, r)
	if !ok {
		return
	}
	mac := m.MAC
	from := remoteAddr(r)
	now := s.cfg.Now()

	s.creds.mu.Lock()
	b := s.creds.boots[mac]
	if b == nil {
		b = &boot{}
		s.creds.boots[mac] = b
	}
	want := b.fetchAddr
	if !want.IsValid() && s.cfg.Leases != nil {
		if hw, err := net.ParseMAC(mac); err == nil {
			if a, ok := s.cfg.Leases.LeasedTo(hw); ok {
				want = a.Unmap()
			}
		}
	}
	switch {
	case b.issued:
		s.creds.mu.Unlock()
		s.log.Warn("credential refused: this boot's credential was already issued; someone else asked for this machine's credential",
			"mac", mac, "from", from, "issuedTo", b.addr)
		http.Error(w, "the credential of this boot of "+mac+" was already issued; reboot the machine through iPXE for a new one", http.StatusConflict)
		return
	case !want.IsValid():
		s.creds.mu.Unlock()
		s.log.Warn("credential refused: no boot known for the machine (no iPXE script fetch, no lease)", "mac", mac, "from", from)
		http.Error(w, "no boot of "+mac+" is known: boot it through this server's iPXE script", http.StatusForbidden)
		return
	case from != want:
		s.creds.mu.Unlock()
		s.log.Warn("credential refused: asked from another address than the machine's", "mac", mac, "from", from, "machine", want)
		http.Error(w, "credential of "+mac+" asked from "+from.String()+", not from the machine's address", http.StatusForbidden)
		return
	}
	var token [32]byte
	rand.Read(token[:])
	b.issued, b.addr, b.key, b.expires = true, from, api.ReportKey(token[:]), now.Add(s.cfg.CredentialTTL)
	s.creds.mu.Unlock()

	c := api.Credential{MAC: mac, Token: hex.EncodeToString(token[:]), Image: m.Image, Disk: m.Disk,
		ServerTimeMs: now.UnixMilli(), ExpiresMs: b.expires.UnixMilli()}
	if id, ok := s.imageID(m.Image); ok {
		c.ImageID = hex.EncodeToString(id[:])
		if len(s.cfg.SessionSecret) > 0 {
			c.SessionKey = hex.EncodeToString(sitekeys.SessionKey(s.cfg.SessionSecret, id))
		}
	}
	s.log.Info("credential issued", "mac", mac, "to", from, "image", m.Image, "imageId", c.ImageID, "expires", b.expires.Format(time.RFC3339))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(api.TimeHeader, strconv.FormatInt(now.UnixMilli(), 10))
	json.NewEncoder(w).Encode(c)
}

// imageID is the SHA-256 of the image's manifest in the repository.
func (s *Server) imageID(name string) ([32]byte, bool) {
	if name == "" {
		return [32]byte{}, false
	}
	f, err := s.repo.Open(imaging.ManifestPath(name))
	if err != nil {
		return [32]byte{}, false
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, 16<<20)); err != nil {
		return [32]byte{}, false
	}
	var id [32]byte
	h.Sum(id[:0])
	return id, true
}

// reportRefusal is why a status report is not accepted.
type reportRefusal struct {
	code   int
	result string // the metric's label
	msg    string
}

// checkReport takes a status report of mac from r with body if the
// machine's credential signed it, from the address it was issued to, with
// a fresh time; in InsecureOpenAPI mode a machine without a credential
// may report unsigned.
func (s *Server) checkReport(mac string, r *http.Request, body []byte, now time.Time) *reportRefusal {
	b, ok := s.creds.get(mac)
	if !ok || !b.issued {
		if s.cfg.InsecureOpenAPI {
			return nil
		}
		return &reportRefusal{http.StatusUnauthorized, "no_credential",
			"no credential was issued for this boot of " + mac + ": POST /api/v1/machines/" + mac + "/credential first"}
	}
	if from := remoteAddr(r); from != b.addr {
		return &reportRefusal{http.StatusForbidden, "wrong_address",
			fmt.Sprintf("report for %s from %s: its credential was issued to another address", mac, from)}
	}
	if !now.Before(b.expires) {
		return &reportRefusal{http.StatusUnauthorized, "expired", "the credential of " + mac + " has expired"}
	}
	sentMs, err := strconv.ParseInt(r.Header.Get(api.TimeHeader), 10, 64)
	if err != nil || !api.CheckReport(b.key, mac, sentMs, body, r.Header.Get(api.SignatureHeader)) {
		return &reportRefusal{http.StatusUnauthorized, "bad_signature",
			"bad or missing " + api.SignatureHeader + " or " + api.TimeHeader + " (signed with this boot's credential)"}
	}
	if why := s.checkReportTime(mac, sentMs, now); why != "" {
		return &reportRefusal{http.StatusConflict, "stale", why}
	}
	return nil
}
