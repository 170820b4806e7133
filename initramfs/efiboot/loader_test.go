package efiboot

import (
	"errors"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

// TestChooseLoader is the choice's policy on in-memory trees; the tests
// in efiboot_test.go read real FAT filesystems.
func TestChooseLoader(t *testing.T) {
	f := func(paths ...string) fstest.MapFS {
		m := fstest.MapFS{}
		for _, p := range paths {
			m[p] = &fstest.MapFile{Data: []byte("MZ")}
		}
		return m
	}
	for _, tc := range []struct {
		name string
		fsys fstest.MapFS
		want Loader
		err  error
	}{
		{"shim first", f("EFI/debian/grubx64.efi", "EFI/debian/shimx64.efi", "EFI/debian/mmx64.efi", "EFI/debian/fbx64.efi"),
			Loader{"debian", `\EFI\debian\shimx64.efi`}, nil},
		{"grub without shim", f("EFI/debian/grubx64.efi", "EFI/debian/grub.cfg"), Loader{"debian", `\EFI\debian\grubx64.efi`}, nil},
		{"a vendor's only loader", f("EFI/systemd/systemd-bootx64.efi"), Loader{"systemd", `\EFI\systemd\systemd-bootx64.efi`}, nil},
		{"names as spelled on disk", f("efi/Fedora/SHIMX64.EFI", "efi/Fedora/shim.efi"), Loader{"Fedora", `\efi\Fedora\SHIMX64.EFI`}, nil},
		{"Microsoft's loader in Boot", f("EFI/Microsoft/Boot/bootmgfw.efi", "EFI/Microsoft/Boot/memtest.efi", "EFI/Microsoft/Recovery/BCD"),
			Loader{"Microsoft", `\EFI\Microsoft\Boot\bootmgfw.efi`}, nil},
		{"BOOT without BOOTX64.EFI and Linux are not vendors", f("EFI/BOOT/fbx64.efi", "EFI/Linux/uki.efi", "EFI/arch/grubx64.efi"),
			Loader{"arch", `\EFI\arch\grubx64.efi`}, nil},
		{"vendor directory without loaders skipped", f("EFI/debian/shimx64.efi", "EFI/dell/logs/boot.log"), Loader{"debian", `\EFI\debian\shimx64.efi`}, nil},
		{"two vendors", f("EFI/debian/grubx64.efi", "EFI/ubuntu/shimx64.efi"), Loader{}, ErrAmbiguous},
		{"a vendor with two unknown loaders", f("EFI/acme/a.efi", "EFI/acme/b.efi"), Loader{}, ErrAmbiguous},
		{"no EFI directory", f("loader/loader.conf"), Loader{}, ErrNoLoader},
		{"EFI without loaders", f("EFI/debian/grub.cfg"), Loader{}, ErrNoLoader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ChooseLoader(tc.fsys)
			if !errors.Is(err, tc.err) || (tc.err != nil && err == nil) {
				t.Fatalf("ChooseLoader = %+v, %v; want error %v", got, err, tc.err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ChooseLoader (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRemovable(t *testing.T) {
	for _, tc := range []struct {
		name string
		fsys fstest.MapFS
		want string
	}{
		{"upper case", fstest.MapFS{"EFI/BOOT/BOOTX64.EFI": {}}, `\EFI\BOOT\BOOTX64.EFI`},
		{"lower case", fstest.MapFS{"efi/boot/bootx64.efi": {}}, `\efi\boot\bootx64.efi`},
		{"32-bit only", fstest.MapFS{"EFI/BOOT/BOOTIA32.EFI": {}}, ""},
		{"a directory of that name", fstest.MapFS{"EFI/BOOT/BOOTX64.EFI/x": {}}, ""},
		{"vendor only", fstest.MapFS{"EFI/debian/shimx64.efi": {}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Removable(tc.fsys); got != tc.want {
				t.Errorf("Removable = %q, want %q", got, tc.want)
			}
		})
	}
}
