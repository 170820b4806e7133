#!/usr/bin/env bash
# pubkey.sh prints the image-signing public key the appliance is built
# with (build/build.d/initramfs.sh bakes it in): $PUBKEY when set ("none":
# no key), else the site's signing.pub in the state directory, made first
# by `$OUT/shoal key ensure` ($SHOAL_STATE, default /var/lib/shoal for
# root, else ~/.local/state/shoal). Run from the repository's root.
set -euo pipefail
OUT=${OUT:-out}
if [ -n "${PUBKEY:-}" ]; then
	printf '%s\n' "$PUBKEY"
	exit 0
fi
[ -x "$OUT/shoal" ] || go build -trimpath -o "$OUT/shoal" ./cmd/shoal
"$OUT/shoal" key ensure ${SHOAL_STATE:+--state "$SHOAL_STATE"}
