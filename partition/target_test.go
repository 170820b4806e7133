package partition_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/internal/testdisk"
	"github.com/shoal-project/shoal/partition"
	"golang.org/x/sys/unix"
)

func fileOf(t *testing.T, sizeBytes int64, fill byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, bytes.Repeat([]byte{fill}, int(sizeBytes)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestOpenTargetRefuses checks each reason to refuse a target, on real block
// devices where the reason needs one, and that the target is not written.
func TestOpenTargetRefuses(t *testing.T) {
	req := partition.Requirements{MinSizeBytes: 4 << 20, LogicalSectorBytes: 512, CreateSizeBytes: 8 << 20}
	for _, tc := range []struct {
		name string
		// setup returns the target path, options, and the file whose bytes
		// must stay unchanged.
		setup func(t *testing.T) (string, partition.TargetOptions, string)
		want  error
	}{
		{
			name: "file too small",
			setup: func(t *testing.T) (string, partition.TargetOptions, string) {
				p := fileOf(t, 2<<20, 0x5a)
				return p, partition.TargetOptions{}, p
			},
			want: partition.ErrTooSmall,
		},
		{
			name: "block device with 4096-byte sectors",
			setup: func(t *testing.T) (string, partition.TargetOptions, string) {
				p := fileOf(t, 8<<20, 0x5a)
				return testdisk.Loop(t, p, 4096), partition.TargetOptions{}, p
			},
			want: partition.ErrSectorSize,
		},
		{
			name: "block device too small",
			setup: func(t *testing.T) (string, partition.TargetOptions, string) {
				p := fileOf(t, 2<<20, 0x5a)
				return testdisk.Loop(t, p, 512), partition.TargetOptions{}, p
			},
			want: partition.ErrTooSmall,
		},
		{
			name: "mounted block device",
			setup: func(t *testing.T) (string, partition.TargetOptions, string) {
				testdisk.Need(t, "mkfs.ext4", "mount", "umount")
				p := fileOf(t, 8<<20, 0)
				testdisk.Run(t, "mkfs.ext4", "-q", "-F", p)
				dev := testdisk.Loop(t, p, 512)
				mnt := t.TempDir()
				testdisk.Run(t, "mount", dev, mnt)
				t.Cleanup(func() { exec.Command("umount", mnt).Run() })
				// Compare the image file after unmounting would race the
				// cleanup; the device's bytes are compared instead.
				return dev, partition.TargetOptions{}, ""
			},
			want: partition.ErrMounted,
		},
		{
			name: "boot medium",
			setup: func(t *testing.T) (string, partition.TargetOptions, string) {
				p := fileOf(t, 8<<20, 0x5a)
				dev := testdisk.Loop(t, p, 512)
				return dev, partition.TargetOptions{BootDevices: []string{dev}}, p
			},
			want: partition.ErrBootDevice,
		},
		{
			name: "character device",
			setup: func(t *testing.T) (string, partition.TargetOptions, string) {
				return "/dev/null", partition.TargetOptions{}, ""
			},
			want: partition.ErrNotADisk,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, opts, watch := tc.setup(t)
			var before []byte
			if watch != "" {
				before, _ = os.ReadFile(watch)
			}
			tg, err := partition.OpenTarget(path, req, opts)
			if err == nil {
				tg.Close()
				t.Fatalf("OpenTarget(%s) = nil error, want %v", path, tc.want)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("OpenTarget(%s) = %v, want %v", path, err, tc.want)
			}
			var te *partition.TargetError
			if !errors.As(err, &te) || te.Path != path {
				t.Errorf("OpenTarget(%s) error %v does not name the target", path, err)
			}
			if watch != "" {
				after, _ := os.ReadFile(watch)
				if !bytes.Equal(before, after) {
					t.Errorf("target %s changed although it was refused", path)
				}
			}
		})
	}
}

// TestRootDeviceRefused checks that the disk holding / is refused: a loop
// device that a mount table names as /, so that the rule is tested on any
// machine, containers (CI's) included.
func TestRootDeviceRefused(t *testing.T) {
	req := partition.Requirements{MinSizeBytes: 512, LogicalSectorBytes: 512}
	t.Run("loop-as-root", func(t *testing.T) {
		testdisk.NeedRoot(t)
		img := filepath.Join(t.TempDir(), "root.img")
		if err := os.WriteFile(img, make([]byte, 4<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		dev := testdisk.Loop(t, img, 512)
		var st unix.Stat_t
		if err := unix.Stat(dev, &st); err != nil {
			t.Fatal(err)
		}
		mi := filepath.Join(t.TempDir(), "mountinfo")
		line := fmt.Sprintf("22 1 %d:%d / / rw,relatime shared:1 - ext4 %s rw\n", unix.Major(st.Rdev), unix.Minor(st.Rdev), dev)
		if err := os.WriteFile(mi, []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
		if tg, err := partition.OpenTarget(dev, req, partition.TargetOptions{Mountinfo: mi}); !errors.Is(err, partition.ErrBootDevice) {
			if err == nil {
				tg.Close()
			}
			t.Errorf("OpenTarget(%s) with %s as / = %v, want %v", dev, dev, err, partition.ErrBootDevice)
		}
		tg, err := partition.OpenTarget(dev, req, partition.TargetOptions{Mountinfo: filepath.Join(t.TempDir(), "none")})
		if err != nil {
			t.Fatalf("OpenTarget(%s) with no mount table = %v, want it opened", dev, err)
		}
		tg.Close()
	})
}

func TestBlockDeviceRoundTrip(t *testing.T) {
	// A loop device takes a table like any disk and a zeroed range reads
	// back as zeros.
	p := fileOf(t, 16<<20, 0x77)
	dev := testdisk.Loop(t, p, 512)
	req := partition.Requirements{MinSizeBytes: 8 << 20, LogicalSectorBytes: 512}
	tg, err := partition.OpenTarget(dev, req, partition.TargetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	if !tg.IsDevice || tg.SizeBytes != 16<<20 {
		t.Fatalf("OpenTarget(%s) = device %v size %d, want device of %d", dev, tg.IsDevice, tg.SizeBytes, 16<<20)
	}
	if err := tg.Wipe(); err != nil {
		t.Fatal(err)
	}
	if err := tg.Zero(partition.Extent{OffsetBytes: 1 << 20, SizeBytes: 2 << 20}); err != nil {
		t.Fatal(err)
	}
	l := &partition.Layout{Table: partition.TableGPT, LogicalSectorBytes: 512, FirstUsableLBA: 34,
		Partitions: []partition.Partition{{Number: 1, Type: "0FC63DAF-8483-4772-8E79-3D69D8477DE4", StartLBA: 2048, SizeBytes: 4 << 20, Grow: true}}}
	if err := tg.WriteTable(l); err != nil {
		t.Fatal(err)
	}
	tg.File.Sync()
	got := testdisk.Bytes(t, dev, 1<<20, 2<<20)
	if !bytes.Equal(got, make([]byte, 2<<20)) {
		t.Errorf("zeroed extent of %s does not read as zeros", dev)
	}
	out := testdisk.Run(t, "sgdisk", "-v", dev)
	if !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v %s:\n%s", dev, out)
	}
}

func TestDiscard(t *testing.T) {
	// A loop device passes BLKDISCARD to its file as a punched hole, which
	// reads as zeros; a regular file target is left as it is.
	const fill = 0x5a
	p := fileOf(t, 16<<20, fill)
	dev := testdisk.Loop(t, p, 512)
	req := partition.Requirements{MinSizeBytes: 8 << 20, LogicalSectorBytes: 512}
	e := partition.Extent{OffsetBytes: 4 << 20, SizeBytes: 4 << 20}
	for _, tc := range []struct {
		name, path string
		want       bool
		reads      byte
	}{
		{"loop device", dev, true, 0},
		{"regular file", fileOf(t, 16<<20, fill), false, fill},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg, err := partition.OpenTarget(tc.path, req, partition.TargetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer tg.Close()
			if got := tg.Discard(e); got != tc.want {
				t.Fatalf("Discard(%+v) on %s = %v, want %v", e, tc.path, got, tc.want)
			}
			if got := tg.Discard(partition.Extent{OffsetBytes: 100, SizeBytes: 512}); got {
				t.Errorf("Discard of an unaligned extent = true, want false")
			}
			tg.File.Sync()
			if got := testdisk.Bytes(t, tc.path, e.OffsetBytes, e.SizeBytes); !bytes.Equal(got, bytes.Repeat([]byte{tc.reads}, int(e.SizeBytes))) {
				t.Errorf("discarded extent of %s does not read as %#x", tc.path, tc.reads)
			}
			if got := testdisk.Bytes(t, tc.path, e.End(), 4096); !bytes.Equal(got, bytes.Repeat([]byte{fill}, 4096)) {
				t.Errorf("bytes past the discarded extent of %s changed", tc.path)
			}
		})
	}
}
