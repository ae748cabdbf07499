"""Shared helpers of the filering package's tests: paths, a ring writer, the Go binary.

The ring writer builds rings byte for byte from docs/FORMAT.md, so most tests need no Go
producer. Tests that do need the `filering` binary find it in $FILERING_BIN, else build it
with `go build` from the repository (when Go is installed), else skip unless
FILERING_REQUIRE_GO=1 says it must be there.
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

import filering

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.environ.get("FILERING_REPO") or os.path.normpath(os.path.join(HERE, "..", ".."))
CORPUS = os.path.join(REPO, "testdata", "conformance")
T0 = 1700000000123456789  # a record time, ns since the epoch


def tmp_base():
    """tmp_base is where rings go: /dev/shm (tmpfs, like /run/ring) when there is one."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def check_installed():
    """check_installed fails when the tests would run the source tree instead of an installed copy.

    scripts/python-test.sh sets FILERING_TEST_INSTALLED=1, so that a file missing from the
    package fails the tests instead of being found in python/filering.
    """
    if os.environ.get("FILERING_TEST_INSTALLED") == "1":
        src = os.path.normpath(os.path.join(HERE, "..", "filering"))
        got = os.path.dirname(os.path.abspath(filering.__file__))
        if os.path.normpath(got) == src:
            raise AssertionError("testing the source tree %s, not an installed filering" % got)


# ---------------------------------------------------------------------------------------
# A ring writer, from docs/FORMAT.md


def align8(x):
    return (x + 7) & ~7


def record_bytes(seq, time_ns, payload):
    body = struct.pack("<Qq", seq, time_ns) + payload
    rec = struct.pack("<II", 24 + len(payload), zlib.crc32(body)) + body
    return rec + b"\0" * (align8(len(rec)) - len(rec))


def segment_bytes(number, first_seq, payloads, size=4096, sealed=True, committed=None, times=None):
    """segment_bytes builds a whole segment file; it returns (bytearray, record offsets)."""
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
    fixed = struct.pack("<QQQq", size, number, first_seq, T0)
    buf[0:16] = b"FILERSEG" + struct.pack("<II", 1, zlib.crc32(fixed))
    buf[16:48] = fixed
    buf[48:64] = struct.pack("<QQ", 1 if sealed else 0, off if committed is None else committed)
    return buf, offsets


def seg_name(number, suffix=".seg"):
    return "%016d%s" % (number, suffix)


def write_file(path, data):
    tmp = os.path.join(os.path.dirname(path), ".tmp-" + os.path.basename(path))
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def write_manifest(ring, doc):
    if isinstance(doc, dict):
        doc = json.dumps(doc, separators=(",", ":")) + "\n"
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
    beyond segments_max (the oldest) are dropped. It returns the manifest entries, each
    with an extra "offsets" list.
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
    if hot and (not segs or segs[-1]["end"] > 64):
        pass
    segs = segs[-segments_max:]
    entries = []
    for j, s in enumerate(segs):
        sealed = not (hot and j == len(segs) - 1)
        data, offsets = segment_bytes(s["number"], s["first_seq"], s["payloads"], segment_size, sealed, times=s["times"])
        write_file(os.path.join(ring, seg_name(s["number"])), data)
        last = s["first_seq"] + len(s["payloads"]) - 1
        entries.append({"name": seg_name(s["number"]), "first_seq": s["first_seq"], "last_seq": last if sealed else 0, "sealed": sealed, "offsets": offsets})
    write_manifest(ring, manifest_doc([{k: v for k, v in e.items() if k != "offsets"} for e in entries], segment_size, segments_max, generation))
    return entries


def index_entries(size, block, offsets):
    """index_entries returns the K entries of a segment's index (docs/FORMAT.md, "The
    segment index"): entry k is offset | index << 32 of the first record at or after
    k * block, 0 when no record (among offsets, those published) is there."""
    count = (size - 1) // block
    out = []
    j = 0
    for k in range(1, count + 1):
        while j < len(offsets) and offsets[j] < k * block:
            j += 1
        out.append(offsets[j] | j << 32 if j < len(offsets) else 0)
    return out


def index_bytes(number, size, block, offsets, entries=None):
    """index_bytes builds a whole index file N.idx for segment number (size bytes) whose
    records start at offsets; entries, if given, replaces the entries computed."""
    if entries is None:
        entries = index_entries(size, block, offsets)
    fixed = struct.pack("<QQII", number, size, block, len(entries))
    head = b"FILERIDX" + struct.pack("<II", 1, zlib.crc32(fixed)) + fixed + bytes(24)
    return head + struct.pack("<%dQ" % len(entries), *entries)


def segment_offsets(data):
    """segment_offsets returns the offsets of the records of a segment file's bytes, from
    offset 64 while they are valid (a producer's index points at no other)."""
    size = len(data)
    first = struct.unpack_from("<Q", data, 32)[0]
    off = 64
    out = []
    while off + 24 <= size:
        n, crc, seq = struct.unpack_from("<IIQ", data, off)
        if n < 24 or off + align8(n) > size or seq != first + len(out) or zlib.crc32(data[off + 8 : off + n]) != crc:
            break
        out.append(off)
        off += align8(n)
    return out


def write_index(ring, number, block=4096, offsets=None, entries=None):
    """write_index writes the index of segment number of ring, for its records (offsets,
    or those found in the file), with blocks of block bytes; it returns the entries."""
    with open(os.path.join(ring, seg_name(number)), "rb") as f:
        data = f.read()
    if offsets is None:
        offsets = segment_offsets(data)
    if entries is None:
        entries = index_entries(len(data), block, offsets)
    write_file(os.path.join(ring, seg_name(number, ".idx")), index_bytes(number, len(data), block, offsets, entries))
    return entries


def patch_bytes(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def sensor_payloads(n, start=0):
    return [b"%.3f" % (20 + ((i * 7919) % 1000) / 100.0) for i in range(start, start + n)]


def expected(payloads, first_seq=1):
    return [(first_seq + i, T0 + first_seq + i, p) for i, p in enumerate(payloads)]


class RingTestCase(unittest.TestCase):
    def setUp(self):
        self.ring = tempfile.mkdtemp(prefix="filering-py-", dir=tmp_base())
        self.addCleanup(shutil.rmtree, self.ring, True)

    def path(self, name):
        return os.path.join(self.ring, name)

    def run_cli(self, *args, **kw):
        """run_cli runs python3 -m filering ARGS and returns the CompletedProcess."""
        return subprocess.run(
            [sys.executable, "-m", "filering"] + list(args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=kw.pop("timeout", 60),
            **kw
        )


# ---------------------------------------------------------------------------------------
# The Go binary


_GO_BIN = []


def go_binary():
    """go_binary returns the path of the `filering` binary, building it once; None if impossible."""
    if _GO_BIN:
        return _GO_BIN[0]
    path = os.environ.get("FILERING_BIN")
    if not path:
        go = shutil.which("go") or ("/usr/local/go/bin/go" if os.path.exists("/usr/local/go/bin/go") else None)
        if go and os.path.isfile(os.path.join(REPO, "go.mod")):
            out = tempfile.mkdtemp(prefix="filering-gobin-")
            path = os.path.join(out, "filering")
            p = subprocess.run([go, "build", "-o", path, "./cmd/filering"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if p.returncode != 0:
                sys.stderr.write("go build failed:\n%s\n" % p.stdout.decode("utf-8", "replace"))
                path = None
    _GO_BIN.append(path if path and os.access(path, os.X_OK) else None)
    return _GO_BIN[0]


def need_go(test):
    """need_go returns the Go binary, or skips the test (fails with FILERING_REQUIRE_GO=1)."""
    path = go_binary()
    if path is None:
        if os.environ.get("FILERING_REQUIRE_GO") == "1":
            test.fail("the filering binary is required (FILERING_REQUIRE_GO=1): set FILERING_BIN or install Go")
        test.skipTest("no filering binary (set FILERING_BIN, or install Go)")
    return path


class Producer(object):
    """Producer writes a live ring as docs/FORMAT.md says, for tests: records appended to
    the hot segment in place (payload first, then the commit word, then the committed
    word with pwrite, which wakes inotify), rolls, retention, a clean stop."""

    def __init__(self, ring, segment_size=4096, segments_max=4, first_seq=1, first_number=1, generation=0):
        self.ring = ring
        self.size = segment_size
        self.segments_max = segments_max
        self.seq = first_seq
        self.number = first_number - 1
        self.generation = generation
        self.entries = []
        self.fd = None
        self.off = 64
        os.makedirs(ring, exist_ok=True)
        self._new_segment()

    def path(self, name):
        return os.path.join(self.ring, name)

    def _write_manifest(self):
        self.generation += 1
        write_manifest(self.ring, manifest_doc(self.entries, self.size, self.segments_max, self.generation))

    def _new_segment(self):
        self.number += 1
        buf, _ = segment_bytes(self.number, self.seq, [], self.size, sealed=False)
        name = seg_name(self.number)
        tmp = self.path(".new-" + name)
        with open(tmp, "wb") as f:
            f.write(buf)
        os.rename(tmp, self.path(name))
        old = self.fd
        self.fd = os.open(self.path(name), os.O_RDWR)
        self.off = 64
        if old is not None:
            self._seal(old)
        self.entries.append({"name": name, "first_seq": self.seq, "last_seq": 0, "sealed": False})
        dropped = []
        while len(self.entries) > self.segments_max:
            dropped.append(self.entries.pop(0)["name"])
        self._write_manifest()
        for name in dropped:
            try:
                os.unlink(self.path(name))
            except FileNotFoundError:
                pass  # taken

    def _seal(self, fd):
        os.pwrite(fd, struct.pack("<Q", 1), 48)
        os.close(fd)
        e = self.entries[-1]
        e["sealed"], e["last_seq"] = True, self.seq - 1

    def append(self, payload, time_ns=None):
        rec = record_bytes(self.seq, T0 + self.seq if time_ns is None else time_ns, payload)
        if self.off + len(rec) > self.size:
            self.roll()
        os.pwrite(self.fd, rec[8:], self.off + 8)
        os.pwrite(self.fd, rec[:8], self.off)
        self.off += len(rec)
        os.pwrite(self.fd, struct.pack("<Q", self.off), 56)
        self.seq += 1
        return self.seq - 1

    def roll(self):
        """roll seals the hot segment (it must hold records) and starts the next."""
        self._new_segment()

    def restart(self):
        """restart is a clean stop and a new producer on the same ring: the sequence goes on."""
        self.close()
        self._new_segment()

    def close(self):
        """close stops cleanly: a hot segment with records is sealed."""
        if self.fd is not None and self.off > 64:
            self._seal(self.fd)
            self._write_manifest()
        elif self.fd is not None:
            os.close(self.fd)
        self.fd = None


def open_targets():
    """open_targets returns the paths this process's descriptors are open on, without the
    " (deleted)" the kernel adds to a removed file's."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            continue
        if target.endswith(" (deleted)"):
            target = target[: -len(" (deleted)")]
        out.append(target)
    return out
