#!/usr/bin/env python3
"""bench.py: how fast the filering package reads, on this machine. Nothing is asserted.

    python3 python/bench.py [--runs 40] [--rate 100] [--seconds 5] [--dir /dev/shm]

It needs the Go `filering` binary (the producer): $FILERING_BIN, `filering` on PATH, or
built with `go build` from this repository. It measures:

  1. ring.last(1000), in-process, best and median of --runs calls, on a full default ring
     (8 segments of 2 MiB, 64-byte records) in three states: hot segment half full,
     hot segment just rolled (the newest full segment is walked for the last 1000),
     producer stopped (every segment sealed);
  2. a CGI-like process printing the last 1000 records as JSON, interpreter start
     included: `python3 -m filering cat --last 1000 --format json`, graph.cgi, and
     `filering cat` and `python3 -c pass` for comparison;
  3. the wake-up latency of followers, from the producer's append (the record's time) to
     delivery, with records appended at --rate a second: the Go follower (`filering
     watch`), `python3 -m filering watch`, and in-process Follower and AsyncFollower.

The package measured is the one `import filering` finds (run with PYTHONPATH=python for
the source tree); its bytecode is compiled first, as an installed package's is.
"""

import argparse
import asyncio
import calendar
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import filering  # noqa: E402

PER_SEGMENT = (2 * 1024 * 1024 - 64) // 64  # 64-byte records (40-byte payloads) in a 2 MiB segment


def go_binary(tmp):
    path = os.environ.get("FILERING_BIN") or shutil.which("filering")
    if path:
        return path
    go = shutil.which("go") or ("/usr/local/go/bin/go" if os.path.exists("/usr/local/go/bin/go") else None)
    if not go:
        sys.exit("bench: no filering binary: set FILERING_BIN or install Go")
    path = os.path.join(tmp, "filering")
    subprocess.run([go, "build", "-o", path, "./cmd/filering"], cwd=REPO, check=True)
    return path


class Producer(object):
    """Producer runs `filering produce` with the default segments, fed 40-byte lines."""

    def __init__(self, go, ring):
        self.proc = subprocess.Popen([go, "produce", ring], stdin=subprocess.PIPE)
        self.ring = ring

    def write(self, n, start=0):
        chunk = 20000
        for i in range(start, start + n, chunk):
            self.proc.stdin.write(b"".join(b"%040d\n" % j for j in range(i, min(i + chunk, start + n))))
        self.proc.stdin.flush()

    def settle(self, want):
        """settle waits until the ring holds record number want."""
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                got = filering.open(self.ring).last(1)
                if got and got[-1].seq >= want:
                    return
            except filering.Error:
                pass
            time.sleep(0.05)
        raise SystemExit("bench: the producer did not catch up")

    def stop(self):
        self.proc.stdin.close()
        self.proc.wait()


def timed(fn, runs):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1e3, statistics.median(times) * 1e3


def bench_last(go, base, runs):
    print("1. ring.last(1000), in-process (ms, best / median of %d)" % runs)
    states = [
        ("hot segment half full", 8 * PER_SEGMENT + PER_SEGMENT // 2, False),
        ("hot segment just rolled", 8 * PER_SEGMENT + 10, False),
        ("producer stopped, all sealed", 8 * PER_SEGMENT + PER_SEGMENT // 2, True),
    ]
    rings = {}
    for name, n, stop in states:
        ring = os.path.join(base, "last-%d-%d" % (n, stop))
        p = Producer(go, ring)
        p.write(n)
        p.settle(n)
        r = filering.open(ring)
        assert len(r.last(1000)) == 1000 and r.last(1)[-1].seq == n
        if stop:
            p.stop()
        best, median = timed(lambda: r.last(1000), runs)
        st = r.stat()
        print("   %-32s %6.2f / %6.2f   (%d segments, %d records, hot %s)" % (name, best, median, st.segments, st.records, st.hot_segment or "none"))
        if not stop:
            p.stop()
        rings[name] = ring
    return rings["producer stopped, all sealed"]


def bench_process(go, ring, runs):
    print("2. a process printing the last 1000 records as JSON, interpreter start included (ms, best / median of %d)" % runs)
    env = package_env()
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.dirname(filering.__file__)], env=env, stdout=subprocess.DEVNULL)
    cgi = os.path.join(REPO, "examples", "cgi", "graph.cgi")
    cgi_env = dict(env, FILERING_RING=ring, QUERY_STRING="last=1000", REQUEST_METHOD="GET")
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.dirname(cgi)], env=env, stdout=subprocess.DEVNULL)
    cases = [
        ("python3 -c pass", [sys.executable, "-c", "pass"], env),
        ("python3 -m filering cat --last 1000 --format json", [sys.executable, "-m", "filering", "cat", "--last", "1000", "--format", "json", ring], env),
        ("graph.cgi (QUERY_STRING=last=1000)", [sys.executable, cgi], cgi_env),
        ("filering cat --last 1000 --format json (Go)", [go, "cat", "--last", "1000", "--format", "json", ring], env),
    ]
    for name, cmd, e in cases:
        out = subprocess.run(cmd, env=e, stdout=subprocess.PIPE).stdout
        assert out or "pass" in name, name

        def run():
            subprocess.run(cmd, env=e, stdout=subprocess.DEVNULL)

        best, median = timed(run, runs)
        print("   %-50s %6.1f / %6.1f" % (name, best, median))


def parse_time(text):
    secs = calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    return secs * 10**9 + int(text[20:29])


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] / 1e3


def package_env():
    """package_env returns the environment of a process that imports this filering package."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(filering.__file__))))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def bench_follow(go, base, rate, seconds):
    print("3. follower wake-up latency, append to delivery, %d records/s for %g s (us: p50 / p90 / p99)" % (rate, seconds))
    count = int(rate * seconds)

    def feed(p):
        start = time.monotonic()
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            p.proc.stdin.write(b"%040d\n" % i)
            p.proc.stdin.flush()

    def watch_process(name, cmd, ring):
        p = Producer(go, ring)
        p.write(1)
        p.settle(1)
        w = subprocess.Popen(cmd + ["--last", "0", "--format", "json", ring], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=package_env())
        time.sleep(1.0)
        lat = []

        def read():
            for line in w.stdout:
                now = time.time_ns()
                lat.append(now - parse_time(json.loads(line)["time"]))

        t = threading.Thread(target=read)
        t.start()
        feed(p)
        time.sleep(0.5)
        w.terminate()
        t.join()
        w.wait()
        p.stop()
        print("   %-40s %7.0f / %7.0f / %7.0f   (%d records)" % (name, pct(lat, 0.5), pct(lat, 0.9), pct(lat, 0.99), len(lat)))

    watch_process("filering watch (Go, a process)", [go, "watch"], os.path.join(base, "f-go"))
    watch_process("python3 -m filering watch (a process)", [sys.executable, "-m", "filering", "watch"], os.path.join(base, "f-py"))

    for kind in ("Follower", "AsyncFollower"):
        ring = os.path.join(base, "f-" + kind)
        p = Producer(go, ring)
        p.write(1)
        p.settle(1)
        lat = []
        feeder = threading.Thread(target=feed, args=(p,))
        if kind == "Follower":
            with filering.open(ring).follow(last=0) as f:
                feeder.start()
                while len(lat) < count:
                    rec = f.read(5)
                    if rec is None:
                        break
                    lat.append(time.time_ns() - rec.time_ns)
        else:

            async def run():
                async with filering.open(ring).afollow(last=0) as f:
                    feeder.start()
                    while len(lat) < count:
                        rec = await f.read(5)
                        if rec is None:
                            break
                        lat.append(time.time_ns() - rec.time_ns)

            asyncio.run(run())
        feeder.join()
        p.stop()
        print("   %-40s %7.0f / %7.0f / %7.0f   (%d records)" % ("filering.%s (in-process)" % kind, pct(lat, 0.5), pct(lat, 0.9), pct(lat, 0.99), len(lat)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=40, help="runs of each timing (default 40)")
    ap.add_argument("--rate", type=int, default=100, help="records a second for the follower latency (default 100)")
    ap.add_argument("--seconds", type=float, default=5.0, help="how long to append for each follower (default 5)")
    ap.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None, help="where the rings go (default /dev/shm)")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="filering-bench-", dir=args.dir)
    try:
        go = go_binary(base)
        print("filering package %s from %s, Python %s, %d CPUs" % (filering.__version__, os.path.dirname(filering.__file__), sys.version.split()[0], os.cpu_count() or 0))
        ring = bench_last(go, base, args.runs)
        bench_process(go, ring, args.runs)
        bench_follow(go, base, args.rate, args.seconds)
    finally:
        shutil.rmtree(base, True)


if __name__ == "__main__":
    main()
