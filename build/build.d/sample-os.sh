#!/usr/bin/env bash
# sample-os.sh builds $OUT/sample-os.img, the tiny bootable OS (BIOS and
# UEFI) that `shoal lab` and the end-to-end tests reimage machines with
# (see internal/sampleos). Skipped, with a message, when the kernel or the
# boot loaders are missing (./build.sh deps installs them as root).
set -euo pipefail
OUT=${OUT:-out}
CACHE=${SHOAL_KERNEL_CACHE:-/var/cache/shoal/kernel}
kernel=$OUT/vmlinuz
[ -s "$kernel" ] || kernel=$CACHE/vmlinuz
if [ ! -s "$kernel" ]; then
	echo "sample-os.sh: no kernel (run build/deps.d/kernel.sh); skipped" >&2
	exit 0
fi
for f in /usr/lib/syslinux/mbr/gptmbr.bin /usr/lib/systemd/boot/efi/systemd-bootx64.efi; do
	if [ ! -e "$f" ]; then
		echo "sample-os.sh: $f missing (./build.sh deps); skipped" >&2
		exit 0
	fi
done
go run ./internal/sampleos/mksample -kernel "$kernel" -o "$OUT/sample-os.img" >/dev/null
echo "sample-os.sh: $OUT/sample-os.img" >&2
