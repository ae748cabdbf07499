#!/usr/bin/env bash
# Runs every native fuzz target in the module for a short while (FUZZTIME, default 5s),
# starting from its seed corpus under testdata/fuzz. A failing input is written to
# testdata/fuzz by go test, ready to commit as a regression case; the run fails then.
# A run that fails without writing one (the fuzzing engine itself stumbled, as it can on
# a loaded machine) is shown and tried once more.
set -euo pipefail
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-5s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for pkg in $($GO list ./...); do
	dir=$($GO list -f '{{.Dir}}' "$pkg")
	for target in $($GO test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		for try in 1 2; do
			echo "fuzz $pkg $target ($FUZZTIME)"
			before=$(ls "$dir/testdata/fuzz/$target" 2>/dev/null | wc -l)
			if $GO test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg" >"$log" 2>&1; then
				break
			fi
			tail -n 40 "$log"
			after=$(ls "$dir/testdata/fuzz/$target" 2>/dev/null | wc -l)
			if [ "$after" -gt "$before" ] || [ "$try" = 2 ]; then
				echo "fuzz: $target in $pkg failed" >&2
				exit 1
			fi
			echo "fuzz: $target stopped without a failing input; trying again" >&2
		done
	done
done
