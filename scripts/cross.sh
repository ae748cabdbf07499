#!/usr/bin/env bash
# cross.sh: build static filering binaries for the boards filering runs on, vet the code
# for each of their architectures, and print each binary's size.
#
#   scripts/cross.sh [DIST]        (default DIST: dist)
#
# Binaries: DIST/filering-linux-amd64, -arm64, -armv7 (GOARM=7) and -386, built with
# CGO_ENABLED=0 -trimpath -ldflags='-s -w'. `go vet` runs with each GOARCH, since code
# behind build tags, and the size of int and of pointers, differ between them. GO names
# the go command (default: go).
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
dist=${1:-dist}
# Each target: GOARCH, GOARM (empty if none), binary suffix.
targets=(
	"amd64  -  amd64"
	"arm64  -  arm64"
	"arm    7  armv7"
	"386    -  386"
)

mkdir -p "$dist"
for t in "${targets[@]}"; do
	read -r arch arm suffix <<<"$t"
	[ "$arm" = - ] && arm=
	echo "vet and build linux/$arch${arm:+ GOARM=$arm}"
	# -trimpath here too, so that vet and build share the compiled packages in the cache.
	GOOS=linux GOARCH=$arch GOARM=$arm CGO_ENABLED=0 "$GO" vet -trimpath ./...
	GOOS=linux GOARCH=$arch GOARM=$arm CGO_ENABLED=0 \
		"$GO" build -tags urfave_cli_no_docs -trimpath -ldflags='-s -w' -o "$dist/filering-linux-$suffix" ./cmd/filering
done

echo
printf '%-22s %10s %6s\n' target bytes MiB
for t in "${targets[@]}"; do
	read -r arch arm suffix <<<"$t"
	[ "$arm" = - ] && arm=
	bytes=$(stat -c %s "$dist/filering-linux-$suffix")
	awk -v t="linux/$arch${arm:+ GOARM=$arm}" -v b="$bytes" 'BEGIN { printf "%-22s %10d %6.2f\n", t, b, b / 1048576 }'
done
