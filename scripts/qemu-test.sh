#!/usr/bin/env bash
# qemu-test.sh: run the tests of the packages that map segments and store atomically
# (segment, publish, watch) as 64-bit and 32-bit ARM programs under qemu-user, as they
# would run on a board.
#
#   scripts/qemu-test.sh [DIR]     (default DIR: dist/qemu-test, for the test binaries)
#
# The test binaries are built with CGO_ENABLED=0 and -trimpath (as scripts/cross.sh
# builds, so that the two share compiled packages) for linux/arm64 and linux/arm GOARM=7,
# and run with -test.short, each in its package's directory as `go test` would, by
# qemu-aarch64-static and qemu-arm-static from Debian's qemu-user-static package. They
# need no binfmt_misc registration, but without it a test that executes a test binary
# again fails. Under qemu-user the tests use the host's kernel: /dev/shm, mmap, inotify
# and mount (as root) all work.
#
# Environment:
#   GO              the go command (default: go)
#   QEMU_ARM64      the arm64 emulator (default: qemu-aarch64-static)
#   QEMU_ARM        the arm emulator (default: qemu-arm-static)
#   QEMU_TEST_SKIP  a -test.skip regular expression for tests that cannot pass under
#                   qemu-user (default: none; the Makefile gives the ones to skip)
#   QEMU_TEST_FLAGS more flags for the test binaries, such as -test.v
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
out=${1:-dist/qemu-test}
pkgs=(segment publish watch)
skip=${QEMU_TEST_SKIP:-}
# Each target: GOARCH, GOARM (- for none), emulator.
targets=(
	"arm64 - ${QEMU_ARM64:-qemu-aarch64-static}"
	"arm   7 ${QEMU_ARM:-qemu-arm-static}"
)

for t in "${targets[@]}"; do
	read -r _ _ emu <<<"$t"
	if ! command -v "$emu" >/dev/null; then
		echo "qemu-test: $emu not found; install Debian's qemu-user-static" >&2
		exit 1
	fi
done

flags=(-test.short -test.count=1 -test.timeout=10m)
[ -n "$skip" ] && flags+=("-test.skip=$skip")
# shellcheck disable=SC2206 # QEMU_TEST_FLAGS is a list of flags
flags+=(${QEMU_TEST_FLAGS:-})

fail=0
for t in "${targets[@]}"; do
	read -r arch arm emu <<<"$t"
	[ "$arm" = - ] && arm=
	bin=$out/linux-$arch${arm:+v$arm}
	rm -rf "$bin"
	mkdir -p "$bin"
	bin=$(cd "$bin" && pwd)
	start=$SECONDS
	GOOS=linux GOARCH=$arch GOARM=$arm CGO_ENABLED=0 \
		"$GO" test -c -trimpath -o "$bin/" "${pkgs[@]/#/./}"
	echo "built linux/$arch${arm:+ GOARM=$arm} tests in $((SECONDS - start))s"
	for p in "${pkgs[@]}"; do
		start=$SECONDS
		if (cd "$p" && "$emu" "$bin/$p.test" "${flags[@]}"); then
			echo "ok   $p (linux/$arch${arm:+ GOARM=$arm} under $emu) $((SECONDS - start))s"
		else
			echo "FAIL $p (linux/$arch${arm:+ GOARM=$arm} under $emu) $((SECONDS - start))s"
			fail=1
		fi
	done
done
exit $fail
