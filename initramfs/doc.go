// Package initramfs holds what goes into shoal's appliance, the initramfs
// whose init (u-root's) runs cmd/shoal-init: its configuration
// (initramfs/config), target-disk selection (initramfs/disksel), kernel
// modules (initramfs/kmod), network bring-up (initramfs/netup), status
// reports (initramfs/report) and the UEFI boot entry a written disk needs
// (initramfs/efiboot). build/build.d/initramfs.sh builds it.
package initramfs
