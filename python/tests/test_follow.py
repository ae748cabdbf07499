"""Followers: Ring.follow and Ring.afollow against a live ring written in place.

helpers.Producer writes the ring as the format says (records in place, the committed
word with pwrite, rolls, retention), so these tests control exactly which records exist
when; test_interop.py does the same against the Go producer.
"""

import asyncio
import os
import shutil
import struct
import threading
import time
import unittest
from unittest import mock

import filering
from filering import _inotify

from helpers import Producer, RingTestCase, check_installed, patch_bytes


def setUpModule():
    check_installed()


def drain(f, timeout=0.0):
    """drain returns the records the follower has now (waiting timeout for the first)."""
    out = []
    while True:
        rec = f.read(timeout if not out else 0)
        if rec is None:
            return out
        out.append(rec)


class TestFollow(RingTestCase):
    def setUp(self):
        RingTestCase.setUp(self)
        self.losses = []
        self.damage = []

    def follower(self, **kw):
        kw.setdefault("on_loss", self.losses.append)
        f = filering.open(self.ring).follow(**kw)
        self.addCleanup(f.close)
        return f

    def test_SnapshotThenFollow(self):
        p = Producer(self.ring, segments_max=8)
        for i in range(100):
            p.append(b"r%d" % i)
        f = self.follower(last=10)
        self.assertEqual([r.seq for r in drain(f)], list(range(91, 101)))
        for i in range(100, 400):  # across rolls and retention
            p.append(b"r%d" % i)
        got = drain(f)
        self.assertEqual([r.seq for r in got], list(range(101, 401)))
        self.assertEqual([r.data for r in got[:2]], [b"r100", b"r101"])
        self.assertEqual(self.losses, [])
        self.assertEqual(f.next_seq, 401)

    def test_Selections(self):
        cases = [
            ({}, list(range(1, 201))),
            ({"from_seq": 150}, list(range(150, 201))),
            ({"last": 5}, list(range(196, 201))),
            ({"last": 0}, []),
            ({"since": 1000 + 190}, list(range(191, 201))),
            ({"since": 1000 + 190, "last": 3}, list(range(198, 201))),
            ({"from_seq": 500}, []),
        ]
        for n, (kw, want) in enumerate(cases):
            with self.subTest(kw=kw):
                ring = self.path("r%d" % n)
                p = Producer(ring, segments_max=16)
                for i in range(200):
                    p.append(b"%d" % i, time_ns=1000 + i)
                f = filering.open(ring).follow(on_loss=self.losses.append, **kw)
                self.assertEqual([r.seq for r in drain(f)], want)
                p.append(b"new", time_ns=0)  # a new record is delivered whatever its time
                self.assertEqual([r.seq for r in drain(f, 5)], [] if kw.get("from_seq") == 500 else [201])
                f.close()
        self.assertEqual(self.losses, [])

    def test_FromBeyondTheEnd(self):
        p = Producer(self.ring)
        p.append(b"a")
        f = self.follower(from_seq=5)
        self.assertEqual(drain(f), [])
        for i in range(6):
            p.append(b"x")
        self.assertEqual([r.seq for r in drain(f, 5)], [5, 6, 7])
        self.assertEqual(self.losses, [])

    def test_LossExact_andAsSoonAsKnown(self):
        p = Producer(self.ring, segments_max=3)
        for i in range(50):
            p.append(b"%03d" % i)
        f = self.follower()
        got = drain(f)
        self.assertEqual(got[-1].seq, 50)
        # The follower is away while the ring retires everything it would read next. It
        # holds its segment open, so it still reads that one to its end (126 records).
        for i in range(50, 2000):
            p.append(b"%03d" % i)
        first = filering.open(self.ring).manifest().segments[0].first_seq
        events = []
        f._core.on_loss = events.append
        while True:
            rec = f.read(0)
            if rec is None:
                break
            events.append(rec.seq)
        self.assertEqual(events, list(range(51, 127)) + [filering.Loss(127, first - 1)] + list(range(first, 2001)))
        self.assertEqual(f.lost, first - 127)

    def test_LossReported_withoutANewRecord(self):
        # docs/FORMAT.md: report a loss as soon as it is known, not only when a later
        # record arrives: here every sealed segment is taken before the follower reads.
        p = Producer(self.ring, segments_max=10)
        for i in range(300):
            p.append(b"%03d" % i)
        p.roll()
        f = self.follower(from_seq=1)
        for e in p.entries[:-1]:
            os.rename(self.path(e["name"]), self.path(e["name"][:-4] + ".taken"))
        self.assertIsNone(f.read(0))
        self.assertEqual(self.losses, [filering.Loss(1, 300)])
        p.append(b"next")
        self.assertEqual(f.read(5).seq, 301)
        self.assertEqual(self.losses, [filering.Loss(1, 300)])

    def test_Wakeup_inotify(self):
        p = Producer(self.ring)
        p.append(b"first")
        with mock.patch.object(_inotify, "POLL", 30.0):  # only an event can wake it in time
            f = self.follower(last=0)
            self.assertFalse(f.polling)
            self.assertGreaterEqual(f.fileno(), 0)
            threading.Timer(0.3, p.append, (b"late",)).start()
            t = time.monotonic()
            rec = f.read(20)
            waited = time.monotonic() - t
        self.assertEqual(rec.data, b"late")
        self.assertLess(waited, 10)
        self.assertGreater(waited, 0.25)

    def test_Wakeup_polling(self):
        with mock.patch.object(_inotify, "disabled", True), mock.patch.object(_inotify, "POLL", 30.0):
            p = Producer(self.ring)
            p.append(b"first")
            f = self.follower(last=0)
            self.assertTrue(f.polling)
            self.assertEqual(f.fileno(), -1)
            self.assertEqual(f._core.watcher.interval(), _inotify.POLL_FAST)
            threading.Timer(0.2, p.append, (b"late",)).start()
            t = time.monotonic()
            rec = f.read(20)
            self.assertEqual(rec.data, b"late")
            self.assertLess(time.monotonic() - t, 10)

    def test_Overflow_pollsFast(self):
        r, w = os.pipe()
        watcher = _inotify.Watcher(None)
        watcher.fd, watcher.fast_until = r, 0.0
        self.assertFalse(watcher.polling)
        os.write(w, struct.pack("=iIII", -1, _inotify.IN_Q_OVERFLOW, 0, 0))
        os.set_blocking(r, False)
        self.assertTrue(watcher.drain())
        self.assertTrue(watcher.polling)
        self.assertEqual(watcher.interval(), _inotify.POLL_FAST)
        os.write(w, struct.pack("=iIII", 1, _inotify.IN_MODIFY, 0, 16) + b"0000000000000001.seg".ljust(16, b"\0")[:16])
        self.assertFalse(watcher.drain())  # a segment written: no need to read the manifest
        os.write(w, struct.pack("=iIII", 1, _inotify.IN_MOVED_TO, 0, 16) + b"manifest".ljust(16, b"\0"))
        self.assertTrue(watcher.drain())
        watcher.close()
        os.close(w)

    def test_BeforeTheRingExists(self):
        ring = self.path("later")
        f = filering.open(ring).follow(last=5, on_loss=self.losses.append)
        self.addCleanup(f.close)
        self.assertIsNone(f.read(0.2))
        p = Producer(ring, segments_max=3)
        for i in range(20):
            p.append(b"%d" % i)
        got = drain(f, 5)
        self.assertEqual([r.seq for r in got], list(range(1, 21)))  # every record: the ring is new
        self.assertEqual(self.losses, [])

    def test_BeforeTheRingExists_lostBeforeFirstRead(self):
        ring = self.path("later")
        f = filering.open(ring).follow(on_loss=self.losses.append)
        self.addCleanup(f.close)
        self.assertIsNone(f.read(0))
        p = Producer(ring, segments_max=2)
        for i in range(300):
            p.append(b"%03d" % i)
        got = drain(f, 5)
        first = got[0].seq
        self.assertGreater(first, 1)
        self.assertEqual(self.losses, [filering.Loss(1, first - 1)])
        self.assertEqual([r.seq for r in got], list(range(first, 301)))

    def test_DirectoryReplaced_startsOver(self):
        p = Producer(self.ring)
        for i in range(30):
            p.append(b"old %d" % i)
        f = self.follower()
        self.assertEqual(len(drain(f)), 30)
        self.assertFalse(f.restarted)
        p.close()
        shutil.rmtree(self.ring)
        p = Producer(self.ring)
        for i in range(3):
            p.append(b"new %d" % i)
        got = drain(f, 5)
        self.assertEqual([(r.seq, r.data) for r in got], [(1, b"new 0"), (2, b"new 1"), (3, b"new 2")])
        self.assertEqual(self.losses, [])
        p.append(b"new 3")
        rec = f.read(5)
        self.assertEqual(rec.seq, 4)
        self.assertFalse(f.restarted)

    def test_Restarted_flag(self):
        p = Producer(self.ring)
        p.append(b"a")
        f = self.follower()
        drain(f)
        p.close()
        shutil.rmtree(self.ring)
        p = Producer(self.ring)
        p.append(b"b")
        rec = f.read(5)
        self.assertEqual((rec.seq, rec.data), (1, b"b"))
        self.assertTrue(f.restarted)

    def test_SequenceWentBackwards_startsOver(self):
        p = Producer(self.ring, segments_max=4)
        for i in range(100):
            p.append(b"%d" % i)
        f = self.follower()
        self.assertEqual(len(drain(f)), 100)
        p.close()
        # Same directory, a new ring in it: its manifest and segments replaced.
        for name in os.listdir(self.ring):
            os.unlink(self.path(name))
        p = Producer(self.ring, first_number=1, generation=100)
        p.append(b"again")
        rec = f.read(5)
        self.assertEqual((rec.seq, rec.data), (1, b"again"))
        self.assertTrue(f.restarted)

    def test_ProducerRestart_continues(self):
        # A producer restarted on the same ring continues the sequence: no restart, no loss.
        p = Producer(self.ring, segments_max=6)
        for i in range(20):
            p.append(b"%d" % i)
        f = self.follower()
        drain(f)
        p.restart()
        for i in range(20, 25):
            p.append(b"%d" % i)
        got = drain(f, 5)
        self.assertEqual([r.seq for r in got], list(range(21, 26)))
        self.assertFalse(f.restarted)
        self.assertEqual(self.losses, [])

    def test_Damage(self):
        p = Producer(self.ring, segments_max=8)
        for i in range(300):
            p.append(b"%03d" % i)
        entries = list(p.entries)
        f = self.follower(from_seq=1, on_damage=self.damage.append)
        # Damage a record in the second segment before the follower gets there.
        seg = self.path(entries[1]["name"])
        patch_bytes(seg, 64 + 24 + 32 * 5, b"\xff")
        got = drain(f)
        self.assertEqual(len(self.damage), 1)
        self.assertEqual((self.damage[0].path, self.damage[0].offset, self.damage[0].kind), (seg, 64 + 32 * 5, "checksum"))
        bad_first = entries[1]["first_seq"] + 5
        bad_last = entries[1]["last_seq"]
        self.assertEqual([r.seq for r in got], [s for s in range(1, 301) if not bad_first <= s <= bad_last])
        self.assertEqual(self.losses, [filering.Loss(bad_first, bad_last)])

    def test_Damage_raisesAndGoesOn(self):
        p = Producer(self.ring, segments_max=8)
        for i in range(300):
            p.append(b"%03d" % i)
        entries = list(p.entries)
        patch_bytes(self.path(entries[1]["name"]), 0, b"X")
        f = self.follower(from_seq=1)
        got = []
        errors = []
        while True:
            try:
                rec = f.read(0)
            except filering.CorruptionError as e:
                errors.append(e)
                continue
            if rec is None:
                break
            got.append(rec.seq)
        self.assertEqual([(e.offset, e.kind) for e in errors], [(0, "header")])
        self.assertEqual(got, [s for s in range(1, 301) if not entries[1]["first_seq"] <= s <= entries[1]["last_seq"]])
        self.assertEqual(self.losses, [filering.Loss(entries[1]["first_seq"], entries[1]["last_seq"])])

    def test_Iterate_andClose(self):
        p = Producer(self.ring)
        for i in range(5):
            p.append(b"%d" % i)
        with filering.open(self.ring).follow() as f:
            seqs = []
            for rec in f:
                seqs.append(rec.seq)
                if rec.seq == 5:
                    break
        self.assertEqual(seqs, [1, 2, 3, 4, 5])
        self.assertEqual(list(f), [])
        with self.assertRaises(ValueError):
            f.read(0)


class TestAsyncFollow(RingTestCase):
    def run_async(self, coro):
        return asyncio.run(asyncio.wait_for(coro, 30))

    def test_Afollow(self):
        p = Producer(self.ring, segments_max=4)
        for i in range(10):
            p.append(b"%d" % i)
        losses = []

        async def main():
            loop = asyncio.get_running_loop()
            got = []
            async with filering.open(self.ring).afollow(last=3, on_loss=losses.append) as f:
                self.assertFalse(f.polling)
                for i in range(10, 200):
                    loop.call_later(0.2 + i * 0.001, p.append, b"%d" % i)
                async for rec in f:
                    got.append(rec.seq)
                    if rec.seq == 200:
                        break
                t = loop.time()
                self.assertIsNone(await f.read(0.3))
                self.assertGreater(loop.time() - t, 0.25)
            return got

        self.assertEqual(self.run_async(main()), list(range(8, 201)))
        self.assertEqual(losses, [])

    def test_Afollow_wakesFast_andOthersRun(self):
        p = Producer(self.ring)
        p.append(b"a")

        async def main():
            loop = asyncio.get_running_loop()
            ticks = []

            async def ticker():
                while True:
                    ticks.append(loop.time())
                    await asyncio.sleep(0.01)

            task = asyncio.ensure_future(ticker())
            f = filering.open(self.ring).afollow(last=0)
            self.assertFalse(f.polling)
            try:
                loop.call_later(0.3, p.append, b"late")
                t = loop.time()
                rec = await f.read(5)
                waited = loop.time() - t
            finally:
                f.close()
                task.cancel()
            return rec, waited, len(ticks)

        with mock.patch.object(_inotify, "POLL", 30.0):  # only an event can wake it in time
            rec, waited, ticks = self.run_async(main())
        self.assertEqual(rec.data, b"late")
        self.assertLess(waited, 10)
        self.assertGreater(ticks, 10)  # the loop ran other tasks while the follower waited

    def test_Afollow_polling(self):
        with mock.patch.object(_inotify, "disabled", True):
            p = Producer(self.ring)
            p.append(b"a")

            async def main():
                loop = asyncio.get_running_loop()
                f = filering.open(self.ring).afollow(last=0)
                try:
                    self.assertTrue(f.polling)
                    loop.call_later(0.2, p.append, b"late")
                    return await f.read(5)
                finally:
                    f.close()

            self.assertEqual(self.run_async(main()).data, b"late")


if __name__ == "__main__":
    unittest.main()
