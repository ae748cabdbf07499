#!/usr/bin/env python3
"""Measure filering_reader.read_records on a full ring (standard library only).

    python3 examples/cgi/bench_filering_reader.py [--dir /dev/shm] [--runs 20]

It builds rings of 16 segments of 1 MiB with the test writer of
test_filering_reader.py (sensor-style payloads such as b"21.734", 32 bytes a record,
32,766 records a segment), then times whole read_records calls (manifest, opens, mmap,
scan) and prints the best and the median of --runs calls for each case.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import filering_reader  # noqa: E402
import test_filering_reader as writer  # noqa: E402

SEGMENT_SIZE = 1 << 20
SEGMENTS = 16
PER_SEGMENT = (SEGMENT_SIZE - 64) // 32


def build(ring, hot_records):
    total = (SEGMENTS - 1) * PER_SEGMENT + (hot_records or PER_SEGMENT)
    payloads = writer.sensor_payloads(total)
    entries = writer.write_ring(ring, payloads, segment_size=SEGMENT_SIZE, segments_max=SEGMENTS, hot=hot_records > 0)
    if hot_records == 0:
        # The producer has just rolled: a new, empty hot segment, and retention has
        # removed the oldest segment.
        os.unlink(os.path.join(ring, entries[0]["name"]))
        entries = entries[1:]
        n = int(entries[-1]["name"][:16]) + 1
        data, _ = writer.segment_bytes(n, total + 1, [], SEGMENT_SIZE, sealed=False)
        writer.write_file(os.path.join(ring, writer.seg_name(n)), data)
        docs = [{k: v for k, v in e.items() if k != "offsets"} for e in entries]
        docs.append({"name": writer.seg_name(n), "first_seq": total + 1, "last_seq": 0, "sealed": False})
        writer.write_manifest(ring, writer.manifest_doc(docs, SEGMENT_SIZE, SEGMENTS))
    assert len(filering_reader.read_manifest(ring).segments) == SEGMENTS
    return total


def timed(runs, fn):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1e3, statistics.median(times) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    print("Python %s, %d runs each, ms (best / median)" % (sys.version.split()[0], args.runs))
    cases = [
        ("hot segment half full", PER_SEGMENT // 2),
        ("hot segment just rolled (empty)", 0),
        ("hot segment holds exactly 1000", 1000),
    ]
    for name, hot in cases:
        ring = tempfile.mkdtemp(prefix="filering-bench-", dir=args.dir)
        try:
            total = build(ring, hot)
            print(name)
            got = filering_reader.read_records(ring, last=1000)
            assert len(got) == 1000 and got[-1][0] == total, (len(got), got[-1][0], total)
            for label, kw in [
                ("last=1000", {"last": 1000}),
                ("last=1000, check_all=False", {"last": 1000, "check_all": False}),
                ("from_seq=newest+1, check_all=False", {"from_seq": total + 1, "check_all": False}),
            ]:
                best, med = timed(args.runs, lambda: filering_reader.read_records(ring, **kw))
                print("  %-36s %7.2f / %7.2f" % (label, best, med))
            if hot == PER_SEGMENT // 2:
                best, med = timed(3, lambda: filering_reader.read_records(ring))
                print("  %-36s %7.0f / %7.0f" % ("all %d records" % total, best, med))
        finally:
            shutil.rmtree(ring, True)


if __name__ == "__main__":
    main()
