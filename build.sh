#!/usr/bin/env bash
# build.sh builds shoal into out/ and runs its tests.
#
#   ./build.sh          build out/shoal
#   ./build.sh test     install what the tests need (as root), then run every
#                       test: gofmt, go vet, staticcheck, unit tests with -race
#                       (fuzz seeds included), network-namespace and QEMU tests
#   ./build.sh demo     build, then run scripts/demo.sh (the nearest working
#                       demo of the main job)
#   ./build.sh lab      build, then run `shoal lab` (the virtual lab: QEMU
#                       machines PXE-boot and are reimaged by multicast);
#                       arguments after "lab" go to shoal lab
#   ./build.sh deps     only install the Debian packages listed in
#                       build/apt-packages (idempotent; quick when installed)
set -euo pipefail
cd "$(dirname "$0")"
OUT=${OUT:-out}
export CGO_ENABLED=${CGO_ENABLED:-1}

log() { printf '%s build.sh: %s\n' "$(date +%T)" "$*" >&2; }

deps() {
	[ "$(id -u)" = 0 ] || { log "not root: skipping apt packages"; return 0; }
	local want=() missing=()
	mapfile -t want < <(sed -e 's/#.*//' build/apt-packages | awk 'NF {print $1}')
	for p in "${want[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		log "installing: ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
	# Optional extra steps (kernel for QEMU tests, ...) live in build/deps.d.
	for s in build/deps.d/*.sh; do
		[ -e "$s" ] || continue
		log "deps: $s"
		OUT="$OUT" bash "$s"
	done
}

build() {
	mkdir -p "$OUT"
	log "go build -> $OUT/shoal"
	go build -trimpath -o "$OUT/shoal" ./cmd/shoal
	for s in build/build.d/*.sh; do
		[ -e "$s" ] || continue
		log "build: $s"
		OUT="$OUT" bash "$s"
	done
}

lint() {
	log "gofmt"
	local bad
	bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './out/*'))
	[ -z "$bad" ] || { echo "gofmt would change:"; echo "$bad"; return 1; }
	log "go vet"
	go vet ./...
	log "staticcheck"
	go tool staticcheck ./...
	log "go mod tidy -diff"
	go mod tidy -diff
}

unit() {
	log "go test -race (unit, fuzz seeds, netns and QEMU tests)"
	# -p 2: two cores; the namespace and QEMU tests are CPU bound.
	go test -race -p 2 -timeout 25m -count=1 ./... 2>&1 | tee "$OUT/test.log"
	local rc=${PIPESTATUS[0]}
	local pass fail
	pass=$(grep -c '^ok ' "$OUT/test.log" || true)
	fail=$(grep -c '^FAIL' "$OUT/test.log" || true)
	log "packages: $pass ok, $fail failed"
	return "$rc"
}

case "${1:-build}" in
build) build ;;
deps) deps ;;
demo)
	deps
	build
	SHOAL="$OUT/shoal" scripts/demo.sh
	;;
lab)
	deps
	build
	shift
	"$OUT/shoal" lab --out "$OUT" "$@"
	;;
test)
	deps
	build
	lint
	unit
	;;
*)
	echo "usage: $0 [build|test|demo|lab|deps]" >&2
	exit 2
	;;
esac
