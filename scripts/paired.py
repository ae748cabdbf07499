#!/usr/bin/env python3
"""paired.py: times two whole commands, A and B, run in turn (A B A B ...), and prints
each one's wall time and the ratio A/B pair by pair: on a shared, noisy machine the
ratio of two runs made a moment apart says more than either time. Nothing is asserted.

    python3 scripts/paired.py [-n 30] [--warmup 2] 'COMMAND A' 'COMMAND B'

Each command is one string split as a shell splits words and run directly, not by a
shell, so that a shell's own start is not in the figures; a command that needs a pipe or
a redirection is written as sh -c '...'. Its standard input is empty and its output is
thrown away. A command that fails stops the run.
It prints the minimum, median and maximum of A's time, B's time and the pairs' ratios.

    python3 scripts/paired.py 'filering cat --last 1000 /dev/shm/r64' 'tail -n 1000 lines.txt'
"""

import argparse
import shlex
import statistics
import subprocess
import sys
import time


def once(cmd: "list[str]") -> float:
    start = time.monotonic()
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    took = time.monotonic() - start
    if r.returncode != 0:
        sys.exit("paired.py: %r exited with status %d" % (shlex.join(cmd), r.returncode))
    return took


def row(name: str, xs: "list[float]", unit: str, scale: float) -> str:
    return "%-8s %10.3f %10.3f %10.3f %s" % (
        name, min(xs) * scale, statistics.median(xs) * scale, max(xs) * scale, unit)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=30, help="pairs to time (default 30)")
    p.add_argument("--warmup", type=int, default=2, help="pairs run first and not counted")
    p.add_argument("a")
    p.add_argument("b")
    args = p.parse_args()
    if args.n < 1 or args.warmup < 0:
        p.error("-n must be at least 1, --warmup at least 0")
    a, b = shlex.split(args.a), shlex.split(args.b)
    if not a or not b:
        p.error("empty command")
    for _ in range(args.warmup):
        once(a)
        once(b)
    ta, tb = [], []
    for _ in range(args.n):
        ta.append(once(a))
        tb.append(once(b))
    ratios = [a / b for a, b in zip(ta, tb)]
    print("%-8s %10s %10s %10s" % ("", "min", "median", "max"))
    print(row("A", ta, "ms", 1000))
    print(row("B", tb, "ms", 1000))
    print(row("A/B", ratios, "", 1))


if __name__ == "__main__":
    main()
