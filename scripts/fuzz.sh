#!/usr/bin/env bash
# Runs every native fuzz target in the module for a short while (FUZZTIME, default 5s),
# starting from its seed corpus under testdata/fuzz. A failing input is written to
# testdata/fuzz by go test, ready to commit as a regression case.
set -euo pipefail
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-5s}
for pkg in $($GO list ./...); do
	for target in $($GO test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "fuzz $pkg $target ($FUZZTIME)"
		$GO test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg" >/dev/null || {
			$GO test -run '^$' -fuzz "^${target}\$" -fuzztime 1x "$pkg" || true
			echo "fuzz: $target in $pkg failed" >&2
			exit 1
		}
	done
done
