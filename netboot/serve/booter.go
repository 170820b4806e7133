// booter.go is the boot policy DHCP asks (what file a MAC boots) and the
// leases httpd asks about (which address a MAC holds).

package serve

import (
	"net"
	"net/netip"

	"github.com/shoal-project/shoal/netboot/dhcpd"
	"github.com/shoal-project/shoal/netboot/inventory"
)

// booter is the real boot policy: machines the inventory allows get the
// iPXE binary for their firmware, then their iPXE script. A machine whose
// next boot is local gets nothing from its UEFI firmware's own PXE or HTTP
// client: the firmware goes on to the next entry of its BootOrder, the
// disk's (the appliance put it there, right after the network entry). Not
// iPXE's "exit": Debian 12's ipxe.efi (1.0.0+git-20190125), loaded by OVMF
// and told to exit, printed "No more network devices", its banner again,
// and hung (seen in the lab with the vendor-only Debian image, which has
// no removable-path loader for the firmware to find before PXE). BIOS
// machines still get iPXE and its local script, whose exit returns to the
// BIOS, which boots the disk.
type booter struct {
	inv     inventory.Backend
	baseURL string
}

func (b *booter) BootFile(mac net.HardwareAddr, k dhcpd.Kind) (string, bool) {
	m, err := b.inv.Lookup(mac.String())
	if err != nil {
		return "", false
	}
	local := m.Action == inventory.Local
	switch k {
	case dhcpd.PXEBIOS:
		return "undionly.kpxe", true
	case dhcpd.PXEUEFI:
		return "ipxe.efi", !local
	case dhcpd.IPXE:
		return b.baseURL + "/ipxe/" + mac.String(), b.baseURL != ""
	case dhcpd.HTTPUEFI:
		return b.baseURL + "/boot/ipxe.efi", b.baseURL != "" && !local
	}
	return "", false
}

// dhcpLeases answers httpd's question "which address is leased to this
// MAC" from the server's own DHCP (full mode), made after httpd.
type dhcpLeases struct{ s *Server }

func (l dhcpLeases) LeasedTo(mac net.HardwareAddr) (netip.Addr, bool) {
	if l.s.dhcp == nil {
		return netip.Addr{}, false
	}
	return l.s.dhcp.LeasedTo(mac)
}
