// Package ipxe writes the per-machine iPXE scripts that shoal serve hands to
// iPXE clients: either boot the appliance (kernel + initramfs over HTTP,
// with the machine's kernel command line) or exit to the next boot device.
package ipxe

import (
	"fmt"
	"strings"
)

// Boot describes an appliance boot.
type Boot struct {
	// BaseURL is the server's HTTP root, e.g. "http://10.0.0.1:8080".
	BaseURL string
	// Kernel and Initrd are file names under BaseURL/boot/.
	Kernel, Initrd string
	// Cmdline holds the kernel arguments, in order; "initrd=NAME" is added
	// first (the UEFI iPXE in Debian needs it to find the initramfs).
	Cmdline []string
}

// BootScript returns the iPXE script that boots b.
func BootScript(b Boot) string {
	var sb strings.Builder
	sb.WriteString("#!ipxe\n")
	sb.WriteString("echo shoal: booting the appliance\n")
	args := append([]string{"initrd=" + b.Initrd}, b.Cmdline...)
	fmt.Fprintf(&sb, "kernel %s/boot/%s %s || goto failed\n", b.BaseURL, b.Kernel, strings.Join(quoteAll(args), " "))
	fmt.Fprintf(&sb, "initrd %s/boot/%s || goto failed\n", b.BaseURL, b.Initrd)
	sb.WriteString("boot || goto failed\n")
	sb.WriteString(":failed\n")
	sb.WriteString("echo shoal: boot failed, retrying in 10 s\n")
	sb.WriteString("sleep 10\n")
	sb.WriteString("reboot\n")
	return sb.String()
}

// LocalScript returns the script that makes iPXE give up so that the
// firmware boots the next device (the local disk).
func LocalScript(reason string) string {
	text := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '$' || r == '#' || r == '|' || r == '&' {
			return -1
		}
		return r
	}, reason)
	return "#!ipxe\necho shoal: " + text + "\nexit\n"
}

// quoteAll makes each argument safe on an iPXE command line: iPXE expands
// ${...} settings and splits on blanks, so those are escaped or refused.
func quoteAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = sanitize(a)
	}
	return out
}

// sanitize drops characters that would end or change an iPXE command: line
// breaks, blanks, '$' (setting expansion), '#', '|' and '&'.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '\n', '\r', '$', '#', '|', '&':
			return -1
		case ' ', '\t':
			return '_'
		}
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}
