#!/usr/bin/env bash
# kernel.sh fetches Debian's amd64 kernel (the package linux-image-amd64
# currently depends on) for the QEMU tests and the appliance, unpacked into
# a cache directory outside the work tree:
#
#   $SHOAL_KERNEL_CACHE (default /var/cache/shoal/kernel)/
#     vmlinuz          the kernel
#     version          its release, e.g. 6.1.0-56-amd64
#     modules/         lib/modules/<version> from the package
#
# Idempotent: does nothing when vmlinuz is already there. Needs root (or a
# writable cache) and apt's package lists (apt-get update).
set -euo pipefail
CACHE=${SHOAL_KERNEL_CACHE:-/var/cache/shoal/kernel}
if [ -s "$CACHE/vmlinuz" ] && [ -s "$CACHE/version" ]; then
	exit 0
fi
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$pkg" ]; then
	apt-get update -qq
	pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
[ -n "$pkg" ] || { echo "kernel.sh: cannot resolve linux-image-amd64" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -qq "$pkg" >/dev/null)
dpkg-deb -x "$tmp"/"$pkg"_*.deb "$tmp/x"
ver=${pkg#linux-image-}
mkdir -p "$CACHE.new"
cp "$tmp/x/boot/vmlinuz-$ver" "$CACHE.new/vmlinuz"
mkdir -p "$CACHE.new/modules"
cp -a "$tmp/x/lib/modules/$ver/." "$CACHE.new/modules/"
echo "$ver" >"$CACHE.new/version"
rm -rf "$CACHE"
mv "$CACHE.new" "$CACHE"
echo "kernel.sh: $pkg in $CACHE" >&2
