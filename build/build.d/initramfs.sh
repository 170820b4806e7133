#!/usr/bin/env bash
# initramfs.sh builds the appliance into $OUT:
#
#   shoal-initramfs.cpio.zst  u-root's init, cmd/shoal-init as the uinit,
#                             the gosh shell and a few u-root commands for
#                             field debugging, and the NIC and disk kernel
#                             modules (plus their dependencies, resolved from
#                             each module's own modinfo depends=) under
#                             /lib/shoal/modules
#   shoal-usb.img             a GPT USB-stick image: an EFI system partition
#                             with a unified kernel image (EFI/BOOT/BOOTX64.EFI)
#                             and shoal.conf (written by `shoal usb`)
#
# Inputs (environment):
#   KERNEL=path    kernel for the USB image (default: the cache of
#                  build/deps.d/kernel.sh, or $OUT/vmlinuz)
#   MODULES=dir    the kernel's lib/modules/VERSION (default: the cache's)
#   MODULES_LIST="virtio_net nvme ..."  modules to include (default below)
#   PUBKEY=file    image-signing public key baked in as /etc/shoal/pubkey.pem
#                  (default: the site's signing.pub in the state directory,
#                  made first by `$OUT/shoal key ensure`; the directory is
#                  $SHOAL_STATE, default /var/lib/shoal for root, else
#                  ~/.local/state/shoal). PUBKEY=none bakes no key: that
#                  appliance refuses to reimage unless booted with
#                  shoal.insecure=unsigned
#   CMDLINE="..."  kernel command line in the USB image (default below)
# Missing inputs are reported and the step skipped, so that ./build.sh works
# without root (no kernel cache) on a laptop.
set -euo pipefail
OUT=${OUT:-out}
CACHE=${SHOAL_KERNEL_CACHE:-/var/cache/shoal/kernel}
KERNEL=${KERNEL:-$CACHE/vmlinuz}
[ -s "$KERNEL" ] || KERNEL=$OUT/vmlinuz
MODULES=${MODULES:-$CACHE/modules}
MODULES_LIST=${MODULES_LIST:-"virtio_pci virtio_net virtio_blk virtio_scsi virtio_rng e1000 e1000e igb ixgbe i40e mlx5_core ahci nvme sd_mod usb-storage uas xhci_pci xhci_hcd ehci_pci efivarfs"}
CMDLINE=${CMDLINE:-"console=tty0 console=ttyS0,115200 panic=-1"}
mkdir -p "$OUT"
log() { printf 'initramfs.sh: %s\n' "$*" >&2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

files=()
if [ -d "$MODULES" ]; then
	n=$(go run ./cmd/shoal-modules --tree "$MODULES" --out "$tmp/modules" $MODULES_LIST | wc -l)
	log "$n kernel modules from $MODULES"
	files+=(-files "$tmp/modules:lib/shoal/modules")
else
	log "no module tree at $MODULES (run build/deps.d/kernel.sh or set MODULES=): initramfs without modules"
fi
PUBKEY=$(OUT="$OUT" bash build/pubkey.sh)
if [ "$PUBKEY" = none ]; then
	log "PUBKEY=none: no image-signing key built in: the appliance refuses to reimage unless booted with shoal.insecure=unsigned"
else
	[ -s "$PUBKEY" ] || { log "PUBKEY=$PUBKEY: no such key"; exit 1; }
	files+=(-files "$PUBKEY:etc/shoal/pubkey.pem")
	log "image-signing key $PUBKEY built in ($(sha256sum "$PUBKEY" | cut -c1-16))"
fi

# u-root's commands and shoal-init in one busybox-style binary.
# -a=false undoes gobusybox's forced rebuild (go build -a), so that the Go
# build cache works: about 20 s warm instead of 80 s.
GOOS=linux GOARCH=amd64 CGO_ENABLED=0 go tool mkuimage \
	-o "$tmp/initramfs.cpio" -initcmd init -uinitcmd shoal-init -defaultsh gosh -go-extra-args=-a=false \
	"${files[@]}" \
	github.com/u-root/u-root/cmds/core/init \
	github.com/u-root/u-root/cmds/core/gosh \
	github.com/u-root/u-root/cmds/core/{ls,cat,cp,ip,dmesg,lsmod,mount,umount,ps,shutdown,sync,hexdump,mkdir,rm,free,uname} \
	github.com/shoal-project/shoal/cmd/shoal-init 2>"$tmp/mkuimage.log" || {
	cat "$tmp/mkuimage.log" >&2
	exit 1
}
# zstd: Debian's kernels have CONFIG_RD_ZSTD.
zstd -q -f -12 -T0 "$tmp/initramfs.cpio" -o "$OUT/shoal-initramfs.cpio.zst"
log "$OUT/shoal-initramfs.cpio.zst: $(stat -c %s "$OUT/shoal-initramfs.cpio.zst") bytes ($(stat -c %s "$tmp/initramfs.cpio") uncompressed)"

if [ ! -s "$KERNEL" ]; then
	log "no kernel ($KERNEL): skipping $OUT/shoal-usb.img"
	exit 0
fi
if [ ! -e /usr/lib/systemd/boot/efi/linuxx64.efi.stub ]; then
	log "no EFI stub (apt-get install systemd-boot-efi): skipping $OUT/shoal-usb.img"
	exit 0
fi
go run ./cmd/shoal-usb --kernel "$KERNEL" --initramfs "$OUT/shoal-initramfs.cpio.zst" \
	--cmdline "$CMDLINE" --out "$OUT/shoal-usb.img"
