// modules.go prunes the kernel modules a QEMU guest never needs and checks that every module kept has its dependencies.
package debianimg

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// keepModules are the paths under lib/modules/VERSION/kernel/ that the
// image keeps: a path ending in "/" keeps a directory, any other one file.
// What a QEMU guest (and a plain PC) needs to boot from its disk and come
// up on the network: virtio, SATA/IDE, NVMe, SCSI disks and CD-ROMs, USB
// storage, e1000(e), ext4/FAT/ISO 9660, the CRC and crypto helpers they
// use, and systemd's autofs and efivarfs. Everything else (GPUs, sound,
// wireless, media, InfiniBand, staging, most Ethernet, ...) goes.
var keepModules = []string{
	"arch/x86/crypto/",
	"block/",
	"crypto/",
	"lib/",
	"fs/autofs/",
	"fs/efivarfs/",
	"fs/ext4/",
	"fs/fat/",
	"fs/isofs/",
	"fs/jbd2/",
	"fs/mbcache.ko",
	"fs/nls/",
	"net/core/failover.ko",
	"drivers/ata/ahci.ko",
	"drivers/ata/ata_generic.ko",
	"drivers/ata/ata_piix.ko",
	"drivers/ata/libahci.ko",
	"drivers/ata/libata.ko",
	"drivers/block/loop.ko",
	"drivers/block/virtio_blk.ko",
	"drivers/cdrom/",
	"drivers/char/hw_random/virtio-rng.ko",
	"drivers/firmware/qemu_fw_cfg.ko",
	"drivers/input/evdev.ko",
	"drivers/net/ethernet/intel/e1000/",
	"drivers/net/ethernet/intel/e1000e/",
	"drivers/net/net_failover.ko",
	"drivers/net/virtio_net.ko",
	"drivers/nvme/common/",
	"drivers/nvme/host/nvme-core.ko",
	"drivers/nvme/host/nvme.ko",
	"drivers/scsi/scsi_common.ko",
	"drivers/scsi/scsi_mod.ko",
	"drivers/scsi/sd_mod.ko",
	"drivers/scsi/sr_mod.ko",
	"drivers/scsi/virtio_scsi.ko",
	"drivers/usb/common/",
	"drivers/usb/core/",
	"drivers/usb/host/ehci-hcd.ko",
	"drivers/usb/host/ehci-pci.ko",
	"drivers/usb/host/uhci-hcd.ko",
	"drivers/usb/host/xhci-hcd.ko",
	"drivers/usb/host/xhci-pci.ko",
	"drivers/usb/storage/uas.ko",
	"drivers/usb/storage/usb-storage.ko",
	"drivers/virtio/",
}

// initrdModules are the modules initramfs-tools puts into the initrd
// (MODULES=list): enough to find the root on a virtio, SATA, NVMe or SCSI
// disk and mount its ext4.
var initrdModules = []string{
	"virtio_pci", "virtio_blk", "virtio_scsi", "sd_mod",
	"ahci", "ata_piix", "nvme",
	"ext4", "crc32c_generic",
}

// ErrModules means the kept modules do not hold together: one of them
// depends on a module that was dropped or never existed.
var ErrModules = errors.New("kernel modules")

// keepModule reports whether the module at rel (relative to kernel/) is
// kept: listed in keepModules and not a kernel self-test (test_*.ko).
func keepModule(rel string) bool {
	if strings.HasPrefix(path.Base(rel), "test_") {
		return false
	}
	for _, k := range keepModules {
		if strings.HasSuffix(k, "/") && strings.HasPrefix(rel, k) || rel == k {
			return true
		}
	}
	return false
}

// moduleName is the name modprobe knows a module file by.
func moduleName(path string) string {
	base := filepath.Base(path)
	base = base[:strings.Index(base, ".ko")]
	return strings.ReplaceAll(base, "-", "_")
}

// pruneModules deletes the modules under modDir/kernel that keepModule
// rejects (and the directories left empty), then checks that every kept
// module's dependencies are kept. It returns how many it kept and removed.
func pruneModules(modDir string) (kept, removed int, err error) {
	kernel := filepath.Join(modDir, "kernel")
	var dirs []string
	err = filepath.WalkDir(kernel, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		rel, _ := filepath.Rel(kernel, p)
		if keepModule(filepath.ToSlash(rel)) {
			kept++
			return nil
		}
		removed++
		return os.Remove(p)
	})
	if err != nil {
		return 0, 0, fmt.Errorf("prune modules in %s: %w", kernel, err)
	}
	// Deepest first, so that a parent is empty once its children are gone.
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs[:len(dirs)-1] { // keep kernel/ itself
		os.Remove(d) // fails, as it should, on a directory that still holds a module
	}
	if err := checkModuleDeps(kernel); err != nil {
		return kept, removed, err
	}
	return kept, removed, nil
}

// checkModuleDeps reads the depends= field of every module's .modinfo
// section under kernel and fails when one names a module that is not
// there.
func checkModuleDeps(kernel string) error {
	deps := map[string][]string{}
	err := filepath.WalkDir(kernel, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !strings.HasSuffix(p, ".ko") {
			return fmt.Errorf("module %s: only uncompressed .ko modules are handled: %w", p, ErrModules)
		}
		ds, err := modinfoDepends(p)
		if err != nil {
			return err
		}
		deps[moduleName(p)] = ds
		return nil
	})
	if err != nil {
		return err
	}
	var missing []string
	for m, ds := range deps {
		for _, d := range ds {
			if _, ok := deps[d]; !ok {
				missing = append(missing, m+" needs "+d)
			}
		}
	}
	for _, m := range initrdModules {
		if _, ok := deps[m]; !ok {
			missing = append(missing, "the initrd needs "+m)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return &MissingModulesError{Missing: missing}
	}
	return nil
}

// MissingModulesError lists the dependencies the kept modules lack
// ("ext4 needs jbd2", "the initrd needs virtio_blk"). It wraps ErrModules.
type MissingModulesError struct{ Missing []string }

func (e *MissingModulesError) Error() string {
	return strings.Join(e.Missing, ", ") + ": " + ErrModules.Error()
}

func (e *MissingModulesError) Unwrap() error { return ErrModules }

// modinfoDepends returns the depends= field of a module's .modinfo
// section (NUL-separated key=value strings).
func modinfoDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, fmt.Errorf("module %s has no .modinfo: %w", path, ErrModules)
	}
	b, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s: .modinfo: %w", path, err)
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		v, ok := bytes.CutPrefix(kv, []byte("depends="))
		if !ok {
			continue
		}
		var out []string
		for _, d := range strings.Split(string(v), ",") {
			if d != "" {
				out = append(out, strings.ReplaceAll(d, "-", "_"))
			}
		}
		return out, nil
	}
	return nil, nil
}
