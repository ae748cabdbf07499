# The whole test suite: `make test`. CI runs exactly this (see .ci/run).
GO ?= go
# Where cross, qemu-test and man write what they build.
DIST ?= dist

# FILERING_QEMU says whether `make test` runs qemu-test: 1 runs it, and fails if qemu-user
# is missing (CI sets this); 0 leaves it out. Unset, it runs when qemu-aarch64-static and
# qemu-arm-static are both installed (Debian package qemu-user-static).
FILERING_QEMU ?= $(if $(and $(shell command -v qemu-aarch64-static 2>/dev/null),$(shell command -v qemu-arm-static 2>/dev/null)),1,0)

# QEMU_TEST_SKIP is a -test.skip regular expression for the tests qemu-test leaves out
# because they cannot pass under qemu-user. TestFollower_InotifyExhausted runs its own
# test binary again as another user; the kernel cannot execute an ARM binary unless
# binfmt_misc hands it to qemu, and qemu-user does not follow execve by itself, so the
# child fails with "exec format error". (inotify, mmap and /dev/shm all work.)
QEMU_TEST_SKIP ?= ^TestFollower_InotifyExhausted$$

# VERSION is stamped into the binaries that build and dist make (LDFLAGS_VERSION).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)

.PHONY: test build vet unit race python fuzz cross qemu-test man c dist

test: vet unit race python fuzz cross $(if $(filter 1,$(FILERING_QEMU)),qemu-test) c

# Static binaries: without cgo (which net and os/user would use), a filering command
# starts without the dynamic loader, about 4 ms sooner on a small machine. `filering
# serve` and `filering forward` are the programs filering-serve and filering-forward,
# which filering runs from its own directory (or PATH): they link an HTTP server and a
# NATS client, which cost every other command a quarter of its start. The tag
# urfave_cli_no_docs leaves out urfave/cli's Markdown renderer, which filering does not
# use (internal/cmdline/man.go writes roff itself) and whose initialisation cost every
# command about a seventh of its start.
# `filering --version` prints VERSION, and the commit from the build information.
LDFLAGS_VERSION = -X github.com/filering/filering/internal/cmdline.version=$(VERSION)
build:
	CGO_ENABLED=0 $(GO) build -tags urfave_cli_no_docs -buildvcs=auto -ldflags='$(LDFLAGS_VERSION)' -o . ./cmd/filering ./cmd/filering-serve ./cmd/filering-forward

# dist writes $(DIST)/filering-VERSION-linux-ARCH.tar.gz for amd64, arm64, armv7 and 386:
# the static binary, the systemd units, sysusers.d and tmpfiles.d files, the manual page,
# bash and zsh completion, and DEPLOY.md. The one thing to copy to a board.
dist:
	GO="$(GO)" VERSION="$(VERSION)" bash scripts/dist.sh $(DIST)

vet:
	@test -z "$$(gofmt -l . | tee /dev/stderr)" || (echo "gofmt: files above need formatting" && exit 1)
	$(GO) mod tidy -diff
	$(GO) vet ./...

unit:
	$(GO) test -count=1 ./...

race:
	$(GO) test -count=1 -race ./segment/ ./publish/ ./watch/ ./serve/ ./recordio/ ./forward/...

# python installs python/ into a fresh virtual environment (offline, with Debian's
# setuptools and wheel) and runs its tests and examples/cgi's against the installed copy,
# so that a file missing from the package fails.
python:
	bash scripts/python-test.sh

# fuzz runs every fuzz target briefly (FUZZTIME, default 5s each) from its seed corpus.
fuzz:
	GO="$(GO)" bash scripts/fuzz.sh

# cross builds static binaries for linux/amd64, arm64, arm (GOARM=7) and 386 into
# $(DIST), runs go vet for each, and prints their sizes.
cross:
	GO="$(GO)" bash scripts/cross.sh $(DIST)

# qemu-test runs the segment, publish and watch tests built for arm64 and arm (GOARM=7)
# under qemu-user, with -test.short.
qemu-test:
	GO="$(GO)" QEMU_TEST_SKIP='$(QEMU_TEST_SKIP)' bash scripts/qemu-test.sh $(DIST)/qemu-test

# man writes the manual pages to $(DIST)/filering.1, filering-serve.1 and
# filering-forward.1, and checks that groff (or, without groff, man) formats them without
# warnings.
MANPAGES = filering filering-serve filering-forward
man:
	@mkdir -p $(DIST)
	@set -e; for p in $(MANPAGES); do \
		if [ $$p = filering ]; then arg=man; else arg=--man; fi; \
		$(GO) run ./cmd/$$p $$arg > $(DIST)/$$p.1.tmp || { rm -f $(DIST)/$$p.1.tmp; exit 1; }; \
		mv $(DIST)/$$p.1.tmp $(DIST)/$$p.1; \
		echo "wrote $(DIST)/$$p.1"; \
		if command -v groff >/dev/null; then \
			echo "groff -man -Tutf8 -ww -z $(DIST)/$$p.1"; \
			out=$$(groff -man -Tutf8 -ww -z $(DIST)/$$p.1 2>&1) && test -z "$$out" || { echo "$$out"; exit 1; }; \
		elif command -v man >/dev/null; then \
			echo "man -l $(DIST)/$$p.1"; \
			out=$$(man -l $(DIST)/$$p.1 2>&1 >/dev/null) && test -z "$$out" || { echo "$$out"; exit 1; }; \
		else \
			echo "man: neither groff nor man is installed: $(DIST)/$$p.1 is not checked"; \
		fi; \
	done

# c builds the C library and its programs and runs `make -C c check`: the unit and
# conformance tests, the same under ASan and UBSan, the libFuzzer targets briefly
# (FUZZTIME, default 5s each), cross builds for arm64 and armv7 and their tests under
# qemu-user. Each part whose tool is missing (a C compiler, clang with libFuzzer, a cross
# compiler, qemu-user) is skipped with a message, unless FILERING_REQUIRE_C=1 (CI sets
# it), which makes that a failure. (tests/c_interop_test.go, in `unit`, builds the
# programs too, and skips the same way.)
c:
	@cc=$${CC:-cc}; if ! command -v $$cc >/dev/null 2>&1; then \
		if [ "$$FILERING_REQUIRE_C" = 1 ]; then echo "c: no C compiler ($$cc), and FILERING_REQUIRE_C=1"; exit 1; fi; \
		echo "c: no C compiler ($$cc): skipping the C library"; exit 0; \
	fi; \
	$(MAKE) -C c check
