"""Segment indexes: where a read that starts inside a segment may begin (docs/FORMAT.md,
"The segment index").

An index N.idx is a hint, never needed and never trusted: every number in it is bounded
before use, the entry a read starts at is checked against the record it points at, and
any failure (a missing or odd file, a bad header, no entry that fits, an entry that
does not check out, a read that fails) means "no index": nothing is raised or reported,
and the caller reads the segment from offset 64. The file is opened, read with pread in
chunks of at most 64 KiB and closed within one call: a reader never holds an index open.
What the reader does with the entry (and when it falls back to reading the segment from
its start) is in _ring.py.
"""

from __future__ import annotations

import os
import stat as _stat
import struct
import zlib

from ._errors import CorruptionError
from ._format import HEADER_SIZE, RECORD_HEADER_SIZE, segment_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Optional, Tuple

    from ._segment import Segment

IDX_SUFFIX = ".idx"
IDX_MAGIC = b"FILERIDX"
IDX_VERSION = 1
IDX_HEADER_SIZE = 64
BLOCK_MIN = 4096
BLOCK_MAX = 1 << 20
_HEADER = struct.Struct("<8sIIQQII")  # magic, version, CRC, number, size, B, K; 24 zero bytes follow
_RECORD = struct.Struct("<IIQ")  # a record's size, CRC and sequence number
_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_ENTRIES = 8192  # entries read at a time (64 KiB)
_PIECE = 1 << 20  # a record's CRC is computed over pieces of at most this many bytes

__all__ = ["entry_for", "top_entry"]


def _open(dfd: int, seg: "Segment") -> "Optional[Tuple[int, int, int]]":
    """_open opens and checks the index of seg; it returns (fd, B, K), or None for no index."""
    try:
        fd = os.open(segment_name(seg.number, IDX_SUFFIX), _FLAGS, dir_fd=dfd)
    except (OSError, ValueError):
        return None
    try:
        st = os.fstat(fd)
        if not _stat.S_ISREG(st.st_mode) or st.st_size < IDX_HEADER_SIZE:
            raise ValueError
        b = os.pread(fd, IDX_HEADER_SIZE, 0)
        if len(b) != IDX_HEADER_SIZE:
            raise ValueError
        magic, version, crc, number, size, block, count = _HEADER.unpack_from(b)
        if magic != IDX_MAGIC or version != IDX_VERSION or zlib.crc32(b[16:40]) != crc:
            raise ValueError
        if number != seg.number or size != seg.size:
            raise ValueError
        if not BLOCK_MIN <= block <= BLOCK_MAX or block & (block - 1):
            raise ValueError
        if count < 1 or count != (size - 1) // block or st.st_size != IDX_HEADER_SIZE + 8 * count:
            raise ValueError
    except (OSError, ValueError):
        os.close(fd)
        return None
    return fd, block, count


def _entries(fd: int, lo: int, hi: int) -> "Optional[Tuple[int, ...]]":
    """_entries reads entries lo+1 .. hi (hi - lo <= _ENTRIES of them); None on a short read."""
    n = hi - lo
    b = os.pread(fd, 8 * n, IDX_HEADER_SIZE + 8 * lo)
    if len(b) != 8 * n:
        return None
    return struct.unpack("<%dQ" % n, b)


def _largest_at_most(fd: int, count: int, i: int) -> "Optional[Tuple[int, int]]":
    """_largest_at_most returns (k, entry) for the largest k whose entry is non-zero and
    whose index is at most i, reading backward from entry K a chunk at a time; or None."""
    limit = (i + 1) << 32  # a non-zero entry below it has an index of at most i
    hi = count
    while hi > 0:
        lo = max(0, hi - _ENTRIES)
        values = _entries(fd, lo, hi)
        if values is None:
            return None
        low = min(filter(None, values), default=0)  # the smallest non-zero entry
        if low and low < limit:
            for j in range(len(values) - 1, -1, -1):
                v = values[j]
                if v and v < limit:
                    return lo + j + 1, v
        hi = lo
    return None


def _largest(fd: int, count: int) -> "Optional[Tuple[int, int]]":
    """_largest returns (k, entry) for the largest k whose entry is non-zero, or None."""
    hi = count
    while hi > 0:
        lo = max(0, hi - _ENTRIES)
        n = hi - lo
        b = os.pread(fd, 8 * n, IDX_HEADER_SIZE + 8 * lo)
        if len(b) != 8 * n:
            return None
        used = len(b.rstrip(b"\0"))  # the entries up to the last non-zero byte
        if used:
            j = (used - 1) >> 3
            return lo + j + 1, struct.unpack_from("<Q", b, 8 * j)[0]
        hi = lo
    return None


def _check(seg: "Segment", k: int, block: int, entry: int) -> "Optional[Tuple[int, int]]":
    """_check checks entry k of seg's index (step 3 of "Using it"): its offset and index are
    possible, and the record at the offset is committed, meets the record rules with the
    sequence number the index gives it (CRC included) and, in a segment found sealed,
    ends at or below the committed word. It returns (offset, index), or None."""
    off = entry & 0xFFFFFFFF
    index = entry >> 32
    size = seg.size
    if off & 7 or off < k * block or off >= size or off < HEADER_SIZE:
        return None
    if index > (off - HEADER_SIZE) // RECORD_HEADER_SIZE:
        return None
    try:
        sealed, committed = seg.words()
    except CorruptionError:
        return None  # read from offset 64, which reports it
    fd = seg.fd
    head = os.pread(fd, _RECORD.size, off)  # type: ignore[arg-type]
    if len(head) != _RECORD.size:
        return None
    n, crc, seq = _RECORD.unpack(head)
    end = off + ((n + 7) & ~7)
    if n < RECORD_HEADER_SIZE or end > size or seq != seg.first_seq + index:
        return None
    if sealed and end > committed:
        return None
    got = 0
    pos = off + 8
    while pos < off + n:
        piece = os.pread(fd, min(_PIECE, off + n - pos), pos)  # type: ignore[arg-type]
        if not piece:
            return None
        got = zlib.crc32(piece, got)
        pos += len(piece)
    if got != crc:
        return None
    return off, index


def entry_for(dfd: int, seg: "Segment", i: int) -> "Optional[Tuple[int, int]]":
    """entry_for returns where a read of seg that starts at its record with index i may
    begin: (offset, index) of the checked entry with the largest k whose index is at
    most i. None means no index for this read: scan from offset 64.

    dfd is the ring directory; seg is open and its header checked (no damage).
    """
    if i <= 0:
        return None
    return _lookup(dfd, seg, lambda fd, count: _largest_at_most(fd, count, i))


def top_entry(dfd: int, seg: "Segment") -> "Optional[Tuple[int, int]]":
    """top_entry returns (offset, index) of the checked entry with the largest k whose
    entry is non-zero (for counting a hot segment's records), or None: no index."""
    return _lookup(dfd, seg, _largest)


def _lookup(dfd: int, seg: "Segment", find: "Callable[[int, int], Optional[Tuple[int, int]]]") -> "Optional[Tuple[int, int]]":
    """_lookup opens seg's index, finds an entry with find(fd, count), closes the index
    and checks the entry against the segment: (offset, index), or None."""
    if seg.fd is None or seg.damage is not None:
        return None
    opened = _open(dfd, seg)
    if opened is None:
        return None
    fd, block, count = opened
    try:
        found = find(fd, count)
    except OSError:
        found = None
    finally:
        os.close(fd)
    if found is None:
        return None
    try:
        return _check(seg, found[0], block, found[1])
    except OSError:
        return None
