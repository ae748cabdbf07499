#!/usr/bin/env bash
# cross.sh: build static filering binaries for the boards filering runs on, vet the code
# for each of their architectures, and print each binary's size.
#
#   scripts/cross.sh [DIST]        (default DIST: dist)
#
# Binaries: filering, filering-serve and filering-forward in DIST/linux-amd64, -arm64,
# -armv7 (GOARM=7) and -386, built with CGO_ENABLED=0 -trimpath -ldflags='-s -w'. `go vet` runs with each GOARCH, since code
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
	mkdir -p "$dist/linux-$suffix"
	GOOS=linux GOARCH=$arch GOARM=$arm CGO_ENABLED=0 \
		"$GO" build -tags urfave_cli_no_docs -trimpath -ldflags='-s -w' -o "$dist/linux-$suffix" \
		./cmd/filering ./cmd/filering-serve ./cmd/filering-forward
done

echo
printf '%-22s %-18s %10s %6s\n' target program bytes MiB
for t in "${targets[@]}"; do
	read -r arch arm suffix <<<"$t"
	[ "$arm" = - ] && arm=
	for p in filering filering-serve filering-forward; do
		bytes=$(stat -c %s "$dist/linux-$suffix/$p")
		awk -v t="linux/$arch${arm:+ GOARM=$arm}" -v p="$p" -v b="$bytes" 'BEGIN { printf "%-22s %-18s %10d %6.2f\n", t, p, b, b / 1048576 }'
	done
done
