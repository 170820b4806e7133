// loadoption.go encodes and decodes EFI_LOAD_OPTION, the content of a Boot#### variable.
package efiboot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// LoadOptionActive is LOAD_OPTION_ACTIVE: the firmware may boot the entry.
const LoadOptionActive uint32 = 0x00000001

// ErrMalformed is wrapped by every error decoding or encoding a load
// option, a device path or BootOrder.
var ErrMalformed = errors.New("malformed EFI variable")

// Device path node types and subtypes used here (UEFI 2.10 §10.3).
const (
	TypeMessaging    uint8 = 0x03
	SubTypeMAC       uint8 = 0x0b
	SubTypeIPv4      uint8 = 0x0c
	SubTypeIPv6      uint8 = 0x0d
	SubTypeURI       uint8 = 0x18
	TypeMedia        uint8 = 0x04
	SubTypeHardDrive uint8 = 0x01
	SubTypeFilePath  uint8 = 0x04
	TypeEnd          uint8 = 0x7f
	SubTypeEndEntire uint8 = 0xff
)

// Node is one device path node: its type, subtype and the bytes after its
// 4-byte header.
type Node struct {
	Type, SubType uint8
	Data          []byte
}

// LoadOption is an EFI_LOAD_OPTION (UEFI 2.10 §3.1.3):
//
//	UINT32 Attributes; UINT16 FilePathListLength;
//	CHAR16 Description[];  (UCS-2, NUL-terminated)
//	EFI_DEVICE_PATH_PROTOCOL FilePathList[];  (FilePathListLength bytes)
//	UINT8 OptionalData[];  (the rest)
//
// FilePath is the first device path of FilePathList without its End node;
// MoreFilePaths is whatever FilePathList holds after that End node (further
// device paths), kept byte for byte.
type LoadOption struct {
	Attributes    uint32
	Description   string
	FilePath      []Node
	MoreFilePaths []byte
	OptionalData  []byte
}

// Encode returns the bytes of o.
func (o LoadOption) Encode() ([]byte, error) {
	desc, err := encodeUCS2(o.Description)
	if err != nil {
		return nil, fmt.Errorf("description %q: %w", o.Description, err)
	}
	var paths bytes.Buffer
	for i, n := range o.FilePath {
		if n.Type == TypeEnd && n.SubType == SubTypeEndEntire {
			return nil, fmt.Errorf("%w: node %d is an End node: the encoder adds it", ErrMalformed, i)
		}
		if len(n.Data)+4 > 0xffff {
			return nil, fmt.Errorf("%w: node %d is %d bytes long, more than a node holds", ErrMalformed, i, len(n.Data)+4)
		}
		paths.Write([]byte{n.Type, n.SubType})
		binary.Write(&paths, binary.LittleEndian, uint16(len(n.Data)+4))
		paths.Write(n.Data)
	}
	paths.Write([]byte{TypeEnd, SubTypeEndEntire, 4, 0})
	paths.Write(o.MoreFilePaths)
	if paths.Len() > 0xffff {
		return nil, fmt.Errorf("%w: file path list of %d bytes, more than FilePathListLength holds", ErrMalformed, paths.Len())
	}
	b := make([]byte, 6, 6+len(desc)+paths.Len()+len(o.OptionalData))
	binary.LittleEndian.PutUint32(b[0:4], o.Attributes)
	binary.LittleEndian.PutUint16(b[4:6], uint16(paths.Len()))
	b = append(b, desc...)
	b = append(b, paths.Bytes()...)
	return append(b, o.OptionalData...), nil
}

// DecodeLoadOption parses the content of a Boot#### variable. It is
// strict, so that encoding what it returns gives back the same bytes.
func DecodeLoadOption(b []byte) (LoadOption, error) {
	var o LoadOption
	if len(b) < 6 {
		return o, fmt.Errorf("%w: %d bytes, shorter than its 6-byte header", ErrMalformed, len(b))
	}
	o.Attributes = binary.LittleEndian.Uint32(b[0:4])
	pathLen := int(binary.LittleEndian.Uint16(b[4:6]))
	desc, n, err := decodeUCS2(b[6:])
	if err != nil {
		return o, fmt.Errorf("description: %w", err)
	}
	o.Description = desc
	rest := b[6+n:]
	if pathLen > len(rest) {
		return o, fmt.Errorf("%w: FilePathListLength %d, but only %d bytes follow the description", ErrMalformed, pathLen, len(rest))
	}
	o.FilePath, o.MoreFilePaths, err = decodeDevicePath(rest[:pathLen])
	if err != nil {
		return o, err
	}
	if len(rest) > pathLen {
		o.OptionalData = bytes.Clone(rest[pathLen:])
	}
	return o, nil
}

// decodeDevicePath splits b into the nodes of its first device path (up
// to its End Entire node, which is not returned) and what follows.
func decodeDevicePath(b []byte) (nodes []Node, more []byte, err error) {
	for off := 0; ; {
		if len(b)-off < 4 {
			return nil, nil, fmt.Errorf("%w: device path without an End node (%d bytes left at offset %d)", ErrMalformed, len(b)-off, off)
		}
		t, st := b[off], b[off+1]
		n := int(binary.LittleEndian.Uint16(b[off+2 : off+4]))
		if n < 4 || n > len(b)-off {
			return nil, nil, fmt.Errorf("%w: device path node at offset %d has length %d (%d bytes left)", ErrMalformed, off, n, len(b)-off)
		}
		if t == TypeEnd && st == SubTypeEndEntire {
			if n != 4 {
				return nil, nil, fmt.Errorf("%w: End node of length %d, want 4", ErrMalformed, n)
			}
			if off+4 < len(b) {
				more = bytes.Clone(b[off+4:])
			}
			return nodes, more, nil
		}
		nodes = append(nodes, Node{Type: t, SubType: st, Data: bytes.Clone(b[off+4 : off+n])})
		off += n
	}
}

// encodeUCS2 encodes s as NUL-terminated little-endian UCS-2.
func encodeUCS2(s string) ([]byte, error) {
	b := make([]byte, 0, 2*len(s)+2)
	for _, r := range s {
		switch {
		case r == 0:
			return nil, fmt.Errorf("%w: NUL inside a string", ErrMalformed)
		case r > 0xffff || (r >= 0xd800 && r <= 0xdfff):
			return nil, fmt.Errorf("%w: %U is not in UCS-2", ErrMalformed, r)
		}
		b = binary.LittleEndian.AppendUint16(b, uint16(r))
	}
	return append(b, 0, 0), nil
}

// decodeUCS2 decodes a NUL-terminated little-endian UCS-2 string at the
// start of b and returns it and the bytes it took, NUL included.
func decodeUCS2(b []byte) (string, int, error) {
	var rs []rune
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			return string(rs), i + 2, nil
		}
		if c >= 0xd800 && c <= 0xdfff {
			return "", 0, fmt.Errorf("%w: surrogate %#04x is not UCS-2", ErrMalformed, c)
		}
		rs = append(rs, rune(c))
	}
	return "", 0, fmt.Errorf("%w: UCS-2 string without its NUL", ErrMalformed)
}
