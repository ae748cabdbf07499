#!/usr/bin/env bash
# Runs every native fuzz target in the module for a short while (FUZZTIME, default 5s),
# starting from its seed corpus under testdata/fuzz. A failing input is written to
# testdata/fuzz by go test, ready to commit as a regression case; the run fails then.
# A run that fails without writing one (the fuzzing engine itself stumbled, as it can on
# a loaded machine) is shown and tried once more.
set -euo pipefail
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-5s}
# count prints how many files the directory $1 holds, 0 when it does not exist.
count() { if [ -d "$1" ]; then find "$1" -type f | wc -l; else echo 0; fi; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for pkg in $($GO list ./...); do
	dir=$($GO list -f '{{.Dir}}' "$pkg")
	for target in $($GO test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		for try in 1 2; do
			echo "fuzz $pkg $target ($FUZZTIME)"
			before=$(count "$dir/testdata/fuzz/$target")
			if $GO test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg" >"$log" 2>&1; then
				break
			fi
			tail -n 40 "$log"
			after=$(count "$dir/testdata/fuzz/$target")
			if [ "$after" -gt "$before" ] || [ "$try" = 2 ]; then
				echo "fuzz: $target in $pkg failed" >&2
				exit 1
			fi
			echo "fuzz: $target stopped without a failing input; trying again" >&2
		done
	done
done
