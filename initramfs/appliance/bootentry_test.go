package appliance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/imaging/sign"
	"github.com/shoal-project/shoal/initramfs/efiboot"
	"github.com/shoal-project/shoal/internal/testdisk"
)

// fakeVars are a firmware's variables in memory; refuse makes every write
// fail, as a firmware that locks its variables does.
type fakeVars struct {
	vars   map[string][]byte
	refuse error
}

func (f *fakeVars) Get(name string) (uint32, []byte, error) {
	b, ok := f.vars[name]
	if !ok {
		return 0, nil, fmt.Errorf("read %s: %w", name, os.ErrNotExist)
	}
	return efiboot.BootVarAttributes, bytes.Clone(b), nil
}

func (f *fakeVars) Set(name string, _ uint32, data []byte) error {
	if f.refuse != nil {
		return fmt.Errorf("write %s: %w", name, f.refuse)
	}
	f.vars[name] = bytes.Clone(data)
	return nil
}

func (f *fakeVars) List() ([]string, error) {
	var names []string
	for n := range f.vars {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// vendorSource is a 64 MiB GPT disk whose FAT32 ESP (sgdisk, mkfs.vfat,
// mmd, mcopy) holds Debian's loaders under \EFI\debian only, and a
// repository holding its image "vendoronly".
func vendorSource(t *testing.T) source {
	t.Helper()
	testdisk.Need(t, "sgdisk", "mkfs.vfat", "mmd", "mcopy")
	dir := t.TempDir()
	disk := &testdisk.Disk{Path: filepath.Join(dir, "vendor.img"), SizeBytes: 64 << 20}
	if err := os.WriteFile(disk.Path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk.Path, disk.SizeBytes); err != nil {
		t.Fatal(err)
	}
	testdisk.Run(t, "sgdisk", "-n1:2048:+40M", "-t1:ef00", "-n2:0:0", "-t2:8300", disk.Path)
	esp := filepath.Join(dir, "esp.fs")
	if err := os.WriteFile(esp, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(esp, 40<<20); err != nil {
		t.Fatal(err)
	}
	testdisk.Run(t, "mkfs.vfat", "-F", "32", esp)
	testdisk.Run(t, "mmd", "-i", esp, "::/EFI", "::/EFI/debian")
	for _, f := range []string{"shimx64.efi", "grubx64.efi", "mmx64.efi"} {
		p := filepath.Join(dir, f)
		if err := os.WriteFile(p, []byte("MZ "+f), 0o644); err != nil {
			t.Fatal(err)
		}
		testdisk.Run(t, "mcopy", "-i", esp, p, "::/EFI/debian/"+f)
	}
	b, err := os.ReadFile(esp)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(disk.Path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(b, 1<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	disk.Partitions = []testdisk.Partition{{Number: 1, StartLBA: 2048, SizeBytes: 40 << 20, FS: "vfat"}}
	s := source{disk: disk, repo: filepath.Join(dir, "repo"), keys: newSource(t).keys}
	priv, err := sign.LoadPrivate(s.keys + ".key")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := imaging.Create(context.Background(), disk.Path, s.repo, "vendoronly", imaging.CreateOptions{ChunkSizeBytes: 1 << 20, SignKey: priv}); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRunBootEntry: on a machine booted by UEFI, an image whose loader is
// only at \EFI\debian gets a boot entry, first in BootOrder, said in one
// console line and in the done report; an image with the removable path
// gets one too, for that path; a firmware that refuses the write is a failure that says the
// disk is complete and what to do, and no after-action runs.
func TestRunBootEntry(t *testing.T) {
	vendor := vendorSource(t)
	firmware := func() map[string][]byte {
		return map[string][]byte{"Boot0000": []byte("an entry shoal cannot read"), "BootOrder": {0, 0}}
	}
	for _, tc := range []struct {
		name    string
		src     source
		image   string
		refuse  error
		console string // a regexp
		report  string
		fails   bool
	}{
		{"vendor path only", vendor, "vendoronly", nil,
			`shoal: UEFI boot entry Boot0001 "debian" created, first in BootOrder: \S+/vda partition 1, \\EFI\\debian\\shimx64\.efi\n`,
			`Boot0001 created "debian" \EFI\debian\shimx64.efi`, false},
		{"removable path", newSource(t), "testimg", nil,
			`shoal: UEFI boot entry Boot0001 "UEFI OS" created, first in BootOrder: \S+/vda partition 1, \\EFI\\BOOT\\BOOTX64\.EFI \(the removable path\)\n`,
			`Boot0001 created "UEFI OS" \EFI\BOOT\BOOTX64.EFI`, false},
		{"variables refused", vendor, "vendoronly", os.ErrPermission,
			`SHOAL: REIMAGING FAILED at step "UEFI boot entry"(.|\n)*the disk is written and verified, but the firmware boot entry it needs \(\S+/vda partition 1, \\EFI\\debian\\shimx64\.efi\) could not be made(.|\n)*what to do: the image's boot loader is only at`,
			"", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t, tc.src)
			v := &fakeVars{vars: firmware(), refuse: tc.refuse}
			m.efiVars = v
			target := m.disk(t, "vda", "", 64<<20)
			o := m.run(t, fmt.Sprintf("shoal.server=%s shoal.repo=%s shoal.image=%s shoal.mac=%s shoal.after=shell", m.serverURL, m.repoURL, tc.image, testMAC))
			if !regexp.MustCompile(tc.console).MatchString(o.console) {
				t.Errorf("console does not match %q:\n%s", tc.console, o.console)
			}
			st := m.status(t).Status
			if tc.fails {
				if !errors.Is(o.err, efiboot.ErrVars) || !errors.Is(o.err, os.ErrPermission) {
					t.Errorf("Run = %v, want ErrVars and ErrPermission", o.err)
				}
				if o.after != "" || strings.Contains(o.console, "SUCCESS") {
					t.Errorf("after-action %q ran, or SUCCESS shown, after the failure", o.after)
				}
				if st.State != "failed" || !strings.Contains(st.Error, "UEFI boot entry") {
					t.Errorf("server's status = %+v, want failed at the boot entry", st)
				}
				return
			}
			if o.err != nil {
				t.Fatalf("Run = %v\n%s", o.err, o.console)
			}
			if !st.Success() || st.BootEntry != tc.report {
				t.Errorf("server's status = %+v, want a success with bootEntry %q", st, tc.report)
			}
			if o.after != "shell "+target {
				t.Errorf("after-action = %q", o.after)
			}
			want := map[string]string{"vendoronly": "debian", "testimg": efiboot.RemovableDescription}[tc.image]
			if !bytes.Equal(v.vars["BootOrder"], []byte{1, 0, 0, 0}) || string(v.vars["Boot0000"]) != "an entry shoal cannot read" {
				t.Errorf("BootOrder = %x, Boot0000 = %q; want 0001 0000 and Boot0000 kept", v.vars["BootOrder"], v.vars["Boot0000"])
			}
			opt, err := efiboot.DecodeLoadOption(v.vars["Boot0001"])
			if err != nil || opt.Description != want {
				t.Errorf("Boot0001 = %+v, %v", opt, err)
			}
		})
	}
}
