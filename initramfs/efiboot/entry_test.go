package efiboot

import (
	"errors"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// firmwareEntry is an entry as a firmware makes one: a full device path to
// a disk or the shell, not an HD() short form.
func firmwareEntry(t *testing.T, desc string, slot byte) []byte {
	t.Helper()
	o := LoadOption{Attributes: LoadOptionActive, Description: desc, FilePath: []Node{
		{Type: 0x02, SubType: 0x01, Data: []byte{0xd0, 0x41, 0x03, 0x0a, 0, 0, 0, 0}},
		{Type: 0x01, SubType: 0x01, Data: []byte{0x00, slot}},
	}, OptionalData: []byte("N\xacA\xb1")}
	b, err := o.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pxeEntry is an entry as OVMF makes it for a NIC: PciRoot/Pci/MAC/IPv4.
func pxeEntry(t *testing.T) []byte {
	t.Helper()
	mac := make([]byte, 33)
	copy(mac, []byte{0x52, 0x54, 0, 0x5e, 0, 1})
	mac[32] = 1
	return mustEncode(t, LoadOption{Attributes: LoadOptionActive, Description: "UEFI PXEv4 (MAC:5254005E0001)", FilePath: []Node{
		{Type: 0x02, SubType: 0x01, Data: []byte{0xd0, 0x41, 0x03, 0x0a, 0, 0, 0, 0}},
		{Type: 0x01, SubType: 0x01, Data: []byte{0x00, 3}},
		{Type: TypeMessaging, SubType: SubTypeMAC, Data: mac},
		{Type: TypeMessaging, SubType: SubTypeIPv4, Data: make([]byte, 23)},
	}})
}

// bootCurrent is the BootCurrent variable naming n.
func bootCurrent(n uint16) []byte { return []byte{byte(n), byte(n >> 8)} }

func mustEncode(t *testing.T, o LoadOption) []byte {
	t.Helper()
	b, err := o.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withFile returns o pointing at another file of the same partition.
func withFile(t *testing.T, o LoadOption, path string) LoadOption {
	t.Helper()
	f, err := FilePathNode(path)
	if err != nil {
		t.Fatal(err)
	}
	o.FilePath = []Node{o.FilePath[0], f}
	return o
}

func order(v *memVars) []uint16 {
	_, b, err := v.Get("BootOrder")
	if err != nil {
		return nil
	}
	o, _ := DecodeBootOrder(b)
	return o
}

func TestInstall(t *testing.T) {
	opt := handOption(t)
	for _, tc := range []struct {
		name      string
		vars      map[string][]byte // besides BootOrder
		bootOrder []uint16          // nil: no BootOrder variable
		wantNum   uint16
		wantAct   Action
		wantOrder []uint16
	}{
		{"empty store", nil, nil, 0, ActionCreated, []uint16{0}},
		{"firmware entries kept, an unreadable one's number not reused",
			map[string][]byte{"Boot0000": firmwareEntry(t, "UiApp", 0), "Boot0001": firmwareEntry(t, "UEFI Misc Device", 3),
				"Boot0002": firmwareEntry(t, "EFI Internal Shell", 0), "Boot0003": []byte{1, 2, 3}},
			[]uint16{0, 1, 2}, 4, ActionCreated, []uint16{4, 0, 1, 2}},
		{"a number BootOrder names without a variable is not reused", map[string][]byte{"Boot0001": firmwareEntry(t, "disk", 3)},
			[]uint16{0, 1}, 2, ActionCreated, []uint16{2, 0, 1}},
		{"identical entry: nothing written", map[string][]byte{"Boot0000": firmwareEntry(t, "disk", 3), "Boot0005": mustEncode(t, opt)},
			[]uint16{5, 0}, 5, ActionUnchanged, []uint16{5, 0}},
		{"identical entry moved first, its duplicates dropped",
			map[string][]byte{"Boot0000": firmwareEntry(t, "disk", 3), "Boot0005": mustEncode(t, opt)},
			[]uint16{0, 5, 0, 5}, 5, ActionUnchanged, []uint16{5, 0, 0}},
		{"same file, other description and inactive: rewritten",
			map[string][]byte{"Boot0001": firmwareEntry(t, "disk", 3), "Boot0007": mustEncode(t, LoadOption{Description: "old", FilePath: opt.FilePath})},
			[]uint16{1, 7}, 7, ActionUpdated, []uint16{7, 1}},
		{"file names differ in case only: the same entry",
			map[string][]byte{"Boot0002": mustEncode(t, withFile(t, opt, `\efi\DEBIAN\SHIMX64.EFI`))},
			[]uint16{2}, 2, ActionUpdated, []uint16{2}},
		{"same partition, other file: a new entry",
			map[string][]byte{"Boot0000": mustEncode(t, withFile(t, opt, `\EFI\debian\grubx64.efi`))},
			[]uint16{0}, 1, ActionCreated, []uint16{1, 0}},
		{"booted from the network: right after that entry",
			map[string][]byte{"Boot0000": firmwareEntry(t, "UiApp", 0), "Boot0001": pxeEntry(t), "Boot0002": firmwareEntry(t, "EFI Internal Shell", 0),
				"BootCurrent": bootCurrent(1)},
			[]uint16{0, 1, 2}, 3, ActionCreated, []uint16{0, 1, 3, 2}},
		{"booted from the network, entry there first: moved after it",
			map[string][]byte{"Boot0001": pxeEntry(t), "Boot0005": mustEncode(t, opt), "BootCurrent": bootCurrent(1)},
			[]uint16{5, 1}, 5, ActionUnchanged, []uint16{1, 5}},
		{"booted from a disk (BootCurrent not network): first",
			map[string][]byte{"Boot0001": pxeEntry(t), "Boot0002": firmwareEntry(t, "USB stick", 2), "BootCurrent": bootCurrent(2)},
			[]uint16{1, 2}, 0, ActionCreated, []uint16{0, 1, 2}},
		{"BootCurrent names a missing entry: first",
			map[string][]byte{"Boot0001": pxeEntry(t), "BootCurrent": bootCurrent(7)},
			[]uint16{1}, 0, ActionCreated, []uint16{0, 1}},
		{"two matches: the one BootOrder tries first",
			map[string][]byte{"Boot0003": mustEncode(t, opt), "Boot0009": mustEncode(t, opt)},
			[]uint16{9, 3}, 9, ActionUnchanged, []uint16{9, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newMemVars()
			for k, b := range tc.vars {
				v.vars[k] = memVar{BootVarAttributes, b}
			}
			if tc.bootOrder != nil {
				v.vars["BootOrder"] = memVar{BootVarAttributes, EncodeBootOrder(tc.bootOrder)}
			}
			before := v.snapshot()
			in, err := Install(v, opt, nil)
			if err != nil {
				t.Fatal(err)
			}
			if in.Number != tc.wantNum || in.Action != tc.wantAct {
				t.Errorf("Install = Boot%04X %s, want Boot%04X %s", in.Number, in.Action, tc.wantNum, tc.wantAct)
			}
			if diff := cmp.Diff(tc.wantOrder, order(v)); diff != "" {
				t.Errorf("BootOrder (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantOrder, in.BootOrder); diff != "" {
				t.Errorf("Installed.BootOrder (-want +got):\n%s", diff)
			}
			got := v.vars[BootVarName(in.Number)]
			if got.attrs != BootVarAttributes || !cmp.Equal(got.data, mustEncode(t, opt)) {
				t.Errorf("%s = %#x %x, want NV|BS|RT and the entry", BootVarName(in.Number), got.attrs, got.data)
			}
			// Every other variable is untouched.
			for k, was := range before {
				if k == "BootOrder" || k == BootVarName(in.Number) {
					continue
				}
				if now := v.vars[k]; now.attrs != was.attrs || !cmp.Equal(now.data, was.data) {
					t.Errorf("%s changed", k)
				}
			}
			if in.Action == ActionUnchanged && cmp.Equal(tc.bootOrder, tc.wantOrder) && v.sets != 0 {
				t.Errorf("%d writes for an entry that was right", v.sets)
			}
			// A second run changes nothing.
			sets := v.sets
			again, err := Install(v, opt, nil)
			if err != nil {
				t.Fatal(err)
			}
			if again.Number != in.Number || again.Action != ActionUnchanged || v.sets != sets {
				t.Errorf("second Install = Boot%04X %s with %d writes, want Boot%04X unchanged and none", again.Number, again.Action, v.sets-sets, in.Number)
			}
		})
	}
}

func TestInstallErrors(t *testing.T) {
	opt := handOption(t)
	t.Run("writes refused", func(t *testing.T) {
		v := newMemVars()
		v.refuse = os.ErrPermission
		_, err := Install(v, opt, nil)
		if !errors.Is(err, ErrVars) || !errors.Is(err, os.ErrPermission) {
			t.Errorf("Install = %v, want ErrVars and ErrPermission", err)
		}
	})
	t.Run("BootOrder malformed", func(t *testing.T) {
		v := newMemVars()
		v.vars["BootOrder"] = memVar{BootVarAttributes, []byte{1, 0, 2}}
		if _, err := Install(v, opt, nil); !errors.Is(err, ErrMalformed) || v.sets != 0 {
			t.Errorf("Install = %v with %d writes, want ErrMalformed and none", err, v.sets)
		}
	})
	t.Run("no HD and File nodes", func(t *testing.T) {
		v := newMemVars()
		if _, err := Install(v, LoadOption{Description: "x"}, nil); !errors.Is(err, ErrMalformed) || v.sets != 0 {
			t.Errorf("Install = %v with %d writes, want ErrMalformed and none", err, v.sets)
		}
	})
}
