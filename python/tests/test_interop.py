"""The package against the Go producer while it writes, rolls, is SIGKILLed and restarted.

Followers must see every record once or report it lost, exactly; takers must get each
sealed segment once among them; snapshots taken while the producer rolls must be
consistent. Skipped without the `filering` binary (see helpers.need_go).
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import unittest

import filering

from helpers import RingTestCase, check_installed, need_go


def setUpModule():
    check_installed()


class GoProducer(object):
    """GoProducer runs `filering produce` on a ring and feeds it lines."""

    def __init__(self, go, ring, *flags):
        self.proc = subprocess.Popen([go, "produce"] + list(flags) + [ring], stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    def write(self, lines):
        self.proc.stdin.write(b"".join(l + b"\n" for l in lines))
        self.proc.stdin.flush()

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc.stdin.close()
        self.proc.stderr.close()

    def stop(self):
        self.proc.stdin.close()
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        if self.proc.wait(30) != 0:
            raise AssertionError("filering produce: %s" % err.decode("utf-8", "replace"))


def check_coverage(test, delivered, losses, last):
    """check_coverage checks that 1..last are each delivered once, in order, or reported lost."""
    seqs = [r.seq for r in delivered]
    test.assertEqual(seqs, sorted(set(seqs)), "delivered out of order or twice")
    covered = set(seqs)
    for loss in losses:
        span = set(range(loss.first, loss.last + 1))
        test.assertFalse(span & covered, "a lost record was delivered: %r" % (loss,))
        covered |= span
    test.assertEqual(covered, set(range(1, last + 1)))


class TestInterop(RingTestCase):
    def setUp(self):
        RingTestCase.setUp(self)
        self.go = need_go(self)

    def test_FollowWhileWritingRollingKilled(self):
        ring = self.path("r")
        flags = ["--segment-size", "4KiB", "--segments", "4"]
        prod = GoProducer(self.go, ring, *flags)
        prod.write([b"start"])
        deadline = time.time() + 10
        while not os.path.exists(os.path.join(ring, "manifest")) and time.time() < deadline:
            time.sleep(0.01)
        losses = []
        delivered = []
        f = filering.open(ring).follow(from_seq=1, on_loss=losses.append)
        self.addCleanup(f.close)
        stop = threading.Event()
        slow = [0.0]

        def follow():
            while not stop.is_set():
                rec = f.read(0.05)
                if rec is not None:
                    delivered.append(rec)
                    if slow[0]:
                        time.sleep(slow[0])

        t = threading.Thread(target=follow)
        t.start()
        try:
            n = 0
            for burst in range(40):
                prod.write([b"payload %d" % (n + i) for i in range(50)])
                n += 50
                time.sleep(0.01)
            slow[0] = 0.002  # fall behind: the ring retires records the follower has not read
            for burst in range(40):
                prod.write([b"payload %d" % (n + i) for i in range(200)])
                n += 200
            time.sleep(0.5)
            slow[0] = 0.0
            prod.kill()  # SIGKILL: the hot segment stays unsealed
            time.sleep(0.3)
            prod = GoProducer(self.go, ring, *flags)  # recovery continues the sequence
            for burst in range(20):
                prod.write([b"after %d" % i for i in range(50)])
                time.sleep(0.005)
            prod.stop()
            last = filering.open(ring).stat().last_seq
            deadline = time.time() + 20
            while (not delivered or delivered[-1].seq < last) and time.time() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            t.join(10)
        check_coverage(self, delivered, losses, last)
        self.assertTrue(losses, "the slow follower lost nothing: the test did not test")
        self.assertEqual(f.restarted, False)
        self.assertEqual(delivered[-1].data, b"after 49")

    def test_TakeWhileWritingKilled(self):
        ring = self.path("r")
        flags = ["--segment-size", "4KiB", "--segments", "8192"]
        prod = GoProducer(self.go, ring, *flags)
        prod.write([b"start"])
        deadline = time.time() + 10
        while not os.path.exists(os.path.join(ring, "manifest")) and time.time() < deadline:
            time.sleep(0.01)
        code = "import json, sys, filering\nprint(json.dumps([r.seq for r in filering.open(sys.argv[1]).take(follow=True, timeout=3)]))\n"
        env = dict(os.environ)
        takers = [subprocess.Popen([sys.executable, "-c", code, ring], stdout=subprocess.PIPE, env=env) for _ in range(3)]
        gotake = subprocess.Popen([self.go, "take", "--follow", "--format", "json", ring], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        n = 0
        for burst in range(60):
            prod.write([b"p%d" % (n + i) for i in range(100)])
            n += 100
            time.sleep(0.005)
        prod.kill()
        prod = GoProducer(self.go, ring, *flags)
        for burst in range(30):
            prod.write([b"q%d" % (n + i) for i in range(100)])
            n += 100
            time.sleep(0.005)
        prod.stop()
        parts = []
        for p in takers:
            out, _ = p.communicate(timeout=60)
            parts.append(json.loads(out))
        time.sleep(0.5)
        gotake.send_signal(signal.SIGINT)
        out, err = gotake.communicate(timeout=20)
        self.assertEqual(gotake.returncode, 0, err)
        parts.append([json.loads(l)["seq"] for l in out.splitlines()])
        every = sorted(s for part in parts for s in part)
        self.assertEqual(len(every), len(set(every)), "a record was taken twice")
        hot = filering.open(ring).manifest().hot()
        last = hot.first_seq - 1 if hot else filering.open(ring).manifest().next_seq() - 1
        self.assertEqual(every, list(range(1, last + 1)))
        self.assertGreater(sum(1 for part in parts[:3] if part), 1)

    def test_SnapshotsWhileRolling(self):
        ring = self.path("r")
        prod = GoProducer(self.go, ring, "--segment-size", "4KiB", "--segments", "3")
        prod.write([b"start"])
        deadline = time.time() + 10
        while not os.path.exists(os.path.join(ring, "manifest")) and time.time() < deadline:
            time.sleep(0.01)
        stop = threading.Event()

        def write():
            i = 0
            while not stop.is_set():
                prod.write([b"v%d" % (i + j) for j in range(20)])
                i += 20

        t = threading.Thread(target=write)
        t.start()
        try:
            r = filering.open(ring)
            checked = 0
            deadline = time.time() + 3
            while time.time() < deadline:
                for recs in (r.records(), r.last(50)):
                    seqs = [x.seq for x in recs]
                    self.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(seqs))) if seqs else [])
                    for x in recs:
                        self.assertEqual(x.data, b"start" if x.seq == 1 else b"v%d" % (x.seq - 2))
                    checked += 1
            self.assertGreater(checked, 20)
        finally:
            stop.set()
            t.join(10)
            prod.stop()


if __name__ == "__main__":
    unittest.main()
