"""Segment indexes (docs/FORMAT.md, "The segment index"): a read that starts inside a
segment (the last N records, records from a sequence number) begins at an entry of the
segment's index N.idx instead of offset 64.

An index changes a read in one way only: damage before the entry the read starts at is
not read and not reported. Everything else is the same with and without one, whatever
the index holds: a hostile or broken index is not used and nothing is reported. The
rings are written by helpers.write_ring and their indexes by helpers.write_index (the
entries a producer stores, computed from the records), so these tests need no producer.
Each result is compared with the same read of the same ring with its indexes hidden
(renamed to a name starting with ".", which readers ignore).
"""

import contextlib
import os
import random
import signal
import socket
import struct
import zlib
from unittest import mock

import filering
from filering import _follow, _index, _ring

from helpers import (
    T0,
    RingTestCase,
    align8,
    check_installed,
    expected,
    index_bytes,
    index_entries,
    manifest_doc,
    open_targets,
    patch_bytes,
    record_bytes,
    seg_name,
    segment_bytes,
    write_file,
    write_index,
    write_manifest,
    write_ring,
)


def setUpModule():
    check_installed()


def number(entry):
    return int(entry["name"][:16])


def read(ring, **kw):
    """read returns (records, errors) of Ring.records(**kw), the errors as (file, offset, kind, message)."""
    errors = []
    recs = filering.open(ring).records(on_damage=errors.append, **kw)
    return [tuple(r) for r in recs], [(os.path.basename(e.path), e.offset, e.kind, str(e)) for e in errors]


@contextlib.contextmanager
def hidden_indexes(ring):
    """hidden_indexes renames every N.idx of ring (whatever it is) out of the readers' sight."""
    names = [n for n in os.listdir(ring) if n.endswith(".idx")]
    for n in names:
        os.rename(os.path.join(ring, n), os.path.join(ring, ".hidden-" + n))
    try:
        yield
    finally:
        for n in names:
            os.rename(os.path.join(ring, ".hidden-" + n), os.path.join(ring, n))


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def flip(path, offset):
    """flip inverts the byte at offset of the file at path (twice restores it)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


class Spy(object):
    """Spy records what the index lookups of _ring and _follow return."""

    def __init__(self, test):
        self.results = []
        for mod, name, real in ((_ring, "entry_for", _index.entry_for), (_ring, "top_entry", _index.top_entry), (_follow, "entry_for", _index.entry_for)):
            p = mock.patch.object(mod, name, self._wrap(name, real))
            p.start()
            test.addCleanup(p.stop)

    def _wrap(self, name, real):
        def call(*args):
            got = real(*args)
            self.results.append((name, got))
            return got

        return call

    def used(self, name=None):
        """used returns the entries found and checked (by the lookups named name)."""
        return [r for n, r in self.results if r is not None and name in (None, n)]

    def clear(self):
        del self.results[:]


def open_index_fds():
    """open_index_fds counts this process's descriptors open on *.idx files."""
    return sum(1 for t in open_targets() if t.endswith(".idx"))


def mixed_payloads(n, seed, big=()):
    """mixed_payloads returns n payloads of 0 to 600 bytes, in runs of equal sizes (and
    the sizes in big at those places, as {index: size}), deterministic for a seed."""
    rnd = random.Random(seed)
    big = dict(big)
    out = []
    size = left = 0
    for i in range(n):
        if left == 0:
            size = rnd.choice((0, 1, 7, 8, 40, 100, 333, 600))
            left = rnd.choice((1, 2, 5, 40, 200))
        left -= 1
        s = big.get(i, size)
        noise = rnd.getrandbits(512).to_bytes(64, "little")
        out.append((b"%06d:" % i + noise * (s // 64 + 1))[:s])
    return out


def with_hot_end(payloads, segment_size, lo, hi, segments=8):
    """with_hot_end returns the shortest start of payloads that write_ring lays out in
    at least segments segments, the last one's records ending between lo and hi bytes
    into it."""
    end = 64
    count = 1
    for n, p in enumerate(payloads):
        need = align8(24 + len(p))
        if end + need > segment_size:
            end = 64
            count += 1
        end += need
        if count >= segments and lo <= end <= hi:
            return payloads[: n + 1]
    raise AssertionError("no such layout")


class IndexedRing(RingTestCase):
    """A ring with an index for every segment; self.want its records."""

    def make(self, payloads, segment_size, block, hot=True, segments_max=64):
        self.payloads = payloads
        self.entries = write_ring(self.ring, payloads, segment_size=segment_size, segments_max=segments_max, hot=hot)
        self.size = segment_size
        self.block = block
        for e in self.entries:
            write_index(self.ring, number(e), block, e["offsets"])
        self.want = expected(payloads)
        self.spy = Spy(self)

    def seg_path(self, e):
        return self.path(e["name"])

    def idx_path(self, e):
        return self.path(seg_name(number(e), ".idx"))

    def last_seq(self, e):
        return e["first_seq"] + len(e["offsets"]) - 1

    def chosen(self, e, i):
        """chosen returns (k, offset, index) of the entry a read starting at index i of e uses."""
        entries = index_entries(self.size, self.block, e["offsets"])
        for k in range(len(entries), 0, -1):
            v = entries[k - 1]
            if v and v >> 32 <= i:
                return k, v & 0xFFFFFFFF, v >> 32
        return None

    def same(self, **kw):
        """same checks that the read kw gives the same with and without the indexes; it
        returns the result."""
        got = read(self.ring, **kw)
        with hidden_indexes(self.ring):
            want = read(self.ring, **kw)
        self.assertEqual(got, want, kw)
        return got


class TestSameResults(IndexedRing):
    """A correct index changes nothing on a healthy ring, and it is used."""

    def selections(self):
        total = len(self.want)
        hot = self.entries[-1]
        hot_count = len(hot["offsets"])
        lasts = [1, 2, 3, 10, 100, 1000, hot_count - 1, hot_count, hot_count + 1, total - 1, total, total + 7]
        for e in self.entries[-3:]:
            lasts.append(self.want[-1][0] - e["first_seq"] + 1)
            lasts.append(self.want[-1][0] - e["first_seq"] + 2)
        froms = [0, 1, 2, total, total + 1, total + 100]
        for e in self.entries:
            froms.extend([e["first_seq"] - 1, e["first_seq"], e["first_seq"] + 1, self.last_seq(e), (e["first_seq"] + self.last_seq(e)) // 2])
            for o in e["offsets"][:: max(1, len(e["offsets"]) // 7)]:
                froms.append(e["first_seq"] + e["offsets"].index(o))
        sel = [{"last": n} for n in sorted(set(x for x in lasts if x > 0))]
        sel += [{"from_seq": s} for s in sorted(set(x for x in froms if x >= 0))]
        sel += [{"from_seq": s, "last": n} for s in froms[::5] for n in (1, 50, 5000)]
        sel += [{"from_seq": s, "since": T0 + s + 3} for s in froms[::9]]
        sel += [{"from_seq": s, "since": T0, "last": 20} for s in froms[::9]]
        return sel

    def check_all(self):
        used = 0
        for kw in self.selections():
            with self.subTest(**kw):
                self.spy.clear()
                recs, errs = self.same(**kw)
                self.assertEqual(errs, [])
                want = [r for r in self.want if r[0] >= kw.get("from_seq", 0) and r[1] >= kw.get("since", T0)]
                if kw.get("last"):
                    want = want[-kw["last"] :]
                self.assertEqual(recs, want)
                used += bool(self.spy.used())
        self.assertGreater(used, 10)
        self.assertEqual(open_index_fds(), 0)

    def test_OneMiBSegments_64KiBBlocks(self):
        payloads = mixed_payloads(30000, 1, {500: 200000, 7000: 70000, 7001: 65536, 29990: 131072})
        self.make(payloads, 1 << 20, 65536)
        self.assertGreaterEqual(len(self.entries), 4)
        self.check_all()

    def test_OneMiBSegments_4KiBBlocks_allSealed(self):
        payloads = mixed_payloads(30000, 2, {3000: 9000, 3001: 4096, 3002: 4072})
        self.make(payloads, 1 << 20, 4096, hot=False)
        self.assertGreaterEqual(len(self.entries), 4)
        self.check_all()

    def test_SmallSegments_smallBlocks_everySelection(self):
        # 16 KiB segments, 4 KiB blocks (K = 3), records larger than a block among them:
        # every last N and every from S.
        payloads = mixed_payloads(700, 3, {40: 5000, 41: 4100, 300: 9000, 301: 12000, 650: 4072})
        for hot in (True, False):
            with self.subTest(hot=hot):
                self.make(payloads, 16384, 4096, hot=hot)
                self.assertGreater(len(self.entries), 10)
                total = len(self.want)
                used = 0
                for n in range(0, total + 3):
                    self.spy.clear()
                    recs, errs = self.same(last=n)
                    self.assertEqual((recs, errs), (self.want[-n:] if n else [], []), n)
                    used += bool(self.spy.used())
                for s in range(0, total + 3):
                    self.spy.clear()
                    recs, errs = self.same(from_seq=s)
                    self.assertEqual((recs, errs), (self.want[max(s, 1) - 1 :], []), s)
                    used += bool(self.spy.used())
                self.assertGreater(used, total)
                for name in os.listdir(self.ring):
                    os.unlink(self.path(name))

    def test_BigRecordAtTheEntry(self):
        # A record larger than a window (4 MiB) and than the CRC pieces of the entry check
        # (1 MiB), at the entry a read starts at (1023 records of 64 bytes put it at
        # 65536); the blocks it covers have the entry of the record after it.
        payloads = [b"a" * 40] * 1023 + [bytes(range(256)) * (5 << 12)] + [b"b" * 50] * 20 + [b"c" * (300 << 10)] + [b"d"] * 10
        self.make(payloads, 8 << 20, 65536, hot=False)
        self.assertEqual(len(self.entries), 1)
        e = self.entries[0]
        self.assertEqual(e["offsets"][1023], 65536)
        count = len(payloads)
        for n in (1, 10, 11, 12, 31, 32, 33, 40, 1000):
            with self.subTest(last=n):
                self.spy.clear()
                self.assertEqual(self.same(last=n), (self.want[-n:], []))
                c = self.chosen(e, count - n)
                self.assertEqual(self.spy.used(), [c[1:]] if c else [])
        self.spy.clear()
        self.assertEqual(self.same(from_seq=1024), (self.want[1023:], []))
        self.assertEqual(self.spy.used(), [(65536, 1023)])
        self.spy.clear()
        self.assertEqual(self.same(from_seq=1025), (self.want[1024:], []))
        self.assertEqual(self.spy.used(), [(e["offsets"][1024], 1024)])

    def test_ManyEntriesAndChunks(self):
        # A 64 MiB segment (a sparse file) with 4 KiB blocks: 16383 entries, read in
        # chunks from the end; records only at its start, the other entries 0.
        payloads = [b"%05d" % i * 20 for i in range(3000)]
        for hot in (False, True):
            with self.subTest(hot=hot):
                buf, offsets = segment_bytes(1, 1, payloads, size=8 << 20, sealed=not hot)
                end = 64 + sum(align8(24 + len(p)) for p in payloads)
                data = bytes(buf[:end])
                name = self.path(seg_name(1))
                with open(name, "wb") as f:
                    f.write(data)
                    f.truncate(64 << 20)
                fixed = struct.pack("<QQQq", 64 << 20, 1, 1, T0)
                patch_bytes(name, 0, b"FILERSEG" + struct.pack("<II", 1, zlib.crc32(fixed)) + fixed)
                write_manifest(self.ring, manifest_doc([{"name": seg_name(1), "first_seq": 1, "last_seq": 0 if hot else 3000, "sealed": not hot}], 64 << 20))
                entries = write_index(self.ring, 1, 4096, offsets)
                self.assertEqual(len(entries), 16383)
                self.size, self.block, self.want = 64 << 20, 4096, expected(payloads)
                self.spy = Spy(self)
                for kw in ({"last": 1}, {"last": 100}, {"last": 2900}, {"from_seq": 100}, {"from_seq": 1500}, {"from_seq": 3000}):
                    self.spy.clear()
                    recs, errs = self.same(**kw)
                    self.assertEqual(errs, [])
                    self.assertEqual(recs, self.want[-kw["last"] :] if "last" in kw else self.want[kw["from_seq"] - 1 :])
                    self.assertTrue(self.spy.used(), kw)

    def test_WholeReadNeverUsesTheIndex(self):
        self.make(mixed_payloads(300, 4), 16384, 4096)

        def boom(*args):
            raise AssertionError("an index was looked up for a whole read")

        with mock.patch.object(_index, "_open", boom):
            self.assertEqual(read(self.ring), (self.want, []))
            self.assertEqual(read(self.ring, from_seq=1), (self.want, []))
            self.assertEqual(read(self.ring, since=T0), (self.want, []))

    def test_IndexNotHeldOpen(self):
        # Each index is opened, used and closed while the read is positioned: never more
        # than one at a time, and none while the 64 segments of a window are open.
        payloads = mixed_payloads(8000, 5)
        self.make(payloads, 8192, 4096, hot=False, segments_max=1000)
        self.assertGreater(len(self.entries), 100)
        real = _index._open
        seen = []

        def spy_open(dfd, seg):
            seen.append(open_index_fds())
            got = real(dfd, seg)
            if got is not None:
                seen.append(open_index_fds() - 1)
            return got

        with mock.patch.object(_index, "_open", spy_open):
            for n in (1, 100, 2000, len(self.want)):
                self.assertEqual(read(self.ring, last=n), (self.want[-n:], []))
            self.assertEqual(read(self.ring, from_seq=1000), (self.want[999:], []))
            f = filering.open(self.ring).follow(from_seq=1001)
            self.assertEqual(f.read(0).seq, 1001)
            f.close()
        self.assertTrue(seen)
        self.assertEqual(max(seen), 0)
        self.assertEqual(open_index_fds(), 0)


class TestDamageBeforeTheEntry(IndexedRing):
    """Damage before the entry a read starts at is not read and not reported."""

    def setUp(self):
        IndexedRing.setUp(self)
        self.make(with_hot_end(mixed_payloads(2000, 6), 16384, 12000, 14000), 16384, 4096)
        self.newest_sealed = self.entries[-2]

    def damage(self, e, j):
        """damage flips a CRC byte of record j of segment e; it returns the error a whole read reports."""
        off = e["offsets"][j]
        flip(self.seg_path(e), off + 4)
        return (e["name"], off, "checksum")

    def test_Sealed(self):
        e = self.newest_sealed
        err = self.damage(e, 2)
        count = len(e["offsets"])
        k, off, index = self.chosen(e, count - 5)
        self.assertGreater(off, e["offsets"][2])
        n = len(self.entries[-1]["offsets"]) + count - index
        # The whole read reports the damage, and delivers nothing after it in that segment.
        recs, errs = read(self.ring)
        self.assertEqual([x[:3] for x in errs], [err])
        self.assertNotIn(self.want[-n], recs)
        # last N and from S starting at or after the entry: every record, nothing reported.
        for kw in ({"last": n}, {"last": n - 3}, {"from_seq": self.want[-n][0]}, {"from_seq": self.want[-n][0] + 1, "last": 10 ** 6}):
            with self.subTest(**kw):
                self.spy.clear()
                recs, errs = read(self.ring, **kw)
                self.assertEqual(errs, [])
                want = [r for r in self.want if r[0] >= kw.get("from_seq", 0)]
                self.assertEqual(recs, want[-kw.get("last", len(want)) :])
                self.assertTrue(self.spy.used())
                self.assertTrue(all(o > e["offsets"][2] for o, _ in self.spy.used()))
                with hidden_indexes(self.ring):
                    self.assertEqual([x[:3] for x in read(self.ring, **kw)[1]], [err])
        # One more record than the entry gives: the read starts at the entry before it.
        recs, errs = read(self.ring, last=n + 1)
        before = self.chosen(e, index - 1)
        if before is not None and before[1] > e["offsets"][2]:
            self.assertEqual((recs, errs), (self.want[-n - 1 :], []))
        else:
            self.assertEqual([x[:3] for x in errs], [err])
        # Reaching back before the damage: read from 64, reported, as without an index.
        self.same(last=len(self.want))
        self.same(from_seq=e["first_seq"] + 1)

    def test_Sealed_commandLine(self):
        e = self.newest_sealed
        err = self.damage(e, 0)
        n = len(self.entries[-1]["offsets"]) + 3
        p = self.run_cli("cat", "--last", str(n), self.ring)
        self.assertEqual((p.returncode, p.stderr), (0, b""))
        self.assertEqual(p.stdout, b"".join(d + b"\n" for _, _, d in self.want[-n:]))
        p = self.run_cli("cat", "--from", str(self.want[-n][0]), "--format", "json", self.ring)
        self.assertEqual((p.returncode, p.stderr), (0, b""))
        self.assertEqual(len(p.stdout.splitlines()), n)
        p = self.run_cli("cat", self.ring)
        self.assertEqual(p.returncode, 1)
        self.assertIn(("%s: " % self.seg_path(e)).encode(), p.stderr)
        self.assertIn(b"offset %d" % err[1], p.stderr)

    def test_Hot_countedByTheIndex(self):
        # The hot segment's count comes from its last entry: damage at its start does not
        # stop the last N records.
        hot = self.entries[-1]
        count = len(hot["offsets"])
        self.assertGreater(count, 20)
        err = self.damage(hot, 1)
        recs, errs = read(self.ring, last=10)
        self.assertEqual((recs, errs), (self.want[-10:], []))
        self.assertIn("top_entry", [name for name, got in self.spy.results if got is not None])
        self.assertEqual(filering.open(self.ring).next_seq(), self.want[-1][0] + 1)
        with hidden_indexes(self.ring):
            self.assertEqual([x[:3] for x in read(self.ring, last=10)[1]], [err])
        # More than the hot segment holds: it is read whole, the damage reported, and
        # the rest comes from the older segments, as without an index.
        recs, errs = self.same(last=count + 5)
        self.assertEqual([x[:3] for x in errs], [err])
        self.assertEqual(recs, self.want[-count - (count + 4) : -count] + self.want[-count : -count + 1])

    def test_Follower(self):
        e = self.newest_sealed
        self.damage(e, 1)
        n = len(self.entries[-1]["offsets"]) + 4
        for kw in ({"last": n}, {"from_seq": self.want[-n][0]}):
            with self.subTest(**kw):
                self.assertEqual(follow(self.ring, **kw), (self.want[-n:], [], []))


def follow(ring, **kw):
    """follow returns what a follower made with kw delivers now: (records, damage, losses)."""
    damage, losses = [], []
    with filering.open(ring).follow(on_damage=damage.append, on_loss=losses.append, **kw) as f:
        got = []
        while True:
            r = f.read(0)
            if r is None:
                break
            got.append(tuple(r))
    return got, [(os.path.basename(e.path), e.offset, e.kind) for e in damage], [(x.first, x.last) for x in losses]


class TestDamageAfterTheEntry(IndexedRing):
    """Damage from the entry on: the segment is read from offset 64, exactly as without an index."""

    def setUp(self):
        IndexedRing.setUp(self)
        self.make(with_hot_end(mixed_payloads(2000, 7), 16384, 12000, 14000), 16384, 4096)

    def reads(self, e, upto):
        """reads returns selections that start at records 0 < i <= upto of segment e (so
        that damage at record upto is at or after the entry they start at)."""
        first = e["first_seq"]
        newer = sum(len(x["offsets"]) for x in self.entries[self.entries.index(e) + 1 :])
        count = len(e["offsets"])
        sel = []
        for i in sorted(set((1, upto // 3, upto // 2, upto - 3, upto - 1, upto))):
            if i > 0:
                sel.append({"last": newer + count - i})
                sel.append({"from_seq": first + i})
                sel.append({"from_seq": first + i, "last": 10 ** 6})
        return sel

    def check(self, e, j, kind):
        for kw in self.reads(e, j):
            with self.subTest(**kw):
                recs, errs = self.same(**kw)
                self.assertEqual([x[:3] for x in errs], [(e["name"], e["offsets"][j], kind)])

    def test_Checksum(self):
        for e in (self.entries[-2], self.entries[-1]):
            count = len(e["offsets"])
            for j in (count - 1, count - 2, count * 2 // 3, count // 2):
                with self.subTest(segment=e["name"], record=j):
                    flip(self.seg_path(e), e["offsets"][j] + 4)
                    self.check(e, j, "checksum")
                    flip(self.seg_path(e), e["offsets"][j] + 4)
        self.assertEqual(read(self.ring), (self.want, []))

    def test_Sequence(self):
        e = self.entries[-2]
        j = len(e["offsets"]) - 4
        off = e["offsets"][j]
        with open(self.seg_path(e), "rb") as f:
            f.seek(off)
            rec = bytearray(f.read(24))
        n = struct.unpack_from("<I", rec)[0]
        with open(self.seg_path(e), "rb") as f:
            f.seek(off + 8)
            body = bytearray(f.read(n - 8))
        body[0:8] = struct.pack("<Q", e["first_seq"] + j + 1)
        patch_bytes(self.seg_path(e), off + 4, struct.pack("<I", zlib.crc32(bytes(body))) + bytes(body[:8]))
        self.check(e, j, "sequence")

    def test_RecordsEndBeforeLastSeq(self):
        # The manifest says the newest segment ends later than its records do (the hot
        # one left out of it).
        e = self.entries[-2]
        doc = manifest_doc([{k: v for k, v in x.items() if k != "offsets"} for x in self.entries[:-1]], 16384, 64)
        doc["segments"][-1]["last_seq"] += 2
        write_manifest(self.ring, doc)
        count = len(e["offsets"])
        end = e["offsets"][-1] + align8(24 + len(self.payloads[self.last_seq(e) - 1]))
        for i in (1, count // 2, count - 2, count - 1):
            for kw in ({"last": count + 2 - i}, {"from_seq": e["first_seq"] + i}):
                with self.subTest(**kw):
                    recs, errs = self.same(**kw)
                    self.assertEqual([x[:3] for x in errs], [(e["name"], end, "last-seq")])

    def damage_before_and_after(self):
        """damage_before_and_after flips the CRC of the second record of the segment before
        the newest, before its index entries, and of its last but one, after the entry a
        read of its last 8 records starts at; it returns the segment, its record count,
        the index of that entry and the offset of the first flipped byte."""
        e = self.entries[-2]
        count = len(e["offsets"])
        k, off, index = self.chosen(e, count - 8)
        early, late = e["offsets"][1] + 4, e["offsets"][count - 2] + 4
        flip(self.seg_path(e), early)
        flip(self.seg_path(e), late)
        return e, count, index, early

    def test_From_damageBeforeAndAfter(self):
        # A --from read delivers as it goes from the entry: with damage before and after
        # the entry, it reads what it reads without the index when only the damage after
        # the entry is there (docs/FORMAT.md, "The segment index").
        e, count, index, early = self.damage_before_and_after()
        kw = {"from_seq": e["first_seq"] + index}
        got = read(self.ring, **kw)
        flip(self.seg_path(e), early)
        with hidden_indexes(self.ring):
            want = read(self.ring, **kw)
        self.assertEqual(got, want)
        self.assertEqual([x[:3] for x in got[1]], [(e["name"], e["offsets"][count - 2], "checksum")])

    def test_Follower_damageBeforeAndAfter(self):
        # Damage before and after the entry a follower starts at. Started from a
        # sequence number, it delivers as it goes from the entry, as a --from read does:
        # the damage before the entry is not read, the one after is met there, so it
        # reads what it reads without the index on the segment damaged after the entry
        # only. Started with last, it counts back as a last read does: a record failing
        # after the entry makes it read the segment from offset 64, as without an index.
        e, count, index, early = self.damage_before_and_after()
        newer = len(self.entries[-1]["offsets"])
        kw = {"from_seq": e["first_seq"] + index}
        with self.subTest(**kw):
            got = follow(self.ring, **kw)
            flip(self.seg_path(e), early)
            with hidden_indexes(self.ring):
                want = follow(self.ring, **kw)
            flip(self.seg_path(e), early)
            self.assertEqual(got, want)
            self.assertEqual(got[1], [(e["name"], e["offsets"][count - 2], "checksum")])
        kw = {"last": newer + count - index}
        with self.subTest(**kw):
            got = follow(self.ring, **kw)
            with hidden_indexes(self.ring):
                want = follow(self.ring, **kw)
            self.assertEqual(got, want)
            self.assertEqual(got[1], [(e["name"], e["offsets"][1], "checksum")])
        # Damage after the entry only: the same as without an index.
        flip(self.seg_path(e), e["offsets"][1] + 4)
        for kw in ({"from_seq": e["first_seq"] + index}, {"last": newer + count - index}):
            with self.subTest(**kw):
                got = follow(self.ring, **kw)
                with hidden_indexes(self.ring):
                    want = follow(self.ring, **kw)
                self.assertEqual(got, want)
                self.assertEqual(got[1], [(e["name"], e["offsets"][count - 2], "checksum")])

    def test_Stat_hotThroughIndex(self):
        # stat counts the hot segment from its last index entry: the same count as
        # without the index; damage before the entry is not read, as by last N.
        hot = self.entries[-1]
        ring = filering.open(self.ring)
        got = ring.stat()
        with hidden_indexes(self.ring):
            want = ring.stat()
        self.assertEqual((got.records, got.last_seq, got.damage), (want.records, want.last_seq, []))
        flip(self.seg_path(hot), hot["offsets"][1] + 4)
        got = ring.stat()
        self.assertEqual((got.records, got.last_seq, got.damage), (want.records, want.last_seq, []))
        with hidden_indexes(self.ring):
            self.assertEqual([e.offset for e in ring.stat().damage], [hot["offsets"][1]])

    def test_Hot_tornAndLagging(self):
        # The hot segment: a committed word far behind (records above it valid), then a
        # torn record: not damage, the same with and without the index.
        hot = self.entries[-1]
        path = self.seg_path(hot)
        patch_bytes(path, 56, struct.pack("<Q", hot["offsets"][2]))
        end = hot["offsets"][-1] + align8(24 + len(self.payloads[-1]))
        rec = record_bytes(self.want[-1][0] + 1, T0, b"torn" * 10)
        if end + len(rec) <= self.size:
            patch_bytes(path, end, rec[:8] + rec[8:12] + b"\xff" + rec[13:])
        for kw in self.reads(hot, len(hot["offsets"]) - 1):
            with self.subTest(**kw):
                recs, errs = self.same(**kw)
                self.assertEqual(errs, [])
        self.assertEqual(read(self.ring, last=1)[0], self.want[-1:])

    def test_Hot_damageBetweenTheEntryAndTheLast(self):
        hot = self.entries[-1]
        count = len(hot["offsets"])
        k, off, index = self.chosen(hot, count - 1)
        j = [x for x, o in enumerate(hot["offsets"]) if o < off][-1]  # before the last entry
        flip(self.seg_path(hot), hot["offsets"][j] + 4)
        self.assertEqual(index - 1, j)
        for n in range(1, count + 2):
            if count - n <= j:
                recs, errs = self.same(last=n)
                self.assertEqual([x[:3] for x in errs], [(hot["name"], hot["offsets"][j], "checksum")], n)
            else:
                # The damage is before the entry the read starts at.
                self.assertEqual(read(self.ring, last=n), (self.want[-n:], []), n)


class TestHostileIndexes(IndexedRing):
    """Whatever N.idx is, it changes nothing and nothing is reported, but for a correct one."""

    def setUp(self):
        IndexedRing.setUp(self)
        self.make(with_hot_end(mixed_payloads(2000, 8), 16384, 12000, 14000), 16384, 4096)
        self.e = self.entries[-2]  # the newest sealed segment
        self.hot = self.entries[-1]
        count = len(self.e["offsets"])
        self.i = count - 4
        self.k, self.off, self.index = self.chosen(self.e, self.i)
        self.assertGreater(self.index, 3)
        self.reads = [
            {"last": len(self.hot["offsets"]) + count - self.i},
            {"from_seq": self.e["first_seq"] + self.i},
            {"from_seq": self.e["first_seq"] + self.index, "last": 10 ** 6},
        ]
        self.good = read_file(self.idx_path(self.e))

    def hostile(self, data=None, entries=None, number=None, size=None, block=None, count=None, version=1, crc=None, magic=b"FILERIDX", extra=b""):
        """hostile writes an index of the newest sealed segment from these fields (the
        correct ones by default)."""
        e = self.e
        block = self.block if block is None else block
        size = self.size if size is None else size
        if entries is None:
            entries = index_entries(size, block, e["offsets"])
        count = len(entries) if count is None else count
        fixed = struct.pack("<QQII", number if number is not None else int(e["name"][:16]), size, block, count)
        head = magic + struct.pack("<II", version, zlib.crc32(fixed) if crc is None else crc) + fixed + bytes(24)
        if data is None:
            data = head + struct.pack("<%dQ" % len(entries), *entries) + extra
        write_file(self.idx_path(e), data)

    def with_entry(self, value):
        entries = index_entries(self.size, self.block, self.e["offsets"])
        entries[self.k - 1] = value
        return entries

    def assertIgnored(self, what):
        """assertIgnored checks that the index in place is not used: on the ring damaged
        before the entry, the reads report the damage as without an index; on the healthy
        ring they give every record and report nothing."""
        for kw in self.reads:
            with self.subTest(what, **kw):
                got = read(self.ring, **kw)
                with hidden_indexes(self.ring):
                    want = read(self.ring, **kw)
                self.assertEqual(got, want)
                self.assertEqual(want[1], [])
                flip(self.seg_path(self.e), self.e["offsets"][1] + 4)
                try:
                    got = read(self.ring, **kw)
                    with hidden_indexes(self.ring):
                        want = read(self.ring, **kw)
                finally:
                    flip(self.seg_path(self.e), self.e["offsets"][1] + 4)
                self.assertEqual(got, want)
                self.assertEqual([x[:3] for x in want[1]], [(self.e["name"], self.e["offsets"][1], "checksum")])
        self.assertEqual(open_index_fds(), 0)

    def test_CorrectIndex_isUsed(self):
        # The reference for the tests below: the same reads with the index written here.
        flip(self.seg_path(self.e), self.e["offsets"][1] + 4)
        for kw in self.reads:
            with self.subTest(**kw):
                self.spy.clear()
                recs, errs = read(self.ring, **kw)
                self.assertEqual(errs, [])
                self.assertEqual(self.spy.used("entry_for"), [(self.off, self.index)])
        self.hostile()
        self.assertEqual(read_file(self.idx_path(self.e)), self.good)

    def test_File(self):
        good = self.good
        for name, data in (
            ("empty", b""),
            ("header only", good[:64]),
            ("short by 8", good[:-8]),
            ("short by 1", good[:-1]),
            ("long by 8", good + bytes(8)),
            ("long by 1", good + b"\0"),
            ("twice", good + good),
            ("zeros", bytes(len(good))),
            ("ones", b"\xff" * len(good)),
        ):
            self.hostile(data=data)
            self.assertIgnored(name)

    def test_Header(self):
        self.hostile(magic=b"FILERIDY")
        self.assertIgnored("magic")
        self.hostile(magic=b"FILERSEG")
        self.assertIgnored("a segment's magic")
        self.hostile(version=2)
        self.assertIgnored("version 2")
        self.hostile(version=0)
        self.assertIgnored("version 0")
        good_crc = struct.unpack_from("<I", self.good, 12)[0]
        self.hostile(crc=good_crc ^ 1)
        self.assertIgnored("header CRC")
        self.hostile(number=int(self.e["name"][:16]) + 1)
        self.assertIgnored("another segment's number")
        self.hostile(number=0)
        self.assertIgnored("number 0")
        # Another segment's index under this name.
        other = self.entries[-3]
        write_file(self.idx_path(self.e), read_file(self.idx_path(other)))
        self.assertIgnored("another segment's index")
        for size in (self.size * 2, self.size - 4096, 1 << 30):
            self.hostile(size=size)
            self.assertIgnored("segment size %d" % size)
        self.hostile(count=len(index_entries(self.size, self.block, [])) + 1)
        self.assertIgnored("K one more than the entries")
        entries = index_entries(self.size, self.block, self.e["offsets"])
        self.hostile(entries=entries + [0])
        self.assertIgnored("K + 1 entries")
        self.hostile(entries=entries[:-1])
        self.assertIgnored("K - 1 entries")
        self.hostile(entries=entries, count=0)
        self.assertIgnored("K 0")
        # Blocks that are not a power of two, or too small, or too large: the entries are
        # right for them, only the block size is wrong.
        for block in (6144, 4095, 12288, 2048, 1024, 8, 0, 1 << 21, 1 << 31):
            self.hostile(block=block, entries=index_entries(self.size, block, self.e["offsets"]) if 0 < block else [])
            self.assertIgnored("block %d" % block)
        # A block size that leaves no entry (K would be 0).
        self.hostile(block=16384, entries=[])
        self.assertIgnored("K 0 for blocks of 16 KiB")
        # Bytes 40..63 are not checked: an index with garbage there is used.
        self.hostile(data=self.good[:40] + b"\xff" * 24 + self.good[64:])
        self.spy.clear()
        read(self.ring, **self.reads[0])
        self.assertEqual(self.spy.used("entry_for"), [(self.off, self.index)])

    def test_Entry(self):
        off, index, k, B = self.off, self.index, self.k, self.block
        offsets = self.e["offsets"]
        below = [o for o in offsets if offsets[1] < o < k * B]
        self.assertTrue(below)  # a record after the damage, before k * B
        for name, value in (
            ("mid-record", (off + 8) | index << 32),
            ("mid-record, 24 in", (off + 24) | index << 32),
            ("next record's offset", offsets[index + 1] | index << 32),
            ("index one less", off | (index - 1) << 32),
            ("index 0", off),
            ("not a multiple of 8", (off + 4) | index << 32),
            ("offset below k*B (a record after the damage)", below[-1] | offsets.index(below[-1]) << 32),
            ("offset 64", 64),
            ("offset at the segment size", self.size | index << 32),
            ("offset beyond the segment", 0xFFFFFFF8 | index << 32),
        ):
            self.hostile(entries=self.with_entry(value))
            self.assertIgnored(name)
        self.hostile(entries=[0xFFFFFFFFFFFFFFFF] * len(index_entries(self.size, B, [])))
        self.assertIgnored("every bit of every entry")
        # The largest k is checked, and only it: a wrong one makes no index, even with
        # a correct entry before it.
        entries = index_entries(self.size, self.block, offsets)
        entries[k - 1] = (off + 8) | index << 32
        self.assertTrue(entries[k - 2])
        self.hostile(entries=entries)
        self.assertIgnored("largest entry wrong, the one before right")

    def test_Entry_indexAboveTheRead_passedOver(self):
        # An entry whose index is above the record a read starts at is passed over, as a
        # zero one is: the one before it is taken (when it checks out, the read starts
        # there).
        offsets = self.e["offsets"]
        zero = self.with_entry(0)
        self.hostile(entries=zero)
        want = []
        for kw in self.reads:
            self.spy.clear()
            want.append((read(self.ring, **kw), self.spy.used()))
        for name, value in (
            ("every bit", 0xFFFFFFFFFFFFFFFF),
            ("offset 0, a large index", 1 << 63),
            ("index beyond the segment's records", self.off | (len(offsets) + 5) << 32),
        ):
            self.hostile(entries=self.with_entry(value))
            for kw, w in zip(self.reads, want):
                with self.subTest(name, **kw):
                    self.spy.clear()
                    self.assertEqual((read(self.ring, **kw), self.spy.used()), w)

    def test_Entry_indexBeyondWhatFits(self):
        # An entry whose index is more than the records that fit before its offset: not
        # used, even when the record there says it has that index (a segment whose
        # sequence numbers jump, damaged: reported by reading it from offset 64).
        e = self.e
        j = self.index
        off = self.off
        path = self.seg_path(e)
        with open(path, "rb") as f:
            f.seek(off)
            n = struct.unpack("<I", f.read(4))[0]
            f.seek(off + 8)
            body = bytearray(f.read(n - 8))
        fake = (off - 64) // 24 + 1
        body[0:8] = struct.pack("<Q", e["first_seq"] + fake)
        patch_bytes(path, off + 4, struct.pack("<I", zlib.crc32(bytes(body))) + bytes(body[:8]))
        entries = self.with_entry(off | fake << 32)
        entries[self.k :] = [0] * (len(entries) - self.k)  # entry k is the last one
        self.hostile(entries=entries)
        dfd = os.open(self.ring, os.O_RDONLY | os.O_DIRECTORY)
        self.addCleanup(os.close, dfd)
        seg = _ring.open_segment(dfd, self.ring, (e["name"], number(e), e["first_seq"], self.last_seq(e), True), self.size)
        self.addCleanup(seg.close)
        self.assertIsNone(seg.damage)
        self.assertIsNone(_index._check(seg, self.k, self.block, off | fake << 32))
        self.assertIsNone(_index.entry_for(dfd, seg, fake))
        for kw in ({"from_seq": e["first_seq"] + j},):
            recs, errs = self.same(**kw)
            self.assertEqual([x[:3] for x in errs], [(e["name"], off, "sequence")])

    def test_Entries_outOfOrder(self):
        # Entries that do not grow: the largest k whose index fits is taken, wherever
        # it points, and checked. Here the last entry points at the first record, at
        # offset 64, below its block: no index, though entries before it are right.
        offsets = self.e["offsets"]
        entries = index_entries(self.size, self.block, offsets)
        entries[self.k - 1] = 0
        entries[-1] = offsets[0]  # index 0 at offset 64: below k * B, not used
        self.hostile(entries=entries)
        self.assertIgnored("an out of order entry below k * B")

    def test_OffsetBeyondSealedCommittedWord(self):
        # A sealed segment whose file holds, past its committed word, other records with
        # the sequence numbers of its last ones, and an entry pointing at them: not used.
        # (The segment is cut short to make room: its last 4 records are dropped, which
        # the manifest shows as a gap before the hot segment.)
        e = self.e
        path = self.seg_path(e)
        keep = len(e["offsets"]) - 4
        committed = e["offsets"][keep]
        patch_bytes(path, committed, bytes(self.size - committed))
        patch_bytes(path, 56, struct.pack("<Q", committed))
        doc = manifest_doc([{k: v for k, v in x.items() if k != "offsets"} for x in self.entries], 16384, 64)
        doc["segments"][-2]["last_seq"] = e["first_seq"] + keep - 1
        write_manifest(self.ring, doc)
        j = keep - 3
        fake = b"".join(record_bytes(e["first_seq"] + x, T0, b"FAKE%d" % x) for x in range(j, keep))
        self.assertLessEqual(committed + len(fake), self.size)
        patch_bytes(path, committed, fake)
        k = committed // self.block
        entries = index_entries(self.size, self.block, e["offsets"][:keep])
        self.assertTrue(entries[k - 1])
        self.assertFalse(any(entries[k:]))
        entries[k - 1] = committed | j << 32
        self.hostile(entries=entries)
        want = [r for r in self.want if not e["first_seq"] + keep <= r[0] <= self.last_seq(e)]
        n = len(self.hot["offsets"]) + keep - j
        for kw in ({"last": n}, {"from_seq": e["first_seq"] + j}, {"from_seq": e["first_seq"] + j + 1, "last": 1}):
            with self.subTest(**kw):
                recs, errs = self.same(**kw)
                self.assertEqual(errs, [])
                self.assertNotIn(b"FAKE", b"".join(r[2] for r in recs))
                self.assertEqual(recs, [r for r in want if r[0] >= kw.get("from_seq", 0)][-kw.get("last", len(want)) :])
        # The same entry in the segment found hot (the committed word is a lower bound
        # there): used, since the fake records are then the segment's own.
        patch_bytes(path, 48, struct.pack("<Q", 0))
        doc["segments"] = doc["segments"][:-1]
        doc["segments"][-1]["last_seq"] = 0
        doc["segments"][-1]["sealed"] = False
        write_manifest(self.ring, doc)
        self.spy.clear()
        recs, errs = read(self.ring, last=3)
        self.assertEqual(errs, [])
        self.assertEqual([r[2] for r in recs], [b"FAKE%d" % x for x in range(j, keep)])
        self.assertEqual(self.spy.used()[-1], (committed, j))

    def test_NotARegularFile(self):
        # A symbolic link (to a correct index), a FIFO, a directory, a socket: not used,
        # nothing reported, and the reader does not block.
        target = self.path("elsewhere.bin")
        write_file(target, self.good)
        idx = self.idx_path(self.e)
        os.unlink(idx)
        def blocked(signum, frame):
            raise AssertionError("the reader blocked")

        old = signal.signal(signal.SIGALRM, blocked)
        signal.alarm(20)
        try:
            for name, make in (
                ("symlink", lambda: os.symlink("elsewhere.bin", idx)),
                ("absolute symlink", lambda: os.symlink(target, idx)),
                ("dangling symlink", lambda: os.symlink("nothing", idx)),
                ("FIFO", lambda: os.mkfifo(idx)),
                ("directory", lambda: os.mkdir(idx)),
                ("socket", lambda: self.bind(idx)),
            ):
                make()
                try:
                    self.assertIgnored(name)
                finally:
                    if os.path.isdir(idx) and not os.path.islink(idx):
                        os.rmdir(idx)
                    else:
                        os.unlink(idx)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)

    def bind(self, path):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(s.close)
        s.bind(path)

    def test_HotSegment(self):
        # The hot segment's last entry, wrong: its records are counted from offset 64.
        hot = self.hot
        entries = index_entries(self.size, self.block, hot["offsets"])
        top = max(k for k in range(len(entries)) if entries[k])
        self.assertGreater(entries[top] >> 32, 1)
        flip(self.seg_path(hot), hot["offsets"][1] + 4)
        n = 3
        got = read(self.ring, last=n)
        self.assertEqual(got, (self.want[-n:], []))  # through the index
        for name, value in (
            ("mid-record", entries[top] + 8),
            ("index one more", entries[top] + (1 << 32)),
            ("beyond the records", (entries[top] & 0xFFFFFFFF) + 4096 | (entries[top] >> 32) << 32),
            ("not a multiple of 8", entries[top] + 4),
        ):
            with self.subTest(name):
                bad = list(entries)
                bad[top] = value
                write_file(self.idx_path(hot), index_bytes(number(hot), self.size, self.block, hot["offsets"], bad))
                recs, errs = self.same(last=n)
                self.assertEqual([x[:3] for x in errs], [(hot["name"], hot["offsets"][1], "checksum")])
        # No entry at all (a hot segment just begun): counted from offset 64.
        write_file(self.idx_path(hot), index_bytes(number(hot), self.size, self.block, [], [0, 0, 0]))
        self.assertEqual([x[:3] for x in self.same(last=n)[1]], [(hot["name"], hot["offsets"][1], "checksum")])

    def test_Random_neverChangesAHealthyRead(self):
        # Random entries (near the right ones, or anything): on a healthy ring every
        # read gives every record and reports nothing, whatever the index says.
        rnd = random.Random(9)
        offsets = self.e["offsets"]
        right = index_entries(self.size, self.block, offsets)
        want = {}
        for kw in self.reads:
            with hidden_indexes(self.ring):
                want[str(kw)] = read(self.ring, **kw)
        for _ in range(150):
            entries = []
            for v in right:
                c = rnd.random()
                if c < 0.3:
                    v = v
                elif c < 0.5:
                    v = 0
                elif c < 0.7:
                    v = (v & 0xFFFFFFFF) + rnd.choice((-16, -8, 8, 16, 24)) & 0xFFFFFFFF | (v >> 32) << 32
                elif c < 0.85:
                    o = rnd.choice(offsets)
                    v = o | (offsets.index(o) + rnd.choice((-1, 0, 0, 1))) % (1 << 32) << 32
                else:
                    v = rnd.getrandbits(64)
                entries.append(v)
            self.hostile(entries=entries)
            for kw in self.reads:
                self.assertEqual(read(self.ring, **kw), want[str(kw)], (kw, entries))
        self.assertEqual(open_index_fds(), 0)


class TestCommandLine(IndexedRing):
    def test_CatLast_onIndexedRing(self):
        # `python3 -m filering cat --last N` and the library agree on an indexed ring.
        self.make(mixed_payloads(2000, 10), 1 << 20, 65536)
        for args in (["--last", "5"], ["--last", "1500"], ["--from", "1000"], ["--from", "1999", "--last", "1"]):
            p = self.run_cli("cat", "--format", "raw", self.ring, *args)
            self.assertEqual((p.returncode, p.stderr), (0, b""))
            last = int(args[args.index("--last") + 1]) if "--last" in args else None
            start = int(args[args.index("--from") + 1]) if "--from" in args else 0
            want = [r for r in self.want if r[0] >= start]
            if last:
                want = want[-last:]
            self.assertEqual(p.stdout, b"".join(struct.pack("<I", len(d)) + d for _, _, d in want), args)


if __name__ == "__main__":
    import unittest

    unittest.main()
