// Package initramfs holds what goes into shoal's appliance, the initramfs
// whose init (u-root's) runs cmd/shoal-init: its configuration
// (initramfs/config), target-disk selection (initramfs/disksel), kernel
// modules (initramfs/kmod), network bring-up (initramfs/netup) and status
// reports (initramfs/report). build/build.d/initramfs.sh builds it.
package initramfs
