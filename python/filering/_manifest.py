"""The manifest: parsing and validation (docs/FORMAT.md, "The manifest").

Parsing is strict, so that every implementation accepts exactly the same documents. The
manifest the reference producer writes (no white space, fields in order, a newline) is
parsed without the json module: the fields are split out and the document is written
again from what was read; only when that gives back exactly the same bytes are the values
used. Anything else goes through json.loads with hooks that refuse what the format
refuses (duplicate fields, signs, fractions, exponents, constants, huge integers).
"""

from __future__ import annotations

from ._errors import ManifestError
from ._format import (
    INT_LIMIT,
    MANIFEST_MAX,
    SEGMENT_SIZE_ALIGN,
    SEGMENT_SIZE_MAX,
    SEGMENT_SIZE_MIN,
    SEGMENTS_MAX_MAX,
    SEGMENTS_MAX_MIN,
    VERSION,
    parse_segment_name,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple

__all__ = ["Entry", "Manifest", "parse_manifest"]


class Entry(tuple):
    """One entry of the manifest's segment list: (name, number, first_seq, last_seq, sealed).

    number is parsed from name; last_seq is 0 for the hot segment.
    """

    __slots__ = ()

    def __new__(cls, name: str, number: int, first_seq: int, last_seq: int, sealed: bool) -> "Entry":
        return tuple.__new__(cls, (name, number, first_seq, last_seq, sealed))

    @property
    def name(self) -> str:
        """The segment's file name, NNNNNNNNNNNNNNNN.seg."""
        return self[0]  # type: ignore[no-any-return]

    @property
    def number(self) -> int:
        """The segment's number."""
        return self[1]  # type: ignore[no-any-return]

    @property
    def first_seq(self) -> int:
        """The sequence number of the segment's first record."""
        return self[2]  # type: ignore[no-any-return]

    @property
    def last_seq(self) -> int:
        """For a sealed segment, the sequence number of its last record; 0 for the hot one."""
        return self[3]  # type: ignore[no-any-return]

    @property
    def sealed(self) -> bool:
        """Whether the segment was sealed when the manifest was written."""
        return self[4]  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return "Entry(name=%r, first_seq=%d, last_seq=%d, sealed=%r)" % (self[0], self[2], self[3], self[4])


class Manifest(tuple):
    """A validated manifest: (segment_size, segments_max, generation, segments).

    segments is a tuple of Entry, oldest first.
    """

    __slots__ = ()

    def __new__(cls, segment_size: int, segments_max: int, generation: int, segments: "Tuple[Entry, ...]") -> "Manifest":
        return tuple.__new__(cls, (segment_size, segments_max, generation, segments))

    @property
    def segment_size(self) -> int:
        """The size of every segment file, in bytes."""
        return self[0]  # type: ignore[no-any-return]

    @property
    def segments_max(self) -> int:
        """How many segments the ring retains."""
        return self[1]  # type: ignore[no-any-return]

    @property
    def generation(self) -> int:
        """Grows every time the manifest is replaced."""
        return self[2]  # type: ignore[no-any-return]

    @property
    def segments(self) -> "Tuple[Entry, ...]":
        """The listed segments, oldest first."""
        return self[3]  # type: ignore[no-any-return]

    def hot(self) -> "Optional[Entry]":
        """hot returns the hot (unsealed) entry, always the last, or None."""
        segs = self[3]
        if segs and not segs[-1][4]:
            return segs[-1]  # type: ignore[no-any-return]
        return None

    def next_seq(self) -> int:
        """next_seq returns the sequence number after the last sealed entry's last (1 with none).

        It says nothing of the records of a hot segment: the hot entry's first_seq is the
        lowest the next record can carry.
        """
        for e in reversed(self[3]):
            if e[4]:
                return e[3] + 1  # type: ignore[no-any-return]
        return 1

    def __repr__(self) -> str:
        return "Manifest(segment_size=%d, segments_max=%d, generation=%d, segments=%r)" % self


class _Reject(Exception):
    pass


_TOP = ("version", "segment_size", "segments_max", "generation", "segments")
_ENTRY = ("name", "first_seq", "last_seq", "sealed")


def parse_manifest(data: bytes, path: str = "manifest") -> Manifest:
    """parse_manifest checks the bytes of a manifest and returns a Manifest.

    It makes every check of docs/FORMAT.md and raises ManifestError, naming path, on the
    first that fails.
    """
    if len(data) > MANIFEST_MAX:
        raise _bad(path, "larger than %d bytes" % MANIFEST_MAX)
    fields = _canonical(data)
    if fields is None:
        fields = _general(data, path)
    return _validate(fields, path)


def _bad(path: str, why: str) -> ManifestError:
    return ManifestError("%s: invalid manifest: %s" % (path, why), path, "manifest")


def _canonical(data: bytes) -> "Optional[Tuple[int, int, int, int, List[Tuple[str, int, int, bool]]]]":
    """_canonical reads a manifest written as the reference producer writes it, or returns None.

    It reads the values, writes the document again from them and compares: only a
    document that is byte for byte what the producer would write is read here.
    """
    try:
        text = data.decode("ascii")
        if text.endswith("\n"):
            text = text[:-1]
        head, sep, tail = text.partition(',"segments":[')
        if not sep or not tail.endswith("]}"):
            return None
        top = []
        for part, key in zip(head[1:].split(","), _TOP):
            name, _, value = part.partition(":")
            if name != '"%s"' % key:
                return None
            top.append(int(value))
        if len(top) != 4:
            return None
        entries = []
        body = tail[:-2]
        if body:
            if not (body.startswith("{") and body.endswith("}")):
                return None
            for item in body[1:-1].split("},{"):
                parts = item.split(",")
                if len(parts) != 4:
                    return None
                name = parts[0][8:-1]
                first = int(parts[1][12:])
                last = int(parts[2][11:])
                sealed = parts[3][9:]
                if sealed not in ("true", "false"):
                    return None
                entries.append((name, first, last, sealed == "true"))
        again = '{"version":%d,"segment_size":%d,"segments_max":%d,"generation":%d,"segments":[%s]}' % (
            top[0],
            top[1],
            top[2],
            top[3],
            ",".join(
                '{"name":"%s","first_seq":%d,"last_seq":%d,"sealed":%s}' % (n, f, la, "true" if s else "false")
                for n, f, la, s in entries
            ),
        )
        if again != text:
            return None
        return top[0], top[1], top[2], top[3], entries
    except ValueError:  # UnicodeDecodeError too
        return None


def _no_duplicates(pairs: "List[Tuple[str, Any]]") -> "Dict[str, Any]":
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise _Reject("field %s appears twice" % _quote(key))
        obj[key] = value
    return obj


def _plain_int(text: str) -> int:
    # Digits only (json already refused a leading zero); every valid integer is below
    # 2^63 (19 digits), so bound the digits before converting.
    if text.startswith("-"):
        raise _Reject("integer %s has a sign" % text[:24])
    if len(text) > 19:
        raise _Reject("integer %s... is not below 2^63" % text[:24])
    return int(text)


def _no_float(text: str) -> int:
    raise _Reject("number %s is not a plain integer" % text[:24])


def _no_constant(name: str) -> int:
    raise _Reject("%s is not a JSON value" % name)


def _quote(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _general(data: bytes, path: str) -> "Tuple[Any, Any, Any, Any, List[Tuple[Any, Any, Any, Any]]]":
    """_general parses any manifest with the json module, refusing what the format refuses."""
    import json

    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise _bad(path, "not UTF-8 (byte %d)" % e.start)
    try:
        doc = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_int=_plain_int,
            parse_float=_no_float,
            parse_constant=_no_constant,
        )
    except _Reject as e:
        raise _bad(path, str(e))
    except (ValueError, RecursionError) as e:
        raise _bad(path, "not JSON: %s" % e)
    if type(doc) is not dict:
        raise _bad(path, "not a JSON object")
    version = doc.get("version")
    if "version" in doc and type(version) is int and version != VERSION:
        raise _bad(path, "unsupported version %d (this reader knows %d)" % (version, VERSION))
    _fields(doc, _TOP, "", path)
    raw = doc["segments"]
    if type(raw) is not list:
        raise _bad(path, "segments is not an array")
    entries = []
    for i, item in enumerate(raw):
        where = "segments[%d]." % i
        if type(item) is not dict:
            raise _bad(path, "segments[%d] is not an object" % i)
        _fields(item, _ENTRY, where, path)
        if type(item["name"]) is not str:
            raise _bad(path, "%sname is not a string" % where)
        if type(item["sealed"]) is not bool:
            raise _bad(path, "%ssealed is not a boolean" % where)
        entries.append((item["name"], item["first_seq"], item["last_seq"], item["sealed"]))
    for key in _TOP[:4]:
        if type(doc[key]) is not int:
            raise _bad(path, "%s is not an integer" % key)
    for i, (_, first, last, _) in enumerate(entries):
        for key, value in (("first_seq", first), ("last_seq", last)):
            if type(value) is not int:
                raise _bad(path, "segments[%d].%s is not an integer" % (i, key))
    return doc["version"], doc["segment_size"], doc["segments_max"], doc["generation"], entries


def _fields(obj: "Dict[str, Any]", names: "Tuple[str, ...]", where: str, path: str) -> None:
    for key in obj:
        if key not in names:
            raise _bad(path, "%sunknown field %s" % (where, _quote(key)))
    for key in names:
        if key not in obj:
            raise _bad(path, "%smissing field %s" % (where, _quote(key)))
        if obj[key] is None:
            raise _bad(path, "%s%s is null" % (where, key))


def _validate(fields: "Tuple[Any, Any, Any, Any, List[Tuple[Any, Any, Any, Any]]]", path: str) -> Manifest:
    version, size, segments_max, generation, raw = fields
    if version != VERSION:
        raise _bad(path, "unsupported version %d (this reader knows %d)" % (version, VERSION))
    if not SEGMENT_SIZE_MIN <= size <= SEGMENT_SIZE_MAX or size % SEGMENT_SIZE_ALIGN:
        raise _bad(
            path,
            "segment_size %d is not a multiple of %d from %d to %d" % (size, SEGMENT_SIZE_ALIGN, SEGMENT_SIZE_MIN, SEGMENT_SIZE_MAX),
        )
    if not SEGMENTS_MAX_MIN <= segments_max <= SEGMENTS_MAX_MAX:
        raise _bad(path, "segments_max %d is out of range %d..%d" % (segments_max, SEGMENTS_MAX_MIN, SEGMENTS_MAX_MAX))
    if not 0 <= generation < INT_LIMIT:
        raise _bad(path, "generation %d is out of range 0..2^63-1" % generation)
    if len(raw) > segments_max:
        raise _bad(path, "%d segments listed, segments_max is %d" % (len(raw), segments_max))
    entries = []
    prev = None
    for i, (name, first, last, sealed) in enumerate(raw):
        where = "segments[%d]" % i
        number = parse_segment_name(name)
        if number < 1:
            raise _bad(path, "%s.name %s is not a segment name (16 digits, at least 1, and .seg)" % (where, _quote(name)))
        if not 1 <= first < INT_LIMIT:
            raise _bad(path, "%s.first_seq %d is out of range 1..2^63-1" % (where, first))
        if not 0 <= last < INT_LIMIT:
            raise _bad(path, "%s.last_seq %d is out of range 0..2^63-1" % (where, last))
        if sealed and last < first:
            raise _bad(path, "%s.last_seq %d is below its first_seq %d" % (where, last, first))
        if not sealed and last != 0:
            raise _bad(path, "%s.last_seq is %d for an unsealed segment, want 0" % (where, last))
        if prev is not None:
            if not prev[4]:
                raise _bad(path, "segments[%d] is unsealed but is not the last entry" % (i - 1))
            if number <= prev[1]:
                raise _bad(path, "%s.name %s does not follow %s" % (where, name, prev[0]))
            if first <= prev[3]:
                raise _bad(path, "%s.first_seq %d is not after last_seq %d of %s" % (where, first, prev[3], prev[0]))
        prev = Entry(name, number, first, last, sealed)
        entries.append(prev)
    return Manifest(size, segments_max, generation, tuple(entries))
