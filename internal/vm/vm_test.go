package vm

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestArgs(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		c    Config
		want []string // must appear, in this order, as one run
	}{
		{"bios-virtio-disk", Config{Dir: dir, Disks: []Disk{{Path: "/d.img"}}},
			[]string{"-drive", "if=none,format=raw,id=d0,file=/d.img", "-device", "virtio-blk-pci,drive=d0"}},
		{"usb-stick", Config{Dir: dir, Disks: []Disk{{Path: "/u.img", USB: true}}},
			[]string{"-device", "qemu-xhci,id=xhci", "-device", "usb-storage,bus=xhci.0,drive=d0,bootindex=0"}},
		{"tap-nic-pxe-first", Config{Dir: dir, NICs: []NIC{{Tap: "tap0", MAC: "52:54:00:00:00:01", NoROM: true}}},
			[]string{"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no", "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:00:00:01,romfile=", "-boot", "nc"}},
		{"name", Config{Dir: dir, Name: "node1"}, []string{"-smbios", "type=1,serial=node1"}},
		{"kernel", Config{Dir: dir, Kernel: "k", Initrd: "i", Append: "a b"}, []string{"-kernel", "k", "-initrd", "i", "-append", "a b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args, err := tc.c.Args()
			if err != nil {
				t.Fatal(err)
			}
			joined := strings.Join(args, "\x00")
			if !strings.Contains(joined, strings.Join(tc.want, "\x00")) {
				t.Errorf("Args() = %q, want it to contain %q", args, tc.want)
			}
			if diff := cmp.Diff([]string{"-cpu", "max"}, args[:2]); diff != "" {
				t.Errorf("Args() starts (-want +got):\n%s", diff)
			}
		})
	}
	kvm, err := Config{Dir: dir, KVM: true}.Args()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"-accel", "kvm", "-cpu", "host"}, kvm[:4]); diff != "" {
		t.Errorf("Args() with KVM starts (-want +got):\n%s", diff)
	}
	if _, err := (Config{Dir: dir, Firmware: "coreboot"}).Args(); err == nil {
		t.Errorf("Args() with firmware coreboot = nil error, want one")
	}
	if _, err := (Config{}).Args(); err == nil {
		t.Errorf("Args() without Dir = nil error, want one")
	}
}
