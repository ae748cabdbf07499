"""Takers: Ring.take and Ring.taker, single-consumer mode (docs/FORMAT.md, "Taking")."""

import json
import os
import subprocess
import sys
import time
import unittest

import filering
from filering import _take

from helpers import Producer, RingTestCase, check_installed, patch_bytes, seg_name


def setUpModule():
    check_installed()


TAKER = r"""
import json, sys, filering
out = []
for rec in filering.open(sys.argv[1]).take(follow=True, timeout=float(sys.argv[2])):
    out.append(rec.seq)
print(json.dumps(out))
"""


class TestTake(RingTestCase):
    def ring_with(self, n, segments_max=100):
        p = Producer(self.ring, segments_max=segments_max)
        for i in range(n):
            p.append(b"%04d" % i)
        return p

    def test_TakesSealedOnly_oncePerSegment(self):
        p = self.ring_with(500)
        hot_first = p.entries[-1]["first_seq"]
        got = [r.seq for r in filering.open(self.ring).take()]
        self.assertEqual(got, list(range(1, hot_first)))
        names = sorted(os.listdir(self.ring))
        self.assertEqual([n for n in names if n.endswith(".seg")], [p.entries[-1]["name"]])
        self.assertFalse([n for n in names if n.endswith(".taken")])
        self.assertEqual(list(filering.open(self.ring).take()), [])
        # Readers skip the taken segments silently.
        self.assertEqual([r.seq for r in filering.open(self.ring).records()], list(range(hot_first, 501)))
        p.close()
        self.assertEqual([r.seq for r in filering.open(self.ring).take()], list(range(hot_first, 501)))

    def test_StopEarly_staysClaimed_redelivered(self):
        p = self.ring_with(500)
        it = filering.open(self.ring).take()
        first = [next(it).seq for _ in range(3)]
        self.assertEqual(first, [1, 2, 3])
        it.close()  # stopped mid-segment: the claim stays, and is delivered again
        taken = [n for n in os.listdir(self.ring) if n.endswith(".taken")]
        self.assertEqual(taken, [seg_name(1, ".taken")])
        with filering.open(self.ring).taker() as t:
            c = t.claim()
            self.assertTrue(c.redelivered)
            self.assertEqual(c.number, 1)
            self.assertEqual(c.path, os.path.join(self.ring, seg_name(1, ".taken")))
            recs = c.records()
            self.assertEqual(recs[0].seq, 1)
            c.done()
        self.assertFalse(os.path.exists(self.path(seg_name(1, ".taken"))))
        p.close()

    def test_LockedClaim_isNotReclaimed(self):
        self.ring_with(500)
        with filering.open(self.ring).taker() as a, filering.open(self.ring).taker() as b:
            ca = a.claim()
            self.assertEqual(ca.number, 1)
            cb = b.claim()  # segment 1 is a's (locked): b takes the next
            self.assertEqual(cb.number, 2)
            self.assertFalse(cb.redelivered)
            ca.release()  # a gives up: b, or anyone, redelivers it
            cc = b.claim()
            self.assertEqual((cc.number, cc.redelivered), (1, True))
            for c in (cb, cc):
                c.records()
                c.done()

    def test_DeadTaker_redelivered(self):
        self.ring_with(500)
        code = "import filering, os, sys\nc = filering.open(sys.argv[1]).taker().claim()\nprint(c.number)\nos._exit(0)\n"
        p = subprocess.run([sys.executable, "-c", code, self.ring], stdout=subprocess.PIPE, check=True)
        self.assertEqual(p.stdout, b"1\n")
        self.assertTrue(os.path.exists(self.path(seg_name(1, ".taken"))))
        got = [r.seq for r in filering.open(self.ring).take()]
        self.assertEqual(got[:2], [1, 2])
        self.assertEqual(len(got), len(set(got)))

    def test_Damaged_setAside(self):
        p = self.ring_with(500)
        e = p.entries[1]
        patch_bytes(self.path(e["name"]), 64 + 24 + 32 * 3, b"\xff")
        errors = []
        got = [r.seq for r in filering.open(self.ring).take(on_damage=errors.append)]
        hot_first = p.entries[-1]["first_seq"]
        lost = set(range(e["first_seq"] + 3, e["last_seq"] + 1))
        self.assertEqual(got, [s for s in range(1, hot_first) if s not in lost])
        self.assertEqual([(x.path, x.offset, x.kind) for x in errors], [(self.path(e["name"][:-4] + ".taken"), 64 + 32 * 3, "checksum")])
        self.assertTrue(os.path.exists(self.path(e["name"][:-4] + ".damaged")))
        # Without on_damage: raised, after the records before it, the segment set aside.
        p2 = Producer(self.path("two"), segments_max=100)
        for i in range(300):
            p2.append(b"%04d" % i)
        os.unlink(os.path.join(p2.ring, p2.entries[0]["name"]))
        os.mkfifo(os.path.join(p2.ring, p2.entries[0]["name"]))
        it = filering.open(p2.ring).take()
        with self.assertRaises(filering.CorruptionError) as cm:
            next(it)
        self.assertEqual(cm.exception.kind, "not-regular")
        self.assertTrue(os.path.exists(os.path.join(p2.ring, seg_name(1, ".damaged"))))
        self.assertEqual(next(filering.open(p2.ring).take()).seq, p2.entries[1]["first_seq"])

    def test_Follow_timeout(self):
        p = self.ring_with(10)
        t = time.monotonic()
        self.assertEqual(list(filering.open(self.ring).take(follow=True, timeout=0.3)), [])
        self.assertGreaterEqual(time.monotonic() - t, 0.3)
        p.close()
        self.assertEqual([r.seq for r in filering.open(self.ring).take(follow=True, timeout=0.3)], list(range(1, 11)))

    def test_CompetingTakers(self):
        p = Producer(self.ring, segments_max=10000)
        procs = [subprocess.Popen([sys.executable, "-c", TAKER, self.ring, "2"], stdout=subprocess.PIPE) for _ in range(4)]
        total = 20000
        for i in range(total):
            p.append(b"%05d" % i)
            if i % 500 == 0:
                time.sleep(0.01)
        p.close()
        seen = []
        for proc in procs:
            out, _ = proc.communicate(timeout=60)
            seen.append(json.loads(out))
        every = sorted(s for part in seen for s in part)
        self.assertEqual(every, list(range(1, total + 1)))  # each record exactly once
        self.assertGreater(sum(1 for part in seen if part), 1)  # shared between takers
        self.assertFalse([n for n in os.listdir(self.ring) if n.endswith((".seg", ".taken"))])

    def test_RenameNoReplace(self):
        dfd = os.open(self.ring, os.O_RDONLY | os.O_DIRECTORY)
        self.addCleanup(os.close, dfd)
        for name in ("a", "b"):
            with open(self.path(name), "w") as f:
                f.write(name)
        with self.assertRaises(FileExistsError):
            _take.rename_noreplace(dfd, "a", "b")
        with self.assertRaises(FileNotFoundError):
            _take.rename_noreplace(dfd, "c", "d")
        _take.rename_noreplace(dfd, "a", "c")
        self.assertEqual(sorted(os.listdir(self.ring)), ["b", "c"])


if __name__ == "__main__":
    unittest.main()
