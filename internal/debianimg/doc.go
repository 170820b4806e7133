// Package debianimg builds a small, real, bootable Debian 12 (bookworm) raw
// disk image for shoal's tests and lab (`shoal lab --image DISK.img`), once,
// and keeps it in a cache outside the clone.
//
// # The disk
//
// 512 MiB, GPT (laid out by sgdisk on a plain file; each partition is built
// as its own file and copied into place, since this container's loop
// devices show no partitions):
//
//	LBA 0          protective MBR whose boot code is GRUB's boot.img,
//	               patched as grub-bios-setup does (PatchBootImage):
//	               kernel sector (0x5c) = 2048, boot drive 0xff, the floppy
//	               check (0x66) replaced by two NOPs, bytes 0x1b8..0x1fd
//	               (disk signature, partition table) kept
//	partition 1    "BIOS boot" (EF02), 1 MiB at LBA 2048: GRUB's i386-pc
//	               core.img, its first-sector blocklist (PatchCoreImage)
//	               saying the rest lies from LBA 2049, loaded at 0x820:0
//	partition 2    "EFI system" (EF00), 40 MiB FAT32: GRUB for x86_64-efi
//	               at \EFI\BOOT\BOOTX64.EFI (Removable) or only at
//	               \EFI\debian\grubx64.efi (VendorOnly: needs a firmware
//	               boot entry; OVMF with a fresh variable store does not
//	               boot it and ends in its UEFI shell)
//	partition 3    "root" (8300) to the last usable LBA (so that shoal
//	               stretches it on a larger disk): ext4 with the fixed UUID
//	               RootUUID, made by mkfs.ext4 -d from the tree
//
// Both GRUBs are made by grub-mkimage with every module they need built in
// and the same short script embedded (grubScript): find the root by UUID,
// print BootMarker, then linux /vmlinuz root=UUID=... console=tty0
// console=ttyS0,115200, initrd /initrd.img, boot. There is no menu and no
// timeout, and nothing is read from /boot/grub. /vmlinuz and /initrd.img
// are the links Debian keeps to /boot/vmlinuz-* and /boot/initrd.img-*.
// The BIOS GRUB uses the serial port itself; under UEFI, OVMF copies the
// console to it.
//
// # The tree
//
//	mmdebstrap --mode=root --variant=minbase \
//	    --include=linux-image-amd64,systemd-sysv,udev bookworm TREE MIRROR
//
// with dpkg path-excludes for manual pages, info, translations, docs (but
// the copyright files), lintian overrides and bash completions, and
// initramfs-tools set to MODULES=list before the kernel's package installs,
// so its initrd holds only the disk and ext4 modules (initrdModules: virtio,
// SATA, NVMe, SCSI disk). Then, on the tree: hostname shoal-debian,
// /etc/hosts, /etc/fstab with the root by UUID, an empty machine-id (made at
// first boot), serial-getty@ttyS0 enabled, every kernel module a guest
// never needs deleted (keepModules; GPUs, sound, wireless, media,
// InfiniBand, staging, most Ethernet, ...), the kept ones checked for
// missing dependencies (their .modinfo depends=), and depmod run in the
// tree. root's password stays locked: the tests only wait for the login
// prompt (LoginPrompt).
//
// # The cache
//
// Build returns DefaultCacheDir (/var/cache/shoal/debian)/VARIANT-HASH.img,
// where HASH covers everything that decides the output: recipeVersion
// (bump it when the steps change), the mirror, the packages, the files
// written, the module lists, the GRUB scripts and modules, the host's GRUB
// version and the layout. The root filesystem, the same for both variants,
// is kept beside it as rootfs-HASH.ext4, so the second variant takes
// seconds. Builders take an flock on .lock (two test binaries wait for each
// other), build into .tmp-* and .work-* beside the final name and rename
// the file into place; what a killed build left is removed by the next.
// A cached image is returned at once and needs no root; building needs
// root and Tools. Old entries are not deleted (another checkout may use
// them): remove the directory to start afresh. The hash does not cover the
// archive's contents: a new kernel in the archive is picked up only when
// the cache is removed.
//
// # Figures
//
// See the report in the commit that added this package; updated below as
// measured on the 2-core development machine under TCG.
package debianimg
