// rootfs.go builds the Debian tree with mmdebstrap, trims and configures it, and makes the ext4 root filesystem from it.
package debianimg

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The root filesystem's fixed identity: GRUB finds it, the kernel mounts
// it and /etc/fstab names it by this UUID.
const (
	RootUUID  = "5b0a1e5c-d1e6-4c0b-9a7e-12a5b0a1d512"
	RootLabel = "shoal-root"
	Hostname  = "shoal-debian"
	Suite     = "bookworm"
)

// DefaultMirror is the Debian archive mmdebstrap installs from.
const DefaultMirror = "http://deb.debian.org/debian"

// packages are installed on top of --variant=minbase.
var packages = []string{"linux-image-amd64", "systemd-sysv", "udev", "usr-is-merged"}

// purgePackages are removed at the end: usrmerge (mmdebstrap installs it
// for init-system-helpers' "usrmerge | usr-is-merged"; the tree is
// merged-/usr already and usr-is-merged, above, takes its place) and the
// perl it alone needs, some 50 MiB (perl-base, which dpkg needs, stays).
var purgePackages = []string{"usrmerge", "libfile-find-rule-perl", "libnumber-compare-perl", "libtext-glob-perl",
	"perl", "perl-modules-5.36", "libperl5.36", "libgdbm-compat4", "libgdbm6"}

// dpkgExcludes keep documentation, manual pages and translations out of
// the tree (dpkg path-exclude; the copyright files stay).
var dpkgExcludes = []string{
	"path-exclude=/usr/share/man/*",
	"path-exclude=/usr/share/info/*",
	"path-exclude=/usr/share/locale/*",
	"path-exclude=/usr/share/doc/*",
	"path-include=/usr/share/doc/*/copyright",
	"path-exclude=/usr/share/lintian/*",
	"path-exclude=/usr/share/bash-completion/*",
}

// aptOptions: the archive's Release files may be older than their
// Valid-Until on a snapshot mirror.
var aptOptions = []string{`Acquire::Check-Valid-Until "false"`, `Acquire::Languages "none"`}

// initramfsConf makes initramfs-tools put only initrdModules (and what
// they need) into the initrd: MODULES=dep cannot work in a chroot, and
// MODULES=most would add tens of MiB.
const initramfsConf = "# shoal: only the modules listed in /usr/share/initramfs-tools/modules.d/shoal\nMODULES=list\n"

// setupFiles are written into the tree before any package is installed,
// so that the initrd the kernel's package makes is already the small one.
func setupFiles() map[string]string {
	return map[string]string{
		"etc/initramfs-tools/conf.d/shoal.conf":     initramfsConf,
		"usr/share/initramfs-tools/modules.d/shoal": strings.Join(initrdModules, "\n") + "\n",
	}
}

// configFiles are written into the finished tree.
func configFiles() map[string]string {
	return map[string]string{
		"etc/hostname": Hostname + "\n",
		"etc/hosts":    "127.0.0.1\tlocalhost\n127.0.1.1\t" + Hostname + "\n::1\tlocalhost ip6-localhost ip6-loopback\n",
		"etc/fstab":    "# shoal-debian: the root by UUID (internal/debianimg)\nUUID=" + RootUUID + "\t/\text4\terrors=remount-ro\t0\t1\n",
		// Let the first boot make its own machine ID.
		"etc/machine-id": "",
	}
}

// mmdebstrapArgs are mmdebstrap's arguments to build the tree into dir.
func mmdebstrapArgs(setupDir, tree, mirror string) []string {
	args := []string{"--mode=root", "--format=directory", "--variant=minbase",
		"--include=" + strings.Join(packages, ",")}
	for _, o := range aptOptions {
		args = append(args, "--aptopt="+o)
	}
	for _, o := range dpkgExcludes {
		args = append(args, "--dpkgopt="+o)
	}
	if setupDir != "" {
		// Hooks run on the host with the tree as $1.
		args = append(args, "--setup-hook=cp -a '"+setupDir+"'/. \"$1\"/")
	}
	args = append(args, "--customize-hook=chroot \"$1\" env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q "+strings.Join(purgePackages, " "))
	return append(args, Suite, tree, mirror)
}

// buildTree runs mmdebstrap into work/tree and configures the result. It
// returns the tree's path.
func buildTree(ctx context.Context, log *slog.Logger, work, mirror string) (string, error) {
	setup := filepath.Join(work, "setup")
	if err := writeFiles(setup, setupFiles()); err != nil {
		return "", err
	}
	tree := filepath.Join(work, "tree")
	start := time.Now()
	log.Info("debianimg: mmdebstrap", "suite", Suite, "mirror", mirror, "packages", strings.Join(packages, ","))
	if err := run(ctx, "mmdebstrap", mmdebstrapArgs(setup, tree, mirror)...); err != nil {
		return "", err
	}
	log.Info("debianimg: mmdebstrap done", "took", time.Since(start).Round(time.Second))

	if err := writeFiles(tree, configFiles()); err != nil {
		return "", err
	}
	// The serial getty on ttyS0 (systemd would also start it for the
	// console=ttyS0 console; this makes it explicit).
	wants := filepath.Join(tree, "etc/systemd/system/getty.target.wants")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		return "", err
	}
	link := filepath.Join(wants, "serial-getty@ttyS0.service")
	os.Remove(link)
	if err := os.Symlink("/lib/systemd/system/serial-getty@.service", link); err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(tree, "lib/systemd/system/serial-getty@.service")); err != nil {
		return "", fmt.Errorf("tree has no serial-getty@.service: %w", err)
	}
	for _, l := range []string{"vmlinuz.old", "initrd.img.old"} {
		os.Remove(filepath.Join(tree, l))
	}
	ver, err := kernelVersion(tree)
	if err != nil {
		return "", err
	}
	kept, removed, err := pruneModules(filepath.Join(tree, "lib/modules", ver))
	if err != nil {
		return "", err
	}
	log.Info("debianimg: kernel modules pruned", "kernel", ver, "kept", kept, "removed", removed)
	// The tree's own depmod (kmod), in a chroot: it needs no /proc.
	if err := run(ctx, "chroot", tree, "depmod", ver); err != nil {
		return "", err
	}
	return tree, nil
}

// kernelVersion returns the release of the one kernel in tree, checking
// that /vmlinuz and /initrd.img (what GRUB boots) point at its files.
func kernelVersion(tree string) (string, error) {
	vmlinuz, err := filepath.Glob(filepath.Join(tree, "boot", "vmlinuz-*"))
	if err != nil || len(vmlinuz) != 1 {
		return "", fmt.Errorf("tree %s: want one /boot/vmlinuz-*, found %v", tree, vmlinuz)
	}
	ver := strings.TrimPrefix(filepath.Base(vmlinuz[0]), "vmlinuz-")
	for link, want := range map[string]string{"vmlinuz": "boot/vmlinuz-" + ver, "initrd.img": "boot/initrd.img-" + ver} {
		got, err := os.Readlink(filepath.Join(tree, link))
		if err != nil {
			return "", fmt.Errorf("tree %s: /%s: %w", tree, link, err)
		}
		if strings.TrimPrefix(got, "/") != want {
			return "", fmt.Errorf("tree %s: /%s points at %s, want %s", tree, link, got, want)
		}
		if _, err := os.Stat(filepath.Join(tree, want)); err != nil {
			return "", fmt.Errorf("tree %s: %w", tree, err)
		}
	}
	return ver, nil
}

// mkfsArgs are mkfs.ext4's arguments to make the root filesystem holding
// tree at path: 4 KiB blocks and the default inode ratio (below 512 MiB
// mke2fs would choose its "small" type, 1 KiB blocks), the fixed UUID.
func mkfsArgs(tree, path string) []string {
	return []string{"-q", "-F", "-b", "4096", "-T", "default", "-U", RootUUID, "-L", RootLabel,
		"-E", "hash_seed=" + RootUUID, "-d", tree, path}
}

// mkRootFS makes the ext4 filesystem of sizeBytes holding tree at path.
func mkRootFS(ctx context.Context, tree, path string, sizeBytes int64) error {
	if err := truncate(path, sizeBytes); err != nil {
		return err
	}
	return run(ctx, "mkfs.ext4", mkfsArgs(tree, path)...)
}

// writeFiles writes each file (path relative to dir) with its parents.
func writeFiles(dir string, files map[string]string) error {
	for rel, body := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	return nil
}
