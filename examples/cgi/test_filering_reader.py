"""Tests for filering_reader.py (standard library only).

Run from the repository root:

    python3 -m unittest discover -s examples/cgi -p 'test_*.py'

The rings are built by a small test-only writer below, written from docs/FORMAT.md
alone, so these tests do not need the Go producer. Ring directories go to /dev/shm
when it exists (tmpfs, like /run/ring), else to the system temporary directory.
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest
import zlib
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import filering_reader as fr  # noqa: E402

READER = os.path.join(HERE, "filering_reader.py")
T0 = 1700000000123456789  # a record time, ns since the epoch


# ---------------------------------------------------------------------------------------
# A test-only writer, from docs/FORMAT.md


def align8(x):
    return (x + 7) & ~7


def record_bytes(seq, time_ns, payload):
    """record_bytes returns one record: commit word, sequence, time, payload, padding."""
    body = struct.pack("<Qq", seq, time_ns) + payload
    rec = struct.pack("<II", 24 + len(payload), zlib.crc32(body)) + body
    return rec + b"\0" * (align8(len(rec)) - len(rec))


def segment_bytes(number, first_seq, payloads, size=4096, sealed=True, committed=None, times=None, created=T0):
    """segment_bytes builds a whole segment file; it returns (bytes, record offsets)."""
    buf = bytearray(size)
    off = 64
    offsets = []
    for i, p in enumerate(payloads):
        t = T0 + first_seq + i if times is None else times[i]
        rec = record_bytes(first_seq + i, t, p)
        assert off + len(rec) <= size, "records do not fit"
        buf[off : off + len(rec)] = rec
        offsets.append(off)
        off += len(rec)
    fixed = struct.pack("<QQQq", size, number, first_seq, created)
    buf[0:16] = b"FILERSEG" + struct.pack("<II", 1, zlib.crc32(fixed))
    buf[16:48] = fixed
    buf[48:64] = struct.pack("<QQ", 1 if sealed else 0, off if committed is None else committed)
    return buf, offsets


def seg_name(number):
    return "%016d.seg" % number


def write_file(path, data):
    tmp = os.path.join(os.path.dirname(path), ".tmp-" + os.path.basename(path))
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def write_manifest(ring, doc):
    """write_manifest replaces ring/manifest (doc: a dict, str or bytes) atomically."""
    if isinstance(doc, dict):
        doc = json.dumps(doc)
    if isinstance(doc, str):
        doc = doc.encode("utf-8")
    write_file(os.path.join(ring, "manifest"), doc)


def manifest_doc(entries, segment_size=4096, segments_max=16, generation=1):
    return {
        "version": 1,
        "segment_size": segment_size,
        "segments_max": segments_max,
        "generation": generation,
        "segments": entries,
    }


def write_ring(ring, payloads, segment_size=4096, segments_max=16, hot=True, first_seq=1, first_number=1, generation=1, times=None):
    """write_ring lays out payloads in segments as a producer would and writes the ring.

    Every segment but the last is sealed; the last is hot when hot is true. Segments
    beyond segments_max (the oldest) are dropped, as retention would. It returns the
    manifest entries, each with an extra "offsets" list (popped before writing).
    """
    segs = []
    cur = None
    seq = first_seq
    number = first_number
    for i, p in enumerate(payloads):
        need = align8(24 + len(p))
        if cur is None or cur["end"] + need > segment_size:
            cur = {"number": number, "first_seq": seq, "payloads": [], "times": [], "end": 64}
            segs.append(cur)
            number += 1
        cur["payloads"].append(p)
        cur["times"].append(T0 + seq if times is None else times[i])
        cur["end"] += need
        seq += 1
    segs = segs[-segments_max:]
    entries = []
    for j, s in enumerate(segs):
        sealed = not (hot and j == len(segs) - 1)
        data, offsets = segment_bytes(s["number"], s["first_seq"], s["payloads"], segment_size, sealed, times=s["times"])
        write_file(os.path.join(ring, seg_name(s["number"])), data)
        last = s["first_seq"] + len(s["payloads"]) - 1
        entries.append(
            {"name": seg_name(s["number"]), "first_seq": s["first_seq"], "last_seq": last if sealed else 0, "sealed": sealed, "offsets": offsets}
        )
    write_manifest(ring, manifest_doc([{k: v for k, v in e.items() if k != "offsets"} for e in entries], segment_size, segments_max, generation))
    return entries


def patch_bytes(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def tmp_base():
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


class RingTestCase(unittest.TestCase):
    def setUp(self):
        self.ring = tempfile.mkdtemp(prefix="filering-test-", dir=tmp_base())
        self.addCleanup(shutil.rmtree, self.ring, True)

    def path(self, name):
        return os.path.join(self.ring, name)

    def expected(self, payloads, first_seq=1):
        return [(first_seq + i, T0 + first_seq + i, p) for i, p in enumerate(payloads)]


def sensor_payloads(n, start=0):
    return [b"%.3f" % (20 + ((i * 7919) % 1000) / 100.0) for i in range(start, start + n)]


# ---------------------------------------------------------------------------------------
# Reading


class TestReadRecords(RingTestCase):
    def test_RoundTrip(self):
        payloads = [b"", b"x", b"hello world", bytes(range(256)), b"\0" * 7, b"8 bytes!", b"a" * 4008] + sensor_payloads(300)
        entries = write_ring(self.ring, payloads)
        self.assertGreater(len(entries), 3)
        self.assertEqual(fr.read_records(self.ring), self.expected(payloads))

    def test_RoundTrip_mixedStrides(self):
        # Runs of equal strides interrupted by other sizes exercise the bulk framing path.
        payloads = []
        for i in range(3000):
            payloads.append(b"v" * (1 if (i // 37) % 3 else 9 + i % 5))
        write_ring(self.ring, payloads, segment_size=65536)
        self.assertEqual(fr.read_records(self.ring), self.expected(payloads))

    def test_RoundTrip_bigEndianPath(self):
        payloads = sensor_payloads(500)
        write_ring(self.ring, payloads)
        with mock.patch.object(fr, "_FAST", False):
            self.assertEqual(fr.read_records(self.ring), self.expected(payloads))
            self.assertEqual(fr.read_records(self.ring, last=3), self.expected(payloads)[-3:])

    def test_RoundTrip_allSealed(self):
        payloads = sensor_payloads(400)
        write_ring(self.ring, payloads, hot=False)
        self.assertEqual(fr.read_records(self.ring), self.expected(payloads))

    def test_RecordFillsSegment(self):
        # One record of the largest payload ends exactly at the end of the segment.
        payloads = [b"z" * (4096 - 64 - 24), b"next"]
        write_ring(self.ring, payloads)
        self.assertEqual(fr.read_records(self.ring), self.expected(payloads))

    def test_EmptyRing(self):
        write_manifest(self.ring, manifest_doc([]))
        self.assertEqual(fr.read_records(self.ring), [])
        self.assertEqual(fr.read_records(self.ring, last=5), [])

    def test_EmptyHotSegment(self):
        payloads = sensor_payloads(300)
        entries = write_ring(self.ring, payloads, hot=False)
        n = len(entries) + 1
        data, _ = segment_bytes(n, 301, [], sealed=False)
        write_file(self.path(seg_name(n)), data)
        docs = [{k: v for k, v in e.items() if k != "offsets"} for e in entries]
        docs.append({"name": seg_name(n), "first_seq": 301, "last_seq": 0, "sealed": False})
        write_manifest(self.ring, manifest_doc(docs))
        self.assertEqual(fr.read_records(self.ring, last=10), self.expected(payloads)[-10:])
        self.assertEqual(fr.read_records(self.ring), self.expected(payloads))

    def test_Selection(self):
        payloads = sensor_payloads(1000)
        entries = write_ring(self.ring, payloads)
        self.assertGreater(len(entries), 5)
        want = self.expected(payloads)
        cases = [
            ("all", None, None, want),
            ("last 1", 1, None, want[-1:]),
            ("last 0", 0, None, []),
            ("last 250 spans segments", 250, None, want[-250:]),
            ("last more than all", 5000, None, want),
            ("from 1", None, 1, want),
            ("from 0", None, 0, want),
            ("from middle", None, 437, want[436:]),
            ("from last", None, 1000, want[-1:]),
            ("from past the end", None, 1001, []),
            ("from and last", 10, 500, want[-10:]),
            ("from and last, few", 10, 995, want[-6:]),
        ]
        for name, last, from_seq, expect in cases:
            with self.subTest(name):
                self.assertEqual(fr.read_records(self.ring, last=last, from_seq=from_seq), expect)

    def test_Selection_opensOnlyNeeded(self):
        payloads = sensor_payloads(1000)
        entries = write_ring(self.ring, payloads)
        opened = []
        real_open = fr._Ring.open

        def spy(ring, name, what):
            opened.append(name)
            return real_open(ring, name, what)

        with mock.patch.object(fr._Ring, "open", spy):
            fr.read_records(self.ring, last=2)
        segs = [n for n in opened if n.endswith(".seg")]
        self.assertEqual(segs, [entries[-2]["name"], entries[-1]["name"]])  # oldest first
        opened.clear()
        with mock.patch.object(fr._Ring, "open", spy):
            fr.read_records(self.ring, from_seq=entries[-1]["first_seq"])
        self.assertEqual([n for n in opened if n.endswith(".seg")], [entries[-1]["name"]])

    def test_BadArguments(self):
        write_ring(self.ring, [b"a"])
        for kw in ({"last": -1}, {"from_seq": -2}, {"last": 1.5}, {"last": "3"}):
            with self.subTest(kw):
                with self.assertRaises(ValueError):
                    fr.read_records(self.ring, **kw)


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
        """make_hot turns the segment into a hot one, in its header and in the manifest."""
        self.set_sealed(0)
        self.set_committed(committed)
        write_manifest(self.ring, manifest_doc([{"name": self.entries[0]["name"], "first_seq": 1, "last_seq": 0, "sealed": False}]))

    def make_sealed(self):
        """make_sealed undoes make_hot."""
        self.set_sealed(1)
        self.set_committed(self.offsets[-1] + 32)
        write_manifest(self.ring, manifest_doc([{k: v for k, v in self.entries[0].items() if k != "offsets"}]))

    def assertCorrupt(self, offset, fragment="", **kw):
        with self.assertRaises(fr.CorruptError) as cm:
            fr.read_records(self.ring, **kw)
        e = cm.exception
        self.assertIsInstance(e, fr.Error)
        self.assertEqual(e.path, self.seg)
        self.assertEqual(e.offset, offset)
        self.assertIn(self.seg, str(e))
        self.assertIn("offset %d" % offset, str(e))
        self.assertIn(fragment, str(e))
        return e

    def test_FlippedPayloadBit(self):
        off = self.offsets[20]
        with open(self.seg, "rb") as f:
            f.seek(off + 24)
            b = f.read(1)
        patch_bytes(self.seg, off + 24, bytes([b[0] ^ 0x10]))
        self.assertCorrupt(off, "CRC")
        # A record that is not returned is still checked.
        self.assertCorrupt(off, "CRC", last=1)
        self.assertCorrupt(off, "CRC", from_seq=40)

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

    def test_TornLastRecord_notCommitted(self):
        # Hot segment; the commit word of the last record is set but its CRC is wrong,
        # and the committed word has not reached it: not committed yet, not an error.
        last = self.offsets[-1]
        self.make_hot(last)
        patch_bytes(self.seg, last + 4, b"\xde\xad\xbe\xef")
        want = self.expected(self.payloads)[:-1]
        self.assertEqual(fr.read_records(self.ring), want)
        self.assertEqual(fr.read_records(self.ring, last=3), want[-3:])
        self.assertEqual(fr.read_records(self.ring, last=1), want[-1:])
        self.assertEqual(fr.read_records(self.ring, from_seq=50), [])

    def test_TornLastRecord_belowCommitted(self):
        last = self.offsets[-1]
        patch_bytes(self.seg, last + 4, b"\xde\xad\xbe\xef")
        self.assertCorrupt(last, "CRC")
        self.assertCorrupt(last, "CRC", last=1)

    def test_ZeroCommitWord_stops(self):
        self.make_hot(self.offsets[30])
        patch_bytes(self.seg, self.offsets[30], b"\0" * 8)
        self.assertEqual(fr.read_records(self.ring), self.expected(self.payloads)[:30])

    def test_ZeroCommitWord_belowCommittedIsCorrupt(self):
        # docs/FORMAT.md step 4: a zero commit word below the committed word means a
        # committed record is missing.
        patch_bytes(self.seg, self.offsets[30], b"\0" * 8)
        self.assertCorrupt(self.offsets[30], "missing")

    def test_RecordLength(self):
        cases = [
            ("larger than the segment", 0xFFFFFFFF, "past the end"),
            ("one past the end", 4096 - 64 + 1, "past the end"),
            ("below 24", 23, "below 24"),
            ("tiny", 1, "below 24"),
        ]
        off = self.offsets[5]
        with open(self.seg, "rb") as f:
            f.seek(off + 4)
            crc = f.read(4)
        for name, size, fragment in cases:
            with self.subTest(name):
                patch_bytes(self.seg, off, struct.pack("<I", size) + crc)
                self.assertCorrupt(off, fragment)
                self.assertCorrupt(off, fragment, last=1)
                # Past the committed word of a hot segment the same record is just not
                # committed yet.
                self.make_hot(off)
                self.assertEqual(fr.read_records(self.ring), self.expected(self.payloads)[:5])
                # A segment listed sealed must hold its records up to last_seq: ending
                # before it is corruption at the end of the records.
                self.set_sealed(1)
                write_manifest(self.ring, manifest_doc([{k: v for k, v in self.entries[0].items() if k != "offsets"}]))
                self.assertCorrupt(off, "before the manifest's last_seq 50")
                self.make_sealed()

    def test_WrongSequence(self):
        off = self.offsets[7]
        seq = 8
        body = struct.pack("<Qq", seq + 1, T0 + seq) + self.payloads[7]
        patch_bytes(self.seg, off, struct.pack("<II", 24 + len(self.payloads[7]), zlib.crc32(body)) + body)
        self.assertCorrupt(off, "sequence 9, want 8")

    def test_Header(self):
        cases = [
            ("magic", 0, b"FILERSEX", 0, "magic"),
            ("version", 8, struct.pack("<I", 2), 8, "version 2"),
            ("header CRC", 12, b"\0\0\0\0", 12, "header CRC"),
            ("created covered by CRC", 40, b"\x01", 12, "header CRC"),
            ("sealed word", 48, struct.pack("<Q", 2), 48, "sealed word is 2"),
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
            ("segment number", {"number": 2}, 24, "number 2"),
            ("first sequence", {"first_seq": 2}, 32, "first sequence 2"),
        ]:
            with self.subTest(name):
                self.rewrite_header(**kw)
                try:
                    self.assertCorrupt(offset, fragment)
                finally:
                    self.rewrite_header()

    def test_FileSize(self):
        with open(self.seg, "rb") as f:
            original = f.read()
        for name, data in [("short", original[:4000]), ("long", original + b"\0" * 4096), ("empty", b"")]:
            with self.subTest(name):
                with open(self.seg, "wb") as f:
                    f.write(data)
                # The segment as a whole is damaged: no offset.
                with self.assertRaises(fr.CorruptError) as cm:
                    fr.read_records(self.ring)
                e = cm.exception
                self.assertEqual((e.path, e.offset, e.kind), (self.seg, None, "size"))
                self.assertEqual(str(e), "%s: file size is %d, the ring's segment size is 4096" % (self.seg, len(data)))


def reference_scan(buf, first_seq, from_seq=None, last=None, check_all=True, last_seq=None):
    """reference_scan is docs/FORMAT.md steps 3-5 written as plainly as possible.

    It returns the selected records, or raises CorruptError(None, offset, ...). With
    check_all false the CRC of a record below the committed word is checked only if
    the record is selected (read_records(check_all=False)). last=0 reads nothing.
    last_seq is the manifest's last_seq of a segment it lists sealed: a record framed
    past it is corruption, and so are records ending before it (at their end).
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
                err = off  # a committed record is missing
            break
        n, crc = word & 0xFFFFFFFF, word >> 32
        ok = n >= 24 and off + align8(n) <= size
        if ok:
            seq, t = struct.unpack_from("<Qq", buf, off + 8)
            ok = seq == first_seq + len(recs)
        if ok and allowed is not None and len(recs) == allowed:
            err = off  # a record past the manifest's last_seq
            break
        crc_ok = ok and zlib.crc32(bytes(buf[off + 8 : off + n])) == crc
        if ok and not crc_ok and (check_all or off >= committed):
            ok = False
        if not ok:
            if off < committed:
                err = off
            break
        recs.append((off, crc_ok, (seq, t, bytes(buf[off + 24 : off + n]))))
        off += align8(n)
    if err is None and allowed is not None and len(recs) < allowed:
        err = off  # the records end before the manifest's last_seq
    if check_all and err is not None:
        raise fr.CorruptError(None, err, "reference")
    sel = [r for r in recs if from_seq is None or r[2][0] >= from_seq]
    if last is not None:
        sel = sel[len(sel) - min(last, len(sel)) :]
    for off, crc_ok, _ in sel:
        if not crc_ok:
            raise fr.CorruptError(None, off, "reference")
    if err is not None:
        raise fr.CorruptError(None, err, "reference")
    return [r[2] for r in sel]


class TestAgainstReference(RingTestCase):
    """Random damage to segments full of long runs of equal-stride records, which the
    reader frames in bulk: it must agree with reference_scan exactly."""

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
        buf, offsets, used = None, [], []
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
                off = rnd.choice(offsets)  # another size in the same or another stride
                n = struct.unpack_from("<I", buf, off)[0]
                struct.pack_into("<I", buf, off, max(0, n + rnd.choice((-9, -8, -1, 1, 7, 8, 100, 1 << 20))))
            elif what < 0.8 and offsets:
                off = rnd.choice(offsets)  # another sequence number, CRC made to match
                n = struct.unpack_from("<I", buf, off)[0]
                seq = struct.unpack_from("<Q", buf, off + 8)[0] + rnd.choice((-1, 1, 1 << 16, 1 << 32))
                struct.pack_into("<Q", buf, off + 8, seq % (1 << 64))
                if 24 <= n and off + n <= self.SIZE:
                    struct.pack_into("<I", buf, off + 4, zlib.crc32(bytes(buf[off + 8 : off + n])))
            else:
                committed = rnd.choice([64] + offsets + [end, self.SIZE])
                struct.pack_into("<Q", buf, 56, committed)

    def test_RandomDamage(self):
        import random

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
            check_all = rnd.random() < 0.6
            fast = rnd.random() < 0.8
            with self.subTest(trial=trial, last=last, from_seq=from_seq, check_all=check_all, fast=fast):
                try:
                    want = reference_scan(buf, first, from_seq, last, check_all, last_seq if sealed else None)
                except fr.CorruptError as e:
                    want = e.offset
                try:
                    with mock.patch.object(fr, "_FAST", fast):
                        got = fr.read_records(self.ring, last=last, from_seq=from_seq, check_all=check_all)
                except fr.CorruptError as e:
                    got = e.offset
                self.assertEqual(got, want)

    def test_LongRuns_acrossSequenceBoundaries(self):
        for first in (1, 65536 - 1000, (1 << 32) - 3000, (1 << 48) - 70000, (1 << 63) - 100000):
            with self.subTest(first=first):
                payloads = [b"%05d" % (i % 100000) for i in range(20000)]
                write_ring(self.ring, payloads, segment_size=1 << 20, first_seq=first, times=[i for i in range(20000)])
                got = fr.read_records(self.ring)
                self.assertEqual(got, [(first + i, i, p) for i, p in enumerate(payloads)])
                self.assertEqual(fr.read_records(self.ring, last=7, check_all=False), got[-7:])


class TestErrorScope(RingTestCase):
    """read_records(errors=[]): damage is reported and skipped, as `filering cat` does."""

    def setUp(self):
        RingTestCase.setUp(self)
        self.payloads = sensor_payloads(600)
        self.entries = write_ring(self.ring, self.payloads, hot=True)
        self.assertGreater(len(self.entries), 4)
        self.want = self.expected(self.payloads)

    def without(self, entry, keep=0):
        """without returns the expected records less those of entry after the first keep."""
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
        self.assertEqual(fr.read_records(self.ring, errors=errors), self.without(e, keep=4))
        self.assertEqual([(x.path, x.offset, x.kind) for x in errors], [(self.path(e["name"]), off, "checksum")])
        # last counts the records returned: it reaches back over the damaged tail.
        errors = []
        n = sum(1 for r in self.want if r[0] > e["last_seq"]) + 2
        self.assertEqual(fr.read_records(self.ring, last=n, errors=errors), self.without(e, keep=4)[-n:])
        self.assertEqual(len(errors), 1)
        # Without errors=, the first damage is raised.
        with self.assertRaises(fr.CorruptError) as cm:
            fr.read_records(self.ring)
        self.assertEqual((cm.exception.offset, cm.exception.kind), (off, "checksum"))

    def test_SegmentDamage_skipsTheSegment(self):
        bad = [self.entries[1], self.entries[3]]
        patch_bytes(self.path(bad[0]["name"]), 0, b"FILERSEX")
        os.unlink(self.path(bad[1]["name"]))
        os.mkfifo(self.path(bad[1]["name"]))
        errors = []
        got = fr.read_records(self.ring, errors=errors)
        self.assertEqual(got, [r for r in self.without(bad[0]) if not bad[1]["first_seq"] <= r[0] <= bad[1]["last_seq"]])
        self.assertEqual(
            [(x.path, x.offset, x.kind) for x in errors],
            [(self.path(bad[0]["name"]), 0, "header"), (self.path(bad[1]["name"]), None, "not-regular")],
        )
        self.assertEqual(str(errors[0]), "%s: corrupt at offset 0: bad magic b'FILERSEX'" % self.path(bad[0]["name"]))

    def test_ListedSealed_sealedWordZero(self):
        e = self.entries[0]
        patch_bytes(self.path(e["name"]), 48, b"\0" * 8)
        errors = []
        self.assertEqual(fr.read_records(self.ring, errors=errors), self.without(e))
        self.assertEqual([(x.offset, x.kind) for x in errors], [(48, "sealed-word")])

    def test_LastSeq(self):
        # The manifest lists fewer records than the sealed segment holds, then more.
        e = self.entries[0]
        docs = [{k: v for k, v in x.items() if k != "offsets"} for x in self.entries]
        docs[0]["last_seq"] = e["last_seq"] - 3
        write_manifest(self.ring, manifest_doc(docs))
        errors = []
        got = fr.read_records(self.ring, errors=errors)
        self.assertEqual(got, [r for r in self.want if not e["last_seq"] - 3 < r[0] <= e["last_seq"]])
        self.assertEqual([(x.offset, x.kind) for x in errors], [(e["offsets"][-3], "last-seq")])
        docs[0]["last_seq"] = e["last_seq"]
        docs[1]["last_seq"] += 5
        docs[2]["first_seq"] += 5
        write_manifest(self.ring, manifest_doc(docs))
        patch_bytes(self.path(self.entries[2]["name"]), 12, b"\0\0\0\0")  # the header CRC: ignore its records
        errors = []
        fr.read_records(self.ring, errors=errors)
        end = self.entries[1]["offsets"][-1] + align8(24 + len(self.payloads[self.entries[1]["last_seq"] - 1]))
        self.assertEqual([(x.offset, x.kind) for x in errors], [(end, "last-seq"), (12, "header")])


class TestFiles(RingTestCase):
    def test_NoRing(self):
        missing = self.path("nothing-here")
        with self.assertRaises(fr.NotFoundError) as cm:
            fr.read_records(missing)
        self.assertIn(missing, str(cm.exception))
        with self.assertRaises(fr.NotFoundError) as cm:
            fr.read_records(self.ring)  # a directory without a manifest
        self.assertIn(self.ring, str(cm.exception))

    def test_SegmentSymlink_refused(self):
        entries = write_ring(self.ring, sensor_payloads(200))
        name = entries[-1]["name"]
        os.rename(self.path(name), self.path("real.bin"))
        os.symlink("real.bin", self.path(name))
        with self.assertRaises(fr.Error) as cm:
            fr.read_records(self.ring)
        self.assertIn("symbolic link", str(cm.exception))
        self.assertIn(name, str(cm.exception))

    def test_ManifestSymlink_refused(self):
        write_ring(self.ring, [b"a"])
        os.rename(self.path("manifest"), self.path("m.json"))
        os.symlink("m.json", self.path("manifest"))
        with self.assertRaises(fr.Error) as cm:
            fr.read_records(self.ring)
        self.assertIn("symbolic link", str(cm.exception))

    def test_NotRegularFiles_refused(self):
        entries = write_ring(self.ring, [b"a"])
        name = entries[-1]["name"]
        os.unlink(self.path(name))
        os.mkfifo(self.path(name))  # opening must not block
        with self.assertRaises(fr.Error) as cm:
            fr.read_records(self.ring)
        self.assertIn("not a regular file", str(cm.exception))
        os.unlink(self.path(name))
        os.mkdir(self.path(name))
        with self.assertRaises(fr.Error):
            fr.read_records(self.ring)
        os.unlink(self.path("manifest"))
        os.mkfifo(self.path("manifest"))
        with self.assertRaises(fr.Error) as cm:
            fr.read_records(self.ring)
        self.assertIn("not a regular file", str(cm.exception))

    def test_MissingSegment_sameGeneration_skipped(self):
        payloads = sensor_payloads(600)
        entries = write_ring(self.ring, payloads)
        gone = entries[2]
        os.rename(self.path(gone["name"]), self.path(gone["name"][:-4] + ".taken"))
        want = [r for r in self.expected(payloads) if not gone["first_seq"] <= r[0] <= gone["last_seq"]]
        self.assertEqual(fr.read_records(self.ring), want)
        # last=N reaches further back to make up for the missing segment.
        n = len(want) - 10
        self.assertEqual(fr.read_records(self.ring, last=n), want[-n:])

    def test_MissingSegment_generationChanged_startsOver(self):
        payloads = sensor_payloads(600)
        entries = write_ring(self.ring, payloads)
        gone = entries[1]["name"]
        os.unlink(self.path(gone))
        real = fr._Ring.manifest
        calls = []

        def manifest(ring):
            calls.append(1)
            if len(calls) == 2:
                # The producer "rolls" while the reader is opening: retention dropped
                # the two oldest segments and wrote a new manifest.
                with open(self.path("manifest")) as f:
                    doc = json.load(f)
                doc["segments"] = doc["segments"][2:]
                doc["generation"] += 1
                write_manifest(self.ring, doc)
            return real(ring)

        with mock.patch.object(fr._Ring, "manifest", manifest):
            got = fr.read_records(self.ring)
        self.assertEqual(len(calls), 3)
        self.assertEqual(got, self.expected(payloads)[entries[2]["first_seq"] - 1 :])

    def test_MissingSegment_generationKeepsChanging_givesUp(self):
        entries = write_ring(self.ring, sensor_payloads(600))
        os.unlink(self.path(entries[0]["name"]))
        real = fr._Ring.manifest
        gen = [1]

        def manifest(ring):
            m = real(ring)
            gen[0] += 1
            return fr.Manifest(m.segment_size, m.segments_max, gen[0], m.segments)

        with mock.patch.object(fr._Ring, "manifest", manifest):
            with self.assertRaises(fr.Error) as cm:
                fr.read_records(self.ring)
        self.assertIn("changed %d times" % fr.MAX_ATTEMPTS, str(cm.exception))

    def test_OpenFilesSurviveRemoval(self):
        # Everything needed is open before anything is read: removing a segment after
        # the opens does not change the snapshot.
        payloads = sensor_payloads(600)
        entries = write_ring(self.ring, payloads)
        real = fr._read_snapshot

        def remove_then_read(*args):
            for e in entries:
                os.unlink(self.path(e["name"]))
            return real(*args)

        with mock.patch.object(fr, "_read_snapshot", remove_then_read):
            self.assertEqual(fr.read_records(self.ring), self.expected(payloads))

    def test_IgnoresOtherNames(self):
        payloads = sensor_payloads(100)
        write_ring(self.ring, payloads)
        for name in ("lock", ".tmp-manifest", "0000000000000099.seg", "0000000000000001.taken", "notes.txt"):
            with open(self.path(name), "wb") as f:
                f.write(b"garbage")
        self.assertEqual(fr.read_records(self.ring), self.expected(payloads))


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
        m = fr.parse_manifest(json.dumps(good_manifest()).encode())
        self.assertEqual(m.segment_size, 1048576)
        self.assertEqual(m.segments_max, 16)
        self.assertEqual(m.generation, 42)
        self.assertEqual([e.name for e in m.segments], ["0000000000000007.seg", "0000000000000008.seg"])
        self.assertEqual(m.segments[0].number, 7)
        self.assertEqual(m.segments[1].sealed, False)

    def test_Good_variants(self):
        cases = [
            ("no segments", edit(lambda d: d.update(segments=[]))),
            ("all sealed", edit(lambda d: d["segments"][1].update(sealed=True, last_seq=7001))),
            ("largest values", edit(lambda d: d.update(segment_size=1 << 30, segments_max=65536, generation=(1 << 63) - 1))),
            ("whitespace and key order", b' {"segments":[], "generation":0,\n"segments_max":2,"segment_size":4096,"version":1}\n'),
        ]
        for name, doc in cases:
            with self.subTest(name):
                fr.parse_manifest(doc if isinstance(doc, bytes) else json.dumps(doc).encode())

    def test_GapAccepted(self):
        # A first_seq beyond the previous last_seq + 1 means records were lost in a crash
        # (docs/FORMAT.md, "Producer recovery"): the manifest is valid.
        doc = {"version": 1, "segment_size": 4096, "segments_max": 4, "generation": 1, "segments": [
            {"name": "0000000000000003.seg", "first_seq": 1, "last_seq": 10, "sealed": True},
            {"name": "0000000000000005.seg", "first_seq": 179, "last_seq": 0, "sealed": False}]}
        m = fr.parse_manifest(json.dumps(doc).encode(), "/ring/manifest")
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
            with self.subTest(name):
                data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
                with self.assertRaises(fr.ManifestError) as cm:
                    fr.parse_manifest(data, "/ring/manifest")
                msg = str(cm.exception)
                self.assertTrue(msg.startswith("invalid manifest /ring/manifest: "), msg)
                self.assertLess(len(msg), 300, msg)

    def test_Hostile_throughReadRecords(self):
        ring = tempfile.mkdtemp(prefix="filering-test-", dir=tmp_base())
        self.addCleanup(shutil.rmtree, ring, True)
        write_manifest(ring, seg0(name="../x"))
        with self.assertRaises(fr.ManifestError):
            fr.read_records(ring)


# ---------------------------------------------------------------------------------------
# Output


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
                self.assertEqual(fr.format_time(ns), want)

    def test_FormatRecord(self):
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
            ("U+FFFD raw", "\ufffd".encode("utf-8"), '"data":"\ufffd"'),
            ("C1 control raw", "\u0085".encode("utf-8"), '"data":"\u0085"'),
            ("invalid UTF-8", b"\xff", '"data_b64":"/w=="'),
            ("truncated sequence", b"ok\xe2\x82", '"data_b64":"b2vigg=="'),
            ("overlong", b"\xc0\xaf", '"data_b64":"wK8="'),
            ("surrogate", b"\xed\xa0\x80", '"data_b64":"7aCA"'),
            ("above U+10FFFF", b"\xf4\x90\x80\x80", '"data_b64":"9JCAgA=="'),
            ("binary", bytes(range(250, 256)), '"data_b64":"+vv8/f7/"'),
        ]
        for name, payload, want in cases:
            with self.subTest(name):
                got = fr.format_record(7, 1000000002, payload)
                self.assertEqual(got, (prefix + want + "}\n").encode("utf-8"))
                self.assertEqual(json.loads(got.decode("utf-8"))["seq"], 7)

    def test_FormatRecord_everyCharacter(self):
        # The escaping rule, written out, for every code point below 0x800 and a few more.
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
            line = fr.format_record(1, 0, c.encode("utf-8")).decode("utf-8")
            self.assertEqual(line, '{"seq":1,"time":"1970-01-01T00:00:00.000000000Z","data":%s}\n' % escape(c), repr(c))


# ---------------------------------------------------------------------------------------
# Command line


class TestCommandLine(RingTestCase):
    def run_cli(self, *args):
        return subprocess.run([sys.executable, READER] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def test_Lines(self):
        payloads = [b"21.5", b"", b"two words", b"\xff\x00binary"] + sensor_payloads(200)
        write_ring(self.ring, payloads)
        p = self.run_cli(self.ring)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, b"".join(x + b"\n" for x in payloads))
        self.assertEqual(p.stderr, b"")
        p = self.run_cli(self.ring, "--last", "3")
        self.assertEqual(p.stdout, b"".join(x + b"\n" for x in payloads[-3:]))
        p = self.run_cli(self.ring, "--from", "3", "--format", "lines")
        self.assertEqual(p.stdout, b"".join(x + b"\n" for x in payloads[2:]))
        p = self.run_cli("--last", "0", "--from", "0", self.ring)  # 0 means no limit, as in filering cat
        self.assertEqual(p.stdout, b"".join(x + b"\n" for x in payloads))

    def test_Raw(self):
        payloads = [b"21.5", b"", b"\xff\x00binary", b"x" * 300]
        write_ring(self.ring, payloads)
        p = self.run_cli(self.ring, "--format", "raw")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, b"".join(struct.pack("<I", len(x)) + x for x in payloads))

    def test_Damage(self):
        # Everything readable is printed, the damage reported, and the exit status is 1.
        payloads = sensor_payloads(300)
        entries = write_ring(self.ring, payloads)
        patch_bytes(self.path(entries[1]["name"]), 0, b"X")
        p = self.run_cli(self.ring, "--format", "json")
        self.assertEqual(p.returncode, 1)
        want = [x for i, x in enumerate(payloads) if not entries[1]["first_seq"] <= i + 1 <= entries[1]["last_seq"]]
        self.assertEqual([json.loads(l)["data"].encode() for l in p.stdout.splitlines()], want)
        self.assertEqual(p.stderr, b"filering_reader: %s: corrupt at offset 0: bad magic b'XILERSEG'\n" % self.path(entries[1]["name"]).encode())

    def test_Json(self):
        payloads = [b"21.5", b'say "hi"\n', b"\xff"]
        write_ring(self.ring, payloads, times=[0, 1, 1500000000000000001])
        want = (
            b'{"seq":1,"time":"1970-01-01T00:00:00.000000000Z","data":"21.5"}\n'
            b'{"seq":2,"time":"1970-01-01T00:00:00.000000001Z","data":"say \\"hi\\"\\n"}\n'
            b'{"seq":3,"time":"2017-07-14T02:40:00.000000001Z","data_b64":"/w=="}\n'
        )
        for flags in (["--json"], ["--format", "json"]):
            p = self.run_cli(self.ring, *flags)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(p.stdout, want)
        p = self.run_cli(self.ring, "--json", "--last", "1", "--from", "2")
        self.assertEqual(p.stdout, want.splitlines(True)[2])

    def test_Errors(self):
        missing = self.path("none")
        p = self.run_cli(missing)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stdout, b"")
        self.assertTrue(p.stderr.startswith(b"filering_reader: "), p.stderr)
        self.assertIn(missing.encode(), p.stderr)
        write_manifest(self.ring, b"{")
        p = self.run_cli(self.ring)
        self.assertEqual(p.returncode, 1)
        self.assertTrue(p.stderr.startswith(b"filering_reader: invalid manifest "), p.stderr)

    def test_Usage(self):
        for args in ([], ["--last", "-1", "x"], ["--last", "x", "d"], ["--from", "1.5", "d"], ["--format", "xml", "d"], ["d", "e"]):
            with self.subTest(args):
                p = self.run_cli(*args)
                self.assertEqual(p.returncode, 2)
                self.assertIn(b"usage:", p.stderr)

    def test_BrokenPipe(self):
        write_ring(self.ring, sensor_payloads(5000), segment_size=65536)
        p = subprocess.Popen([sys.executable, READER, self.ring], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stdout.read(10)
        p.stdout.close()
        err = p.stderr.read()
        p.stderr.close()
        p.wait()
        self.assertEqual(err, b"")  # no traceback


if __name__ == "__main__":
    unittest.main()
