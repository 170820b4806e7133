#!/usr/bin/env bash
# ipxe.sh puts the network-boot files shoal serve hands out into $OUT:
# undionly.kpxe and ipxe.efi from Debian's ipxe package, and vmlinuz from
# the kernel cache that build/deps.d/kernel.sh fills. (The initramfs,
# shoal-initramfs.cpio.zst, is the appliance's build step.) Missing inputs
# are reported and skipped, so that `./build.sh` works without root.
set -euo pipefail
OUT=${OUT:-out}
CACHE=${SHOAL_KERNEL_CACHE:-/var/cache/shoal/kernel}
mkdir -p "$OUT"
for f in undionly.kpxe ipxe.efi; do
	if [ -e "/usr/lib/ipxe/$f" ]; then
		cp "/usr/lib/ipxe/$f" "$OUT/$f"
	else
		echo "ipxe.sh: /usr/lib/ipxe/$f missing (apt-get install ipxe)" >&2
	fi
done
if [ -s "$CACHE/vmlinuz" ]; then
	cp "$CACHE/vmlinuz" "$OUT/vmlinuz"
else
	echo "ipxe.sh: no kernel in $CACHE (run build/deps.d/kernel.sh)" >&2
fi
