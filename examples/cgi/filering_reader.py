#!/usr/bin/env python3
"""filering_reader: read a filering ring directory from Python (standard library only).

This one file implements the snapshot reader of docs/FORMAT.md (format version 1): it
reads and validates the manifest, opens every segment it needs before reading any of
them, checks each segment header and every record rule, and returns the records in
sequence order. Copy it next to your program; it runs on Python 3.8 and later, on Linux.

    import filering_reader
    for seq, time_ns, payload in filering_reader.read_records("/run/ring/sensor", last=100):
        ...

From a shell it prints what `filering cat` prints, byte for byte (--format lines, json
or raw), reports damage the same way and exits with 1 when there was any:

    python3 filering_reader.py /run/ring/sensor --last 100 --format json

It passes the conformance corpus of testdata/conformance (test_conformance.py).

Errors are subclasses of filering_reader.Error: NotFoundError when the ring does not
exist (no manifest), ManifestError for a manifest that fails a check, CorruptError (with
.path, .offset and .kind) for a segment that fails one. Every error has .kind, one of the
words of testdata/conformance/README.md ("manifest", "checksum", ...), or None. By
default read_records raises the first CorruptError it meets; with errors=[] it does what
`filering cat` does instead: it skips the damage (a damaged segment, or the rest of a
segment from a damaged record on), appends each CorruptError to the list and returns
every record it could read. A reader never locks and never writes.

Speed. Records have no index, so finding the last N records of a segment means walking
the segment from its start. The walk checks the framing rules of every record (size,
bounds, sequence); runs of equally spaced records are framed in bulk by comparing
strided memoryviews as bytes. Then the CRC of every record walked over is checked, as
docs/FORMAT.md asks: one zlib.crc32 call each, which is most of the time. With
check_all=False only the CRCs of the returned records (and of records past the
committed word, which decide where a segment ends) are checked. Only segments that can
hold wanted records are read: for last=N, from the newest backwards until N are found.

Measured with `python3 bench_filering_reader.py --runs 40` (in this directory) on the
2-core development machine (busy with other work), Python 3.11: a full ring of 16
segments of 1 MiB holding sensor-style records (payloads like b"21.734", 32 bytes a
record, 32,766 a segment); whole read_records call (manifest, opens, mmap, scan), best
of 40 in ms:

                                                  last=1000   last=1000, check_all=False
    hot segment half full (the usual case)           4.4          1.4
    hot segment just rolled (a full sealed           8.1          1.7
      segment is walked for the last 1000)
    hot segment holds exactly 1000 records           0.7          0.7
    from_seq=newest+1 (a long poll finding nothing)   -           1.0

Python 3.8 takes about 10% longer. Reading all 507,873 records of the ring takes 0.84 s.

Caveats. Segments are mapped read-only with mmap. The producer never truncates a
segment, but if something else truncated one while it is mapped, touching the lost
pages raises SIGBUS and kills the process: do not let anything but the producer write
to the ring directory. Returned payloads are bytes copies; nothing refers to the map
after read_records returns. On a big-endian machine each segment that is read is first
copied whole (the fast path views the map as native little-endian integers).
"""

import argparse
import base64
import datetime
import errno
import json
import mmap
import os
import re
import signal
import stat
import struct
import sys
import zlib
from array import array

__all__ = [
    "Error",
    "NotFoundError",
    "ManifestError",
    "CorruptError",
    "Manifest",
    "SegmentEntry",
    "read_manifest",
    "parse_manifest",
    "read_records",
    "format_time",
    "format_record",
    "format_records",
    "main",
]

# Format constants (docs/FORMAT.md, version 1).
FORMAT_VERSION = 1  # manifest "version" and segment header version
SEGMENT_MAGIC = b"FILERSEG"  # bytes 0-7 of every segment
HEADER_SIZE = 64  # segment header size; the first record starts here
RECORD_HEADER_SIZE = 24  # commit word (size, CRC) + sequence + time
SEGMENT_SIZE_MIN = 4096  # smallest segment size
SEGMENT_SIZE_MAX = 1 << 30  # largest segment size (1 GiB)
SEGMENT_SIZE_ALIGN = 4096  # segment sizes are multiples of this
SEGMENTS_MAX_MIN = 2  # smallest "segments_max"
SEGMENTS_MAX_MAX = 65536  # largest "segments_max"
MANIFEST_MAX = 1 << 20  # largest manifest, in bytes
INT_LIMIT = 1 << 63  # every manifest integer is below this
MANIFEST_NAME = "manifest"

# How many times read_records starts over when the manifest changes under it while it
# opens segments (docs/FORMAT.md, "Reading", step 2).
MAX_ATTEMPTS = 10

_SEGMENT_NAME = re.compile(r"[0-9]{16}\.seg")  # used with fullmatch: ^[0-9]{16}\.seg$
_HEADER = struct.Struct("<8sIIQQQq")  # bytes 0-47 of a segment header
_SEQ_TIME = struct.Struct("<Qq")  # record bytes 8-23
# The fast path views the map as native 64-bit words, which are the file's
# little-endian words only on a little-endian machine.
_FAST = sys.byteorder == "little"
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_DIR_FD = os.open in os.supports_dir_fd
_EPOCH = datetime.datetime(1970, 1, 1)
_U32 = struct.Struct("=I")  # native order, like the views of _Segment
_U16 = struct.Struct("=H")
_SEQ16 = []


def _seq16():
    """_seq16 returns the 16-bit integers 0..65535 in native order, as bytes (built once)."""
    if not _SEQ16:
        both = bytearray(131072)
        little = bytes(range(256)) * 256  # 0 1 2 ... 255 0 1 ...
        big = b"".join(bytes((b,)) * 256 for b in range(256))  # 0 x256, 1 x256, ...
        if sys.byteorder == "little":
            both[0::2], both[1::2] = little, big
        else:
            both[0::2], both[1::2] = big, little
        _SEQ16.append(bytes(both))
    return _SEQ16[0]


class Error(Exception):
    """Base class of every error this module raises.

    .path is the file (or ring directory) it is about and .kind what is wrong, in the
    words of testdata/conformance/README.md, when known; otherwise both are None.
    """

    path = None
    offset = None
    kind = None
    reason = None

    def __init__(self, message, path=None, kind=None, reason=None):
        Exception.__init__(self, message)
        self.path = path
        self.kind = kind
        self.reason = reason


class NotFoundError(Error):
    """The ring does not exist: no ring directory, or no manifest in it (yet)."""

    def __init__(self, message, path=None):
        Error.__init__(self, message, path, "no-ring")


class ManifestError(Error):
    """The manifest failed one of the checks of docs/FORMAT.md."""

    def __init__(self, message, path=None):
        Error.__init__(self, message, path, "manifest")


class CorruptError(Error):
    """A listed segment is damaged. .path names the file, .offset the byte in it.

    .offset is the offset of the damaged record or header field, or None when the
    segment is damaged as a whole (not a regular file, wrong size). .kind says what is
    wrong: "not-regular", "size", "header", "sealed-word", "committed-word" (the
    segment is unreadable), "record-size", "checksum", "sequence", "missing",
    "last-seq" (the records from .offset on are). The message is the one `filering cat`
    prints: "PATH: corrupt at offset N: REASON".
    """

    def __init__(self, path, offset, reason, kind=None):
        if offset is None:
            message = "%s: %s" % (path, reason)
        else:
            message = "%s: corrupt at offset %d: %s" % (path, offset, reason)
        Error.__init__(self, message, path, kind)
        self.offset = offset
        self.reason = reason


class SegmentEntry(tuple):
    """One entry of the manifest's "segments" list (number is parsed from name)."""

    __slots__ = ()

    def __new__(cls, name, number, first_seq, last_seq, sealed):
        return tuple.__new__(cls, (name, number, first_seq, last_seq, sealed))

    name = property(lambda self: self[0])
    number = property(lambda self: self[1])
    first_seq = property(lambda self: self[2])
    last_seq = property(lambda self: self[3])  # 0 for the hot segment
    sealed = property(lambda self: self[4])


class Manifest(tuple):
    """A validated manifest. segments is a tuple of SegmentEntry, oldest first."""

    __slots__ = ()

    def __new__(cls, segment_size, segments_max, generation, segments):
        return tuple.__new__(cls, (segment_size, segments_max, generation, segments))

    segment_size = property(lambda self: self[0])
    segments_max = property(lambda self: self[1])
    generation = property(lambda self: self[2])
    segments = property(lambda self: self[3])


# ---------------------------------------------------------------------------------------
# Manifest


class _Reject(Exception):
    pass


def _no_duplicates(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise _Reject("duplicate field %r" % key)
        obj[key] = value
    return obj


def _small_int(text):
    # Integers are plain: no sign (not even -0), no fraction, no exponent. Bound the
    # digits before converting: every valid integer is below 2^63 (19 digits).
    if text.startswith("-"):
        raise _Reject("integer %s has a sign" % text[:20])
    if len(text) > 19:
        raise _Reject("integer %s... is too large" % text[:20])
    return int(text)


def _no_float(text):
    raise _Reject("number %s is not a plain integer" % text[:20])


def _no_constant(name):
    raise _Reject("%s is not allowed" % name)


_TOP_FIELDS = ("version", "segment_size", "segments_max", "generation", "segments")
_ENTRY_FIELDS = ("name", "first_seq", "last_seq", "sealed")


def parse_manifest(data, path=MANIFEST_NAME):
    """parse_manifest checks the bytes of a manifest and returns a Manifest.

    It makes every check of docs/FORMAT.md and raises ManifestError, naming path, on
    the first that fails.
    """

    def bad(why):
        return ManifestError("invalid manifest %s: %s" % (path, why), path)

    if len(data) > MANIFEST_MAX:
        raise bad("larger than %d bytes" % MANIFEST_MAX)
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise bad("not UTF-8 (byte %d)" % e.start)
    try:
        doc = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_int=_small_int,
            parse_float=_no_float,
            parse_constant=_no_constant,
        )
    except _Reject as e:
        raise bad(str(e))
    except (ValueError, RecursionError) as e:
        raise bad("not JSON: %s" % e)
    if type(doc) is not dict:
        raise bad("not a JSON object")

    def integer(obj, key, where, low, high):
        value = obj[key]
        if type(value) is not int:
            raise bad("%s%s is not an integer" % (where, key))
        if not low <= value <= high:
            raise bad("%s%s = %d is out of range %d..%d" % (where, key, value, low, high))
        return value

    if "version" in doc:
        if type(doc["version"]) is not int:
            raise bad("version is not an integer")
        if doc["version"] != FORMAT_VERSION:
            raise bad("unsupported version %d (this reader knows %d)" % (doc["version"], FORMAT_VERSION))
    for key in doc:
        if key not in _TOP_FIELDS:
            raise bad("unknown field %r" % key)
    for key in _TOP_FIELDS:
        if key not in doc:
            raise bad("missing field %r" % key)
    size = integer(doc, "segment_size", "", SEGMENT_SIZE_MIN, SEGMENT_SIZE_MAX)
    if size % SEGMENT_SIZE_ALIGN:
        raise bad("segment_size %d is not a multiple of %d" % (size, SEGMENT_SIZE_ALIGN))
    segments_max = integer(doc, "segments_max", "", SEGMENTS_MAX_MIN, SEGMENTS_MAX_MAX)
    generation = integer(doc, "generation", "", 0, INT_LIMIT - 1)
    raw = doc["segments"]
    if type(raw) is not list:
        raise bad("segments is not an array")
    if len(raw) > segments_max:
        raise bad("%d segments listed, segments_max is %d" % (len(raw), segments_max))

    entries = []
    prev = None
    for i, item in enumerate(raw):
        where = "segments[%d]." % i
        if type(item) is not dict:
            raise bad("segments[%d] is not an object" % i)
        for key in item:
            if key not in _ENTRY_FIELDS:
                raise bad("%sunknown field %r" % (where, key))
        for key in _ENTRY_FIELDS:
            if key not in item:
                raise bad("%smissing field %r" % (where, key))
        name = item["name"]
        if type(name) is not str or not _SEGMENT_NAME.fullmatch(name):
            raise bad("%sname %s is not a segment name (16 digits and .seg)" % (where, json.dumps(name)[:60]))
        number = int(name[:16])
        if number < 1:
            raise bad("%sname %s: segment numbers start at 1" % (where, name))
        first = integer(item, "first_seq", where, 1, INT_LIMIT - 1)
        last = integer(item, "last_seq", where, 0, INT_LIMIT - 1)
        sealed = item["sealed"]
        if type(sealed) is not bool:
            raise bad("%ssealed is not a boolean" % where)
        if sealed and last < first:
            raise bad("%slast_seq %d is below first_seq %d" % (where, last, first))
        if not sealed and last != 0:
            raise bad("%slast_seq is %d for an unsealed segment, want 0" % (where, last))
        if prev is not None:
            if not prev.sealed:
                raise bad("segments[%d] is unsealed but is not the last entry" % (i - 1))
            if number <= prev.number:
                raise bad("%sname %s does not follow %s" % (where, name, prev.name))
            if first <= prev.last_seq:
                raise bad(
                    "%sfirst_seq %d is not after last_seq %d of %s"
                    % (where, first, prev.last_seq, prev.name)
                )
        prev = SegmentEntry(name, number, first, last, sealed)
        entries.append(prev)
    return Manifest(size, segments_max, generation, tuple(entries))


# ---------------------------------------------------------------------------------------
# Files


class _Ring(object):
    """The ring directory, held open so every name is resolved in the same directory."""

    def __init__(self, path):
        self.path = path
        self.dfd = None
        try:
            self.dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise NotFoundError("no ring at %s: the directory does not exist" % path, path)
        except OSError as e:
            raise Error("open ring directory %s: %s" % (path, e.strerror), path)

    def close(self):
        if self.dfd is not None:
            os.close(self.dfd)
            self.dfd = None

    def join(self, name):
        return os.path.join(self.path, name)

    def open(self, name, what):
        """open opens name read-only, refusing anything but a regular file.

        It opens with O_NOFOLLOW (a symbolic link, even a dangling one, fails with
        ELOOP) and O_NONBLOCK (a FIFO does not block), then checks with fstat that the
        descriptor is a regular file. It returns None if name does not exist, and
        raises an Error with kind "not-regular" for anything but a regular file.
        """
        path = self.join(name)
        try:
            if _DIR_FD:
                fd = os.open(name, _OPEN_FLAGS, dir_fd=self.dfd)
            else:
                fd = os.open(path, _OPEN_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:
                why = "it is a symbolic link"
                raise Error("refusing %s %s: %s" % (what, path, why), path, "not-regular", why)
            raise Error("open %s %s: %s" % (what, path, e.strerror), path, None, e.strerror)
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                why = "not a regular file (%s)" % _file_type(mode)
                raise Error("refusing %s %s: %s" % (what, path, why), path, "not-regular", why)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def manifest(self):
        fd = self.open(MANIFEST_NAME, "manifest")
        path = self.join(MANIFEST_NAME)
        if fd is None:
            raise NotFoundError("no ring at %s: %s does not exist" % (self.path, path), self.path)
        try:
            chunks = []
            total = 0
            while total <= MANIFEST_MAX:
                chunk = os.read(fd, MANIFEST_MAX + 1 - total)
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
        except OSError as e:
            raise Error("read %s: %s" % (path, e.strerror), path)
        finally:
            os.close(fd)
        return parse_manifest(b"".join(chunks), path)


def _file_type(mode):
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "mode %o" % stat.S_IFMT(mode)


def read_manifest(ring_dir):
    """read_manifest reads and validates the manifest of the ring in ring_dir."""
    ring = _Ring(ring_dir)
    try:
        return ring.manifest()
    finally:
        ring.close()


# ---------------------------------------------------------------------------------------
# Snapshot


def _needed(entries, missing, failed, last, from_seq):
    """_needed lists, oldest first, the entries that can hold wanted records.

    Entries in missing (taken or removed) are left out; entries in failed (they could
    not be opened) are kept, to be reported, but hold no record.
    """
    out = []
    count = 0
    low = from_seq or 0
    for e in reversed(entries):
        if last is not None and count >= last:
            break
        if e.sealed and e.last_seq < low:
            break  # this segment and every older one hold only records below from_seq
        if e.number in missing:
            continue
        out.append(e)
        if e.sealed and e.number not in failed:
            count += e.last_seq - max(e.first_seq, low) + 1
    out.reverse()
    return out


def _open_snapshot(ring, manifest, last, from_seq):
    """_open_snapshot opens every needed segment before any is read (step 2).

    It returns a list of (entry, fd, error), oldest first, where error (a CorruptError)
    says why a listed segment could not be opened (it is not a regular file, say) and
    fd is then None; and the set of the numbers of listed segments that are missing.
    It returns None when the manifest changed and the caller must start over.
    """
    held = {}
    failed = {}
    missing = set()
    try:
        while True:
            needed = _needed(manifest.segments, missing, failed, last, from_seq)
            todo = [e for e in needed if e.number not in held and e.number not in failed]
            if not todo:
                return [(e, held.pop(e.number, None), failed.get(e.number)) for e in needed], missing
            for e in todo:
                try:
                    fd = ring.open(e.name, "segment")
                except Error as err:
                    failed[e.number] = CorruptError(ring.join(e.name), None, err.reason or str(err), err.kind)
                    continue
                if fd is not None:
                    held[e.number] = fd
                    continue
                again = ring.manifest()
                if again.generation != manifest.generation:
                    return None  # the producer rolled while we were opening
                missing.add(e.number)  # taken or removed: skip it
    finally:
        for fd in held.values():
            os.close(fd)


def read_records(ring_dir, last=None, from_seq=None, check_all=True, errors=None):
    """read_records returns records of a consistent snapshot of the ring in ring_dir.

    The result is a list of (seq, time_ns, payload) tuples in increasing sequence
    order; payload is bytes. from_seq keeps the records whose sequence number is at
    least from_seq; last keeps the last `last` of those (counting records, not
    sequence numbers). A segment listed in the manifest but missing (taken, or
    removed) is skipped, so there may be gaps.

    Only segments that can hold wanted records are read. In them every record is
    checked against every rule of docs/FORMAT.md, as the format's reader algorithm
    does. With check_all=False the CRC of a record is checked only when the record
    is returned or lies at or past the committed word (where a CRC failure decides
    where the segment ends); the framing rules are still checked for every record.
    That gives the same records, faster, but does not notice a damaged record that
    it does not return.

    Damage in a listed segment is a CorruptError. With errors=None (the default)
    read_records raises the first one. With errors a list, it does what `filering
    cat` does: a segment damaged as a whole (not a regular file, wrong size, bad
    header, sealed or committed word) gives none of its records, a damaged record
    ends its segment (the records before it are returned), each CorruptError is
    appended to errors, in the order of the manifest, and reading goes on with the
    next segment. Records skipped that way do not count for last.

    It raises NotFoundError when the ring does not exist, ManifestError for an
    invalid manifest, and Error otherwise (a manifest that is not a regular file, for
    instance). It is safe to call from any number of threads and processes at once.
    """
    for name, value in (("last", last), ("from_seq", from_seq)):
        if value is not None and (type(value) is not int or value < 0):
            raise ValueError("%s must be a non-negative int, not %r" % (name, value))
    ring = _Ring(ring_dir)
    try:
        full = False
        for _ in range(MAX_ATTEMPTS):
            manifest = ring.manifest()
            opened = _open_snapshot(ring, manifest, None if full else last, from_seq)
            if opened is None:
                continue
            held, missing = opened
            try:
                result = _read_snapshot(ring, manifest, held, missing, last, from_seq, check_all, full)
            finally:
                for _, fd, _ in held:
                    if fd is not None:
                        os.close(fd)
            if result is None:
                # Damage left fewer records than the manifest promised in the segments
                # opened for last: open every segment, as a snapshot.
                full = True
                continue
            records, damage = result
            if errors is None:
                if damage:
                    raise damage[0]
            else:
                errors.extend(damage)
            return records
        raise Error(
            "ring %s: the manifest changed %d times while segments were being opened"
            % (ring_dir, MAX_ATTEMPTS),
            ring_dir,
        )
    finally:
        ring.close()


def _read_snapshot(ring, manifest, held, missing, last, from_seq, check_all, full):
    """_read_snapshot reads the segments held; it returns (records, errors) or None.

    None means that last records were wanted, fewer were found in the segments held
    and older segments could hold more: the caller opens them all and calls again.
    """
    size = manifest.segment_size
    damage = []  # (index in held, error)

    def scan(i, limit):
        entry, fd, err = held[i]
        if err is None:
            recs, err = _scan(ring.join(entry.name), fd, entry, size, from_seq, limit, check_all)
        else:
            recs = []
        if err is not None:
            damage.append((i, err))
        return recs

    out = []
    if last is None:
        for i in range(len(held)):
            out.extend(scan(i, None))
    else:
        parts = []
        count = 0
        for i in reversed(range(len(held))):  # newest first, only as far back as needed
            if count >= last:
                break
            part = scan(i, last - count)
            parts.append(part)
            count += len(part)
        if count < last and not full and held:
            low = from_seq or 0
            oldest = held[0][0].number
            if any(e.number < oldest and e.number not in missing and not (e.sealed and e.last_seq < low)
                   for e in manifest.segments):
                return None
        for part in reversed(parts):
            out.extend(part)
    damage.sort(key=lambda d: d[0])
    return out, [e for _, e in damage]


def _scan(path, fd, entry, segment_size, from_seq, limit, check_all):
    """_scan checks one open segment (steps 3 and 4) and returns its wanted records.

    It returns (records, error): the wanted records among those before any damage,
    and the CorruptError describing the damage, or None.
    """
    size = os.fstat(fd).st_size
    if size != segment_size:
        return [], CorruptError(path, None, "file size is %d, the ring's segment size is %d" % (size, segment_size), "size")
    try:
        mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as e:
        raise Error("mmap %s: %s" % (path, e), path)
    try:
        magic, version, header_crc, seg_size, number, first, _created = _HEADER.unpack_from(mm, 0)
        if magic != SEGMENT_MAGIC:
            return [], CorruptError(path, 0, "bad magic %r" % magic, "header")
        if version != FORMAT_VERSION:
            return [], CorruptError(path, 8, "unsupported version %d" % version, "header")
        if header_crc != zlib.crc32(mm[16:48]):
            return [], CorruptError(path, 12, "header CRC mismatch", "header")
        if seg_size != size:
            return [], CorruptError(path, 16, "header segment size %d, the ring's is %d" % (seg_size, size), "header")
        if number != entry.number:
            return [], CorruptError(path, 24, "header segment number %d does not match the name" % number, "header")
        if first != entry.first_seq:
            return [], CorruptError(path, 32, "first sequence %d, the manifest says %d" % (first, entry.first_seq), "header")
        # A reader without atomic loads (this one reads a plain mapping) may see a hot
        # segment's committed word ahead of its records on a weakly ordered CPU: it
        # reads a hot segment once more before it reports a damaged record in it.
        for attempt in (0, 1):
            try:
                recs, err, hot = _scan_mapped(path, mm, entry, size, first, from_seq, limit, check_all)
            except CorruptError as e:
                return [], e
            if err is None or not hot or attempt:
                return recs, err
    finally:
        mm.close()


def _scan_mapped(path, mm, entry, size, first, from_seq, limit, check_all):
    if _FAST:
        view = memoryview(mm)
        words = (view.cast("Q"), view.cast("I"), view.cast("H"))
    else:
        view = None
        data = mm[:]  # a copy; the CRCs catch a record that was changing meanwhile
        words = (array("Q", data), array("I", data), array("H", data))
        if sys.byteorder != "little":
            for a in words:
                a.byteswap()
    try:
        seg = _Segment(path, mm, words[0], words[1], words[2], size, first, entry)
        recs, err = seg.records(from_seq, limit, check_all)
        return recs, err, not seg.sealed
    finally:
        if view is not None:
            for a in words:
                a.release()
            view.release()


class _Segment(object):
    """_Segment scans one mapped segment whose fixed header fields were checked.

    q, w32 and h16 view the segment as 64-, 32- and 16-bit integers (native integers,
    in the file's little-endian order). Records are kept as runs [i, k, m]: m records,
    the first at word i, each k words long.
    """

    def __init__(self, path, mm, q, w32, h16, size, first, entry):
        self.path = path
        self.mm = mm
        self.q = q
        self.w32 = w32
        self.h16 = h16
        self.first = first
        sealed = q[6]  # the sealed word first, then the committed word (step 3)
        committed = q[7]
        if sealed > 1:
            raise CorruptError(path, 48, "sealed word is %d" % sealed, "sealed-word")
        if entry.sealed and not sealed:
            raise CorruptError(path, 48, "sealed word is 0 but the manifest lists the segment sealed", "sealed-word")
        if committed < HEADER_SIZE or committed > size or committed & 7:
            raise CorruptError(path, 56, "committed word %d is out of range" % committed, "committed-word")
        self.sealed = sealed == 1
        self.committed = committed
        # A segment listed sealed holds exactly the records first_seq..last_seq.
        self.allowed = entry.last_seq - first + 1 if entry.sealed else None
        self.runs, self.stop = self._frame(size >> 3)

    def _frame(self, nwords):
        """_frame walks the records from offset 64 and checks the framing rules.

        It returns the runs of records that pass, and stop: None if the walk ended
        normally (end of segment, zero commit word), else (offset, reason, kind) of
        the first record that broke a rule.
        """
        q = self.q
        w32 = self.w32
        runs = []
        i = HEADER_SIZE >> 3
        seq = self.first
        same = 0  # how many records in a row had the same stride
        while i < nwords:  # i < nwords  <=>  offset + 8 <= segment size
            w = q[i]
            if not w:
                if (i << 3) < self.committed:
                    return runs, (i << 3, "committed record missing (zero commit word)", "missing")
                return runs, None
            n = w & 0xFFFFFFFF
            k = (n + 7) >> 3
            if n < RECORD_HEADER_SIZE:
                return runs, (i << 3, "record size %d is below %d" % (n, RECORD_HEADER_SIZE), "record-size")
            if i + k > nwords:
                return runs, (i << 3, "record size %d runs past the end of the segment" % n, "record-size")
            if q[i + 1] != seq:
                return runs, (i << 3, "record sequence %d, want %d" % (q[i + 1], seq), "sequence")
            if runs and runs[-1][1] == k:
                runs[-1][2] += 1
                same += 1
            else:
                runs.append([i, k, 1])
                same = 1
            i += k
            seq += 1
            if same < 8:
                continue
            # Eight records in a row had the same stride: frame whole runs of the next
            # ones at once with strided views. A run passes only if every record in it
            # passes exactly the checks above (a size of at least 24 giving this
            # stride, inside the segment, the next sequence number); otherwise go on
            # one record at a time.
            run = runs[-1]
            low = max(RECORD_HEADER_SIZE, 8 * k - 7)
            high = 8 * k
            m = 64
            while m >= 8:
                m = min(m, (nwords - i) // k, 65536 - (seq & 0xFFFF))
                if m >= 8 and self._run_ok(i, k, m, seq, low, high):
                    run[2] += m
                    i += m * k
                    seq += m
                    m = min(m * 2, 8192)
                else:
                    m //= 2
            same = 0
        return runs, None

    def _run_ok(self, i, k, m, seq, low, high):
        """_run_ok tells whether the m records at words i, i+k, ... all pass the framing rules.

        Each must have a size in low..high (so the stride is k), and sequence numbers
        seq, seq+1, ...; the caller keeps the run inside the segment and keeps the low
        16 bits of the sequence numbers from wrapping. The values are compared as
        strided byte strings, which is much faster than one Python int each.
        """
        w32 = self.w32
        end = i + m * k
        sizes = bytes(w32[2 * i : 2 * end : 2 * k])
        n = w32[2 * i]
        if sizes == _U32.pack(n) * m:
            if not low <= n <= high:
                return False
        else:
            distinct = set(w32[2 * i : 2 * end : 2 * k].tolist())
            if min(distinct) < low or max(distinct) > high:
                return False
        h16 = self.h16
        s = 4 * (i + 1)  # the low 16 bits of the first sequence number
        lo = seq & 0xFFFF
        hi = seq >> 16
        return (
            bytes(h16[s : 4 * end : 4 * k]) == _seq16()[2 * lo : 2 * (lo + m)]
            and bytes(h16[s + 1 : 4 * end : 4 * k]) == _U16.pack(hi & 0xFFFF) * m
            and bytes(w32[2 * (i + 1) + 1 : 2 * end : 2 * k]) == _U32.pack(hi >> 16) * m
        )

    def _spans(self, a, b):
        """_spans yields (index, offset, offset step, count) covering records a..b-1."""
        base = 0
        for i, k, m in self.runs:
            if base + m > a and base < b:
                ja = max(a - base, 0)
                jb = min(b - base, m)
                yield base + ja, (i + ja * k) << 3, k << 3, jb - ja
            base += m
            if base >= b:
                return

    def _crc_ok(self, a, b):
        """_crc_ok checks the CRCs of records a..b-1; it returns the first bad index or None."""
        mm = self.mm
        w32 = self.w32
        crc32 = zlib.crc32
        for index, off, step, count in self._spans(a, b):
            w = off >> 2
            end = w + count * (step >> 2)
            sizes = w32[w : end : step >> 2].tolist()
            crcs = w32[w + 1 : end : step >> 2].tolist()
            for o, n, c in zip(range(off, off + count * step, step), sizes, crcs):
                if crc32(mm[o + 8 : o + n]) != c:
                    return index + (o - off) // step
        return None

    def _offset(self, index):
        for _, off, _, _ in self._spans(index, index + 1):
            return off
        raise IndexError(index)

    def _end(self, count):
        """_end returns the offset just past the first count records."""
        if count == 0:
            return HEADER_SIZE
        for _, off, step, _ in self._spans(count - 1, count):
            return off + step
        raise IndexError(count)

    def records(self, from_seq, limit, check_all):
        """records applies the CRC rule in order and returns the wanted records.

        It returns (records, error). The first record that fails a rule ends the
        segment: below the committed word that is corruption (error names its
        offset); at or past it the record is not committed yet (or was torn) and the
        records before it are the whole segment. In a segment the manifest lists
        sealed, a record past last_seq is corruption wherever it is, and so is the end
        of the records before last_seq. The records returned are the wanted ones
        among those before the first failure.
        """
        count = sum(run[2] for run in self.runs)
        stop = self.stop
        err = None
        if self.allowed is not None and count > self.allowed:
            stop = (
                self._offset(self.allowed),
                "record sequence %d is past the manifest's last_seq %d" % (self.first + self.allowed, self.first + self.allowed - 1),
                "last-seq",
                True,
            )
            count = self.allowed
        elif stop is not None:
            stop = stop + (stop[0] < self.committed,)
        while True:
            lo = 0
            if from_seq is not None:
                lo = min(count, max(0, from_seq - self.first))
            if limit is not None:
                lo = max(lo, count - limit)
            if check_all:
                start = 0
            else:
                # Records below the committed word that are not returned: their CRC
                # cannot change which records are returned. Find the first record at
                # or past the committed word.
                start = lo
                for index, off, step, n in self._spans(0, lo):
                    if off + (n - 1) * step >= self.committed:
                        start = index + max(0, -((off - self.committed) // step))
                        break
            bad = self._crc_ok(start, lo)
            if bad is None:
                out, bad, why = self._collect(lo, count)
                if bad is None:
                    if err is None and stop is not None and stop[3]:
                        err = CorruptError(self.path, stop[0], stop[1], stop[2])
                    if err is None and self.allowed is not None and count < self.allowed:
                        err = CorruptError(
                            self.path,
                            self._end(count),
                            "the records end at sequence %d, before the manifest's last_seq %d"
                            % (self.first + count - 1, self.first + self.allowed - 1),
                            "last-seq",
                        )
                    return out, err
                kind = "sequence" if why.startswith("record sequence") else "checksum"
            else:
                why, kind = "record CRC mismatch", "checksum"
            # Record bad failed and every record from start to it passed: the segment
            # ends there, so the wanted records may start earlier. Select again (rare).
            off = self._offset(bad)
            if off < self.committed:
                err = CorruptError(self.path, off, why, kind)
            count = bad
            stop = None

    def _collect(self, a, b):
        """_collect copies out records a..b-1, checking each copy; it returns (records, bad index, reason)."""
        mm = self.mm
        w32 = self.w32
        crc32 = zlib.crc32
        unpack = _SEQ_TIME.unpack_from
        out = []
        append = out.append
        for index, off, step, count in self._spans(a, b):
            w = off >> 2
            end = w + count * (step >> 2)
            sizes = w32[w : end : step >> 2].tolist()
            crcs = w32[w + 1 : end : step >> 2].tolist()
            expect = self.first + index
            for o, n, c in zip(range(off, off + count * step, step), sizes, crcs):
                body = mm[o + 8 : o + n]  # copy out, then check what we return
                if crc32(body) != c:
                    return out, expect - self.first, "record CRC mismatch"
                seq, t = unpack(body)
                if seq != expect:
                    return out, expect - self.first, "record sequence %d, want %d" % (seq, expect)
                append((seq, t, body[16:]))
                expect += 1
        return out, None, None


# ---------------------------------------------------------------------------------------
# Output, as `filering cat` prints it


def format_time(ns):
    """format_time formats nanoseconds since the epoch as YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ (UTC)."""
    secs, frac = divmod(ns, 1000000000)
    t = _EPOCH + datetime.timedelta(seconds=secs)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%09dZ" % (t.year, t.month, t.day, t.hour, t.minute, t.second, frac)


def format_record(seq, time_ns, payload):
    """format_record returns one JSON Lines line (bytes, ending in a newline) for a record.

    The payload goes in "data" as a JSON string when it is valid UTF-8 (only '"', '\\'
    and control characters are escaped), else in "data_b64" as standard base64.
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        key = "data_b64"
        value = '"' + base64.b64encode(payload).decode("ascii") + '"'
    else:
        key = "data"
        value = json.dumps(text, ensure_ascii=False)
    line = '{"seq":%d,"time":"%s","%s":%s}\n' % (seq, format_time(time_ns), key, value)
    return line.encode("utf-8")


_RAW_LENGTH = struct.Struct("<I")
FORMATS = ("lines", "json", "raw")


def format_records(records, fmt="lines"):
    """format_records returns records as `filering cat --format fmt` prints them (bytes).

    lines: each payload and a newline; json: JSON Lines (format_record); raw: each
    payload's length as a little-endian u32, then the payload.
    """
    if fmt == "lines":
        return b"".join(p + b"\n" for _, _, p in records)
    if fmt == "json":
        return b"".join(format_record(s, t, p) for s, t, p in records)
    if fmt == "raw":
        return b"".join(_RAW_LENGTH.pack(len(p)) + p for _, _, p in records)
    raise ValueError("unknown format %r; want one of %s" % (fmt, ", ".join(FORMATS)))


def _count(text):
    if not re.fullmatch(r"[0-9]{1,19}", text) or int(text) >= INT_LIMIT:
        raise argparse.ArgumentTypeError("%r is not a non-negative integer" % text)
    return int(text)


def main(argv=None):
    """main runs the command line; it returns the exit status."""
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `... | head` ends us quietly
    parser = argparse.ArgumentParser(
        prog="filering_reader",
        description="Print the records of a filering ring, as `filering cat` does.",
    )
    parser.add_argument("dir", help="the ring directory, e.g. /run/ring/sensor")
    parser.add_argument("--last", type=_count, metavar="N", help="only the last N records (0, the default: all)")
    parser.add_argument("--from", dest="from_seq", type=_count, metavar="SEQ", help="only records from sequence number SEQ on")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="lines",
        help="lines (default): each payload and a newline; json: JSON Lines; raw: u32 little-endian length and payload",
    )
    parser.add_argument("--json", action="store_const", const="json", dest="format", help="same as --format json")
    args = parser.parse_args(argv)
    damage = []
    try:
        records = read_records(args.dir, last=args.last or None, from_seq=args.from_seq, errors=damage)
    except Error as e:
        sys.stderr.write("filering_reader: %s\n" % e)
        return 1
    # Like `filering cat`: everything readable is printed, every damage reported, and
    # the exit status is 1 when there was any.
    out = sys.stdout.buffer
    try:
        for i in range(0, len(records), 4096):
            out.write(format_records(records[i : i + 4096], args.format))
        out.flush()
    except OSError as e:
        sys.stderr.write("filering_reader: write: %s\n" % e.strerror)
        return 1
    for e in damage:
        sys.stderr.write("filering_reader: %s\n" % e)
    return 1 if damage else 0


if __name__ == "__main__":
    sys.exit(main())
