// sign.go signs status reports with the machine's per-boot credential.

package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// Status reports are authenticated by two headers: the time the report
// was sent, in Unix milliseconds on the server's clock as the sender
// knows it, and an HMAC-SHA256 of the MAC, that time and the body, keyed
// with the machine's per-boot credential token. The server refuses a time
// too far from its own and one not after the last it accepted for the
// MAC, so that a captured report cannot be replayed; every answer of
// shoal serve carries its time in TimeHeader, from which a sender with a
// wrong clock learns the offset.
const (
	SignatureHeader = "X-Shoal-Signature"
	TimeHeader      = "X-Shoal-Time"
)

// SignReport returns the SignatureHeader value for a report of mac (lower
// case, colons) sent at sentMs with body: "sha256=" and the hex
// HMAC-SHA256, keyed with key, of MAC "\n" SENTMS "\n" BODY.
func SignReport(key []byte, mac string, sentMs int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(mac + "\n" + strconv.FormatInt(sentMs, 10) + "\n"))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// CheckReport reports whether sig is the signature of the report.
func CheckReport(key []byte, mac string, sentMs int64, body []byte, sig string) bool {
	return len(key) > 0 && hmac.Equal([]byte(SignReport(key, mac, sentMs, body)), []byte(sig))
}

// ReportKey is the HMAC key of a machine's reports: the SHA-256 of its
// credential token. The server keeps only this hash, never the token.
func ReportKey(token []byte) []byte {
	h := sha256.Sum256(token)
	return h[:]
}
