#!/usr/bin/env bash
# dist.sh: build the archives to copy to a board, one for each architecture.
#
#   scripts/dist.sh [DIST]        (default DIST: dist)
#
# For each architecture (ARCHES, default "amd64 arm64 armv7 386") it writes
# DIST/filering-VERSION-linux-ARCH.tar.gz, which unpacks into the directory
# filering-VERSION-linux-ARCH/ holding:
#
#   filering                   the static binaries (CGO_ENABLED=0, -trimpath, -s -w);
#   filering-serve             `filering serve` and `filering forward` run the other two,
#   filering-forward           which a board that does not use them can leave out
#   filering.1, filering-serve.1, filering-forward.1
#                              the manual pages
#   filering.bash, _filering   bash and zsh completion
#   filering-produce@.service, run-ring.mount, filering.sysusers, filering.conf
#                              the systemd units, sysusers.d and tmpfiles.d files
#   DEPLOY.md                  how to install them (ramdisk/DEPLOY.md)
#
# VERSION defaults to `git describe --tags --always --dirty`, or "devel" outside a git
# checkout; it is stamped into the binaries (internal/cmdline's version). The manual pages
# and the completion scripts are written by binaries built for this machine. The archives are
# reproducible: files sorted, owned by root, dated by the last commit (or
# SOURCE_DATE_EPOCH). GO names the go command (default: go).
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
dist=${1:-dist}
arches=${ARCHES:-amd64 arm64 armv7 386}
if [ -z "${VERSION:-}" ]; then
	VERSION=$(git describe --tags --always --dirty 2>/dev/null || echo devel)
fi
case $VERSION in
'' | */* | *' '*) echo "dist.sh: bad VERSION '$VERSION'" >&2; exit 2 ;;
esac
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
ldflags="-s -w -X github.com/filering/filering/internal/cmdline.version=$VERSION"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The host's binary writes the manual page and the completion scripts.
programs="filering filering-serve filering-forward"
mkdir -p "$work/host" "$work/common"
for p in $programs; do
	CGO_ENABLED=0 "$GO" build -tags urfave_cli_no_docs -buildvcs=auto -trimpath -ldflags="$ldflags" -o "$work/host/$p" "./cmd/$p"
done
"$work/host/filering" man >"$work/common/filering.1"
"$work/host/filering-serve" --man >"$work/common/filering-serve.1"
"$work/host/filering-forward" --man >"$work/common/filering-forward.1"
"$work/host/filering" completion bash >"$work/common/filering.bash"
"$work/host/filering" completion zsh >"$work/common/_filering"
cp ramdisk/systemd/filering-produce@.service ramdisk/systemd/run-ring.mount \
	ramdisk/systemd/filering.sysusers ramdisk/systemd/filering.conf \
	ramdisk/DEPLOY.md "$work/common/"

mkdir -p "$dist"
for a in $arches; do
	case $a in
	amd64 | arm64 | 386) goarch=$a goarm= ;;
	armv7) goarch=arm goarm=7 ;;
	*) echo "dist.sh: unknown architecture '$a' (want amd64, arm64, armv7 or 386)" >&2; exit 2 ;;
	esac
	name=filering-$VERSION-linux-$a
	dir=$work/$name
	mkdir -p "$dir"
	cp -p "$work/common/"* "$dir/"
	echo "build linux/$goarch${goarm:+ GOARM=$goarm}"
	for p in $programs; do
		GOOS=linux GOARCH=$goarch GOARM=$goarm CGO_ENABLED=0 \
			"$GO" build -tags urfave_cli_no_docs -buildvcs=auto -trimpath -ldflags="$ldflags" -o "$dir/$p" "./cmd/$p"
		chmod 0755 "$dir/$p"
	done
	chmod 0644 "$dir/"*.* "$dir/_filering"
	tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
		-cf - "$name" | gzip -n -9 >"$dist/$name.tar.gz.tmp"
	mv "$dist/$name.tar.gz.tmp" "$dist/$name.tar.gz"
	echo "wrote $dist/$name.tar.gz"
done
