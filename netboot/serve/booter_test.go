package serve

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/shoal-project/shoal/netboot/dhcpd"
	"github.com/shoal-project/shoal/netboot/inventory"
)

// TestBooterLocal: a machine whose next boot is local gets nothing from
// its UEFI firmware's PXE or HTTP client (the firmware goes on to the
// disk's boot entry), still iPXE on BIOS (whose local script exits to the
// BIOS); a machine to reimage gets its file for every kind; an unknown
// one nothing.
func TestBooterLocal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "machines")
	if err := os.WriteFile(path, []byte("52:54:00:00:00:01 reimage img\n52:54:00:00:00:02 local img\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.Open(path, "")
	if err != nil {
		t.Fatal(err)
	}
	b := &booter{inv: inv, baseURL: "http://10.0.0.1:8080"}
	type want struct {
		file string
		ok   bool
	}
	reimage, local, unknown := "52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"
	for _, tc := range []struct {
		mac  string
		kind dhcpd.Kind
		want want
	}{
		{reimage, dhcpd.PXEBIOS, want{"undionly.kpxe", true}},
		{reimage, dhcpd.PXEUEFI, want{"ipxe.efi", true}},
		{reimage, dhcpd.HTTPUEFI, want{"http://10.0.0.1:8080/boot/ipxe.efi", true}},
		{reimage, dhcpd.IPXE, want{"http://10.0.0.1:8080/ipxe/52:54:00:00:00:01", true}},
		{local, dhcpd.PXEBIOS, want{"undionly.kpxe", true}},
		{local, dhcpd.PXEUEFI, want{"ipxe.efi", false}},
		{local, dhcpd.HTTPUEFI, want{"http://10.0.0.1:8080/boot/ipxe.efi", false}},
		{local, dhcpd.IPXE, want{"http://10.0.0.1:8080/ipxe/52:54:00:00:00:02", true}},
		{unknown, dhcpd.PXEUEFI, want{"", false}},
	} {
		t.Run(tc.mac+" "+tc.kind.String(), func(t *testing.T) {
			mac, _ := net.ParseMAC(tc.mac)
			file, ok := b.BootFile(mac, tc.kind)
			if ok != tc.want.ok || (ok && file != tc.want.file) {
				t.Errorf("BootFile = %q, %v; want %q, %v", file, ok, tc.want.file, tc.want.ok)
			}
		})
	}
}
