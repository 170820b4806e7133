package efiboot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-project/shoal/internal/testdisk"
)

// espDisk is a real disk image: a GPT made by sgdisk (or an MBR by
// sfdisk) whose first partition is a FAT ESP made by mkfs.vfat, holding
// files put there by mmd and mcopy.
type espDisk struct {
	path     string
	startLBA uint64
	sizeLBA  uint64
	guid     string // GPT: partition 1's unique GUID, as sgdisk prints it
}

const espStartLBA, espSizeLBA = 2048, 81920 // 40 MiB at 1 MiB: FAT32 (mtools refuses FAT32 at 32 MiB)

// makeDisk makes a 64 MiB disk. table is "gpt" or "mbr"; espType the
// first partition's type (sgdisk's ef00 for an ESP; sfdisk's ef); files
// the ESP's paths (slash-separated; each holds a few bytes).
func makeDisk(t *testing.T, table, espType string, files ...string) espDisk {
	t.Helper()
	dir := t.TempDir()
	d := espDisk{path: filepath.Join(dir, "disk.img"), startLBA: espStartLBA, sizeLBA: espSizeLBA}
	if err := os.WriteFile(d.path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(d.path, 64<<20); err != nil {
		t.Fatal(err)
	}
	switch table {
	case "gpt":
		testdisk.Need(t, "sgdisk")
		testdisk.Run(t, "sgdisk", fmt.Sprintf("-n1:%d:%d", espStartLBA, espStartLBA+espSizeLBA-1), "-t1:"+espType, "-n2:0:0", "-t2:8300", d.path)
		for _, line := range strings.Split(testdisk.Run(t, "sgdisk", "-i", "1", d.path), "\n") {
			if g, ok := strings.CutPrefix(line, "Partition unique GUID: "); ok {
				d.guid = strings.ToLower(strings.TrimSpace(g))
			}
		}
		if d.guid == "" {
			t.Fatal("sgdisk -i 1 printed no unique GUID")
		}
	case "mbr":
		testdisk.Need(t, "sfdisk")
		cmd := exec.Command("sfdisk", "--no-reread", "--no-tell-kernel", d.path)
		cmd.Stdin = strings.NewReader(fmt.Sprintf("label: dos\nlabel-id: 0x5ba1d15c\nstart=%d, size=%d, type=%s\ntype=83\n", espStartLBA, espSizeLBA, espType))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sfdisk: %v\n%s", err, out)
		}
	}
	testdisk.Need(t, "mkfs.vfat", "mmd", "mcopy")
	esp := filepath.Join(dir, "esp.fs")
	if err := os.WriteFile(esp, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(esp, espSizeLBA*512); err != nil {
		t.Fatal(err)
	}
	testdisk.Run(t, "mkfs.vfat", "-F", "32", "-n", "ESP", esp)
	made := map[string]bool{}
	for _, f := range files {
		var dirs []string
		for d := path.Dir(f); d != "." && !made[d]; d = path.Dir(d) {
			dirs = append(dirs, d)
			made[d] = true
		}
		sort.Strings(dirs) // parents first
		for _, d := range dirs {
			testdisk.Run(t, "mmd", "-i", esp, "::/"+d)
		}
		src := filepath.Join(dir, "file")
		if err := os.WriteFile(src, []byte("MZ "+f), 0o644); err != nil {
			t.Fatal(err)
		}
		testdisk.Run(t, "mcopy", "-i", esp, src, "::/"+f)
	}
	b, err := os.ReadFile(esp)
	if err != nil {
		t.Fatal(err)
	}
	writeAt(t, d.path, b, espStartLBA*512)
	return d
}

func writeAt(t *testing.T, path string, b []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// uefi returns Options for a machine booted by UEFI whose variables are v.
func uefi(t *testing.T, disk string, v Vars) Options {
	return Options{Disk: disk, FirmwareDir: t.TempDir(), Vars: v}
}

// withFirmwareEntries is a store as OVMF leaves it: three entries in
// BootOrder.
func withFirmwareEntries(t *testing.T) *memVars {
	v := newMemVars()
	for i, d := range []string{"UiApp", "UEFI Misc Device", "EFI Internal Shell"} {
		v.vars[BootVarName(uint16(i))] = memVar{BootVarAttributes, firmwareEntry(t, d, byte(i))}
	}
	v.vars["BootOrder"] = memVar{BootVarAttributes, EncodeBootOrder([]uint16{0, 1, 2})}
	return v
}

var debian = []string{"EFI/debian/shimx64.efi", "EFI/debian/grubx64.efi", "EFI/debian/mmx64.efi", "EFI/debian/fbx64.efi", "EFI/debian/grub.cfg"}

// TestEnsureVendorOnly: the ESP holds Debian's loaders under \EFI\debian
// only. Ensure writes one entry, "debian" -> HD(1,GPT,...)/File(\EFI\
// debian\shimx64.efi), at the first free number, first in BootOrder, the
// firmware's entries kept; its HD() node carries the partition's start,
// size and unique GUID exactly as sgdisk wrote them in the GPT entry.
// Run again, it reuses the entry and writes nothing.
func TestEnsureVendorOnly(t *testing.T) {
	t.Parallel()
	d := makeDisk(t, "gpt", "ef00", debian...)
	v := withFirmwareEntries(t)
	before := v.snapshot()
	r, err := Ensure(context.Background(), uefi(t, d.path, v))
	if err != nil {
		t.Fatal(err)
	}
	want := Result{Action: ActionCreated, Disk: d.path, Partition: 1, Path: `\EFI\debian\shimx64.efi`, Description: "debian",
		Number: 3, BootOrder: []uint16{3, 0, 1, 2}, HardDrive: r.HardDrive}
	if diff := cmp.Diff(want, r); diff != "" {
		t.Errorf("Ensure (-want +got):\n%s", diff)
	}
	for k, was := range before {
		if k != "BootOrder" && !cmp.Equal(v.vars[k], was, cmp.AllowUnexported(memVar{})) {
			t.Errorf("%s changed", k)
		}
	}
	if diff := cmp.Diff([]uint16{3, 0, 1, 2}, order(v)); diff != "" {
		t.Errorf("BootOrder (-want +got):\n%s", diff)
	}
	got, ok := v.vars["Boot0003"]
	if !ok || got.attrs != BootVarAttributes {
		t.Fatalf("Boot0003 = %+v, want one with NV|BS|RT", got)
	}
	o, err := DecodeLoadOption(got.data)
	if err != nil {
		t.Fatal(err)
	}
	hd, ok := ParseHardDrive(o.FilePath[0])
	if !ok || len(o.FilePath) != 2 || o.Attributes != LoadOptionActive || o.Description != "debian" || len(o.OptionalData) != 0 {
		t.Fatalf("Boot0003 = %+v", o)
	}
	if p, _ := ParseFilePath(o.FilePath[1]); p != `\EFI\debian\shimx64.efi` {
		t.Errorf("File() = %q", p)
	}
	// The GPT's first entry (LBA 2): unique GUID at bytes 16-31, in the
	// byte order the HD() node must use.
	entry := testdisk.Bytes(t, d.path, 2*512, 128)
	wantHD := HardDrive{PartitionNumber: 1, StartLBA: d.startLBA, SizeLBA: d.sizeLBA, Format: FormatGPT, SignatureType: SignatureGUID}
	copy(wantHD.Signature[:], entry[16:32])
	if diff := cmp.Diff(wantHD, hd); diff != "" {
		t.Errorf("HD() node (-want +got):\n%s", diff)
	}
	if g := GUIDFromEFI(hd.Signature); g != d.guid {
		t.Errorf("HD() GUID %s, sgdisk says %s", g, d.guid)
	}

	sets := v.sets
	again, err := Ensure(context.Background(), uefi(t, d.path, v))
	if err != nil {
		t.Fatal(err)
	}
	if again.Action != ActionUnchanged || again.Number != 3 || v.sets != sets || len(order(v)) != 4 {
		t.Errorf("second Ensure = %s with %d writes, BootOrder %v; want Boot0003 unchanged, no write, 4 entries", again, v.sets-sets, order(v))
	}
}

// TestEnsureRemovable: an ESP with the removable path (in any case) gets
// an entry for that path too, first in BootOrder; a second run writes
// nothing.
func TestEnsureRemovable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		files []string
		path  string
	}{
		{"removable path beside a vendor's", append([]string{"EFI/BOOT/BOOTX64.EFI"}, debian...), `\EFI\BOOT\BOOTX64.EFI`},
		{"removable path in lower case", []string{"efi/boot/bootx64.efi"}, `\efi\boot\bootx64.efi`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := makeDisk(t, "gpt", "ef00", tc.files...)
			v := withFirmwareEntries(t)
			r, err := Ensure(context.Background(), uefi(t, d.path, v))
			if err != nil {
				t.Fatal(err)
			}
			if r.Action != ActionCreated || !r.Removable || r.Path != tc.path || r.Description != RemovableDescription || r.Number != 3 {
				t.Errorf("Ensure = %+v, want Boot0003 created for %s, removable", r, tc.path)
			}
			if diff := cmp.Diff([]uint16{3, 0, 1, 2}, order(v)); diff != "" {
				t.Errorf("BootOrder (-want +got):\n%s", diff)
			}
			opt, err := DecodeLoadOption(v.vars["Boot0003"].data)
			if err != nil {
				t.Fatal(err)
			}
			if f, ok := ParseFilePath(opt.FilePath[len(opt.FilePath)-1]); !ok || f != tc.path {
				t.Errorf("Boot0003 file %q, want %q", f, tc.path)
			}
			sets := v.sets
			if again, err := Ensure(context.Background(), uefi(t, d.path, v)); err != nil || again.Action != ActionUnchanged || v.sets != sets {
				t.Errorf("second Ensure = %v, %v with %d writes; want unchanged, none", again, err, v.sets-sets)
			}
		})
	}
}

// TestEnsureBIOS: a machine not booted by UEFI: nothing is written.
func TestEnsureBIOS(t *testing.T) {
	t.Parallel()
	d := makeDisk(t, "gpt", "ef00", debian...)
	v := withFirmwareEntries(t)
	o := uefi(t, d.path, v)
	o.FirmwareDir = filepath.Join(t.TempDir(), "efi")
	r, err := Ensure(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Result{Action: ActionNotUEFI, Disk: d.path}, r); diff != "" {
		t.Errorf("Ensure (-want +got):\n%s", diff)
	}
	if v.sets != 0 {
		t.Errorf("%d variables written", v.sets)
	}
}

// TestEnsureMBR: an MBR disk whose ESP has type 0xEF gets an HD() node
// with the MBR disk signature.
func TestEnsureMBR(t *testing.T) {
	t.Parallel()
	d := makeDisk(t, "mbr", "ef", "EFI/systemd/systemd-bootx64.efi")
	v := newMemVars()
	r, err := Ensure(context.Background(), uefi(t, d.path, v))
	if err != nil {
		t.Fatal(err)
	}
	want := HardDrive{PartitionNumber: 1, StartLBA: espStartLBA, SizeLBA: espSizeLBA, Signature: [16]byte{0x5c, 0xd1, 0xa1, 0x5b}, Format: FormatMBR, SignatureType: SignatureMBR}
	if diff := cmp.Diff(want, r.HardDrive); diff != "" {
		t.Errorf("HD() (-want +got):\n%s", diff)
	}
	if r.Action != ActionCreated || r.Number != 0 || r.Path != `\EFI\systemd\systemd-bootx64.efi` || r.Description != "systemd" {
		t.Errorf("Ensure = %+v", r)
	}
}

// TestEnsureErrors: each is the right error and writes nothing.
func TestEnsureErrors(t *testing.T) {
	t.Parallel()
	blank := func(t *testing.T) string {
		p := filepath.Join(t.TempDir(), "blank.img")
		if err := os.WriteFile(p, make([]byte, 8<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	damaged := func(t *testing.T) string {
		d := makeDisk(t, "gpt", "ef00", "EFI/debian/grubx64.efi")
		writeAt(t, d.path, []byte{0}, espStartLBA*512+13) // sectors per cluster 0
		return d.path
	}
	for _, tc := range []struct {
		name   string
		disk   func(t *testing.T) string
		refuse bool
		is     error
	}{
		{"two vendors", func(t *testing.T) string {
			return makeDisk(t, "gpt", "ef00", "EFI/debian/grubx64.efi", "EFI/ubuntu/shimx64.efi").path
		}, false, ErrAmbiguous},
		{"no ESP", func(t *testing.T) string { return makeDisk(t, "gpt", "8300", debian...).path }, false, ErrNoESP},
		{"no partition table", blank, false, ErrNoESP},
		{"ESP without loaders", func(t *testing.T) string { return makeDisk(t, "gpt", "ef00", "EFI/debian/grub.cfg").path }, false, ErrNoLoader},
		// go-diskfs reads this FAT32 as empty: no loader, no crash.
		{"damaged FAT", damaged, false, ErrNoLoader},
		{"variables refused", func(t *testing.T) string { return makeDisk(t, "gpt", "ef00", debian...).path }, true, ErrVars},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			disk := tc.disk(t)
			v := withFirmwareEntries(t)
			if tc.refuse {
				v.refuse = os.ErrPermission
			}
			before := v.snapshot()
			r, err := Ensure(context.Background(), uefi(t, disk, v))
			if !errors.Is(err, tc.is) {
				t.Errorf("Ensure = %+v, %v; want %v", r, err, tc.is)
			}
			if v.sets != 0 || !cmp.Equal(before, v.vars, cmp.AllowUnexported(memVar{})) {
				t.Errorf("variables written")
			}
		})
	}
}

// TestOpenEFIVarFSMissing: without the efivars directory (no EFI runtime)
// opening fails with ErrVars, mounting nothing.
func TestOpenEFIVarFSMissing(t *testing.T) {
	_, err := OpenEFIVarFS(filepath.Join(t.TempDir(), "efivars"))
	if !errors.Is(err, ErrVars) {
		t.Errorf("OpenEFIVarFS(missing) = %v, want ErrVars", err)
	}
}

// TestEnsureDefaultVars: with no Vars, Ensure opens efivarfs at VarsDir;
// a directory that is not efivarfs and cannot take it gives ErrVars.
func TestEnsureDefaultVars(t *testing.T) {
	t.Parallel()
	d := makeDisk(t, "gpt", "ef00", debian...)
	o := Options{Disk: d.path, FirmwareDir: t.TempDir(), VarsDir: filepath.Join(t.TempDir(), "none")}
	if _, err := Ensure(context.Background(), o); !errors.Is(err, ErrVars) {
		t.Errorf("Ensure = %v, want ErrVars", err)
	}
	if !bytes.Contains(testdisk.Bytes(t, d.path, 2*512, 16), []byte{0x28, 0x73, 0x2a, 0xc1}) {
		t.Errorf("GPT entry 1 is not an ESP (sgdisk -t1:ef00)")
	}
}
