#!/usr/bin/env bash
# The nearest working demo of shoal until `shoal lab` (VMs that PXE-boot and
# are reimaged by multicast) exists: build a real GPT disk (FAT EFI + ext4),
# make a signed image of it, serve the repository over HTTP on loopback,
# apply it to a larger target and check the result with sgdisk and fsck.
set -euo pipefail
cd "$(dirname "$0")/.."
SHOAL=${SHOAL:-out/shoal}
work=$(mktemp -d /tmp/shoal-demo.XXXXXX)
server_pid=
cleanup() {
	[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n== %s\n' "$*"; }

step "a 256 MiB GPT source disk: 32 MiB FAT EFI partition, ext4 root holding real files"
truncate -s 256M "$work/src.img"
sgdisk -n1:2048:+32M -t1:ef00 -c1:EFI -n2:0:0 -t2:8300 -c2:root "$work/src.img" >/dev/null
truncate -s 32M "$work/efi.fs"
mkfs.vfat -n EFI "$work/efi.fs" >/dev/null
mmd -i "$work/efi.fs" ::/EFI
mcopy -i "$work/efi.fs" README.md ::/EFI/README.md
dd if="$work/efi.fs" of="$work/src.img" bs=1M seek=1 conv=notrunc status=none
start=$(sgdisk -i2 "$work/src.img" | awk '/First sector/{print $3}')
end=$(sgdisk -i2 "$work/src.img" | awk '/Last sector/{print $3}')
mkdir -p "$work/tree"
cp -r cmd imaging partition docs "$work/tree/"
head -c 40M /dev/urandom >"$work/tree/random.bin"
truncate -s $(((end - start + 1) * 512)) "$work/root.fs"
mkfs.ext4 -q -d "$work/tree" "$work/root.fs"
dd if="$work/root.fs" of="$work/src.img" bs=512 seek="$start" conv=notrunc status=none

step "shoal key gen; shoal image create (signed)"
"$SHOAL" key gen --out "$work/site"
"$SHOAL" image create --repo "$work/repo" --name demo --sign "$work/site.key" "$work/src.img"
"$SHOAL" image inspect --repo "$work/repo" --name demo

step "serve the repository over HTTP on 127.0.0.1 (busybox httpd: any static server will do)"
port=$((20000 + RANDOM % 20000))
busybox httpd -f -p "127.0.0.1:$port" -h "$work/repo" &
server_pid=$!
for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$port/" >/dev/null 2>&1 && break; sleep 0.1; done
url="http://127.0.0.1:$port/"

step "shoal image verify and apply over HTTP onto a 512 MiB target (the root partition grows)"
"$SHOAL" image verify --repo "$url" --name demo --pub "$work/site.pub"
truncate -s 512M "$work/target.img"
"$SHOAL" image apply --repo "$url" --name demo --pub "$work/site.pub" "$work/target.img"

step "check the target"
sgdisk -v "$work/target.img" | grep -i 'no problems'
sgdisk -p "$work/target.img" | tail -3
dd if="$work/target.img" of="$work/root.check" bs=512 skip="$start" count=$((end - start + 1)) status=none
cmp "$work/root.fs" "$work/root.check" && echo "root partition: identical to the source"
e2fsck -fn "$work/root.check" | tail -1
step "done: the image went source -> signed repository -> HTTP -> verified target"
