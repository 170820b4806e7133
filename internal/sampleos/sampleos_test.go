package sampleos

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/shoal-project/shoal/initramfs/efiboot"
	"github.com/shoal-project/shoal/internal/testdisk"
)

// TestBuildLoaders builds both variants (with a stand-in file for the
// kernel: Build only copies it) and reads their ESPs back with
// efiboot.Inspect: by default systemd-boot is at the removable path; with
// VendorLoaderOnly it is only at \EFI\systemd\systemd-bootx64.efi.
func TestBuildLoaders(t *testing.T) {
	testdisk.Need(t, Tools...)
	for _, f := range []string{DefaultGPTMBR, DefaultSystemdBoot} {
		if _, err := os.Stat(f); err != nil {
			testdisk.Missing(t, "%v", err)
		}
	}
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(kernel, []byte("not a kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name              string
		vendorOnly        bool
		removable, loader string
	}{
		{"default", false, `\EFI\BOOT\BOOTX64.EFI`, ""},
		{"vendor loader only", true, "", VendorLoaderPath},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "sample.img")
			if err := Build(context.Background(), Options{Kernel: kernel, Out: out, VendorLoaderOnly: tc.vendorOnly}); err != nil {
				t.Fatal(err)
			}
			l, err := efiboot.Inspect(out)
			if err != nil {
				t.Fatal(err)
			}
			if l.Removable != tc.removable || l.Loader.Path != tc.loader || l.ESP.Number != 1 {
				t.Errorf("Inspect = removable %q, loader %q, ESP %d; want %q, %q, 1", l.Removable, l.Loader.Path, l.ESP.Number, tc.removable, tc.loader)
			}
		})
	}
}
