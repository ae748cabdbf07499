"""Segments: opening and checking a segment file, and reading its records.

A segment is read with pread(2), a window of at most WINDOW bytes at a time, never
mapped: a file truncated under a reader cannot kill it with SIGBUS, and what a reader
holds is bounded by the window and by the records it returns, never by a length read
from the file. Records are checked against every rule of docs/FORMAT.md ("Reading",
step 4) in the copy that is returned, so what a reader returns is what it checked.

Speed. Without a segment index (N.idx, _index.py), finding the last N records of a
segment means walking it from its start; with one, from the entry before them. Walking
checks the framing (size, bounds, sequence) and the CRC of every record. Runs of
equally spaced records are framed in bulk, by comparing strided views of the window as
bytes. Their CRCs are checked in bulk too, with one zlib.crc32 call over a
rearranged copy of the run: each record becomes P + body + ~CRC (P the four bytes that
take a CRC-32 register from 0 to 0xFFFFFFFF, ~CRC the stored CRC inverted), whose raw
CRC (no initial or final inversion) is zero exactly when the stored CRC is the body's,
and the raw CRC of the whole copy is the sum of its records' shifted by their places.
It is zero when every record's CRC matches; a run that fails the check (one damaged
record always does) is checked again record by record to find the first bad one. Two
damaged records in one run cancel out only when their errors do, as unlikely as a
damaged record whose CRC still matches (about 2^-32 for random damage).
"""

from __future__ import annotations

import errno as _errno
import os
import stat as _stat
import struct
import sys
import zlib
from itertools import repeat

from ._errors import CorruptionError, Error
from ._format import (
    HEADER_SIZE,
    INT_LIMIT,
    MAGIC,
    MAX_NUMBER,
    OFF_SEALED,
    RECORD_HEADER_SIZE,
    SEGMENT_SIZE_ALIGN,
    SEGMENT_SIZE_MAX,
    SEGMENT_SIZE_MIN,
    VERSION,
    Record,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, List, Optional, Tuple

    from ._manifest import Entry

WINDOW = 4 << 20  # bytes read at a time, at most
SLACK = 64 << 10  # bytes read past the committed word, where more records may be
_BATCH = 32  # runs of at least this many records have their CRCs checked in bulk
_CHUNK = 1 << 20  # a record larger than the window is checked in pieces of this size

OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_HEADER = struct.Struct("<8sIIQQQqQQ")  # the 64-byte segment header
_WORDS = struct.Struct("<QQ")  # the sealed and committed words
_SEQ_TIME = struct.Struct("<Qq")
_LITTLE = sys.byteorder == "little"
_U32 = struct.Struct("=I")  # native order, like the views of a window
_U16 = struct.Struct("=H")
_RESOURCES = (_errno.EMFILE, _errno.ENFILE, _errno.ENOMEM)
_NEW = tuple.__new__
# P: the four bytes that take a raw CRC-32 register from 0 to 0xFFFFFFFF, the standard
# initial value (zlib.crc32(P, 0xFFFFFFFF) == 0); see the module documentation.
_P = b"\x62\xf5\x26\x92"
_NOT = bytes(range(255, -1, -1))  # a translation table inverting every bit
_POOL = []  # type: List[bytearray]  # spare window buffers (list.pop/append are atomic)
_POOL_MAX = 2


def _buffer() -> bytearray:
    """_buffer returns a buffer of WINDOW + 8 bytes from the pool, or a new one."""
    try:
        return _POOL.pop()
    except IndexError:
        return bytearray(WINDOW + 8)


def _release(b: bytearray) -> None:
    if len(_POOL) < _POOL_MAX:
        _POOL.append(b)


def _go_quote(b: bytes) -> str:
    """_go_quote quotes bytes as Go's %q does, for messages like the Go reader's."""
    out = ['"']
    for c in b:
        ch = chr(c)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= c < 0x7F:
            out.append(ch)
        else:
            out.append({7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r"}.get(c, "\\x%02x" % c))
    out.append('"')
    return "".join(out)


class NotRegular(Exception):
    """NotRegular: a name refers to something other than a regular file (the message says what)."""


def _file_type(mode: int) -> str:
    for test, name in (
        (_stat.S_ISDIR, "a directory"),
        (_stat.S_ISFIFO, "a FIFO"),
        (_stat.S_ISSOCK, "a socket"),
        (_stat.S_ISCHR, "a character device"),
        (_stat.S_ISBLK, "a block device"),
        (_stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "mode %o" % _stat.S_IFMT(mode)


def open_regular(dfd: int, name: str) -> "Tuple[int, os.stat_result]":
    """open_regular opens name in the directory dfd read-only, as docs/FORMAT.md says.

    O_NOFOLLOW makes a symbolic link fail, O_NONBLOCK keeps a FIFO from blocking, and
    fstat refuses anything but a regular file before a byte is read. It raises
    NotRegular for anything but a regular file, and OSError otherwise
    (FileNotFoundError when there is nothing under the name).
    """
    try:
        fd = os.open(name, OPEN_FLAGS, dir_fd=dfd)
    except OSError as e:
        if e.errno == _errno.ELOOP:
            raise NotRegular("is a symbolic link")
        if e.errno == _errno.ENXIO:  # a socket
            raise NotRegular("not a regular file (a socket)")
        raise
    try:
        st = os.fstat(fd)
        if not _stat.S_ISREG(st.st_mode):
            raise NotRegular("not a regular file (%s)" % _file_type(st.st_mode))
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def resource_error(e: OSError, path: str) -> "Optional[Error]":
    """resource_error returns the Error for a failure that is not the file's, or None."""
    if e.errno in _RESOURCES:
        return Error("open %s: %s" % (path, e.strerror), path, None, None, e.errno)
    return None


class Segment(object):
    """A segment file held open, with its header checked.

    .damage is the segment-level damage found (a CorruptionError), or None; with damage,
    nothing of the segment is read and .fd may be None. first_seq and last_seq are the
    manifest's (last_seq 0 unless it lists the segment sealed), or the header's for a
    claimed segment the manifest does not list.
    """

    __slots__ = ("fd", "path", "name", "number", "size", "first_seq", "last_seq", "listed_sealed", "dev", "ino", "damage")

    def __init__(self, path: str, name: str, number: int, size: int, first_seq: int, last_seq: int, listed_sealed: bool) -> None:
        self.fd = None  # type: Optional[int]
        self.path = path
        self.name = name
        self.number = number
        self.size = size
        self.first_seq = first_seq
        self.last_seq = last_seq
        self.listed_sealed = listed_sealed
        self.dev = 0
        self.ino = 0
        self.damage = None  # type: Optional[CorruptionError]

    def close(self) -> None:
        """close closes the file."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)

    def same_file(self, dfd: int, name: str) -> bool:
        """same_file reports whether name in the directory dfd is the file held open."""
        if self.fd is None:
            return False
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except OSError:
            return False
        return st.st_ino == self.ino and st.st_dev == self.dev

    def words(self) -> "Tuple[int, int]":
        """words loads the sealed word, then the committed word; CorruptionError if either is impossible."""
        try:
            b = os.pread(self.fd, 16, OFF_SEALED)  # type: ignore[arg-type]
        except OSError as e:
            raise CorruptionError(self.path, OFF_SEALED, None, "read: %s" % e.strerror, e.errno)
        if len(b) < 16:
            raise CorruptionError(self.path, len(b) + OFF_SEALED, "size", "file is shorter than its header")
        sealed, committed = _WORDS.unpack(b)
        if sealed > 1:
            raise CorruptionError(self.path, OFF_SEALED, "sealed-word", "segment: bad segment header: sealed word %#x" % sealed)
        if committed < HEADER_SIZE or committed > self.size or committed & 7:
            raise CorruptionError(
                self.path,
                OFF_SEALED + 8,
                "committed-word",
                "segment: bad segment header: committed word %d outside %d..%d or not a multiple of 8" % (committed, HEADER_SIZE, self.size),
            )
        return sealed, committed

    def _check(self, st_size: int, listed: bool) -> "Optional[CorruptionError]":
        """_check reads the header of the open file and checks it (docs/FORMAT.md, step 3).

        listed says whether first_seq is the manifest's (else it is set from the header).
        """
        path = self.path
        if st_size != self.size:
            return CorruptionError(path, None, "size", "segment: wrong file size: file is %d bytes, ring segments are %d" % (st_size, self.size))
        try:
            b = os.pread(self.fd, HEADER_SIZE, 0)  # type: ignore[arg-type]
        except OSError as e:
            return CorruptionError(path, 0, None, "read header: %s" % e.strerror, e.errno)
        if len(b) < HEADER_SIZE:
            return CorruptionError(path, len(b), "size", "header: file is %d bytes" % len(b))
        magic, version, crc, size, number, first, _created, sealed, committed = _HEADER.unpack(b)
        if magic != MAGIC:
            return CorruptionError(path, 0, "header", "segment: bad magic: %s" % _go_quote(magic))
        if version != VERSION:
            return CorruptionError(path, 8, "header", "segment: unsupported format version: version %d, this reader knows %d" % (version, VERSION))
        got = zlib.crc32(b[16:48])
        if got != crc:
            return CorruptionError(path, 12, "header", "segment: bad segment header: header CRC %08x, stored %08x" % (got, crc))
        if not SEGMENT_SIZE_MIN <= size <= SEGMENT_SIZE_MAX or size % SEGMENT_SIZE_ALIGN:
            return CorruptionError(path, 16, "header", "segment: bad segment header: segment size %d not allowed" % size)
        if number == 0 or number > MAX_NUMBER:
            return CorruptionError(path, 24, "header", "segment: bad segment header: segment number %d out of range" % number)
        if first == 0 or first >= INT_LIMIT:
            return CorruptionError(path, 32, "header", "segment: bad segment header: first sequence %d out of range" % first)
        if size != self.size:
            return CorruptionError(path, 16, "header", "segment: bad segment header: header says segment size %d, ring segments are %d" % (size, self.size))
        if number != self.number:
            return CorruptionError(path, 24, "header", "segment: bad segment header: header says segment %d, the name says %d" % (number, self.number))
        if listed and first != self.first_seq:
            return CorruptionError(path, 32, "header", "segment: bad segment header: header says first sequence %d, the manifest says %d" % (first, self.first_seq))
        self.first_seq = first
        if sealed > 1:
            return CorruptionError(path, OFF_SEALED, "sealed-word", "segment: bad segment header: sealed word %#x" % sealed)
        if self.listed_sealed and sealed == 0:
            return CorruptionError(path, OFF_SEALED, "sealed-word", "segment: bad segment header: the manifest lists it sealed, its sealed word is 0")
        if committed < HEADER_SIZE or committed > size or committed & 7:
            return CorruptionError(
                path,
                OFF_SEALED + 8,
                "committed-word",
                "segment: bad segment header: committed word %d outside %d..%d or not a multiple of 8" % (committed, HEADER_SIZE, size),
            )
        return None


def header_valid(b: bytes) -> "Optional[Tuple[int, int, int, int, int]]":
    """header_valid returns (size, number, first sequence, sealed word, committed word) of a
    64-byte segment header that passes its own checks (magic, version, CRC, ranges), or None."""
    if len(b) < HEADER_SIZE:
        return None
    magic, version, crc, size, number, first, _created, sealed, committed = _HEADER.unpack_from(b)
    if magic != MAGIC or version != VERSION or zlib.crc32(b[16:48]) != crc:
        return None
    if not SEGMENT_SIZE_MIN <= size <= SEGMENT_SIZE_MAX or size % SEGMENT_SIZE_ALIGN:
        return None
    if number == 0 or number > MAX_NUMBER or first == 0 or first >= INT_LIMIT:
        return None
    return size, number, first, sealed, committed


def open_segment(dfd: int, dir_path: str, entry: "Entry", segment_size: int) -> "Optional[Segment]":
    """open_segment opens and checks the listed segment entry; None when its file is gone.

    Segment-level damage is the returned Segment's .damage. It raises Error only for a
    failure that is not the segment's (out of descriptors or memory).
    """
    name = entry[0]
    path = os.path.join(dir_path, name)
    seg = Segment(path, name, entry[1], segment_size, entry[2], entry[3] if entry[4] else 0, entry[4])
    try:
        fd, st = open_regular(dfd, name)
    except FileNotFoundError:
        return None
    except BlockingIOError:
        # The producer holds a lease on the file to reuse it for a new segment
        # (docs/FORMAT.md, "Reusing a segment file"): this one was removed.
        return None
    except NotRegular as e:
        seg.damage = CorruptionError(path, None, "not-regular", str(e))
        return seg
    except OSError as e:
        err = resource_error(e, path)
        if err is not None:
            raise err
        seg.damage = CorruptionError(path, None, None, "open: %s" % e.strerror, e.errno)
        return seg
    seg.fd = fd
    seg.dev, seg.ino = st.st_dev, st.st_ino
    if _test_hook_opened is not None:
        _test_hook_opened(path)
    seg.damage = seg._check(st.st_size, True)
    if seg.damage is not None and _renamed(dfd, name, seg):
        # The producer removed the segment and reused its file after the name was
        # looked up: the header is another segment's.
        seg.close()
        return None
    return seg


# Called, when a test sets it, by open_segment between opening a segment and checking it.
_test_hook_opened = None  # type: Optional[Callable[[str], None]]


def _renamed(dfd: int, name: str, seg: "Segment") -> bool:
    """_renamed reports whether name no longer names the file seg holds open: gone, or another file."""
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return st.st_ino != seg.ino or st.st_dev != seg.dev


def open_claimed(dfd: int, dir_path: str, name: str, number: int, fd: int, entry: "Optional[Entry]", segment_size: int) -> Segment:
    """open_claimed checks a segment a taker holds open as fd, now named name.

    Its size and first sequence come from its own header, checked against entry (the
    manifest's, when it lists the segment sealed) and segment_size (the manifest's).
    A segment the manifest does not list sealed is read as a sealed segment that says
    nothing of its last sequence number.
    """
    path = os.path.join(dir_path, name)
    seg = Segment(path, name, number, 0, 0, 0, True)
    seg.fd = fd
    try:
        st = os.fstat(fd)
        b = os.pread(fd, HEADER_SIZE, 0)
    except OSError as e:
        seg.damage = CorruptionError(path, 0, None, "read header: %s" % e.strerror, e.errno)
        return seg
    seg.dev, seg.ino = st.st_dev, st.st_ino
    listed = entry is not None and entry[4] and segment_size > 0
    if listed:
        seg.size, seg.first_seq, seg.last_seq = segment_size, entry[2], entry[3]  # type: ignore[index]
    elif len(b) == HEADER_SIZE:
        seg.size = _HEADER.unpack(b)[3]
        if not SEGMENT_SIZE_MIN <= seg.size <= SEGMENT_SIZE_MAX or seg.size % SEGMENT_SIZE_ALIGN:
            seg.size = st.st_size  # the header check below reports the bad size
    else:
        seg.size = st.st_size
    seg.damage = seg._check(st.st_size, bool(listed))
    return seg


# ---------------------------------------------------------------------------------------
# Reading records


class _Big(object):
    """_Big stands for a record larger than a window, found valid, until it is delivered."""

    __slots__ = ("seq", "time", "off", "size")

    def __init__(self, seq: int, time: int, off: int, size: int) -> None:
        self.seq, self.time, self.off, self.size = seq, time, off, size


class Cursor(object):
    """Cursor reads the records of one open, checked segment in order.

    .off is the offset of the next record, .seq the sequence number it must carry: 64
    and the first sequence number, or where an entry of the segment's index says the
    record with that index is (_index.py; the entry checked first).
    read() returns the records from there to the end of what is committed, and moves on.
    .done is set when the segment can hold no more records for this cursor: it is sealed
    and read to its end, or damaged (.error then says how).
    """

    __slots__ = ("seg", "off", "seq", "done", "error", "_bigs")

    def __init__(self, seg: Segment, off: int = HEADER_SIZE, index: int = 0) -> None:
        self._bigs = False  # a _Big was noted during this read
        self.seg = seg
        self.off = off  # another offset than 64: a checked entry of the segment's index
        self.seq = seg.first_seq + index
        self.done = False
        self.error = None  # type: Optional[CorruptionError]

    def read(self, start: int = 0, keep: "Optional[int]" = None, since: "Optional[int]" = None, once: bool = False) -> "List[Any]":
        """read returns the records from the cursor on, and moves past every record it scanned.

        Only records whose sequence number is at least start and, when since is not
        None, whose time is at least since (ns), are returned; with keep, only the last
        keep of those. With once, it returns after the first window that gave records,
        so that a reader far behind holds at most a window's worth at a time.

        Damage sets .error and .done and ends the read; the records before it are
        returned. A segment that is hot and read to the end of what is committed is not
        done: read again later for more.
        """
        out = []  # type: List[Any]
        if self.done:
            return out
        seg = self.seg
        retried = False
        try:
            while True:
                sealed, committed = seg.words()
                stop = self._walk(out, committed, start, keep, since, once)
                if stop is None:  # once: a window gave records
                    break
                why, reason = stop
                off = self.off
                if why == "last-seq":
                    raise CorruptionError(seg.path, off, "last-seq", reason)
                if why == "end":  # off + 8 > segment size: the segment is full
                    if sealed:
                        self._finish()
                    break
                if off < committed:
                    if not sealed and not retried:
                        # A plain read may see a hot segment's committed word before the
                        # records below it (weakly ordered CPUs): read once more.
                        retried = True
                        continue
                    if why == "zero":
                        why, reason = "missing", "segment: committed record missing"
                    raise CorruptionError(seg.path, off, why, reason)
                if sealed:
                    self._finish()
                    break
                # Hot when the read began: if it was sealed meanwhile, a record may have
                # been written just before the seal; read again with the final words.
                if seg.words()[0] == 0:
                    break
        except CorruptionError as e:
            self.error = e
            self.done = True
        if keep is not None and len(out) > keep:
            del out[: len(out) - keep]
        if self._bigs:
            self._bigs = False
            out = self._materialize(out)
        return out

    def _finish(self) -> None:
        """_finish ends a sealed segment read to its end, checking the manifest's last_seq."""
        seg = self.seg
        self.done = True
        if seg.last_seq and self.seq <= seg.last_seq:
            raise CorruptionError(
                seg.path,
                self.off,
                "last-seq",
                "segment: committed record missing: records end at sequence %d, below the manifest's last_seq %d for this sealed segment" % (self.seq - 1, seg.last_seq),
            )

    def _walk(self, out: "List[Any]", committed: int, start: int, keep: "Optional[int]", since: "Optional[int]", once: bool) -> "Optional[Tuple[str, Optional[str]]]":
        """_walk reads windows from .off and appends the wanted records to out.

        It returns why it stopped at .off: ("end", None) at the end of the segment,
        ("zero", None) at a zero commit word, (kind, reason) at a record that breaks a
        rule, or None when once is set and a window gave records.
        """
        seg = self.seg
        size = seg.size
        fd = seg.fd
        need = 0  # bytes the next window must hold at least (a record's span)
        window = _buffer()
        bulk = True  # check CRCs in bulk (off only to find the record a bulk check failed on)
        try:
            while True:
                off = self.off
                if off + 8 > size:
                    return "end", None
                end = min(size, max(committed, off) + SLACK, off + max(WINDOW, need))
                if need and off + need > end:
                    end = off + need
                if end - off > len(window) - 8:
                    window = bytearray(end - off + 8)  # a window larger than the pool's
                view = memoryview(window)
                try:
                    try:
                        got = os.preadv(fd, [view[: end - off]], off)  # type: ignore[arg-type]
                    except OSError as e:
                        raise CorruptionError(seg.path, off, None, "read: %s" % e.strerror, e.errno)
                    if got < end - off:
                        raise CorruptionError(seg.path, off + got, "size", "file is now shorter than the ring's segment size")
                    had = len(out)
                    stop, need = self._window(view, got, off, size, out, start, keep, since, bulk)
                finally:
                    view.release()
                if stop is not None and stop[0] == "again":
                    bulk = False  # a bulk check failed: read the window again, record by record
                    continue
                bulk = True
                if keep is not None and len(out) > keep:
                    del out[: len(out) - keep]
                if stop is not None and stop[0] != "more":
                    return stop
                if stop is None and end == size:
                    return "end", None
                if stop is not None and need > WINDOW:
                    big = self._big(need)
                    if big is not None:
                        return big
                    self._take_big(out, start, keep, since)
                    need = 0
                if once and len(out) > had:
                    return None
        finally:
            if len(window) == WINDOW + 8:
                _release(window)

    def _window(self, full: memoryview, got: int, base: int, size: int, out: "List[Any]", start: int, keep: "Optional[int]", since: "Optional[int]", bulk: bool) -> "Tuple[Optional[Tuple[str, Optional[str]]], int]":
        """_window frames, checks and collects the records of a window of the file.

        full views the window's buffer, whose first got bytes hold the file from base
        on (and at least 8 more bytes follow them). It moves the cursor past the valid
        records and returns (stop, need): stop is None when the records reach the end
        of the window, ("more", None) when the record at the cursor runs past it (need
        is then its span in bytes), ("again", None) when a bulk CRC check failed and the
        window must be read again and checked record by record (bulk False), or why the
        records stop at the cursor.

        The wanted records are copied out first; the bulk CRC check then rearranges the
        window in place (see the module documentation), so what is returned is what was
        checked.
        """
        mv = full[:got]
        nwords = got >> 3
        if _LITTLE:
            q = mv.cast("Q")
            w32 = mv.cast("I")
            h16 = mv.cast("H")
            sq = mv.cast("q")
        else:
            from array import array

            raw = mv.tobytes()
            q, w32, h16, sq = array("Q", raw), array("I", raw), array("H", raw), array("q", raw)
            if sys.byteorder == "big":
                for a in (q, w32, h16, sq):
                    a.byteswap()
        try:
            seq0 = self.seq
            runs, i, seq, why, what = _frame(q, w32, h16, nwords, seq0, (size - base) >> 3)
            count = seq - seq0
            need = 0
            stop = None  # type: Optional[Tuple[str, Optional[str]]]
            if why == "more":
                need = what << 3  # type: ignore[operator]
                stop = ("more", None)
            elif why is not None:
                stop = (why, what)  # type: ignore[assignment]
            seg = self.seg
            # In a segment listed sealed, records past last_seq are damage: they are not
            # delivered, but a CRC failure before them takes precedence.
            allowed = count
            if seg.last_seq and seq0 + count > seg.last_seq + 1:
                allowed = max(0, seg.last_seq + 1 - seq0)
            if bulk:
                picked = self._pick(mv, w32, sq, runs, seq0, allowed, start, keep, since)
                if not _bulk_check(full, w32, runs, count):
                    return ("again", None), 0
            else:
                bad = _crc_check(mv, w32, runs, count)
                if bad is not None:
                    count = bad
                    i = _word_of(runs, bad)
                    stop = ("checksum", _crc_reason(mv, i << 3))
                picked = self._pick(mv, w32, sq, runs, seq0, min(count, allowed), start, keep, since)
            if count > allowed:
                count = allowed
                i = _word_of(runs, count)
                stop = (
                    "last-seq",
                    "segment: record sequence out of order: sequence %d above the manifest's last_seq %d for this sealed segment" % (seq0 + count, seg.last_seq),
                )
            out.extend(picked)
        finally:
            for a in (q, w32, h16, sq):
                if type(a) is memoryview:
                    a.release()
            mv.release()
        self.off = base + (i << 3)
        self.seq = seq0 + count
        return stop, need

    @staticmethod
    def _pick(mv: memoryview, w32: "Any", sq: "Any", runs: "List[List[int]]", seq0: int, count: int, start: int, keep: "Optional[int]", since: "Optional[int]") -> "List[Any]":
        """_pick copies out the wanted records among the first count of runs."""
        lo = min(count, max(0, start - seq0))
        if lo >= count:
            return []
        if since is None:
            if keep is not None:
                lo = max(lo, count - keep)
            return _collect(mv, w32, sq, runs, seq0, lo, count)
        picked = _collect(mv, w32, sq, runs, seq0, lo, count)
        return [r for r in picked if r[1] >= since]

    def _big(self, span: int) -> "Optional[Tuple[str, Optional[str]]]":
        """_big checks the record at the cursor, larger than a window, in pieces.

        It returns why the records stop there, or None when the record is valid.
        """
        seg = self.seg
        off = self.off
        try:
            head = os.pread(seg.fd, RECORD_HEADER_SIZE, off)  # type: ignore[arg-type]
            size, crc = struct.unpack_from("<II", head)
            seq = struct.unpack_from("<Q", head, 8)[0]
            if seq != self.seq:
                return "sequence", "segment: record sequence out of order: sequence %d, want %d" % (seq, self.seq)
            got = 0
            pos = off + 8
            while pos < off + size:
                piece = os.pread(seg.fd, min(_CHUNK, off + size - pos), pos)  # type: ignore[arg-type]
                if not piece:
                    raise CorruptionError(seg.path, pos, "size", "file is now shorter than the ring's segment size")
                got = zlib.crc32(piece, got)
                pos += len(piece)
        except OSError as e:
            raise CorruptionError(seg.path, off, None, "read: %s" % e.strerror, e.errno)
        if got != crc:
            return "checksum", "segment: record checksum mismatch: computed %08x, stored %08x" % (got, crc)
        if seg.last_seq and seq > seg.last_seq:
            return "last-seq", "segment: record sequence out of order: sequence %d above the manifest's last_seq %d for this sealed segment" % (seq, seg.last_seq)
        return None

    def _take_big(self, out: "List[Any]", start: int, keep: "Optional[int]", since: "Optional[int]") -> None:
        """_take_big moves past the large record _big found valid, noting it in out if wanted."""
        seg = self.seg
        head = os.pread(seg.fd, RECORD_HEADER_SIZE, self.off)  # type: ignore[arg-type]
        size = struct.unpack_from("<I", head)[0]
        seq, t = _SEQ_TIME.unpack_from(head, 8)
        if seq >= start and (since is None or t >= since) and keep != 0:
            out.append(_Big(seq, t, self.off, size))
            self._bigs = True
        self.off += (size + 7) & ~7
        self.seq += 1

    def _materialize(self, out: "List[Any]") -> "List[Any]":
        """_materialize reads the large records of out, which it returns (as Records)."""
        seg = self.seg
        done = []
        for r in out:
            if type(r) is not _Big:
                done.append(r)
                continue
            try:
                body = os.pread(seg.fd, r.size - 8, r.off + 8)  # type: ignore[arg-type]
                crc = struct.unpack("<I", os.pread(seg.fd, 4, r.off + 4))[0]  # type: ignore[arg-type]
            except OSError as e:
                self.error = CorruptionError(seg.path, r.off, None, "read: %s" % e.strerror, e.errno)
                break
            if len(body) != r.size - 8 or zlib.crc32(body) != crc:
                # Changed since it was checked: only something other than a producer
                # writes a record below the committed word.
                self.error = CorruptionError(seg.path, r.off, "checksum", "record changed while it was read")
                break
            done.append(_NEW(Record, (r.seq, r.time, body[16:])))
        if self.error is not None:
            self.done = True
        return done


def _frame(q: "Any", w32: "Any", h16: "Any", nwords: int, seq: int, room: int) -> "Tuple[List[List[int]], int, int, Optional[str], Any]":
    """_frame walks the records from word 0 of a window and checks their framing.

    q, w32 and h16 view the window as 64-, 32- and 16-bit integers (the file's
    little-endian values); nwords is its length in words, room the words from its start
    to the end of the segment. It returns (runs, i, seq, why, what): the runs of records
    that pass, [word, stride in words, count, size or 0 when sizes differ]; the word
    and sequence number after them; and why the walk stopped there: None at the end of
    the window, "more" when the record there runs past it (what: its stride), "zero" at
    a zero commit word, "record-size" or "sequence" (what: the reason).
    """
    runs = []  # type: List[List[int]]
    i = 0
    same = 0  # records in a row with the same stride
    while i < nwords:
        w = q[i]
        if not w:
            return runs, i, seq, "zero", None
        n = w & 0xFFFFFFFF
        k = (n + 7) >> 3
        if n < RECORD_HEADER_SIZE:
            return runs, i, seq, "record-size", "segment: bad record size: %d" % n
        if i + k > room:
            return runs, i, seq, "record-size", "segment: bad record size: %d" % n
        if i + k > nwords:
            return runs, i, seq, "more", k
        if q[i + 1] != seq:
            return runs, i, seq, "sequence", "segment: record sequence out of order: sequence %d, want %d" % (q[i + 1], seq)
        if runs and runs[-1][1] == k:
            run = runs[-1]
            run[2] += 1
            if run[3] != n:
                run[3] = 0
            same += 1
        else:
            runs.append([i, k, 1, n])
            same = 1
        i += k
        seq += 1
        if same < 8:
            continue
        # Eight records in a row had the same stride: frame the next ones in bulk with
        # strided views, in chunks that double while every record passes exactly the
        # checks above (a size of at least 24 giving this stride, inside the window,
        # the next sequence number). A chunk stops at the first record that does not:
        # the loop above then looks at that one.
        run = runs[-1]
        low = max(RECORD_HEADER_SIZE, 8 * k - 7)
        high = 8 * k
        cap = 64
        while True:
            m = min(cap, (nwords - i) // k, 65536 - (seq & 0xFFFF))
            if m < 8:
                break
            j, uniform = _run_len(w32, h16, i, k, m, seq, low, high)
            if j:
                run[2] += j
                if run[3] != uniform:
                    run[3] = 0
                i += j * k
                seq += j
            if j < m:
                break
            cap = min(cap * 4, 16384)
        same = 0
    return runs, i, seq, None, None


_SEQ16 = []  # type: List[bytes]


def _seq16() -> bytes:
    """_seq16 returns the 16-bit integers 0..65535 in native order, as bytes (built once)."""
    if not _SEQ16:
        both = bytearray(131072)
        little = bytes(range(256)) * 256
        big = b"".join(bytes((b,)) * 256 for b in range(256))
        if sys.byteorder == "little":
            both[0::2], both[1::2] = little, big
        else:
            both[0::2], both[1::2] = big, little
        _SEQ16.append(bytes(both))
    return _SEQ16[0]


def _run_len(w32: "Any", h16: "Any", i: int, k: int, m: int, seq: int, low: int, high: int) -> "Tuple[int, int]":
    """_run_len checks the framing of the m records at words i, i+k, ... in bulk.

    Each must have a size in low..high (so that its stride is k) and the sequence
    numbers seq, seq+1, ...; the caller keeps the run inside the window and keeps the
    low 16 bits of the sequence numbers from wrapping. It returns (j, size): the first j
    records pass (j may be 0), and size is their size when all have the same, else 0.
    """
    end = i + m * k
    sizes = bytes(w32[2 * i : 2 * end : 2 * k])
    n = w32[2 * i]
    p = _U32.pack(n)
    if not low <= n <= high:
        return 0, 0
    if sizes == p * m:
        j, uniform = m, n
    else:
        # How many records at the start have the same size (a binary search, in C)?
        lo, hi = 1, m - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if sizes.startswith(p * mid):
                lo = mid
            else:
                hi = mid - 1
        j, uniform = lo, n
        if j < 8:
            # Sizes differ from record to record (within the stride): check them all.
            values = w32[2 * i : 2 * end : 2 * k].tolist()
            if low <= min(values) and max(values) <= high:
                j, uniform = m, 0
            else:
                j, uniform = next(x for x, v in enumerate(values) if not low <= v <= high), 0
                if j < 8:
                    return 0, 0
    s = 4 * (i + 1)  # the low 16 bits of the first sequence number
    lo16 = seq & 0xFFFF
    hi48 = seq >> 16
    end = i + j * k
    if (
        bytes(h16[s : 4 * end : 4 * k]) == _seq16()[2 * lo16 : 2 * (lo16 + j)]
        and bytes(h16[s + 1 : 4 * end : 4 * k]) == _U16.pack(hi48 & 0xFFFF) * j
        and bytes(w32[2 * (i + 1) + 1 : 2 * end : 2 * k]) == _U32.pack(hi48 >> 16) * j
    ):
        return j, uniform
    return 0, 0


def _word_of(runs: "List[List[int]]", index: int) -> int:
    """_word_of returns the word (in the window) of record index, or just past the last."""
    base = 0
    end = 0
    for i, k, m, _ in runs:
        if index < base + m:
            return i + (index - base) * k
        base += m
        end = i + m * k
    return end


def _crc_reason(mv: memoryview, o: int) -> str:
    size, crc = struct.unpack_from("<II", mv, o)
    return "segment: record checksum mismatch: computed %08x, stored %08x" % (zlib.crc32(mv[o + 8 : o + size]), crc)


_PATTERN = [b""]  # (zero word, P) * m, the largest built so far


def _pattern(m: int) -> memoryview:
    if len(_PATTERN[0]) < 8 * m:
        _PATTERN[0] = (b"\0\0\0\0" + _P) * max(m, 1024)
    return memoryview(_PATTERN[0])[: 8 * m].cast("Q")


def _batch_ok(full: memoryview, start: int, stride: int, m: int, size: int) -> bool:
    """_batch_ok checks the CRCs of m records of size bytes, stride apart from start, in bulk.

    See the module documentation: each record is rearranged, in place, as P + body +
    ~CRC (its size word zeroed, its CRC word replaced by P, the inverted CRC written
    right after the body, over its padding and, for padding under 4 bytes, the first
    bytes of the next record), and the raw CRC-32 of the whole is zero when every
    record's CRC matches. full must have 4 bytes to spare after the records.
    """
    length = m * stride
    region = full[start : start + length]
    try:
        ri = region.cast("I")
        notc = bytes(ri[1::stride >> 2]).translate(_NOT)
        ri.release()
        rq = region.cast("Q")
        rq[0 : length >> 3 : stride >> 3] = _pattern(m)  # size word -> 0, CRC word -> P
        rq.release()
        # The inverted CRCs go right after the bodies, at offset size of each record: a
        # 32-bit view from (size mod 4) on puts every one in a whole element.
        shift = size & 3
        yi = full[start + shift : start + shift + length + 4].cast("I")
        base = (size - shift) >> 2
        yi[base : base + (length >> 2) : stride >> 2] = memoryview(notc).cast("I")
        yi.release()
        # Up to the end of the last inverted CRC: what follows is not the run's.
        return zlib.crc32(full[start : start + length - stride + size + 4], 0xFFFFFFFF) == 0xFFFFFFFF
    finally:
        region.release()


def _bulk_check(full: memoryview, w32: "Any", runs: "List[List[int]]", count: int) -> bool:
    """_bulk_check checks the CRCs of the first count records of runs, rearranging runs of
    equal records in place (_batch_ok); False means that one failed: read the records
    again and find it with _crc_check.

    The runs are checked last first, so that the bytes the rearranging of one writes
    past its end belong to a run already checked. w32 views the window as 32-bit
    integers, the file's values.
    """
    crc32 = zlib.crc32
    spans = []
    index = 0
    for i, k, m, n in runs:
        if index >= count:
            break
        spans.append((i, k, min(m, count - index), n))
        index += m
    for i, k, m, n in reversed(spans):
        stride = k << 3
        if n and m >= _BATCH:
            if not _batch_ok(full, i << 3, stride, m, n):
                return False
            continue
        start = i << 3
        end = 2 * (i + m * k)
        sizes = w32[2 * i : end : 2 * k].tolist()
        crcs = w32[2 * i + 1 : end : 2 * k].tolist()
        for o, size, crc in zip(range(start, start + m * stride, stride), sizes, crcs):
            if crc32(full[o + 8 : o + size]) != crc:
                return False
    return True


def _crc_check(mv: memoryview, w32: "Any", runs: "List[List[int]]", count: int) -> "Optional[int]":
    """_crc_check checks the CRCs of the first count records of runs, one by one; it
    returns the index of the first bad one, or None."""
    crc32 = zlib.crc32
    index = 0
    for i, k, m, n in runs:
        if index >= count:
            break
        m = min(m, count - index)
        stride = k << 3
        start = i << 3
        end = 2 * (i + m * k)
        sizes = w32[2 * i : end : 2 * k].tolist()
        crcs = w32[2 * i + 1 : end : 2 * k].tolist()
        for o, size, crc in zip(range(start, start + m * stride, stride), sizes, crcs):
            if crc32(mv[o + 8 : o + size]) != crc:
                return index + (o - start) // stride
        index += m
    return None


def _collect(mv: memoryview, w32: "Any", sq: "Any", runs: "List[List[int]]", seq0: int, a: int, b: int) -> "List[Record]":
    """_collect returns the records a..b-1 of runs (indexes from the window's first) as Records."""
    out = []  # type: List[Record]
    base = 0
    for i, k, m, n in runs:
        if base >= b:
            break
        if base + m > a:
            ja = max(a - base, 0)
            jb = min(b - base, m)
            stride = k << 3
            first = (i + ja * k) << 3
            last = (i + jb * k) << 3
            times = sq[i + 2 + ja * k : i + 2 + jb * k : k].tolist()
            part = mv[first:last].tobytes()  # one copy; the payloads are sliced from it
            if n:
                payloads = [part[o + 24 : o + n] for o in range(0, last - first, stride)]
            else:
                sizes = w32[2 * (i + ja * k) : 2 * (i + jb * k) : 2 * k].tolist()
                payloads = [part[o + 24 : o + s] for o, s in zip(range(0, last - first, stride), sizes)]
            seqs = range(seq0 + base + ja, seq0 + base + jb)
            out.extend(map(_NEW, repeat(Record), zip(seqs, times, payloads)))
        base += m
    return out
