package disksel

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// testdata/sys/block is a fake /sys/block: two 8 GiB virtio disks (vda,
// vdb), a 4 GiB USB stick that does not say it is removable (sda), a card
// reader (sdb, removable), a 500 GB NVMe disk, an empty slot (sdc, size 0),
// a loop device and a zram device without hardware.
func testDisks(t *testing.T) []Disk {
	t.Helper()
	ds, err := List("testdata/sys/block", "/dev")
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func TestList(t *testing.T) {
	var names []string
	for _, d := range testDisks(t) {
		names = append(names, d.String())
	}
	want := []string{
		"/dev/nvme0n1 (465.8 GiB, model Samsung SSD 970 EVO Plus 500GB, serial S4EWNX0R123456)",
		"/dev/sda (4.0 GiB, model QEMU HARDDISK)",
		"/dev/sdb (14.8 GiB, model Card Reader, removable)",
		"/dev/vda (8.0 GiB, serial vdserial1)",
		"/dev/vdb (8.0 GiB, serial vdserial2)",
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
}

func TestSelect(t *testing.T) {
	disks := testDisks(t)
	byID := func(p string) (string, error) {
		if p == "/dev/disk/by-id/nvme-Samsung" {
			return "/dev/nvme0n1", nil
		}
		if strings.HasPrefix(p, "/dev/disk/") {
			return "", fmt.Errorf("no such link")
		}
		return p, nil
	}
	for _, tc := range []struct {
		sel  string
		boot []string
		want string
		err  error
	}{
		{"/dev/vda", nil, "/dev/vda", nil},
		{"/dev/vdc", nil, "", ErrNoDisk},
		{"/dev/sda", []string{"/dev/sda"}, "", ErrBootMedium},
		{"/dev/disk/by-id/nvme-Samsung", nil, "/dev/nvme0n1", nil},
		{"/dev/disk/by-id/gone", nil, "", ErrNoDisk},
		{"serial=vdserial2", nil, "/dev/vdb", nil},
		{"serial=VDSERIAL*", nil, "", ErrAmbiguous},
		{"model=samsung*", nil, "/dev/nvme0n1", nil},
		{"size=500GB", nil, "/dev/nvme0n1", nil},
		{"size=8G", nil, "", ErrAmbiguous},
		{"size=8G,serial=*1", nil, "/dev/vda", nil},
		{"minsize=100G", nil, "/dev/nvme0n1", nil},
		{"size>=100G", nil, "/dev/nvme0n1", nil},
		{"size<=5G", nil, "/dev/sda", nil},
		{"maxsize=5G", nil, "/dev/sda", nil},
		{"maxsize=5G", []string{"/dev/sda"}, "", ErrNoDisk},
		{"size=1T", nil, "", ErrNoDisk},
		{"auto", []string{"/dev/sda"}, "", ErrAmbiguous},
		{"colour=blue", nil, "", ErrSelector},
		{"size=big", nil, "", ErrSelector},
		{"size=0", nil, "", ErrSelector},
		{"minsize=0G", nil, "", ErrSelector},
		{"size=500gb", nil, "/dev/nvme0n1", nil},
		{"size=8 GiB,serial=*1", nil, "/dev/vda", nil},
		{"model=[", nil, "", ErrSelector},
		{"vda", nil, "", ErrSelector},
	} {
		t.Run(tc.sel, func(t *testing.T) {
			d, err := Select(disks, tc.sel, tc.boot, byID)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Select(%q, boot %v) error = %v, want %v", tc.sel, tc.boot, err, tc.err)
			}
			if d.Path != tc.want {
				t.Errorf("Select(%q, boot %v) = %v, want %s", tc.sel, tc.boot, d, tc.want)
			}
		})
	}
}

// TestAuto: auto takes the only non-removable disk that is not the boot
// medium, and never a removable one.
func TestAuto(t *testing.T) {
	var vda, sda, sdb Disk
	for _, d := range testDisks(t) {
		switch d.Name {
		case "vda":
			vda = d
		case "sda":
			sda = d
		case "sdb":
			sdb = d
		}
	}
	for _, tc := range []struct {
		name  string
		disks []Disk
		boot  []string
		want  string
		err   error
	}{
		{"usb appliance", []Disk{sda, vda}, []string{"/dev/sda"}, "/dev/vda", nil},
		{"netboot", []Disk{vda}, nil, "/dev/vda", nil},
		{"stick not known", []Disk{sda, vda}, nil, "", ErrAmbiguous},
		{"removable only", []Disk{sdb}, nil, "", ErrNoDisk},
		{"no disks", nil, nil, "", ErrNoDisk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Select(tc.disks, "auto", tc.boot, nil)
			if !errors.Is(err, tc.err) || d.Path != tc.want {
				t.Errorf("Select(auto) = %v, %v; want %q, %v", d, err, tc.want, tc.err)
			}
		})
	}
}

// FuzzSelect: a selector from the command line, the server or shoal.conf
// never makes Select panic, never picks the boot medium, and a disk it
// picks is one of the disks given.
func FuzzSelect(f *testing.F) {
	for _, s := range []string{"auto", "/dev/vda", "size=8G,serial=*1", "size>=100G", "model=[", "size=1e400", "minsize=-1", ",,,", "serial="} {
		f.Add(s)
	}
	ds, err := List("testdata/sys/block", "/dev")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sel string) {
		d, err := Select(ds, sel, []string{"/dev/sda"}, nil)
		if err != nil {
			return
		}
		if d.Path == "/dev/sda" {
			t.Errorf("Select(%q) chose the boot medium", sel)
		}
		found := false
		for _, x := range ds {
			found = found || x == d
		}
		if !found {
			t.Errorf("Select(%q) = %v, not one of the disks", sel, d)
		}
	})
}
