package ipxe

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBootScript(t *testing.T) {
	got := BootScript(Boot{
		BaseURL: "http://10.0.0.1:8080",
		Kernel:  "vmlinuz",
		Initrd:  "shoal-initramfs.cpio.zst",
		Cmdline: []string{"console=ttyS0", "shoal.image=deb 12", "shoal.x=${evil}\nshell"},
	})
	want := `#!ipxe
echo shoal: booting the appliance
kernel http://10.0.0.1:8080/boot/vmlinuz initrd=shoal-initramfs.cpio.zst console=ttyS0 shoal.image=deb_12 shoal.x={evil}shell || goto failed
initrd http://10.0.0.1:8080/boot/shoal-initramfs.cpio.zst || goto failed
boot || goto failed
:failed
echo shoal: boot failed, retrying in 10 s
sleep 10
reboot
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("BootScript mismatch (-want +got):\n%s", diff)
	}
}

func TestLocalScript(t *testing.T) {
	got := LocalScript("52:54:00:12:34:56 is set to local\nshell")
	want := "#!ipxe\necho shoal: 52:54:00:12:34:56 is set to localshell\nexit\n"
	if got != want {
		t.Errorf("LocalScript = %q, want %q", got, want)
	}
}
