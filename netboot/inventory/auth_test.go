package inventory

import "testing"

// TestSignReport pins the signature's format (docs/netboot.md) to a value
// computed with another tool:
//
//	printf '52:54:00:12:34:56\n1700000000000\n{"state":"done"}' | openssl dgst -sha256 -hmac 'site key'
func TestSignReport(t *testing.T) {
	const want = "sha256=2488ccbe661bbe0b1e90ce9afd82b15faab2ff16ce0f7296b5984a34ff1613c6"
	if got := SignReport([]byte("site key"), "52:54:00:12:34:56", 1700000000000, []byte(`{"state":"done"}`)); got != want {
		t.Errorf("SignReport() = %s, want %s", got, want)
	}
}
