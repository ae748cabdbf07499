"""Constants of the ring format (docs/FORMAT.md, version 1), Record, and the output
formats of the command-line readers (lines, json, raw), byte for byte as `filering cat`
prints them.
"""

from __future__ import annotations

import binascii
import struct
from operator import itemgetter

TYPE_CHECKING = False
if TYPE_CHECKING:
    import datetime
    from typing import Callable, Iterable, List

try:  # the C encoder: escapes '"', '\\' and control characters only, as Go's writer does
    from _json import encode_basestring as _encode_string
except ImportError:  # pragma: no cover (CPython always has it)
    from json.encoder import py_encode_basestring as _encode_string

__all__ = ["Record", "format_time", "format_json", "format_records", "FORMATS"]

# Format constants.
VERSION = 1  # the manifest's "version" and a segment header's version
MAGIC = b"FILERSEG"  # bytes 0-7 of a segment
HEADER_SIZE = 64  # the segment header; the first record starts here
RECORD_HEADER_SIZE = 24  # commit word (size, CRC), sequence, time
SEGMENT_SIZE_MIN = 4096
SEGMENT_SIZE_MAX = 1 << 30
SEGMENT_SIZE_ALIGN = 4096
SEGMENTS_MAX_MIN = 2  # readers accept 2 ... 65536 (docs/FORMAT.md, "The manifest")
SEGMENTS_MAX_MAX = 65536
MANIFEST_MAX = 1 << 20  # the largest manifest, in bytes
INT_LIMIT = 1 << 63  # every manifest integer, and every sequence number, is below this
MAX_NUMBER = 10 ** 16 - 1  # segment numbers have 16 digits
OFF_SEALED = 48  # the sealed word
OFF_COMMITTED = 56  # the committed word
MANIFEST = "manifest"
ID_FILE = "id"
LOCK_FILE = "lock"
SEG_SUFFIX = ".seg"
TAKEN_SUFFIX = ".taken"
DAMAGED_SUFFIX = ".damaged"


def segment_name(number: int, suffix: str = SEG_SUFFIX) -> str:
    """segment_name returns the file name of segment number: 16 digits and the suffix."""
    return "%016d%s" % (number, suffix)


def parse_segment_name(name: str, suffix: str = SEG_SUFFIX) -> int:
    """parse_segment_name returns the number in a name of 16 digits and suffix, or 0."""
    if len(name) != 16 + len(suffix) or not name.endswith(suffix):
        return 0
    digits = name[:16]
    if not (digits.isdigit() and digits.isascii()):
        return 0
    return int(digits)


class Record(tuple):
    """One record: (seq, time_ns, data), with names and conveniences.

    A Record is a tuple, so ``seq, time_ns, data = record`` works. .data is the payload
    (bytes), .seq its sequence number, .time_ns the producer's clock when it appended
    it, in nanoseconds since the Unix epoch (it may go backwards when the clock is set
    back). .text is the payload decoded as UTF-8 (strictly: UnicodeDecodeError when it
    is not), .time the time as an aware UTC datetime (to the microsecond).
    """

    __slots__ = ()

    def __new__(cls, seq: int, time_ns: int, data: bytes) -> "Record":
        return tuple.__new__(cls, (seq, time_ns, data))

    seq = property(itemgetter(0), doc="The record's sequence number.")
    time_ns = property(itemgetter(1), doc="The producer's time, nanoseconds since the Unix epoch.")
    data = property(itemgetter(2), doc="The payload, bytes.")

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8; UnicodeDecodeError when it is not valid UTF-8."""
        return self[2].decode("utf-8")  # type: ignore[no-any-return]

    @property
    def time(self) -> "datetime.datetime":
        """The record's time as an aware datetime in UTC, truncated to the microsecond."""
        import datetime

        return datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(
            microseconds=self[1] // 1000
        )

    def __repr__(self) -> str:
        return "Record(seq=%d, time_ns=%d, data=%r)" % (self[0], self[1], self[2])

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Record, tuple(self))


_new_tuple = tuple.__new__


def make_record(seq: int, time_ns: int, data: bytes) -> Record:
    """make_record builds a Record without the keyword-friendly __new__ (faster)."""
    return _new_tuple(Record, (seq, time_ns, data))  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------
# Output formats


def _civil(days: int) -> str:
    """_civil returns YYYY-MM-DD for a number of days since 1970-01-01 (proleptic Gregorian)."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    return "%04d-%02d-%02d" % (year, month, day)


_last_second = [None, ""]  # the second formatted last, and "YYYY-MM-DDTHH:MM:SS."


def format_time(ns: int) -> str:
    """format_time formats ns since the epoch as YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ in UTC.

    Always nine fraction digits and a Z; times before 1970 are ordinary (-1 is
    1969-12-31T23:59:59.999999999Z). This is the "time" of the json format.
    """
    secs, frac = divmod(ns, 1000000000)
    cache = _last_second
    if cache[0] != secs:
        days, rem = divmod(secs, 86400)
        hour, rem = divmod(rem, 3600)
        cache[1] = "%sT%02d:%02d:%02d." % (_civil(days), hour, rem // 60, rem % 60)
        cache[0] = secs
    return "%s%09dZ" % (cache[1], frac)


def format_json(record: "Iterable[object]") -> str:
    """format_json returns one line of the json format for a record, newline included.

    {"seq":N,"time":"...","data":"..."}: the payload as a JSON string when it is valid
    UTF-8 (escaping only '"', '\\' and control characters), else "data_b64" with the
    payload in standard base64.
    """
    seq, time_ns, data = record  # type: ignore[misc]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return '{"seq":%d,"time":"%s","data_b64":"%s"}\n' % (
            seq,
            format_time(time_ns),
            binascii.b2a_base64(data, newline=False).decode("ascii"),
        )
    return '{"seq":%d,"time":"%s","data":%s}\n' % (seq, format_time(time_ns), _encode_string(text))


_LENGTH = struct.Struct("<I")
FORMATS = ("lines", "json", "raw")


def format_records(records: "Iterable[Record]", fmt: str = "lines") -> bytes:
    """format_records returns records as `filering cat --format FMT` prints them.

    lines: each payload and a newline; json: JSON Lines (format_json); raw: each
    payload's length as a little-endian u32, then the payload.
    """
    if fmt == "lines":
        return b"".join([r[2] + b"\n" for r in records])
    if fmt == "json":
        return "".join([format_json(r) for r in records]).encode("utf-8")
    if fmt == "raw":
        pack = _LENGTH.pack
        return b"".join([pack(len(r[2])) + r[2] for r in records])
    raise ValueError("unknown format %r: want lines, json or raw" % (fmt,))


def formatter(fmt: str) -> "Callable[[List[Record]], bytes]":
    """formatter returns a function formatting a list of records in fmt (see format_records)."""
    if fmt not in FORMATS:
        raise ValueError("unknown format %r: want lines, json or raw" % (fmt,))
    return lambda records: format_records(records, fmt)
