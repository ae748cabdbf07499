#!/usr/bin/env bash
# python-test.sh: the Python package's tests, against an installed copy.
#
# It makes a virtual environment in a temporary directory (with the system's site
# packages, so that Debian's setuptools and wheel are there to build with), installs
# ./python into it offline (`pip install --no-build-isolation --no-index`), and runs with
# that environment's interpreter, from outside the source tree:
#
#   - python/tests: the conformance corpus, snapshots, followers, takers, the command
#     line against the Go binary, interop with the Go producer;
#   - examples/cgi: the CGI script, the WSGI app and the SSE server, on the package.
#
# A file missing from the package fails the tests (FILERING_TEST_INSTALLED=1 makes them
# check that they import the installed copy, not python/filering).
#
# Environment:
#   PYTHON                   the interpreter to use (default: the first of python3 and
#                            /usr/bin/python3 that has venv, setuptools and wheel)
#   FILERING_REQUIRE_PYTHON  1: fail when Python, venv, setuptools or wheel is missing
#                            (CI); otherwise say so and skip
#   FILERING_BIN             the Go `filering` binary for the interop tests (default:
#                            built here with `go build` when Go is installed; without
#                            either, those tests skip, unless FILERING_REQUIRE_GO=1,
#                            which FILERING_REQUIRE_PYTHON=1 implies)
# Debian: apt-get install python3 python3-venv python3-setuptools python3-wheel python3-pip
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

fail() {
	echo "python-test: $*" >&2
	if [ "${FILERING_REQUIRE_PYTHON:-}" = 1 ]; then
		echo "python-test: FAILED (FILERING_REQUIRE_PYTHON=1; on Debian: apt-get install python3 python3-venv python3-setuptools python3-wheel python3-pip)" >&2
		exit 1
	fi
	echo "python-test: SKIPPED (set FILERING_REQUIRE_PYTHON=1 to make this a failure)" >&2
	exit 0
}

# usable PY: PY has what building and installing offline needs.
usable() {
	"$1" -c 'import sys, venv, ensurepip, setuptools, wheel; sys.exit(sys.version_info < (3, 8))' 2>/dev/null
}

py=${PYTHON:-}
if [ -n "$py" ]; then
	command -v "$py" >/dev/null || fail "PYTHON=$py: not found"
	if ! usable "$py"; then
		missing=$("$py" -c 'import importlib.util as u; print(" ".join(m for m in ("venv", "ensurepip", "setuptools", "wheel") if u.find_spec(m) is None))' 2>/dev/null || echo "?")
		fail "$py cannot build and install the package offline (missing: ${missing:-a Python 3.8 or newer})"
	fi
else
	for candidate in python3 /usr/bin/python3; do
		if command -v "$candidate" >/dev/null && usable "$candidate"; then
			py=$candidate
			break
		fi
	done
	if [ -z "$py" ]; then
		command -v python3 >/dev/null || fail "python3 not found"
		missing=$(python3 -c 'import importlib.util as u; print(" ".join(m for m in ("venv", "ensurepip", "setuptools", "wheel") if u.find_spec(m) is None))' 2>/dev/null || echo "?")
		fail "no python3 here can build and install the package offline (missing: ${missing:-a Python 3.8 or newer})"
	fi
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/filering-python-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "python-test: $("$py" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
"$py" -m venv --system-site-packages "$tmp/venv"
venv_py=$tmp/venv/bin/python
# Build from a copy, so that nothing (build/, *.egg-info) is written into the checkout.
mkdir "$tmp/src"
cp -R python/pyproject.toml python/README.md python/filering "$tmp/src/"
find "$tmp/src" -name __pycache__ -prune -exec rm -rf {} +
PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv_py" -m pip install --quiet --no-build-isolation --no-index "$tmp/src"
installed=$(cd "$tmp" && "$venv_py" -c 'import filering, os; print(os.path.dirname(filering.__file__))')
echo "python-test: installed $installed"

if [ -z "${FILERING_BIN:-}" ]; then
	go=$(command -v go || true)
	[ -z "$go" ] && [ -x /usr/local/go/bin/go ] && go=/usr/local/go/bin/go
	if [ -n "$go" ]; then
		"$go" build -o "$tmp/filering" ./cmd/filering
		export FILERING_BIN=$tmp/filering
	else
		echo "python-test: no Go: the tests against the Go binary skip" >&2
	fi
fi

export FILERING_TEST_INSTALLED=1 FILERING_REPO=$repo
# In CI (FILERING_REQUIRE_PYTHON=1) the tests against the Go binary must not skip either.
export FILERING_REQUIRE_GO=${FILERING_REQUIRE_GO:-${FILERING_REQUIRE_PYTHON:-}}
export PATH=$tmp/venv/bin:$PATH # graph.cgi's #!/usr/bin/env python3 finds the environment's
unset PYTHONPATH
cd "$tmp"
status=0
echo "python-test: python/tests"
"$venv_py" -m unittest discover -s "$repo/python/tests" -t "$repo/python/tests" -p 'test_*.py' || status=1
echo "python-test: examples/cgi"
"$venv_py" -m unittest discover -s "$repo/examples/cgi" -t "$repo/examples/cgi" -p 'test_*.py' || status=1
if [ $status -ne 0 ]; then
	echo "python-test: FAILED" >&2
	exit 1
fi
echo "python-test: ok"
