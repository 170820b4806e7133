// bootorder.go encodes and decodes BootOrder and names Boot#### variables.
package efiboot

import (
	"encoding/binary"
	"fmt"
	"strconv"
)

// DecodeBootOrder parses BootOrder: little-endian UINT16 entry numbers.
func DecodeBootOrder(b []byte) ([]uint16, error) {
	if len(b)%2 != 0 {
		return nil, fmt.Errorf("%w: BootOrder of %d bytes, not a whole number of UINT16s", ErrMalformed, len(b))
	}
	order := make([]uint16, len(b)/2)
	for i := range order {
		order[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return order, nil
}

// EncodeBootOrder returns BootOrder's bytes for order.
func EncodeBootOrder(order []uint16) []byte {
	b := make([]byte, 0, 2*len(order))
	for _, n := range order {
		b = binary.LittleEndian.AppendUint16(b, n)
	}
	return b
}

// BootVarName is the name of entry n's variable: Boot and four upper-case
// hex digits (UEFI 2.10 §3.3).
func BootVarName(n uint16) string { return fmt.Sprintf("Boot%04X", n) }

// ParseBootVarName returns the number of a Boot#### variable's name; ok is
// false for any other name (BootOrder, BootCurrent...).
func ParseBootVarName(name string) (n uint16, ok bool) {
	if len(name) != 8 || name[:4] != "Boot" {
		return 0, false
	}
	for _, c := range name[4:] {
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'F' || 'a' <= c && c <= 'f') {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(name[4:], 16, 16)
	if err != nil {
		return 0, false
	}
	return uint16(v), true
}
