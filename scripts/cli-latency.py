#!/usr/bin/env python3
"""cli-latency.py: how long a line takes from a producer's standard input to a reader's
standard output, through `filering produce` and `filering watch`, against the same trip
through `cat`. Nothing is asserted: it prints a table.

    python3 scripts/cli-latency.py [--bin ./filering] [--rate 1000] [--samples 2000]
                                   [--rounds 3] [--spin 10ms] [--c-dir c]

Each line written carries the time it was written (CLOCK_MONOTONIC, which every process
on the machine shares); the line read back is stamped when it arrives. The writer and
the reader are this script's two threads in every case, so what differs between the
rows is only the path in between:

  cat        writer -> pipe -> cat -> pipe -> reader
  filering   writer -> pipe -> filering produce -> ring on tmpfs -> filering watch -> pipe -> reader
  spin       the same, with `filering watch --spin` (a busy core for the lowest latency)
  c          writer -> pipe -> filering-produce -> ring on tmpfs -> filering-read --follow -> pipe
             -> reader: the C library's programs (`make -C c`), when --c-dir holds them

The rows run interleaved, --rounds times; each row gives its median round.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def trip(cmds, rate, samples, warm):
    """Runs the pipeline cmds (a producer reading stdin, a reader writing stdout: one
    command, or two that share a ring), writes warm+samples lines at rate, and returns the
    latencies of the last samples, in µs."""
    first = subprocess.Popen(cmds[0], stdin=subprocess.PIPE,
                             stdout=None if len(cmds) > 1 else subprocess.PIPE)
    procs = [first]
    out = first.stdout
    if len(cmds) > 1:
        time.sleep(0.3)  # the producer has made the ring
        last = subprocess.Popen(cmds[1], stdout=subprocess.PIPE)
        procs.append(last)
        out = last.stdout
        time.sleep(0.3)  # the reader waits at the end of the ring
    n = warm + samples
    got = []

    def read():
        for _ in range(n):
            line = out.readline()
            if not line:
                return
            got.append((time.monotonic_ns() - int(line)) / 1e3)

    reader = threading.Thread(target=read)
    reader.start()
    interval = 1.0 / rate
    nxt = time.monotonic()
    for _ in range(n):
        d = nxt - time.monotonic()
        if d > 0:
            time.sleep(d)
        first.stdin.write(b"%d\n" % time.monotonic_ns())
        first.stdin.flush()
        nxt += interval
    reader.join(timeout=30)
    first.stdin.close()  # the producer (or cat) ends at the end of its input
    for p in procs[1:]:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
    if len(got) < n:
        sys.exit("%s: %d of %d lines came back" % (" | ".join(c[0] for c in cmds), len(got), n))
    return got[warm:]


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(q * len(xs) + 0.5) - 1))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=shutil.which("filering") or "./filering")
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--spin", default="10ms")
    ap.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    ap.add_argument("--c-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "c"))
    a = ap.parse_args()
    c_produce = os.path.join(a.c_dir, "filering-produce")
    c_read = os.path.join(a.c_dir, "filering-read")
    work = tempfile.mkdtemp(prefix="filering-cli-latency-", dir=a.dir)
    try:
        rows = {"cat": [], "filering": [], "spin": []}
        if os.access(c_produce, os.X_OK) and os.access(c_read, os.X_OK):
            rows["c"] = []
        for r in range(a.rounds):
            for name in rows:
                ring = os.path.join(work, "%s-%d" % (name, r))
                if name == "cat":
                    cmds = [["cat"]]
                elif name == "c":
                    cmds = [[c_produce, ring], [c_read, "--follow", "--last", "0", ring]]
                else:
                    watch = [a.bin, "watch", "--last", "0"]
                    if name == "spin":
                        watch += ["--spin", a.spin]
                    cmds = [[a.bin, "produce", ring], watch + [ring]]
                rows[name].append(trip(cmds, a.rate, a.samples, max(a.samples // 10, 1)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("%d lines at %g/s, %d rounds (each row its median round by p50), µs from write to read:"
          % (a.samples, a.rate, a.rounds))
    print("%-10s %8s %8s %8s %8s  %s" % ("path", "p50", "p90", "p99", "max", "÷ cat p50"))
    med = {}
    for name, rounds in rows.items():
        rounds.sort(key=lambda xs: statistics.median(xs))
        med[name] = rounds[(len(rounds) - 1) // 2]
    for name, xs in med.items():
        print("%-10s %8.1f %8.1f %8.1f %8.1f  %.2fx" % (name, pct(xs, .5), pct(xs, .9), pct(xs, .99), max(xs),
                                                         pct(xs, .5) / pct(med["cat"], .5)))


if __name__ == "__main__":
    main()
