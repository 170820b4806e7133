package efiboot

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// handVector is Boot#### for "debian" -> \EFI\debian\shimx64.efi on GPT
// partition 1 (start LBA 2048, 81920 LBAs, unique GUID
// 5d3f1e9a-0b7c-4e21-9a3d-6f2b8c4d1e07), written out by hand from UEFI
// 2.10 §3.1.3 (EFI_LOAD_OPTION) and §10.3.5.1/§10.3.5.4 (Hard Drive and
// File Path media nodes), not by the encoder:
//
//	01 00 00 00                 Attributes: LOAD_OPTION_ACTIVE
//	62 00                       FilePathListLength: 42 + 52 + 4 = 98
//	64 00 65 00 62 00 69 00 61 00 6e 00 00 00   Description "debian\0", UCS-2 LE
//	04 01 2a 00                 HD node: type 4 (media), subtype 1, length 42
//	01 00 00 00                   PartitionNumber 1
//	00 08 00 00 00 00 00 00       PartitionStart 2048 (0x800)
//	00 40 01 00 00 00 00 00       PartitionSize 81920 (0x14000)
//	9a 1e 3f 5d 7c 0b 21 4e       signature: the GUID's first three fields
//	9a 3d 6f 2b 8c 4d 1e 07         little-endian, the last two as written
//	02 02                         MBRType 2 (GPT), SignatureType 2 (GUID)
//	04 04 34 00                 File node: type 4, subtype 4, length 4 + 2*24 = 52
//	5c 00 45 00 46 00 49 00 ... \EFI\debian\shimx64.efi (23 chars) + NUL, UCS-2 LE
//	7f ff 04 00                 End Entire Device Path
//	                            (no OptionalData)
const handVector = "01000000" + "6200" +
	"640065006200690061006e000000" +
	"04012a00" + "01000000" + "0008000000000000" + "0040010000000000" +
	"9a1e3f5d7c0b214e" + "9a3d6f2b8c4d1e07" + "0202" +
	"04043400" +
	"5c00" + "450046004900" + "5c00" + "640065006200690061006e00" + "5c00" +
	"7300680069006d007800360034002e00650066006900" + "0000" +
	"7fff0400"

func handOption(t *testing.T) LoadOption {
	t.Helper()
	sig, err := GUIDToEFI("5d3f1e9a-0b7c-4e21-9a3d-6f2b8c4d1e07")
	if err != nil {
		t.Fatal(err)
	}
	hd := HardDrive{PartitionNumber: 1, StartLBA: 2048, SizeLBA: 81920, Signature: sig, Format: FormatGPT, SignatureType: SignatureGUID}
	file, err := FilePathNode(`\EFI\debian\shimx64.efi`)
	if err != nil {
		t.Fatal(err)
	}
	return LoadOption{Attributes: LoadOptionActive, Description: "debian", FilePath: []Node{hd.Node(), file}}
}

// TestEncodeHandVector: the encoder writes exactly the hand-computed
// bytes, and the decoder reads them back into the same option.
func TestEncodeHandVector(t *testing.T) {
	want, err := hex.DecodeString(handVector)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != 118 {
		t.Fatalf("hand vector is %d bytes, want 6 + 14 + 98 = 118", len(want))
	}
	opt := handOption(t)
	got, err := opt.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Encode =\n%x\nwant\n%x", got, want)
	}
	dec, err := DecodeLoadOption(want)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(opt, dec, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("DecodeLoadOption(hand vector) (-want +got):\n%s", diff)
	}
	hd, ok := ParseHardDrive(dec.FilePath[0])
	if !ok || hd.String() != "HD(1,GPT,5d3f1e9a-0b7c-4e21-9a3d-6f2b8c4d1e07,0x800,0x14000)" {
		t.Errorf("HD node = %v (ok %v)", hd, ok)
	}
	if p, ok := ParseFilePath(dec.FilePath[1]); !ok || p != `\EFI\debian\shimx64.efi` {
		t.Errorf("File node = %q (ok %v)", p, ok)
	}
}

func TestLoadOptionRoundTrip(t *testing.T) {
	base := handOption(t)
	pciRoot := Node{Type: 0x02, SubType: 0x01, Data: []byte{0xd0, 0x41, 0x03, 0x0a, 0, 0, 0, 0}} // ACPI PciRoot(0x0)
	pci := Node{Type: 0x01, SubType: 0x01, Data: []byte{0x00, 0x03}}                             // Pci(0x3,0x0)
	for _, tc := range []struct {
		name string
		mod  func(o *LoadOption)
	}{
		{"short form", func(o *LoadOption) {}},
		{"full device path", func(o *LoadOption) { o.FilePath = append([]Node{pciRoot, pci}, o.FilePath...) }},
		{"inactive, optional data", func(o *LoadOption) { o.Attributes = 0; o.OptionalData = []byte("RC\x00\x01") }},
		{"more file paths", func(o *LoadOption) {
			o.MoreFilePaths = []byte{0x04, 0x04, 0x06, 0x00, 0x41, 0x00, 0x7f, 0xff, 0x04, 0x00}
		}},
		{"empty description", func(o *LoadOption) { o.Description = "" }},
		{"non-ASCII description", func(o *LoadOption) { o.Description = "Système ☃" }},
		{"no nodes", func(o *LoadOption) { o.FilePath = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			o.FilePath = append([]Node(nil), base.FilePath...)
			tc.mod(&o)
			b, err := o.Encode()
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeLoadOption(b)
			if err != nil {
				t.Fatalf("DecodeLoadOption(Encode()) = %v", err)
			}
			if diff := cmp.Diff(o, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeLoadOptionErrors(t *testing.T) {
	good, _ := hex.DecodeString(handVector)
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"header only", good[:6]},
		{"description without NUL", good[:6+10]},
		{"path list longer than the data", mod(func(b []byte) []byte { b[4] = 0xff; return b })},
		{"truncated before End", good[:len(good)-4]},
		{"node length 2", mod(func(b []byte) []byte { b[20+2] = 2; return b })},
		{"node length past the list", mod(func(b []byte) []byte { b[20+2] = 0x70; return b })},
		{"End node of length 6", append(mod(func(b []byte) []byte { b[len(b)-2] = 6; b[4] += 2; return b }), 0, 0)},
		{"surrogate in description", mod(func(b []byte) []byte { b[6], b[7] = 0x00, 0xd8; return b })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if o, err := DecodeLoadOption(tc.b); !errors.Is(err, ErrMalformed) {
				t.Errorf("DecodeLoadOption = %+v, %v; want ErrMalformed", o, err)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    LoadOption
	}{
		{"rune outside UCS-2", LoadOption{Description: "boot 🚀"}},
		{"NUL in description", LoadOption{Description: "a\x00b"}},
		{"End node given", LoadOption{FilePath: []Node{{Type: TypeEnd, SubType: SubTypeEndEntire}}}},
		{"node too long", LoadOption{FilePath: []Node{{Type: 1, SubType: 1, Data: make([]byte, 0xffff)}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if b, err := tc.o.Encode(); !errors.Is(err, ErrMalformed) {
				t.Errorf("Encode = %x, %v; want ErrMalformed", b, err)
			}
		})
	}
}

func TestBootVarNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    uint16
		ok   bool
	}{
		{"Boot0000", 0, true}, {"Boot000A", 10, true}, {"Boot000a", 10, true}, {"BootFFFF", 0xffff, true},
		{"BootOrder", 0, false}, {"BootNext", 0, false}, {"Boot+001", 0, false}, {"Boot00001", 0, false}, {"Driver01", 0, false},
	} {
		n, ok := ParseBootVarName(tc.name)
		if n != tc.n || ok != tc.ok {
			t.Errorf("ParseBootVarName(%q) = %d, %v; want %d, %v", tc.name, n, ok, tc.n, tc.ok)
		}
	}
	if got := BootVarName(0xab); got != "Boot00AB" {
		t.Errorf("BootVarName(0xab) = %q, want Boot00AB", got)
	}
}

func TestGUIDToEFI(t *testing.T) {
	// The ESP type GUID as GPT entries store it (UEFI 2.10 §5.3.3).
	got, err := GUIDToEFI("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
	if err != nil {
		t.Fatal(err)
	}
	want := [16]byte{0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b}
	if got != want {
		t.Errorf("GUIDToEFI = %x, want %x", got, want)
	}
	if s := GUIDFromEFI(got); s != strings.ToLower("C12A7328-F81F-11D2-BA4B-00A0C93EC93B") {
		t.Errorf("GUIDFromEFI = %s", s)
	}
	if _, err := GUIDToEFI("not-a-guid"); err == nil {
		t.Error("GUIDToEFI(not-a-guid) = nil error")
	}
}

// FuzzDecodeLoadOption: whatever a Boot#### variable holds, decoding
// never panics, and what decodes encodes back to the same bytes.
func FuzzDecodeLoadOption(f *testing.F) {
	good, _ := hex.DecodeString(handVector)
	f.Add(good)
	f.Add(good[:len(good)-4])
	f.Add([]byte{1, 0, 0, 0, 4, 0, 0, 0, 0x7f, 0xff, 4, 0})
	f.Add([]byte{0, 0, 0, 0, 0, 0})
	f.Add(append(bytes.Clone(good), 'R', 'C'))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := DecodeLoadOption(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeLoadOption error %v does not wrap ErrMalformed", err)
			}
			return
		}
		enc, err := o.Encode()
		if err != nil {
			t.Fatalf("Encode(DecodeLoadOption(%x)) = %v", b, err)
		}
		if !bytes.Equal(enc, b) {
			t.Fatalf("Encode(DecodeLoadOption(b)) =\n%x\nwant\n%x", enc, b)
		}
		o2, err := DecodeLoadOption(enc)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(o, o2, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("decode(encode(decode)) (-first +second):\n%s", diff)
		}
		targetOf(o) // must not panic on any device path
	})
}

// FuzzDecodeBootOrder: any BootOrder decodes or is refused, never a
// panic; what decodes encodes back to the same bytes.
func FuzzDecodeBootOrder(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x01, 0x00, 0x00, 0x00, 0x03, 0x00})
	f.Add([]byte{0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		order, err := DecodeBootOrder(b)
		if (err == nil) != (len(b)%2 == 0) {
			t.Fatalf("DecodeBootOrder(%x) = %v, %v", b, order, err)
		}
		if err == nil && !bytes.Equal(EncodeBootOrder(order), b) {
			t.Fatalf("EncodeBootOrder(DecodeBootOrder(%x)) = %x", b, EncodeBootOrder(order))
		}
	})
}
