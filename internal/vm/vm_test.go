package vm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-project/shoal/internal/testdisk"
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
			if diff := cmp.Diff([]string{"-accel", "tcg", "-cpu", "max"}, args[:4]); diff != "" {
				t.Errorf("Args() starts (-want +got):\n%s", diff)
			}
		})
	}
	kvm, err := Config{Dir: dir, Accel: AccelKVM}.Args()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"-accel", "kvm", "-cpu", "host"}, kvm[:4]); diff != "" {
		t.Errorf("Args() with KVM starts (-want +got):\n%s", diff)
	}
	if _, err := (Config{Dir: dir, Firmware: "coreboot"}).Args(); err == nil {
		t.Errorf("Args() with firmware coreboot = nil error, want one")
	}
	if _, err := (Config{Dir: dir, Accel: AccelAuto}).Args(); err == nil {
		t.Errorf("Args() with accelerator auto = nil error, want one (resolve it first)")
	}
	if _, err := (Config{}).Args(); err == nil {
		t.Errorf("Args() without Dir = nil error, want one")
	}
}

// TestVarsKept: a UEFI machine's variable store is made once and kept
// across starts (it is the machine's NVRAM: boot entries live there).
func TestVarsKept(t *testing.T) {
	if _, err := os.Stat(OVMFVars); err != nil {
		testdisk.Missing(t, "OVMF (apt-get install ovmf): %v", err)
	}
	dir := t.TempDir()
	c := Config{Dir: dir, Firmware: "uefi"}
	if _, err := c.Args(); err != nil {
		t.Fatal(err)
	}
	vars := filepath.Join(dir, VarsFile)
	if err := os.WriteFile(vars, []byte("this machine's own NVRAM"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Args(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(vars); string(b) != "this machine's own NVRAM" {
		t.Errorf("the variable store was replaced by a second Args(): %d bytes", len(b))
	}
}

func TestLastLine(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"a\nb\n\n", "b"},
		{"Booting from ROM...\r\nProbing EDD (edd=off to disable)... ok\r\n\x1b[?7l\x1b[2J", "Probing EDD (edd=off to disable)... ok"},
		{"x\n\x1b[0;32m  OK  \x1b[0m] Started foo\n", "OK  ] Started foo"},
		{strings.Repeat("y", 300), strings.Repeat("y", 200)},
	} {
		if got := LastLine(tc.in); got != tc.want {
			t.Errorf("LastLine(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
