"""Snapshots: Ring.records and Ring.last, against rings written from docs/FORMAT.md.

The rings are built by the writer in helpers.py, byte for byte from the format, so these
tests need no Go producer. Damage of every kind is checked against a plain reference
reader (reference_scan), including random damage to long runs of records, which the
package frames and checksums in bulk.
"""

import json
import os
import random
import shutil
import struct
import tempfile
import unittest
import zlib
from unittest import mock

import filering
from filering import _ring, _segment

from helpers import (
    T0,
    RingTestCase,
    align8,
    check_installed,
    expected,
    manifest_doc,
    patch_bytes,
    seg_name,
    segment_bytes,
    sensor_payloads,
    tmp_base,
    write_file,
    write_manifest,
    write_ring,
)


def setUpModule():
    check_installed()


def records(ring, **kw):
    return [tuple(r) for r in filering.open(ring).records(**kw)]


class TestRecords(RingTestCase):
    def test_RoundTrip(self):
        payloads = [b"", b"x", b"hello world", bytes(range(256)), b"\0" * 7, b"8 bytes!", b"a" * 4008] + sensor_payloads(300)
        entries = write_ring(self.ring, payloads)
        self.assertGreater(len(entries), 3)
        self.assertEqual(records(self.ring), expected(payloads))

    def test_RecordType(self):
        write_ring(self.ring, [b"21.5", b"\xff"], times=[1500000000123456789, -1])
        a, b = filering.open(self.ring).records()
        self.assertIsInstance(a, filering.Record)
        self.assertEqual((a.seq, a.time_ns, a.data, a.text), (1, 1500000000123456789, b"21.5", "21.5"))
        seq, t, data = a
        self.assertEqual((seq, t, data), (1, 1500000000123456789, b"21.5"))
        self.assertEqual(a.time.isoformat(), "2017-07-14T02:40:00.123456+00:00")
        self.assertEqual(b.time.isoformat(), "1969-12-31T23:59:59.999999+00:00")
        with self.assertRaises(UnicodeDecodeError):
            b.text
        self.assertEqual(repr(a), "Record(seq=1, time_ns=1500000000123456789, data=b'21.5')")
        import pickle

        self.assertEqual(pickle.loads(pickle.dumps(a)), a)
        self.assertIsInstance(pickle.loads(pickle.dumps(a)), filering.Record)
        self.assertEqual(filering.Record(seq=3, time_ns=4, data=b"x"), (3, 4, b"x"))

    def test_RoundTrip_mixedStrides(self):
        # Runs of equal strides interrupted by other sizes exercise the bulk framing path.
        payloads = [b"v" * (1 if (i // 37) % 3 else 9 + i % 5) for i in range(3000)]
        write_ring(self.ring, payloads, segment_size=65536)
        self.assertEqual(records(self.ring), expected(payloads))

    def test_RoundTrip_bigEndianPath(self):
        payloads = sensor_payloads(500) + [b"x" * n for n in range(100)]
        write_ring(self.ring, payloads)
        with mock.patch.object(_segment, "_LITTLE", False):
            self.assertEqual(records(self.ring), expected(payloads))
            self.assertEqual(records(self.ring, last=3), expected(payloads)[-3:])

    def test_RoundTrip_smallWindows(self):
        # Windows smaller than a segment: records run across window boundaries, and
        # records larger than a window are checked in pieces and read whole.
        payloads = [b"%d" % i for i in range(400)] + [os.urandom(5000), b"tail", os.urandom(3000)] + sensor_payloads(300)
        write_ring(self.ring, payloads, segment_size=16384)
        want = expected(payloads)
        for window, slack in ((4096, 512), (1024, 64), (512, 8)):
            with self.subTest(window=window):
                with mock.patch.object(_segment, "WINDOW", window), mock.patch.object(_segment, "SLACK", slack), mock.patch.object(_segment, "_CHUNK", 777):
                    self.assertEqual(records(self.ring), want)
                    self.assertEqual(records(self.ring, last=301), want[-301:])
                    self.assertEqual(records(self.ring, last=303), want[-303:])
                    self.assertEqual(records(self.ring, from_seq=401), want[400:])

    def test_BigRecord_damaged(self):
        payloads = [b"a", os.urandom(6000), b"b"]
        entries = write_ring(self.ring, payloads, segment_size=16384, hot=False)
        seg = self.path(entries[0]["name"])
        off = entries[0]["offsets"][1]
        patch_bytes(seg, off + 3000, b"\x00\x01")
        with mock.patch.object(_segment, "WINDOW", 4096), mock.patch.object(_segment, "_CHUNK", 1000):
            errors = []
            got = records(self.ring, on_damage=errors.append)
        self.assertEqual(got, expected(payloads)[:1])
        self.assertEqual([(e.offset, e.kind) for e in errors], [(off, "checksum")])

    def test_RoundTrip_allSealed(self):
        payloads = sensor_payloads(400)
        write_ring(self.ring, payloads, hot=False)
        self.assertEqual(records(self.ring), expected(payloads))

    def test_RecordFillsSegment(self):
        payloads = [b"z" * (4096 - 64 - 24), b"next"]
        write_ring(self.ring, payloads)
        self.assertEqual(records(self.ring), expected(payloads))

    def test_EmptyRing(self):
        write_manifest(self.ring, manifest_doc([]))
        self.assertEqual(records(self.ring), [])
        self.assertEqual(records(self.ring, last=5), [])
        self.assertEqual(filering.open(self.ring).next_seq(), 1)

    def test_EmptyHotSegment(self):
        payloads = sensor_payloads(300)
        entries = write_ring(self.ring, payloads, hot=False)
        n = len(entries) + 1
        data, _ = segment_bytes(n, 301, [], sealed=False)
        write_file(self.path(seg_name(n)), data)
        docs = [{k: v for k, v in e.items() if k != "offsets"} for e in entries]
        docs.append({"name": seg_name(n), "first_seq": 301, "last_seq": 0, "sealed": False})
        write_manifest(self.ring, manifest_doc(docs))
        self.assertEqual(records(self.ring, last=10), expected(payloads)[-10:])
        self.assertEqual(records(self.ring), expected(payloads))
        self.assertEqual(filering.open(self.ring).next_seq(), 301)

    def test_Selection(self):
        payloads = sensor_payloads(1000)
        entries = write_ring(self.ring, payloads)
        self.assertGreater(len(entries), 5)
        want = expected(payloads)
        cases = [
            ("all", {}, want),
            ("last 1", {"last": 1}, want[-1:]),
            ("last 0", {"last": 0}, []),
            ("last 250 spans segments", {"last": 250}, want[-250:]),
            ("last more than all", {"last": 5000}, want),
            ("from 1", {"from_seq": 1}, want),
            ("from 0", {"from_seq": 0}, want),
            ("from middle", {"from_seq": 437}, want[436:]),
            ("from last", {"from_seq": 1000}, want[-1:]),
            ("from past the end", {"from_seq": 1001}, []),
            ("from and last", {"last": 10, "from_seq": 500}, want[-10:]),
            ("from and last, few", {"last": 10, "from_seq": 995}, want[-6:]),
            ("since", {"since": T0 + 900}, want[899:]),
            ("since and last", {"since": T0 + 900, "last": 5}, want[-5:]),
            ("since and last, few", {"since": T0 + 998, "last": 5}, want[-3:]),
            ("since, from and last", {"since": T0 + 900, "from_seq": 990, "last": 50}, want[989:]),
            ("since in the future", {"since": T0 + 5000}, []),
        ]
        for name, kw, expect in cases:
            with self.subTest(name):
                self.assertEqual(records(self.ring, **kw), expect)
        self.assertEqual([tuple(r) for r in filering.open(self.ring).last(3)], want[-3:])
        self.assertEqual(filering.open(self.ring).next_seq(), 1001)

    def test_Since_kinds(self):
        import datetime
        import time

        now = time.time_ns()
        payloads = [b"old", b"older", b"new", b"newer"]
        write_ring(self.ring, payloads, times=[now - 3600 * 10**9, now - 7200 * 10**9, now - 10**9, now])
        ring = filering.open(self.ring)
        self.assertEqual([r.data for r in ring.records(since=datetime.timedelta(minutes=5))], [b"new", b"newer"])
        when = datetime.datetime.fromtimestamp((now - 5400 * 10**9) / 1e9, datetime.timezone.utc)
        self.assertEqual([r.data for r in ring.records(since=when)], [b"old", b"new", b"newer"])
        self.assertEqual([r.data for r in ring.records(since=when.astimezone().replace(tzinfo=None))], [b"old", b"new", b"newer"])
        with self.assertRaises(TypeError):
            ring.records(since=1.5)
        with self.assertRaises(ValueError):
            ring.records(since=datetime.timedelta(seconds=-1))

    def test_Selection_opensOnlyNeeded(self):
        payloads = sensor_payloads(1000)
        entries = write_ring(self.ring, payloads)
        opened = []
        real = _ring.open_segment

        def spy(dfd, path, entry, size):
            opened.append(entry.name)
            return real(dfd, path, entry, size)

        with mock.patch.object(_ring, "open_segment", spy):
            records(self.ring, last=2)
        self.assertEqual(sorted(opened), [entries[-2]["name"], entries[-1]["name"]])
        del opened[:]
        with mock.patch.object(_ring, "open_segment", spy):
            records(self.ring, from_seq=entries[-1]["first_seq"])
        self.assertEqual(opened, [entries[-1]["name"]])

    def test_BadArguments(self):
        write_ring(self.ring, [b"a"])
        for kw in ({"last": -1}, {"from_seq": -2}, {"last": 1.5}, {"last": "3"}):
            with self.subTest(kw):
                with self.assertRaises(ValueError):
                    records(self.ring, **kw)


class TestCorruption(RingTestCase):
    def setUp(self):
        RingTestCase.setUp(self)
        self.payloads = sensor_payloads(50)
        self.entries = write_ring(self.ring, self.payloads, hot=False, segment_size=4096)
        self.assertEqual(len(self.entries), 1)
        self.seg = self.path(self.entries[0]["name"])
        self.offsets = self.entries[0]["offsets"]

    def set_committed(self, value):
        patch_bytes(self.seg, 56, struct.pack("<Q", value))

    def set_sealed(self, value):
        patch_bytes(self.seg, 48, struct.pack("<Q", value))

    def make_hot(self, committed):
        self.set_sealed(0)
        self.set_committed(committed)
        write_manifest(self.ring, manifest_doc([{"name": self.entries[0]["name"], "first_seq": 1, "last_seq": 0, "sealed": False}]))

    def make_sealed(self):
        self.set_sealed(1)
        self.set_committed(self.offsets[-1] + 32)
        write_manifest(self.ring, manifest_doc([{k: v for k, v in self.entries[0].items() if k != "offsets"}]))

    def assertCorrupt(self, offset, fragment="", kind=None, **kw):
        with self.assertRaises(filering.CorruptionError) as cm:
            records(self.ring, **kw)
        e = cm.exception
        self.assertIsInstance(e, filering.Error)
        self.assertEqual(e.path, self.seg)
        self.assertEqual(e.offset, offset)
        self.assertIn(self.seg, str(e))
        self.assertIn("offset %d" % offset, str(e))
        self.assertIn(fragment, str(e))
        if kind is not None:
            self.assertEqual(e.kind, kind)
        return e

    def test_FlippedPayloadBit(self):
        off = self.offsets[20]
        with open(self.seg, "rb") as f:
            f.seek(off + 24)
            b = f.read(1)
        patch_bytes(self.seg, off + 24, bytes([b[0] ^ 0x10]))
        self.assertCorrupt(off, "checksum", "checksum")
        # A record that is not returned is still checked.
        self.assertCorrupt(off, "checksum", last=1)
        self.assertCorrupt(off, "checksum", from_seq=40)

    def test_FlippedBit_everyByteOfARecord(self):
        off = self.offsets[10]
        end = self.offsets[11]
        with open(self.seg, "rb") as f:
            original = f.read()
        for pos in range(off, end):
            if pos - off >= 24 + len(self.payloads[10]):
                continue  # padding is not covered by any check
            with self.subTest(pos=pos):
                patch_bytes(self.seg, pos, bytes([original[pos] ^ 0x01]))
                try:
                    self.assertCorrupt(off)
                finally:
                    patch_bytes(self.seg, pos, original[pos : pos + 1])

    def test_BulkChecksum_everyRecord(self):
        # A long run of equal records is checksummed in bulk: damage to any one record,
        # anywhere in it, is found, at its offset.
        payloads = [b"%06d" % i for i in range(2000)]
        entries = write_ring(self.ring, payloads, segment_size=65536, hot=False)
        e = entries[0]
        seg = self.path(e["name"])
        with open(seg, "rb") as f:
            original = f.read()
        rnd = random.Random(7)
        for i in sorted(rnd.sample(range(len(e["offsets"])), 40)) + [0, len(e["offsets"]) - 1]:
            off = e["offsets"][i]
            pos = off + rnd.choice([4, 5, 6, 7] + list(range(16, 30)))
            with self.subTest(record=i, pos=pos):
                patch_bytes(seg, pos, bytes([original[pos] ^ (1 << rnd.randrange(8))]))
                try:
                    errors = []
                    got = records(self.ring, on_damage=errors.append)
                    self.assertEqual([(x.offset, x.kind) for x in errors], [(off, "checksum")])
                    self.assertEqual(len(got), i + sum(len(x["offsets"]) for x in entries[1:]))
                finally:
                    patch_bytes(seg, pos, original[pos : pos + 1])

    def test_NonZeroPadding_ignored(self):
        # Padding is covered by no rule: a reader must not mind what is in it.
        payloads = [b"12345" for _ in range(500)]
        entries = write_ring(self.ring, payloads, segment_size=65536, hot=False)
        e = entries[0]
        for off in e["offsets"][::7]:
            patch_bytes(self.path(e["name"]), off + 24 + 5, b"\xff\xee\xdd")
        self.assertEqual(records(self.ring), expected(payloads))

    def test_TornLastRecord_notCommitted(self):
        last = self.offsets[-1]
        self.make_hot(last)
        patch_bytes(self.seg, last + 4, b"\xde\xad\xbe\xef")
        want = expected(self.payloads)[:-1]
        self.assertEqual(records(self.ring), want)
        self.assertEqual(records(self.ring, last=3), want[-3:])
        self.assertEqual(records(self.ring, last=1), want[-1:])
        self.assertEqual(records(self.ring, from_seq=50), [])

    def test_TornLastRecord_belowCommitted(self):
        last = self.offsets[-1]
        patch_bytes(self.seg, last + 4, b"\xde\xad\xbe\xef")
        self.assertCorrupt(last, "checksum")
        self.assertCorrupt(last, "checksum", last=1)

    def test_ZeroCommitWord_stops(self):
        self.make_hot(self.offsets[30])
        patch_bytes(self.seg, self.offsets[30], b"\0" * 8)
        self.assertEqual(records(self.ring), expected(self.payloads)[:30])

    def test_ZeroCommitWord_belowCommittedIsCorrupt(self):
        patch_bytes(self.seg, self.offsets[30], b"\0" * 8)
        self.assertCorrupt(self.offsets[30], "missing", "missing")

    def test_HotSealedMeanwhile(self):
        # A hot segment whose last record is not committed yet is read to the end of
        # what is committed; when it is sealed while being read, read again with the
        # final committed word (docs/FORMAT.md, "Reading", step 4).
        self.make_hot(self.offsets[40])
        real = _segment.Segment.words
        calls = []

        def words(seg):
            calls.append(1)
            if len(calls) == 2:
                self.set_sealed(1)
                self.set_committed(self.offsets[-1] + 32)
            return real(seg)

        with mock.patch.object(_segment.Segment, "words", words):
            self.assertEqual(records(self.ring), expected(self.payloads))

    def test_RecordLength(self):
        cases = [
            ("larger than the segment", 0xFFFFFFFF, "bad record size: 4294967295"),
            ("one past the end", 4096 - 64 + 1, "bad record size: 4033"),
            ("below 24", 23, "bad record size: 23"),
            ("tiny", 1, "bad record size: 1"),
        ]
        off = self.offsets[5]
        with open(self.seg, "rb") as f:
            f.seek(off + 4)
            crc = f.read(4)
        for name, size, fragment in cases:
            with self.subTest(name):
                patch_bytes(self.seg, off, struct.pack("<I", size) + crc)
                self.assertCorrupt(off, fragment, "record-size")
                self.assertCorrupt(off, fragment, last=1)
                self.make_hot(off)
                self.assertEqual(records(self.ring), expected(self.payloads)[:5])
                self.set_sealed(1)
                write_manifest(self.ring, manifest_doc([{k: v for k, v in self.entries[0].items() if k != "offsets"}]))
                self.assertCorrupt(off, "below the manifest's last_seq 50", "last-seq")
                self.make_sealed()

    def test_WrongSequence(self):
        off = self.offsets[7]
        body = struct.pack("<Qq", 9, T0 + 8) + self.payloads[7]
        patch_bytes(self.seg, off, struct.pack("<II", 24 + len(self.payloads[7]), zlib.crc32(body)) + body)
        self.assertCorrupt(off, "record sequence out of order: sequence 9, want 8", "sequence")

    def test_Header(self):
        cases = [
            ("magic", 0, b"FILERSEX", 0, "magic"),
            ("version", 8, struct.pack("<I", 2), 8, "version 2"),
            ("header CRC", 12, b"\0\0\0\0", 12, "header CRC"),
            ("created covered by CRC", 40, b"\x01", 12, "header CRC"),
            ("sealed word", 48, struct.pack("<Q", 2), 48, "sealed word 0x2"),
            ("committed word too small", 56, struct.pack("<Q", 8), 56, "committed"),
            ("committed word too large", 56, struct.pack("<Q", 4096 + 8), 56, "committed"),
            ("committed word unaligned", 56, struct.pack("<Q", 65), 56, "committed"),
        ]
        with open(self.seg, "rb") as f:
            original = f.read()
        for name, at, data, offset, fragment in cases:
            with self.subTest(name):
                patch_bytes(self.seg, at, data)
                try:
                    self.assertCorrupt(offset, fragment)
                finally:
                    patch_bytes(self.seg, 0, original)

    def rewrite_header(self, size=4096, number=1, first_seq=1):
        fixed = struct.pack("<QQQq", size, number, first_seq, T0)
        patch_bytes(self.seg, 12, struct.pack("<I", zlib.crc32(fixed)) + fixed)

    def test_Header_fieldsAgainstManifest(self):
        for name, kw, offset, fragment in [
            ("segment size", {"size": 8192}, 16, "segment size 8192"),
            ("segment number", {"number": 2}, 24, "segment 2"),
            ("first sequence", {"first_seq": 2}, 32, "first sequence 2"),
            ("segment size invalid", {"size": 5000}, 16, "segment size 5000"),
            ("segment number 0", {"number": 0}, 24, "segment number 0"),
            ("first sequence 0", {"first_seq": 0}, 32, "first sequence 0"),
        ]:
            with self.subTest(name):
                self.rewrite_header(**kw)
                try:
                    self.assertCorrupt(offset, fragment, "header")
                finally:
                    self.rewrite_header()

    def test_FileSize(self):
        with open(self.seg, "rb") as f:
            original = f.read()
        for name, data in [("short", original[:4000]), ("long", original + b"\0" * 4096), ("empty", b"")]:
            with self.subTest(name):
                with open(self.seg, "wb") as f:
                    f.write(data)
                with self.assertRaises(filering.CorruptionError) as cm:
                    records(self.ring)
                e = cm.exception
                self.assertEqual((e.path, e.offset, e.kind), (self.seg, None, "size"))
                self.assertEqual(str(e), "%s: segment: wrong file size: file is %d bytes, ring segments are 4096" % (self.seg, len(data)))

    def test_TruncatedWhileRead(self):
        # A file truncated under a reader is damage, never a crash (no mapping: no SIGBUS).
        real = _segment.Segment.words
        seg = self.seg

        def words(s):
            got = real(s)
            with open(seg, "r+b") as f:
                f.truncate(1000)
            return got

        with mock.patch.object(_segment.Segment, "words", words):
            with self.assertRaises(filering.CorruptionError) as cm:
                records(self.ring)
        self.assertEqual(cm.exception.kind, "size")


def reference_scan(buf, first_seq, from_seq=None, last=None, last_seq=None):
    """reference_scan is docs/FORMAT.md steps 3-5 written as plainly as possible.

    It returns the selected records, or the offset of the damage. last_seq is the
    manifest's last_seq of a segment it lists sealed.
    """
    if last == 0:
        return []
    size = len(buf)
    committed = struct.unpack_from("<Q", buf, 56)[0]
    allowed = None if last_seq is None else last_seq - first_seq + 1
    recs = []
    err = None
    off = 64
    while off + 8 <= size:
        word = struct.unpack_from("<Q", buf, off)[0]
        if word == 0:
            if off < committed:
                err = off
            break
        n, crc = word & 0xFFFFFFFF, word >> 32
        ok = n >= 24 and off + align8(n) <= size
        if ok:
            seq, t = struct.unpack_from("<Qq", buf, off + 8)
            ok = seq == first_seq + len(recs) and zlib.crc32(bytes(buf[off + 8 : off + n])) == crc
        if ok and allowed is not None and len(recs) == allowed:
            err = off
            break
        if not ok:
            if off < committed:
                err = off
            break
        recs.append((seq, t, bytes(buf[off + 24 : off + n])))
        off += align8(n)
    if err is None and allowed is not None and len(recs) < allowed:
        err = off
    if err is not None:
        return err
    sel = [r for r in recs if from_seq is None or r[0] >= from_seq]
    if last is not None:
        sel = sel[len(sel) - min(last, len(sel)) :]
    return sel


class TestAgainstReference(RingTestCase):
    """Random damage to segments full of long runs of equal-stride records, which the
    reader frames and checksums in bulk: it must agree with reference_scan exactly."""

    SIZE = 32768

    def payloads(self, rnd, count):
        out = []
        while len(out) < count:
            kind = rnd.random()
            run = rnd.randrange(1, 200)
            if kind < 0.5:
                width = rnd.randrange(0, 24)
                out.extend(b"p" * width for _ in range(run))
            elif kind < 0.8:
                base = rnd.randrange(0, 30) * 8 + 1  # sizes that vary inside one stride
                out.extend(b"q" * (base + rnd.randrange(0, 7)) for _ in range(run))
            else:
                out.extend(os.urandom(rnd.randrange(0, 60)) for _ in range(min(run, 20)))
        return out[:count]

    def build(self, rnd, first_seq):
        payloads = self.payloads(rnd, 2000)
        used = []
        end = 64
        for p in payloads:
            if end + align8(24 + len(p)) > self.SIZE:
                break
            used.append(p)
            end += align8(24 + len(p))
        times = [rnd.randrange(-(1 << 63), 1 << 63) for _ in used]
        buf, offsets = segment_bytes(1, first_seq, used, self.SIZE, sealed=rnd.random() < 0.5, times=times)
        return bytearray(buf), offsets

    def mutate(self, rnd, buf, offsets):
        end = offsets[-1] + 32 if offsets else 64
        for _ in range(rnd.choice((0, 1, 1, 2, 3))):
            what = rnd.random()
            if what < 0.4 and offsets:
                pos = rnd.randrange(64, min(self.SIZE, end + 64))
                buf[pos] ^= 1 << rnd.randrange(8)
            elif what < 0.55 and offsets:
                off = rnd.choice(offsets)
                buf[off : off + 8] = b"\0" * 8
            elif what < 0.7 and offsets:
                off = rnd.choice(offsets)
                n = struct.unpack_from("<I", buf, off)[0]
                struct.pack_into("<I", buf, off, max(0, n + rnd.choice((-9, -8, -1, 1, 7, 8, 100, 1 << 20))))
            elif what < 0.8 and offsets:
                off = rnd.choice(offsets)
                n = struct.unpack_from("<I", buf, off)[0]
                seq = struct.unpack_from("<Q", buf, off + 8)[0] + rnd.choice((-1, 1, 1 << 16, 1 << 32))
                struct.pack_into("<Q", buf, off + 8, seq % (1 << 64))
                if 24 <= n and off + n <= self.SIZE:
                    struct.pack_into("<I", buf, off + 4, zlib.crc32(bytes(buf[off + 8 : off + n])))
            else:
                committed = rnd.choice([64] + offsets + [end, self.SIZE])
                struct.pack_into("<Q", buf, 56, committed)

    def test_RandomDamage(self):
        rnd = random.Random(20240229)
        firsts = [1, 65536 - 300, (1 << 32) - 200, (1 << 48) - 100, (1 << 63) - 5000]
        for trial in range(300):
            first = rnd.choice(firsts)
            buf, offsets = self.build(rnd, first)
            self.mutate(rnd, buf, offsets)
            write_file(self.path(seg_name(1)), bytes(buf))
            sealed = struct.unpack_from("<Q", buf, 48)[0] == 1
            last_seq = first + len(offsets) - 1
            write_manifest(self.ring, manifest_doc([{"name": seg_name(1), "first_seq": first, "last_seq": last_seq if sealed else 0, "sealed": sealed}], self.SIZE))
            total = len(offsets)
            last = rnd.choice((None, None, 0, 1, 5, total // 2, total + 3))
            from_seq = rnd.choice((None, None, first, first + total // 3, first + total - 1))
            little = rnd.random() < 0.8
            window = rnd.choice((_segment.WINDOW, _segment.WINDOW, 4096, 1000 * 8))
            with self.subTest(trial=trial, last=last, from_seq=from_seq, little=little, window=window):
                want = reference_scan(buf, first, from_seq, last, last_seq if sealed else None)
                try:
                    with mock.patch.object(_segment, "_LITTLE", little), mock.patch.object(_segment, "WINDOW", window):
                        got = records(self.ring, last=last, from_seq=from_seq)
                except filering.CorruptionError as e:
                    got = e.offset
                self.assertEqual(got, want)

    def test_LongRuns_acrossSequenceBoundaries(self):
        for first in (1, 65536 - 1000, (1 << 32) - 3000, (1 << 48) - 70000, (1 << 63) - 100000):
            with self.subTest(first=first):
                payloads = [b"%05d" % (i % 100000) for i in range(20000)]
                write_ring(self.ring, payloads, segment_size=1 << 20, first_seq=first, times=list(range(20000)))
                got = records(self.ring)
                self.assertEqual(got, [(first + i, i, p) for i, p in enumerate(payloads)])
                self.assertEqual(records(self.ring, last=7), got[-7:])


class TestErrorScope(RingTestCase):
    """on_damage: damage is reported and skipped, as `filering cat` does."""

    def setUp(self):
        RingTestCase.setUp(self)
        self.payloads = sensor_payloads(600)
        self.entries = write_ring(self.ring, self.payloads, hot=True)
        self.assertGreater(len(self.entries), 4)
        self.want = expected(self.payloads)

    def without(self, entry, keep=0):
        lo = entry["first_seq"] + keep
        hi = entry["last_seq"]
        return [r for r in self.want if not lo <= r[0] <= hi]

    def test_RecordDamage_keepsWhatPrecedes(self):
        e = self.entries[1]
        off = e["offsets"][4]
        with open(self.path(e["name"]), "rb") as f:
            f.seek(off + 24)
            b = f.read(1)
        patch_bytes(self.path(e["name"]), off + 24, bytes([b[0] ^ 1]))
        errors = []
        self.assertEqual(records(self.ring, on_damage=errors.append), self.without(e, keep=4))
        self.assertEqual([(x.path, x.offset, x.kind) for x in errors], [(self.path(e["name"]), off, "checksum")])
        errors = []
        n = sum(1 for r in self.want if r[0] > e["last_seq"]) + 2
        self.assertEqual(records(self.ring, last=n, on_damage=errors.append), self.without(e, keep=4)[-n:])
        self.assertEqual(len(errors), 1)
        with self.assertRaises(filering.CorruptionError) as cm:
            records(self.ring)
        self.assertEqual((cm.exception.offset, cm.exception.kind), (off, "checksum"))

    def test_SegmentDamage_skipsTheSegment(self):
        bad = [self.entries[1], self.entries[3]]
        patch_bytes(self.path(bad[0]["name"]), 0, b"FILERSEX")
        os.unlink(self.path(bad[1]["name"]))
        os.mkfifo(self.path(bad[1]["name"]))
        errors = []
        got = records(self.ring, on_damage=errors.append)
        self.assertEqual(got, [r for r in self.without(bad[0]) if not bad[1]["first_seq"] <= r[0] <= bad[1]["last_seq"]])
        self.assertEqual(
            [(x.path, x.offset, x.kind) for x in errors],
            [(self.path(bad[0]["name"]), 0, "header"), (self.path(bad[1]["name"]), None, "not-regular")],
        )
        self.assertEqual(str(errors[0]), '%s: corrupt at offset 0: segment: bad magic: "FILERSEX"' % self.path(bad[0]["name"]))
        self.assertEqual(str(errors[1]), "%s: not a regular file (a FIFO)" % self.path(bad[1]["name"]))

    def test_ListedSealed_sealedWordZero(self):
        e = self.entries[0]
        patch_bytes(self.path(e["name"]), 48, b"\0" * 8)
        errors = []
        self.assertEqual(records(self.ring, on_damage=errors.append), self.without(e))
        self.assertEqual([(x.offset, x.kind) for x in errors], [(48, "sealed-word")])

    def test_LastSeq(self):
        e = self.entries[0]
        docs = [{k: v for k, v in x.items() if k != "offsets"} for x in self.entries]
        docs[0]["last_seq"] = e["last_seq"] - 3
        write_manifest(self.ring, manifest_doc(docs))
        errors = []
        got = records(self.ring, on_damage=errors.append)
        self.assertEqual(got, [r for r in self.want if not e["last_seq"] - 3 < r[0] <= e["last_seq"]])
        self.assertEqual([(x.offset, x.kind) for x in errors], [(e["offsets"][-3], "last-seq")])
        docs[0]["last_seq"] = e["last_seq"]
        docs[1]["last_seq"] += 5
        docs[2]["first_seq"] += 5
        write_manifest(self.ring, manifest_doc(docs))
        patch_bytes(self.path(self.entries[2]["name"]), 12, b"\0\0\0\0")
        errors = []
        records(self.ring, on_damage=errors.append)
        end = self.entries[1]["offsets"][-1] + align8(24 + len(self.payloads[self.entries[1]["last_seq"] - 1]))
        self.assertEqual([(x.offset, x.kind) for x in errors], [(end, "last-seq"), (12, "header")])


class TestFiles(RingTestCase):
    def test_NoRing(self):
        missing = self.path("nothing-here")
        with self.assertRaises(filering.NoRingError) as cm:
            records(missing)
        self.assertIn(missing, str(cm.exception))
        self.assertEqual(cm.exception.kind, "no-ring")
        with self.assertRaises(filering.NoRingError) as cm:
            records(self.ring)
        self.assertIn(self.ring, str(cm.exception))
        self.assertEqual(cm.exception.path, self.ring)

    def test_RingDirectorySymlink_refused(self):
        write_ring(self.ring, [b"a"])
        link = self.path("link")
        real = tempfile.mkdtemp(dir=self.ring)
        write_ring(real, [b"b"])
        os.symlink(real, link)
        with self.assertRaises(filering.Error) as cm:
            records(link)
        self.assertIn("symbolic link", str(cm.exception))

    def test_SegmentSymlink_refused(self):
        entries = write_ring(self.ring, sensor_payloads(200))
        name = entries[-1]["name"]
        os.rename(self.path(name), self.path("real.bin"))
        os.symlink("real.bin", self.path(name))
        with self.assertRaises(filering.CorruptionError) as cm:
            records(self.ring)
        self.assertIn("symbolic link", str(cm.exception))
        self.assertIn(name, str(cm.exception))
        self.assertEqual(cm.exception.kind, "not-regular")

    def test_ManifestSymlink_refused(self):
        write_ring(self.ring, [b"a"])
        os.rename(self.path("manifest"), self.path("m.json"))
        os.symlink("m.json", self.path("manifest"))
        with self.assertRaises(filering.ManifestError) as cm:
            records(self.ring)
        self.assertIn("symbolic link", str(cm.exception))
        self.assertEqual(cm.exception.kind, "not-regular")

    def test_NotRegularFiles_refused(self):
        entries = write_ring(self.ring, [b"a"])
        name = entries[-1]["name"]
        os.unlink(self.path(name))
        os.mkfifo(self.path(name))
        with self.assertRaises(filering.Error) as cm:
            records(self.ring)
        self.assertIn("not a regular file", str(cm.exception))
        os.unlink(self.path(name))
        os.mkdir(self.path(name))
        with self.assertRaises(filering.Error):
            records(self.ring)
        os.unlink(self.path("manifest"))
        os.mkfifo(self.path("manifest"))
        with self.assertRaises(filering.ManifestError) as cm:
            records(self.ring)
        self.assertIn("not a regular file", str(cm.exception))

    def test_MissingSegment_sameGeneration_skipped(self):
        payloads = sensor_payloads(600)
        entries = write_ring(self.ring, payloads)
        gone = entries[2]
        os.rename(self.path(gone["name"]), self.path(gone["name"][:-4] + ".taken"))
        want = [r for r in expected(payloads) if not gone["first_seq"] <= r[0] <= gone["last_seq"]]
        self.assertEqual(records(self.ring), want)
        n = len(want) - 10
        self.assertEqual(records(self.ring, last=n), want[-n:])

    def test_MissingSegment_generationChanged_startsOver(self):
        payloads = sensor_payloads(600)
        entries = write_ring(self.ring, payloads)
        os.unlink(self.path(entries[1]["name"]))
        real = _ring.read_manifest
        calls = []

        def read_manifest(dfd, path):
            calls.append(1)
            if len(calls) == 2:
                # The producer "rolls" while the reader is opening: retention dropped
                # the two oldest segments and wrote a new manifest.
                with open(self.path("manifest")) as f:
                    doc = json.load(f)
                doc["segments"] = doc["segments"][2:]
                doc["generation"] += 1
                write_manifest(self.ring, doc)
            return real(dfd, path)

        with mock.patch.object(_ring, "read_manifest", read_manifest):
            got = records(self.ring)
        self.assertEqual(len(calls), 3)
        self.assertEqual(got, expected(payloads)[entries[2]["first_seq"] - 1 :])

    def test_MissingSegment_generationKeepsChanging_givesUp(self):
        # Every second look shows a new manifest that no longer lists the missing
        # segment (retired: start over); after MAX_RETRIES starts over the reader keeps
        # what it opened, as the Go one does.
        payloads = sensor_payloads(600)
        entries = write_ring(self.ring, payloads)
        os.unlink(self.path(entries[0]["name"]))
        real = _ring.read_manifest
        gen = [1]

        def read_manifest(dfd, path):
            m = real(dfd, path)
            gen[0] += 1
            segs = m.segments if gen[0] % 2 == 0 else m.segments[1:]
            return filering.Manifest(m.segment_size, m.segments_max, gen[0], segs)

        with mock.patch.object(_ring, "read_manifest", read_manifest):
            got = records(self.ring)
        self.assertEqual(got, expected(payloads)[entries[1]["first_seq"] - 1 :])
        self.assertGreater(gen[0], 2 * _ring.MAX_RETRIES)

    def test_OpenFilesSurviveRemoval(self):
        payloads = sensor_payloads(600)
        entries = write_ring(self.ring, payloads)
        real = _ring._read_one
        removed = []

        def remove_then_read(*args):
            if not removed:
                for e in entries:
                    os.unlink(self.path(e["name"]))
                removed.append(1)
            return real(*args)

        with mock.patch.object(_ring, "_read_one", remove_then_read):
            self.assertEqual(records(self.ring), expected(payloads))

    def test_IgnoresOtherNames(self):
        payloads = sensor_payloads(100)
        write_ring(self.ring, payloads)
        for name in ("lock", ".tmp-manifest", "0000000000000099.seg", "0000000000000001.taken", "notes.txt"):
            with open(self.path(name), "wb") as f:
                f.write(b"garbage")
        self.assertEqual(records(self.ring), expected(payloads))


class TestRing(RingTestCase):
    def test_Id(self):
        write_ring(self.ring, [b"a"])
        ring = filering.open(self.ring)
        self.assertIsNone(ring.id)
        with open(self.path("id"), "wb") as f:
            f.write(b"0123456789abcdef0123456789abcdef\n")
        self.assertEqual(ring.id, "0123456789abcdef0123456789abcdef")
        for bad in (b"0123456789ABCDEF0123456789abcdef\n", b"0123456789abcdef0123456789abcdef", b"0123456789abcdef0123456789abcdef\n\n", b""):
            with self.subTest(bad=bad):
                with open(self.path("id"), "wb") as f:
                    f.write(bad)
                with self.assertRaises(filering.Error) as cm:
                    ring.id
                self.assertEqual(cm.exception.path, self.path("id"))

    def test_Stat(self):
        payloads = sensor_payloads(600)
        entries = write_ring(self.ring, payloads)
        st = filering.open(self.ring).stat()
        self.assertEqual((st.first_seq, st.last_seq, st.records, st.segments), (1, 600, 600, len(entries)))
        self.assertEqual((st.segment_size, st.segments_max, st.generation), (4096, 16, 1))
        self.assertEqual(st.hot_segment, entries[-1]["name"])
        self.assertIsNone(st.producer_pid)
        self.assertEqual(st.damage, [])
        self.assertIn("first_seq", st.as_dict())
        patch_bytes(self.path(entries[1]["name"]), 0, b"X")
        st = filering.open(self.ring).stat()
        self.assertEqual(st.records, 600 - (entries[1]["last_seq"] - entries[1]["first_seq"] + 1))
        self.assertEqual([(e.offset, e.kind) for e in st.damage], [(0, "header")])

    def test_ProducerPid(self):
        import fcntl

        write_ring(self.ring, [b"a"])
        ring = filering.open(self.ring)
        self.assertIsNone(ring.producer_pid())
        with open(self.path("lock"), "w") as f:
            f.write("4242\n")
        self.assertIsNone(ring.producer_pid())  # a stale pid: no lock held
        fd = os.open(self.path("lock"), os.O_RDWR)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)  # a classic POSIX lock, held by this process
            # F_OFD_GETLK sees a POSIX lock of another process only; run the query in a child.
            import subprocess
            import sys

            p = subprocess.run([sys.executable, "-c", "import filering, sys; print(filering.open(sys.argv[1]).producer_pid())", self.ring], stdout=subprocess.PIPE)
            self.assertEqual(p.stdout.strip(), b"4242")
        finally:
            os.close(fd)


def good_manifest():
    return manifest_doc(
        [
            {"name": "0000000000000007.seg", "first_seq": 6001, "last_seq": 7000, "sealed": True},
            {"name": "0000000000000008.seg", "first_seq": 7001, "last_seq": 0, "sealed": False},
        ],
        segment_size=1048576,
        generation=42,
    )


def edit(fn):
    doc = good_manifest()
    fn(doc)
    return doc


def seg0(**kw):
    return edit(lambda doc: doc["segments"][0].update(kw))


class TestManifest(unittest.TestCase):
    def test_Good(self):
        for text in (json.dumps(good_manifest()), json.dumps(good_manifest(), separators=(",", ":")) + "\n"):
            m = filering.parse_manifest(text.encode())
            self.assertEqual(m.segment_size, 1048576)
            self.assertEqual(m.segments_max, 16)
            self.assertEqual(m.generation, 42)
            self.assertEqual([e.name for e in m.segments], ["0000000000000007.seg", "0000000000000008.seg"])
            self.assertEqual(m.segments[0].number, 7)
            self.assertEqual(m.segments[1].sealed, False)
            self.assertEqual(m.hot(), m.segments[1])
            self.assertEqual(m.next_seq(), 7001)

    def test_Good_variants(self):
        cases = [
            ("no segments", edit(lambda d: d.update(segments=[]))),
            ("all sealed", edit(lambda d: d["segments"][1].update(sealed=True, last_seq=7001))),
            ("largest values", edit(lambda d: d.update(segment_size=1 << 30, segments_max=65536, generation=(1 << 63) - 1))),
            ("whitespace and key order", b' {"segments":[], "generation":0,\n"segments_max":2,"segment_size":4096,"version":1}\n'),
        ]
        for name, doc in cases:
            with self.subTest(name):
                for sep in ((", ", ": "), (",", ":")):
                    filering.parse_manifest(doc if isinstance(doc, bytes) else json.dumps(doc, separators=sep).encode())

    def test_CanonicalAndGeneralAgree(self):
        # The producer's own form is read without json; every variation of it goes the
        # general way. Both must accept and refuse the same documents.
        rnd = random.Random(3)
        base = json.dumps(good_manifest(), separators=(",", ":")) + "\n"
        from filering import _manifest

        for _ in range(3000):
            s = bytearray(base.encode())
            for _ in range(rnd.randrange(1, 3)):
                i = rnd.randrange(len(s))
                op = rnd.random()
                if op < 0.4:
                    s[i] = rnd.choice(b'0123456789-+.eE ,:{}[]"trufalsn\n')
                elif op < 0.7:
                    del s[i]
                else:
                    s.insert(i, rnd.choice(b'0123456789-+.eE ,:{}[]"\n'))
            data = bytes(s)
            try:
                general = _manifest._validate(_manifest._general(data, "m"), "m")
            except filering.ManifestError:
                general = None
            try:
                got = filering.parse_manifest(data, "m")
            except filering.ManifestError:
                got = None
            self.assertEqual(got, general, data)

    def test_GapAccepted(self):
        doc = {"version": 1, "segment_size": 4096, "segments_max": 4, "generation": 1, "segments": [
            {"name": "0000000000000003.seg", "first_seq": 1, "last_seq": 10, "sealed": True},
            {"name": "0000000000000005.seg", "first_seq": 179, "last_seq": 0, "sealed": False}]}
        m = filering.parse_manifest(json.dumps(doc).encode(), "/ring/manifest")
        self.assertEqual([e.first_seq for e in m.segments], [1, 179])

    def test_Hostile(self):
        big = edit(lambda d: d.update(segments=[{"name": "%016d.seg" % (i + 1), "first_seq": i + 1, "last_seq": i + 1, "sealed": True} for i in range(17)]))
        cases = [
            ("empty", b""),
            ("garbage", b"\x00\xff garbage"),
            ("not UTF-8", b'{"version":1,"x":"\xff"}'),
            ("BOM", b"\xef\xbb\xbf" + json.dumps(good_manifest()).encode()),
            ("array", b"[]"),
            ("null", b"null"),
            ("number", b"1"),
            ("truncated", json.dumps(good_manifest()).encode()[:-1]),
            ("trailing garbage", json.dumps(good_manifest()).encode() + b"x"),
            ("deep nesting", b"[" * 100000 + b"]" * 100000),
            ("too large", b" " * (1 << 20) + json.dumps(good_manifest()).encode()),
            ("NaN", json.dumps(good_manifest()).replace('"generation": 42', '"generation": NaN').encode()),
            ("Infinity", json.dumps(good_manifest()).replace('"generation": 42', '"generation": Infinity').encode()),
            ("duplicate key", json.dumps(good_manifest()).replace('"generation": 42', '"generation": 42, "generation": 43').encode()),
            ("huge digits", json.dumps(good_manifest()).replace('"generation": 42', '"generation": ' + "9" * 5000).encode()),
            ("unknown field", edit(lambda d: d.update(extra=1))),
            ("unknown entry field", seg0(extra=True)),
            ("missing field", edit(lambda d: d.pop("generation"))),
            ("missing entry field", edit(lambda d: d["segments"][0].pop("sealed"))),
            ("version 2", edit(lambda d: d.update(version=2))),
            ("version 0", edit(lambda d: d.update(version=0))),
            ("version string", edit(lambda d: d.update(version="1"))),
            ("version float", edit(lambda d: d.update(version=1.0))),
            ("version true", edit(lambda d: d.update(version=True))),
            ("segment_size small", edit(lambda d: d.update(segment_size=2048))),
            ("segment_size unaligned", edit(lambda d: d.update(segment_size=4097))),
            ("segment_size huge", edit(lambda d: d.update(segment_size=1 << 31))),
            ("segments_max 1", edit(lambda d: d.update(segments_max=1))),
            ("segments_max huge", edit(lambda d: d.update(segments_max=65537))),
            ("more than segments_max", big),
            ("generation negative", edit(lambda d: d.update(generation=-1))),
            ("generation -0", json.dumps(good_manifest()).replace('"generation": 42', '"generation": -0').encode()),
            ("generation 42.0", json.dumps(good_manifest()).replace('"generation": 42', '"generation": 42.0').encode()),
            ("generation 2^63", edit(lambda d: d.update(generation=1 << 63))),
            ("generation 2^64", edit(lambda d: d.update(generation=1 << 64))),
            ("generation float", edit(lambda d: d.update(generation=42.5))),
            ("generation exponent", json.dumps(good_manifest()).replace('"generation": 42', '"generation": 4e1').encode()),
            ("segments object", edit(lambda d: d.update(segments={}))),
            ("segments null", edit(lambda d: d.update(segments=None))),
            ("entry not an object", edit(lambda d: d["segments"].insert(0, "0000000000000006.seg"))),
            ("name ../x", seg0(name="../x")),
            ("name a/b", seg0(name="a/b")),
            ("name absolute", seg0(name="/run/ring/sensor/0000000000000007.seg")),
            ("name dot-dot segment", seg0(name="../0000000000000007.seg")),
            ("name 15 digits", seg0(name="000000000000007.seg")),
            ("name 17 digits", seg0(name="00000000000000007.seg")),
            ("name taken", seg0(name="0000000000000007.taken")),
            ("name trailing newline", seg0(name="0000000000000007.seg\n")),
            ("name unicode digits", seg0(name="\u0660" * 16 + ".seg")),
            ("name NUL", seg0(name="0000000000000007.seg\x00")),
            ("name number", seg0(name=7)),
            ("name zero", edit(lambda d: d["segments"].__delitem__(1) or d["segments"][0].update(name="0000000000000000.seg"))),
            ("unsorted names", seg0(name="0000000000000009.seg")),
            ("duplicate names", seg0(name="0000000000000008.seg")),
            ("first_seq 0", edit(lambda d: d["segments"].__delitem__(1) or d["segments"][0].update(first_seq=0, last_seq=0))),
            ("first_seq string", seg0(first_seq="6001")),
            ("first_seq not increasing", edit(lambda d: d["segments"][1].update(first_seq=6001))),
            ("overlap in sequence", edit(lambda d: d["segments"][1].update(first_seq=7000))),
            ("last_seq below first_seq", seg0(last_seq=6000)),
            ("hot last_seq not 0", edit(lambda d: d["segments"][1].update(last_seq=7005))),
            ("unsealed not last", seg0(sealed=False, last_seq=0)),
            ("sealed as int", seg0(sealed=1)),
            ("sealed null", seg0(sealed=None)),
        ]
        for name, doc in cases:
            for sep in ((", ", ": "), (",", ":")):
                with self.subTest(name, sep=sep):
                    data = doc if isinstance(doc, bytes) else json.dumps(doc, separators=sep).encode()
                    with self.assertRaises(filering.ManifestError) as cm:
                        filering.parse_manifest(data, "/ring/manifest")
                    msg = str(cm.exception)
                    self.assertTrue(msg.startswith("/ring/manifest: invalid manifest: "), msg)
                    self.assertLess(len(msg), 300, msg)
                    self.assertEqual((cm.exception.path, cm.exception.kind), ("/ring/manifest", "manifest"))

    def test_Hostile_throughRecords(self):
        ring = tempfile.mkdtemp(prefix="filering-test-", dir=tmp_base())
        self.addCleanup(shutil.rmtree, ring, True)
        write_manifest(ring, seg0(name="../x"))
        with self.assertRaises(filering.ManifestError):
            records(ring)


class TestFormat(unittest.TestCase):
    def test_FormatTime(self):
        cases = [
            (0, "1970-01-01T00:00:00.000000000Z"),
            (1, "1970-01-01T00:00:00.000000001Z"),
            (-1, "1969-12-31T23:59:59.999999999Z"),
            (999999999, "1970-01-01T00:00:00.999999999Z"),
            (1000000000, "1970-01-01T00:00:01.000000000Z"),
            (T0, "2023-11-14T22:13:20.123456789Z"),
            (951782400 * 10**9 + 5, "2000-02-29T00:00:00.000000005Z"),
            ((1 << 63) - 1, "2262-04-11T23:47:16.854775807Z"),
            (-(1 << 63), "1677-09-21T00:12:43.145224192Z"),
        ]
        for ns, want in cases:
            with self.subTest(ns):
                self.assertEqual(filering.format_time(ns), want)

    def test_FormatTime_againstDatetime(self):
        import datetime

        rnd = random.Random(5)
        epoch = datetime.datetime(1970, 1, 1)
        for _ in range(5000):
            ns = rnd.randrange(-(1 << 63), 1 << 63)
            secs, frac = divmod(ns, 10**9)
            t = epoch + datetime.timedelta(seconds=secs)
            self.assertEqual(filering.format_time(ns), t.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0") + ".%09dZ" % frac)

    def test_FormatJson(self):
        prefix = '{"seq":7,"time":"1970-01-01T00:00:01.000000002Z",'
        cases = [
            ("empty", b"", '"data":""'),
            ("plain", b"21.5", '"data":"21.5"'),
            ("quote and backslash", b'a"b\\c', r'"data":"a\"b\\c"'),
            ("two-character escapes", b"\n\r\t\b\f", r'"data":"\n\r\t\b\f"'),
            ("other controls", b"\x00\x01\x1b\x1f", r'"data":"\u0000\u0001\u001b\u001f"'),
            ("lowercase hex", b"\x0b\x0e\x1a", r'"data":"\u000b\u000e\u001a"'),
            ("DEL raw", b"\x7f", '"data":"\x7f"'),
            ("slash raw", b"a/b", '"data":"a/b"'),
            ("html raw", b"<a&b>", '"data":"<a&b>"'),
            ("non-ASCII raw", "é€😀".encode("utf-8"), '"data":"é€😀"'),
            ("U+2028 U+2029 raw", "\u2028\u2029".encode("utf-8"), '"data":"\u2028\u2029"'),
            ("invalid UTF-8", b"\xff", '"data_b64":"/w=="'),
            ("truncated sequence", b"ok\xe2\x82", '"data_b64":"b2vigg=="'),
            ("overlong", b"\xc0\xaf", '"data_b64":"wK8="'),
            ("surrogate", b"\xed\xa0\x80", '"data_b64":"7aCA"'),
            ("above U+10FFFF", b"\xf4\x90\x80\x80", '"data_b64":"9JCAgA=="'),
            ("binary", bytes(range(250, 256)), '"data_b64":"+vv8/f7/"'),
        ]
        for name, payload, want in cases:
            with self.subTest(name):
                got = filering.format_json((7, 1000000002, payload))
                self.assertEqual(got, prefix + want + "}\n")
                self.assertEqual(json.loads(got)["seq"], 7)
                self.assertEqual(filering.format_records([filering.Record(7, 1000000002, payload)], "json"), got.encode("utf-8"))

    def test_FormatJson_everyCharacter(self):
        def escape(s):
            out = []
            for c in s:
                if c == '"':
                    out.append('\\"')
                elif c == "\\":
                    out.append("\\\\")
                elif c in "\n\r\t\b\f":
                    out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}[c])
                elif ord(c) < 0x20:
                    out.append("\\u%04x" % ord(c))
                else:
                    out.append(c)
            return '"' + "".join(out) + '"'

        chars = [chr(i) for i in range(0x800)] + ["\u2028", "\u2029", "\ufeff", "\U0010ffff"]
        for c in chars:
            line = filering.format_json((1, 0, c.encode("utf-8")))
            self.assertEqual(line, '{"seq":1,"time":"1970-01-01T00:00:00.000000000Z","data":%s}\n' % escape(c), repr(c))

    def test_FormatRecords(self):
        recs = [filering.Record(1, 0, b"a"), filering.Record(2, 0, b"")]
        self.assertEqual(filering.format_records(recs, "lines"), b"a\n\n")
        self.assertEqual(filering.format_records(recs, "raw"), b"\x01\0\0\0a\0\0\0\0")
        with self.assertRaises(ValueError):
            filering.format_records(recs, "xml")


if __name__ == "__main__":
    unittest.main()


class TestReusedFiles(RingTestCase):
    """A producer reuses the files of removed segments (docs/FORMAT.md, "Reusing a segment file")."""

    def setUp(self):
        RingTestCase.setUp(self)
        self.payloads = sensor_payloads(600)
        self.entries = write_ring(self.ring, self.payloads, segment_size=4096)
        self.assertGreater(len(self.entries), 3)
        self.victim = self.entries[1]

    def without_victim(self):
        gone = set(range(self.victim["first_seq"], self.victim["last_seq"] + 1))
        return [r for r in expected(self.payloads) if r[0] not in gone]

    def test_LeasedSegment_missing(self):
        # The producer holds a write lease while it rewrites the file: every reader's
        # non-blocking open fails with EAGAIN, and the segment is missing, not damaged.
        import fcntl
        import signal

        fd = os.open(self.path(self.victim["name"]), os.O_RDWR)
        self.addCleanup(os.close, fd)
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        try:
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
        except OSError as e:
            self.skipTest("no write lease here: %s" % e)
        self.assertEqual(records(self.ring), self.without_victim())
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        self.assertEqual(records(self.ring), expected(self.payloads))

    def test_ReusedAfterLookup(self):
        # Between a reader's open and its check, the file became another segment (its
        # header now says so): missing when the name no longer names the file, damaged
        # when it still does.
        target = self.path(self.victim["name"])
        other = segment_bytes(99, 9001, [b"x"], 4096, False)[0]
        for move, replace, damaged in ((True, False, False), (True, True, False), (False, False, True)):
            with self.subTest(move=move, replace=replace):
                write_ring(self.ring, self.payloads, segment_size=4096)

                def hook(path, move=move, replace=replace):
                    if path != target:
                        return
                    with open(path, "r+b") as f:
                        f.write(other)
                    if move:
                        os.rename(path, self.path(".reused"))
                    if replace:
                        write_file(path, segment_bytes(2, 1, [b"y"], 4096, False)[0])

                with mock.patch.object(_segment, "_test_hook_opened", hook):
                    if damaged:
                        with self.assertRaises(filering.CorruptionError) as cm:
                            records(self.ring)
                        self.assertEqual(cm.exception.path, target)
                    else:
                        self.assertEqual(records(self.ring), self.without_victim())
