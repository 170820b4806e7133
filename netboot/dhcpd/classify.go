package dhcpd

import (
	"bytes"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Kind is what sort of network-boot client sent a request.
type Kind int

// The kinds of client.
const (
	NotPXE   Kind = iota // no PXE vendor class, not iPXE: a plain DHCP client
	PXEBIOS              // legacy BIOS PXE ROM: gets undionly.kpxe over TFTP
	PXEUEFI              // UEFI PXE: gets ipxe.efi over TFTP
	IPXE                 // iPXE (option 77 contains "iPXE"): gets the script URL
	HTTPUEFI             // UEFI HTTP boot (vendor class HTTPClient): gets an HTTP URL
)

func (k Kind) String() string {
	switch k {
	case NotPXE:
		return "plain"
	case PXEBIOS:
		return "pxe-bios"
	case PXEUEFI:
		return "pxe-uefi"
	case IPXE:
		return "ipxe"
	case HTTPUEFI:
		return "http-uefi"
	}
	return "unknown"
}

// Classify tells what kind of boot client sent req, from its vendor class
// (option 60), user class (option 77) and client architecture (option 93).
// iPXE is checked first: an iPXE binary chained from a PXE ROM still sends
// "PXEClient" but must get the script, not itself again.
func Classify(req *dhcpv4.DHCPv4) Kind {
	if bytes.Contains(req.GetOneOption(dhcpv4.OptionUserClassInformation), []byte("iPXE")) {
		return IPXE
	}
	vc := req.ClassIdentifier()
	switch {
	case strings.HasPrefix(vc, "HTTPClient"):
		return HTTPUEFI
	case strings.HasPrefix(vc, "PXEClient"):
		if isUEFI(req) {
			return PXEUEFI
		}
		return PXEBIOS
	}
	return NotPXE
}

// isUEFI reads option 93, or failing that the "Arch:NNNNN" part of the
// vendor class.
func isUEFI(req *dhcpv4.DHCPv4) bool {
	archs := req.ClientArch()
	if len(archs) == 0 {
		vc := req.ClassIdentifier()
		i := strings.Index(vc, "Arch:")
		if i < 0 || len(vc) < i+10 {
			return false
		}
		return vc[i+5:i+10] != "00000"
	}
	return archs[0] != iana.INTEL_X86PC
}
