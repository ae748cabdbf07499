"""Windows: a reader holds at most 64 segment files open at once (docs/FORMAT.md,
"Reading", step 2).

A ring that lists more segments is read in windows of at most 64 entries of the manifest
read first: the first window is opened before any of it is read (missing segments,
manifest re-read and retries as for any snapshot), later ones by name when they are
reached, a file gone meanwhile skipped silently. A selection of the last N records alone
walks back from the newest segment, at most 64 open at a time, reading and closing each
as it counts it. The rings here have 300 sealed segments of 4 KiB (8 records each); the
tests that lower RLIMIT_NOFILE run in a subprocess.
"""

import json
import os
import resource
import subprocess
import sys
import textwrap
import unittest
from unittest import mock

import filering
from filering import _ring

from helpers import HERE, T0, Producer, RingTestCase, check_installed, expected, open_targets, patch_bytes, write_ring

SEGMENTS = 300
PER_SEGMENT = 8  # records of PAYLOAD bytes in a 4 KiB segment: 8 * 504 = 4096 - 64
PAYLOAD = 480
LIMIT = 128  # RLIMIT_NOFILE for the subprocesses: more than 64 segments, fewer than 300


def setUpModule():
    check_installed()


def payloads(n):
    return [(b"%08d" % i) * (PAYLOAD // 8) for i in range(n)]


def open_segment_files(prefix):
    """open_segment_files counts the descriptors of this process open on *.seg files under prefix."""
    return sum(1 for t in open_targets() if t.startswith(prefix + os.sep) and t.endswith(".seg"))


def run_limited(code, *args):
    """run_limited runs code in a Python subprocess with RLIMIT_NOFILE lowered to LIMIT and
    returns what it printed, parsed as JSON. It imports the filering the tests import."""
    paths = [os.path.dirname(os.path.dirname(os.path.abspath(filering.__file__))), HERE]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    prelude = "import resource\nresource.setrlimit(resource.RLIMIT_NOFILE, (%d, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n" % LIMIT
    p = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)] + list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        timeout=120,
    )
    if p.returncode != 0:
        raise AssertionError("subprocess failed (%d): %s" % (p.returncode, p.stderr.decode("utf-8", "replace")))
    return json.loads(p.stdout.decode("ascii"))


def limit(n):
    """limit is a preexec_fn that lowers RLIMIT_NOFILE to n in the child."""
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (n, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


def cat_limited(*args):
    """cat_limited runs `python3 -m filering cat ARGS` allowed LIMIT open files."""
    paths = [os.path.dirname(os.path.dirname(os.path.abspath(filering.__file__)))]
    return subprocess.run(
        [sys.executable, "-m", "filering", "cat"] + list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(paths)),
        preexec_fn=limit(LIMIT),
        timeout=120,
    )


class TestWindows(RingTestCase):
    def setUp(self):
        RingTestCase.setUp(self)
        self.payloads = payloads(SEGMENTS * PER_SEGMENT)
        self.entries = write_ring(self.ring, self.payloads, segments_max=SEGMENTS, hot=False)
        self.assertEqual(len(self.entries), SEGMENTS)
        self.want = expected(self.payloads)

    def without(self, entry):
        return [r for r in self.want if not entry["first_seq"] <= r[0] <= entry["last_seq"]]

    def test_ManySegments_lowFileLimit(self):
        got = run_limited(
            """
            import json, sys, filering
            ring = filering.open(sys.argv[1])
            recs = ring.records()
            tail = ring.records(since=int(sys.argv[2]), last=1000)
            st = ring.stat()
            print(json.dumps({
                "all": [[r.seq, r.time_ns, r.data.decode()] for r in recs],
                "tail": [r.seq for r in tail],
                "from": [r.seq for r in ring.records(from_seq=1000)][:1],
                "stat": [st.segments, st.records, st.first_seq, st.last_seq, len(st.damage)],
            }))
            """,
            self.ring,
            str(T0),
        )
        n = len(self.want)
        self.assertEqual(got["all"], [[s, t, d.decode()] for s, t, d in self.want])
        self.assertEqual(got["tail"], list(range(n - 999, n + 1)))
        self.assertEqual(got["from"], [1000])
        self.assertEqual(got["stat"], [SEGMENTS, n, 1, n, 0])

    def test_ManySegments_lowFileLimit_cat(self):
        # `ulimit -n` low, `python3 -m filering cat`.
        p = cat_limited(self.ring)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.splitlines(), [d for _, _, d in self.want])

    def test_AtMost64Open_afterEachRecord(self):
        seen = []
        got = []
        for b in _ring.snapshot(self.ring):
            self.assertIsNone(b.error)
            for r in b.records:
                got.append(tuple(r))
                seen.append(open_segment_files(self.ring))
        self.assertEqual(got, self.want)
        self.assertLessEqual(max(seen), _ring.MAX_OPEN)
        self.assertEqual(_ring.MAX_OPEN, 64)
        self.assertEqual(open_segment_files(self.ring), 0)

    def test_AtMost64Open_everySelection(self):
        # records() returns a list: count what is open as each segment is read.
        real = _ring._read_one
        seen = []

        def read_one(seg, *args):
            seen.append(open_segment_files(self.ring))
            return real(seg, *args)

        n = len(self.want)
        with mock.patch.object(_ring, "_read_one", read_one):
            ring = filering.open(self.ring)
            self.assertEqual([tuple(r) for r in ring.records()], self.want)
            self.assertEqual([tuple(r) for r in ring.records(since=T0 + 5, last=n - 10)], self.want[10:])
            self.assertEqual([tuple(r) for r in ring.records(from_seq=600, since=T0)], self.want[599:])
        self.assertEqual(len(seen), SEGMENTS + SEGMENTS + SEGMENTS - 74)
        self.assertLessEqual(max(seen), 64)
        real_open = _ring.open_segment
        opened = []

        def open_segment(*args):
            opened.append(open_segment_files(self.ring) + 1)
            return real_open(*args)

        with mock.patch.object(_ring, "open_segment", open_segment):
            st = filering.open(self.ring).stat()
        self.assertEqual((st.segments, st.records), (SEGMENTS, n))
        self.assertEqual(len(opened), SEGMENTS)
        self.assertEqual(max(opened), 64)
        self.assertEqual(open_segment_files(self.ring), 0)

    def test_LaterWindowSegmentGone_skippedSilently(self):
        gone = self.entries[200]
        real = _ring.read_manifest
        reads = []

        def read_manifest(dfd, path):
            reads.append(1)
            return real(dfd, path)

        got = []
        with mock.patch.object(_ring, "read_manifest", read_manifest):
            gen = _ring.snapshot(self.ring)
            for _ in range(10):  # the first window is open and partly read
                b = next(gen)
                got.extend(b.records)
            self.assertEqual(open_segment_files(self.ring), 64 - 10)
            os.unlink(self.path(gone["name"]))
            for b in gen:
                self.assertIsNone(b.error)
                got.extend(b.records)
        self.assertEqual([tuple(r) for r in got], self.without(gone))
        self.assertEqual(len(reads), 1)  # no manifest re-read for a later window

    def test_LaterWindowSegmentGone_records(self):
        # Through Ring.records: the last segment of a later window and the next window's
        # first are removed while the first window is read.
        gone = [self.entries[127], self.entries[128], self.entries[299]]
        real = _ring._read_one
        calls = []

        def read_one(*args):
            calls.append(1)
            if len(calls) == 3:
                for e in gone:
                    os.unlink(self.path(e["name"]))
            return real(*args)

        damage = []
        with mock.patch.object(_ring, "_read_one", read_one):
            got = [tuple(r) for r in filering.open(self.ring).records(on_damage=damage.append)]
        want = self.want
        for e in gone:
            want = [r for r in want if not e["first_seq"] <= r[0] <= e["last_seq"]]
        self.assertEqual(got, want)
        self.assertEqual(damage, [])

    def test_FirstWindowSegmentGone_stillChecksTheManifest(self):
        gone = self.entries[5]
        os.unlink(self.path(gone["name"]))
        real = _ring.read_manifest
        reads = []

        def read_manifest(dfd, path):
            reads.append(1)
            return real(dfd, path)

        with mock.patch.object(_ring, "read_manifest", read_manifest):
            got = [tuple(r) for r in filering.open(self.ring).records()]
        self.assertEqual(got, self.without(gone))
        self.assertEqual(len(reads), 2)

    def test_ClosedEarly_closesWhatItHolds(self):
        for n in (1, 63, 64, 65, 200):
            with self.subTest(batches=n):
                gen = _ring.snapshot(self.ring)
                for _ in range(n):
                    next(gen)
                # The window's segments not read yet are open (none at its end).
                self.assertEqual(open_segment_files(self.ring), -n % 64)
                gen.close()
                self.assertEqual(open_segment_files(self.ring), 0)

    def test_Lazy_laterWindowsOpenedWhenReached(self):
        real = _ring.open_segment
        opened = []

        def open_segment(dfd, path, entry, size):
            opened.append(entry[0])
            return real(dfd, path, entry, size)

        with mock.patch.object(_ring, "open_segment", open_segment):
            gen = _ring.snapshot(self.ring)
            self.assertEqual(opened, [])
            next(gen)
            self.assertEqual(opened, [e["name"] for e in self.entries[:64]])
            for _ in range(63):
                next(gen)
            self.assertEqual(len(opened), 64)
            next(gen)
            self.assertEqual(opened, [e["name"] for e in self.entries[:128]])
            gen.close()

    # -- the last N records alone (_read_last) ------------------------------------------

    def count_opens(self):
        """count_opens patches _ring.open_segment to note, at each open, how many *.seg
        files are open with it; it returns the list of those counts."""
        real = _ring.open_segment
        counts = []

        def open_segment(*args):
            seg = real(*args)
            counts.append(open_segment_files(self.ring))
            return seg

        p = mock.patch.object(_ring, "open_segment", open_segment)
        p.start()
        self.addCleanup(p.stop)
        return counts

    def test_Last_acrossWindows_atMost64Open(self):
        # The last 2000 records are in the newest 250 segments: more than 64.
        counts = self.count_opens()
        gen = _ring.snapshot(self.ring, last=2000)
        got = []
        seen = []
        b = next(gen)  # the call that starts the read
        self.assertEqual(len(counts), 250)
        self.assertLessEqual(max(counts), _ring.MAX_OPEN)
        self.assertEqual(max(counts), 64)
        seen.append(open_segment_files(self.ring))
        while True:
            self.assertIsNone(b.error)
            for r in b.records:
                got.append(tuple(r))
                seen.append(open_segment_files(self.ring))
            b = next(gen, None)
            if b is None:
                break
        self.assertEqual(got, self.want[-2000:])
        self.assertLessEqual(max(seen), _ring.MAX_OPEN)
        self.assertEqual(open_segment_files(self.ring), 0)
        # Through the API: Ring.last, records(last=N), with from_seq, next_seq.
        ring = filering.open(self.ring)
        del counts[:]
        self.assertEqual([tuple(r) for r in ring.last(2000)], self.want[-2000:])
        self.assertEqual([tuple(r) for r in ring.records(last=1999)], self.want[-1999:])
        self.assertEqual([tuple(r) for r in ring.records(from_seq=500, last=10 ** 6)], self.want[499:])
        self.assertEqual(ring.next_seq(), len(self.want) + 1)
        self.assertLessEqual(max(counts), 64)
        self.assertEqual(open_segment_files(self.ring), 0)

    def test_Last_counted_segment_unlinked_thenOlderMissing(self):
        # While the read walks back, a segment it counted (and closed) is unlinked, and
        # one it has not opened yet: no error; the first's records were read when it was
        # counted, the second is missing (skipped after one manifest re-read) and the
        # count reaches further back instead.
        counted_gone = self.entries[280]
        older_gone = self.entries[200]
        real_open = _ring.open_segment
        real_read = _ring.read_manifest
        opens = []
        reads = []
        at_room = []

        def open_segment(dfd, path, entry, size):
            opens.append(entry[0])
            if len(opens) == 65:  # the second window: the first is counted
                at_room.append(open_segment_files(self.ring))
                os.unlink(self.path(counted_gone["name"]))
                os.unlink(self.path(older_gone["name"]))
            return real_open(dfd, path, entry, size)

        def read_manifest(dfd, path):
            reads.append(1)
            return real_read(dfd, path)

        damage = []
        with mock.patch.object(_ring, "open_segment", open_segment), mock.patch.object(_ring, "read_manifest", read_manifest):
            got = [tuple(r) for r in filering.open(self.ring).records(last=2000, on_damage=damage.append)]
        self.assertEqual(at_room, [0])  # the 64 counted were closed before more were opened
        self.assertEqual(damage, [])
        self.assertEqual(got, self.without(older_gone)[-2000:])
        self.assertIn(counted_gone["first_seq"], [r[0] for r in got])
        self.assertEqual(len(reads), 2)
        self.assertEqual(open_segment_files(self.ring), 0)

    def test_Last_damagedInALaterWindow(self):
        # Damage in a segment of the second window: reported, its records not counted,
        # the count reaching one segment further back; every segment closed.
        bad = self.entries[230]
        patch_bytes(self.path(bad["name"]), 0, b"FILERSEX")
        counts = self.count_opens()
        damage = []
        got = [tuple(r) for r in filering.open(self.ring).records(last=2000, on_damage=damage.append)]
        self.assertEqual(got, self.without(bad)[-2000:])
        self.assertEqual([e.path for e in damage], [self.path(bad["name"])])
        self.assertEqual(len(counts), 251)
        self.assertEqual(max(counts), 64)
        self.assertEqual(open_segment_files(self.ring), 0)

    def test_Last_lowFileLimit(self):
        got = run_limited(
            """
            import json, sys, filering
            ring = filering.open(sys.argv[1])
            f = ring.follow(last=2000)
            followed = [f.read(5).seq for _ in range(2000)]
            extra = f.read(0)
            f.close()
            print(json.dumps({
                "last": [[r.seq, r.time_ns, r.data.decode()] for r in ring.last(2000)],
                "records": [r.seq for r in ring.records(last=2001)],
                "next": ring.next_seq(),
                "followed": followed,
                "extra": extra is not None,
            }))
            """,
            self.ring,
        )
        n = len(self.want)
        self.assertEqual(got["last"], [[s, t, d.decode()] for s, t, d in self.want[-2000:]])
        self.assertEqual(got["records"], list(range(n - 2000, n + 1)))
        self.assertEqual(got["next"], n + 1)
        self.assertEqual(got["followed"], list(range(n - 1999, n + 1)))
        self.assertFalse(got["extra"])

    def test_Last_lowFileLimit_cat(self):
        # `ulimit -n` low, `python3 -m filering cat --last N`.
        p = cat_limited("--last", "2000", self.ring)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.splitlines(), [d for _, _, d in self.want[-2000:]])


class TestWindowsLive(RingTestCase):
    def test_EndsWhereTheFirstManifestEnds(self):
        # The producer rolls on while the reader is in its first window: the hot segment
        # listed first is read to its end, the segments made after it are not.
        p = Producer(self.ring, segments_max=400)
        data = payloads(SEGMENTS * PER_SEGMENT + 3)
        for d in data:
            p.append(d)
        self.addCleanup(p.close)
        hot_first = p.entries[-1]["first_seq"]
        gen = _ring.snapshot(self.ring)
        got = list(next(gen).records)
        more = payloads(5 * PER_SEGMENT)
        for d in more:
            p.append(d)
        for b in gen:
            self.assertIsNone(b.error)
            got.extend(b.records)
        self.assertEqual([r.seq for r in got], list(range(1, hot_first + PER_SEGMENT)))

    def test_Follower_fromTheOldest_reportsSkippedSegmentLost(self):
        # A follower that starts with a snapshot (since and last) of a ring of 300
        # segments, with few descriptors: it delivers everything; a segment of a later
        # window removed before it gets there is reported lost, exactly.
        script = """
            import json, os, sys, filering
            from helpers import Producer, T0
            ring, which = sys.argv[1], sys.argv[2]
            p = Producer(ring, segment_size=4096, segments_max=400)
            for i in range(%d):
                p.append(b"%%0480d" %% i)
            p.roll()
            losses = []
            if which == "snapshot":
                f = filering.open(ring).follow(since=T0, last=10 ** 6, on_loss=losses.append)
            else:
                f = filering.open(ring).follow(on_loss=losses.append)
            seqs = [f.read(5).seq for _ in range(20)]
            gone = p.entries[150]
            os.unlink(os.path.join(ring, gone["name"]))
            while True:
                r = f.read(0)
                if r is None:
                    break
                seqs.append(r.seq)
            for i in range(10):
                p.append(b"new")
            while True:
                r = f.read(1 if seqs[-1] < p.seq - 1 else 0)
                if r is None:
                    break
                seqs.append(r.seq)
            print(json.dumps({"seqs": seqs, "losses": [list(l) for l in losses], "lost": f.lost,
                              "gone": [gone["first_seq"], gone["last_seq"]], "next": p.seq}))
        """ % (
            SEGMENTS * PER_SEGMENT
        )
        for which in ("snapshot", "plain"):
            with self.subTest(which):
                ring = self.path(which)
                got = run_limited(script, ring, which)
                first, last = got["gone"]
                self.assertEqual(got["losses"], [[first, last]])
                self.assertEqual(got["lost"], last - first + 1)
                want = [s for s in range(1, got["next"]) if not first <= s <= last]
                self.assertEqual(got["seqs"], want)


if __name__ == "__main__":
    unittest.main()
