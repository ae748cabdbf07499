"""Ring: a ring directory, and consistent snapshots of its records (docs/FORMAT.md, "Reading").

A Ring is a path and nothing more: each snapshot opens the directory, reads the manifest
and opens the segments it needs, at most 64 at a time (a window of the manifest's entries,
read and closed before the next is opened), so a ring created anew at the same path is
read as it is now. Followers and takers hold the directory open themselves.

A read that starts inside a segment (the last N records, records from a sequence number)
starts at an entry of the segment's index N.idx when there is one that checks out and
every record from it to the segment's end does (docs/FORMAT.md, "The segment index";
_index.py): damage before that entry is then not read, the only difference an index
makes. Whole reads never use an index.
"""

from __future__ import annotations

import errno as _errno
import os
import struct

from ._errors import CorruptionError, Error, ManifestError, NoRingError
from ._format import ID_FILE, LOCK_FILE, MANIFEST, MANIFEST_MAX
from ._manifest import parse_manifest
from ._index import entry_for, top_entry
from ._segment import Cursor, NotRegular, open_regular, open_segment

TYPE_CHECKING = False
if TYPE_CHECKING:
    import datetime
    from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

    from ._errors import Loss
    from ._follow import AsyncFollower, Follower
    from ._format import Record
    from ._manifest import Entry, Manifest
    from ._segment import Segment
    from ._take import Taker

    Since = Union[int, datetime.datetime, datetime.timedelta]
    OnDamage = Optional[Callable[[CorruptionError], Any]]

__all__ = ["Ring", "Stat", "open"]

# How often a reader starts over because the producer retired segments while it opened
# them (docs/FORMAT.md, "Reading", step 2).
MAX_RETRIES = 100

# How many segment files a snapshot holds open at once, at most: it reads a longer ring
# in windows of this many entries of its manifest (docs/FORMAT.md, "Reading", step 2).
MAX_OPEN = 64


def open(path: "Union[str, os.PathLike[str]]") -> "Ring":  # noqa: A001 (the package's verb)
    """open returns the Ring at path, for example filering.open("/run/ring/sensor").

    Nothing is read yet, and the directory need not exist yet: a snapshot of a ring that
    does not exist raises NoRingError, a follower waits for it.
    """
    return Ring(path)


def open_dir(path: str) -> int:
    """open_dir opens the ring directory path and returns its descriptor.

    It raises NoRingError when the directory does not exist and Error when path is a
    symbolic link or not a directory, or cannot be opened.
    """
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise NoRingError("open ring %s: no such file or directory" % path, path, e.errno)
    except OSError as e:
        if e.errno in (_errno.ELOOP, _errno.ENOTDIR) and os.path.islink(path):
            raise Error("open ring %s: is a symbolic link; name the real directory" % path, path, None, None, e.errno)
        raise Error("open ring %s: %s" % (path, e.strerror), path, None, None, e.errno)


def read_manifest(dfd: int, path: str) -> "Manifest":
    """read_manifest reads and validates the manifest of the ring directory dfd (named path)."""
    mpath = os.path.join(path, MANIFEST)
    try:
        fd, _ = open_regular(dfd, MANIFEST)
    except FileNotFoundError:
        raise NoRingError("%s: no ring in this directory (no manifest)" % path, path)
    except NotRegular as e:
        raise ManifestError("open %s: %s" % (mpath, e), mpath, "not-regular")
    except OSError as e:
        raise ManifestError("open %s: %s" % (mpath, e.strerror), mpath, None, None, e.errno)
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
        raise ManifestError("read %s: %s" % (mpath, e.strerror), mpath, None, None, e.errno)
    finally:
        os.close(fd)
    return parse_manifest(chunks[0] if len(chunks) == 1 else b"".join(chunks), mpath)


def since_ns(since: "Optional[Since]") -> "Optional[int]":
    """since_ns converts a since argument to ns since the epoch: records at or after it are kept.

    An int is ns since the epoch; a timedelta is that long before now; a datetime is
    that time (a naive one is local time, as datetime.timestamp() takes it).
    """
    if since is None or type(since) is int:
        return since  # type: ignore[return-value]
    import datetime
    import time

    if isinstance(since, datetime.timedelta):
        if since < datetime.timedelta(0):
            raise ValueError("since %r: must not be negative" % (since,))
        return time.time_ns() - (since // datetime.timedelta(microseconds=1)) * 1000
    if isinstance(since, datetime.datetime):
        if since.tzinfo is None:
            since = since.astimezone()
        delta = since - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        return (delta // datetime.timedelta(microseconds=1)) * 1000
    raise TypeError("since must be an int (ns), a datetime or a timedelta, not %s" % type(since).__name__)


def _count(name: str, value: "Optional[int]") -> "Optional[int]":
    if value is not None and (type(value) is not int or value < 0):
        raise ValueError("%s must be a non-negative int or None, not %r" % (name, value))
    return value


class _Opened(object):
    """_Opened is a snapshot's segments, a window at a time, and what it knows of the ring.

    segs is the window held open (at most MAX_OPEN segments); the entries of the same
    manifest after it are opened by name when each() reaches them.
    """

    __slots__ = ("manifest", "segs", "floor", "dfd", "path", "rest", "pos")

    def __init__(self, manifest: "Manifest", segs: "List[Segment]", dfd: int = -1, path: str = "", rest: "Optional[List[Entry]]" = None) -> None:
        self.manifest = manifest
        self.segs = segs
        hot = manifest.hot()
        self.floor = hot[2] if hot is not None else manifest.next_seq()
        self.dfd = dfd
        self.path = path
        self.rest = rest or []  # the entries of the windows after the first
        self.pos = 0  # the first entry of rest not opened yet

    def next_window(self) -> bool:
        """next_window closes the window held and opens the next one that has a segment.

        Up to MAX_OPEN entries are opened by name; a file that is gone was taken or
        retired meanwhile and is skipped, without reading the manifest again (names are
        never reused). It reports whether a window is open; False when none is left.
        """
        self.close()
        size = self.manifest.segment_size
        while self.pos < len(self.rest):
            window = self.rest[self.pos : self.pos + MAX_OPEN]
            self.pos += len(window)
            segs = []  # type: List[Segment]
            try:
                for e in window:
                    seg = open_segment(self.dfd, self.path, e, size)
                    if seg is not None:
                        segs.append(seg)
            except BaseException:
                for s in segs:
                    s.close()
                raise
            self.segs = segs
            if segs:
                return True
        return False

    def each(self) -> "Iterator[Segment]":
        """each yields the snapshot's segments, oldest first, opening each window when it
        is reached and closing the one before; close() closes what is held."""
        while True:
            for seg in self.segs:
                yield seg
            if not self.next_window():
                return

    def close(self) -> None:
        for s in self.segs:
            s.close()
        self.segs = []


def _still_listed(dfd: int, path: str, m: "Manifest", missing: "List[str]") -> bool:
    """_still_listed tells whether segments found missing were taken, not retired.

    The manifest was not replaced since m, or still lists them all.
    """
    try:
        now = read_manifest(dfd, path)
    except Error:
        return False
    if now.generation == m.generation:
        return True
    names = set(e[0] for e in now.segments)
    return all(n in names for n in missing)


def open_set(dfd: int, path: str, start: int) -> _Opened:
    """open_set opens the first window of the listed segments that can hold records from
    sequence start on: at most MAX_OPEN of them (docs/FORMAT.md, "Reading", step 2).

    All of the window are opened before any is read, so that the set is consistent;
    damaged ones are in it, with their damage; missing ones (taken, or retired
    meanwhile) are not. The later entries of the same manifest are opened a window at a
    time by the returned _Opened's each(), their missing files skipped.
    """
    attempt = 0
    while True:
        m = read_manifest(dfd, path)
        size = m.segment_size
        es = [e for e in m.segments if not (e[4] and e[3] < start)]
        segs = []  # type: List[Segment]
        missing = []
        try:
            for e in es[:MAX_OPEN]:
                seg = open_segment(dfd, path, e, size)
                if seg is None:
                    missing.append(e[0])
                else:
                    segs.append(seg)
        except BaseException:
            for s in segs:
                s.close()
            raise
        if not missing or attempt >= MAX_RETRIES or _still_listed(dfd, path, m, missing):
            return _Opened(m, segs, dfd, path, es[MAX_OPEN:])
        for s in segs:
            s.close()
        attempt += 1


class _Batch(object):
    """_Batch is what a snapshot read of one segment gave: its records and its damage."""

    __slots__ = ("records", "error", "seen")

    def __init__(self, records: "List[Record]", error: "Optional[CorruptionError]", seen: int) -> None:
        self.records = records
        self.error = error
        self.seen = seen  # the highest sequence number scanned, or 0


def _read_last(dfd: int, path: str, n: int, start: int) -> "Tuple[List[_Batch], int]":
    """_read_last reads the last n records from sequence start on.

    It opens segments newest first until the manifest's counts cover n (a hot segment
    counting for nothing), all before reading any, but at most MAX_OPEN at once; then
    it reads them, newest first, keeping the last records each can give, and closes
    each once read. When they were not enough (more than MAX_OPEN segments, or damage
    left the count short), it opens older segments and reads on. A segment is read
    when it is counted, so none is opened twice (docs/FORMAT.md, "Reading", step 2),
    from the entry of its index before the records it gives when it can (_read_tail).
    Missing segments are skipped, after one manifest re-read for all of them (a changed
    generation that no longer lists them starts over). It returns the batches oldest
    first, and the ring's next sequence number as the manifest shows it.
    """
    attempt = 0
    while True:
        m = read_manifest(dfd, path)
        size = m.segment_size
        es = [e for e in m.segments if not (e[4] and e[3] < start)]
        opened = []  # type: List[Tuple[int, Segment]]  (index in es, newest first)
        missing = []
        batches = {}  # type: Dict[int, _Batch]
        try:
            i = len(es) - 1
            counted = 0  # opened[:counted] are read, and closed
            have = 0
            while have < n and (counted < len(opened) or i >= 0):
                listed = 0
                while i >= 0 and have + listed < n and len(opened) - counted < MAX_OPEN:
                    e = es[i]
                    seg = open_segment(dfd, path, e, size)
                    if seg is None:
                        missing.append(e[0])
                    else:
                        opened.append((i, seg))
                        if seg.damage is None and e[4]:
                            listed += e[3] - max(e[2], start) + 1
                    i -= 1
                while counted < len(opened) and have < n:
                    index, seg = opened[counted]
                    counted += 1
                    try:
                        if seg.damage is not None:
                            batches[index] = _Batch([], seg.damage, 0)
                            continue
                        b = _read_tail(dfd, seg, start, n - have)
                        batches[index] = b
                        have += len(b.records)
                    finally:
                        seg.close()
        finally:
            for _, seg in opened:
                seg.close()
        if not missing or attempt >= MAX_RETRIES or _still_listed(dfd, path, m, missing):
            hot = m.hot()
            floor = hot[2] if hot is not None else m.next_seq()
            return [batches[k] for k in sorted(batches)], floor
        attempt += 1


def snapshot(
    path: str,
    start: int = 0,
    since: "Optional[int]" = None,
    last: "Optional[int]" = None,
    dfd: "Optional[int]" = None,
) -> "Iterator[_Batch]":
    """snapshot yields the batches of a consistent snapshot of the ring at path, oldest first.

    start keeps sequence numbers from start on, since (ns) times from since on, last
    the last records of those. The segments are opened a window of at most MAX_OPEN
    (64) at a time, the first when the first batch is asked for, each of the next when
    it is reached, and read one at a time; the read ends where the manifest read first
    ends. Closing the generator early closes what it holds. With dfd, the ring
    directory is that descriptor.
    """
    own = dfd is None
    if own:
        dfd = open_dir(path)
    try:
        if last is not None and since is None:
            if last == 0:
                return
            batches, _ = _read_last(dfd, path, last, start)  # type: ignore[arg-type]
            for b in batches:
                yield b
            return
        opened = open_set(dfd, path, start)  # type: ignore[arg-type]
        try:
            if last is None:
                for seg in opened.each():
                    yield _read_one(seg, start, since, None, dfd)  # type: ignore[arg-type]
                return
            # Last and since: keep the last records that pass, at most last of them.
            kept = []  # type: List[_Batch]
            total = 0
            for seg in opened.each():
                b = _read_one(seg, start, since, last, dfd)  # type: ignore[arg-type]
                kept.append(b)
                total += len(b.records)
                for k in kept:
                    if total <= last:
                        break
                    drop = min(total - last, len(k.records))
                    del k.records[:drop]
                    total -= drop
            for b in kept:
                yield b
        finally:
            opened.close()
    finally:
        if own:
            os.close(dfd)  # type: ignore[arg-type]


def _read_at(seg: "Segment", at: "Tuple[int, int]", start: int, keep: "Optional[int]") -> "Optional[_Batch]":
    """_read_at reads seg from at, a checked index entry (offset, index), to its end.

    It returns None when a record there breaks a rule (for a segment listed sealed: up
    to its committed word, ending with last_seq): the index is not used then, and the
    segment is to be read from offset 64, which reports what it finds.
    """
    c = Cursor(seg, at[0], at[1])
    recs = c.read(start, keep=keep)
    if c.error is not None:
        return None
    return _Batch(recs, None, c.seq - 1)


def _read_indexed(dfd: int, seg: "Segment", i: int, start: int, keep: "Optional[int]") -> "Optional[_Batch]":
    """_read_indexed reads seg from the entry of its index for a read that starts at its
    record with index i (docs/FORMAT.md, "The segment index"); None: no index for this
    read (none, it fails a check, or a record from the entry on breaks a rule)."""
    at = entry_for(dfd, seg, i)
    if at is None:
        return None
    return _read_at(seg, at, start, keep)


def _read_tail(dfd: int, seg: "Segment", start: int, keep: int) -> _Batch:
    """_read_tail reads the last keep records of seg from sequence start on.

    It starts at the entry of the segment's index before the first of them when it can:
    for a segment listed sealed the count is the manifest's; for the hot one it is the
    last non-zero entry's index plus the records from it on. Without an index, or when
    the count is short of keep, or when a record from the entry on breaks a rule, it
    reads the segment from offset 64 (and reports what it finds there).
    """
    first = seg.first_seq
    if seg.listed_sealed:
        i = max(start - first, seg.last_seq - first + 1 - keep)
        if i > 0:
            b = _read_indexed(dfd, seg, i, start, keep)
            if b is not None:
                return b
    else:
        top = top_entry(dfd, seg)
        if top is not None:
            b = _read_at(seg, top, start, keep)
            if b is not None:
                i = max(start - first, b.seen + 1 - first - keep)  # b.seen + 1 - first: the count
                if i >= top[1]:
                    return b  # the records from the last entry on are enough
                if i > 0:
                    b = _read_indexed(dfd, seg, i, start, keep)
                    if b is not None:
                        return b
    c = Cursor(seg)
    recs = c.read(start, keep=keep)
    return _Batch(recs, c.error, c.seq - 1)


def _hot_last(dfd: int, seg: "Segment", damage: "List[Error]") -> int:
    """_hot_last returns the sequence number of the last record of seg, a hot segment
    (first_seq - 1 when it holds none), counting from the last entry of its index when
    the records from there on pass their checks (docs/FORMAT.md, "The segment index"),
    else from offset 64; damage met there is appended to damage."""
    top = top_entry(dfd, seg)
    if top is not None:
        c = Cursor(seg, top[0], top[1])
        c.read(1 << 64)  # scan, keeping nothing
        if c.error is None:
            return c.seq - 1
    c = Cursor(seg)
    c.read(1 << 64)
    if c.error is not None:
        damage.append(c.error)
    return c.seq - 1


def _read_one(seg: "Segment", start: int, since: "Optional[int]", keep: "Optional[int]", dfd: int = -1) -> _Batch:
    """_read_one reads the records of seg from sequence start on (with since and keep as
    Cursor.read takes them) and closes it. A read that starts inside the segment begins
    at the entry of its index (dfd the ring directory) when one checks out, else at
    offset 64. It meets damage from the entry on as a read from offset 64 does, as a
    --from read that delivers as it goes (docs/FORMAT.md, "The segment index"); damage
    before the entry is not read."""
    try:
        if seg.damage is not None:
            return _Batch([], seg.damage, 0)
        at = None
        if dfd >= 0 and start > seg.first_seq:
            at = entry_for(dfd, seg, start - seg.first_seq)
        c = Cursor(seg) if at is None else Cursor(seg, at[0], at[1])
        recs = c.read(start, keep=keep, since=since)
        return _Batch(recs, c.error, c.seq - 1)
    finally:
        seg.close()


class Stat(object):
    """Stat summarizes a ring, as `filering stat` prints it.

    first_seq and last_seq are the first and last retained sequence numbers (0 when
    there is none), records how many are retained (taken and damaged segments not
    counted), segments how many listed segment files are present (damaged ones
    included), hot_segment the hot segment's name ("" when every segment is sealed or it
    is gone), producer_pid the pid of the producer holding the ring's lock (None when
    none runs; 0 when one runs but its pid is not in the lock file), id the ring's
    identity (None for a ring made before identities existed), damage the errors found.
    """

    __slots__ = (
        "path",
        "first_seq",
        "last_seq",
        "records",
        "segments",
        "segments_max",
        "segment_size",
        "hot_segment",
        "generation",
        "producer_pid",
        "id",
        "damage",
    )

    def __init__(self, **fields: "Any") -> None:
        for name in self.__slots__:
            setattr(self, name, fields.get(name))

    def __repr__(self) -> str:
        return "Stat(%s)" % ", ".join("%s=%r" % (n, getattr(self, n)) for n in self.__slots__)

    def as_dict(self) -> "Dict[str, Any]":
        """as_dict returns the fields as a dict (damage as the errors' messages)."""
        d = dict((n, getattr(self, n)) for n in self.__slots__)
        d["damage"] = [str(e) for e in self.damage]
        return d


class Ring(object):
    """A filering ring directory, read with the standard library only.

    ring = filering.open("/run/ring/sensor"), then:

    - ring.last(n), ring.records(from_seq=..., since=..., last=...): a consistent
      snapshot of the retained records, as a list of Record;
    - ring.follow(...): the selected records, then every new one as it is appended
      (a Follower, an iterator); ring.afollow(...) for asyncio;
    - ring.take(...): single-consumer mode, each sealed segment's records exactly once
      among competing takers (ring.taker() for the claims themselves);
    - ring.stat(), ring.manifest(), ring.id.

    A Ring holds nothing open; it is safe to share between threads.
    """

    __slots__ = ("path",)

    def __init__(self, path: "Union[str, os.PathLike[str]]") -> None:
        self.path = os.fspath(path)  # type: str

    def __repr__(self) -> str:
        return "filering.Ring(%r)" % (self.path,)

    def __enter__(self) -> "Ring":
        return self

    def __exit__(self, *exc: "Any") -> None:
        pass

    def close(self) -> None:
        """close does nothing: a Ring holds nothing open. It is here for `with`."""

    def manifest(self) -> "Manifest":
        """manifest reads and validates the ring's manifest."""
        dfd = open_dir(self.path)
        try:
            return read_manifest(dfd, self.path)
        finally:
            os.close(dfd)

    @property
    def id(self) -> "Optional[str]":
        """The ring's identity: 32 lowercase hexadecimal digits, None when it has none.

        A ring created anew at the same path has another. Error when the file is
        malformed (docs/FORMAT.md, "The ring's identity").
        """
        dfd = open_dir(self.path)
        try:
            return _read_id(dfd, self.path)
        finally:
            os.close(dfd)

    def records(
        self,
        from_seq: "Optional[int]" = None,
        since: "Optional[Since]" = None,
        last: "Optional[int]" = None,
        on_damage: "OnDamage" = None,
    ) -> "List[Record]":
        """records returns the records of a consistent snapshot of the ring, oldest first.

        from_seq keeps sequence numbers from from_seq on; since keeps records appended
        at or after since (an int of ns since the epoch, a datetime, or a timedelta:
        that long ago); last then keeps the last `last` of those (counting records,
        not sequence numbers). None selects everything. Sequence numbers strictly
        increase; they may jump (a segment was taken, or lost). At most 64 segment
        files are open at once: a longer ring is read a window of its manifest at a
        time, and a segment gone before its window is reached is skipped; last alone
        walks back from the newest segment, 64 at a time, each read when counted.
        A selection that starts inside a segment starts at an entry of the segment's
        index (N.idx) when it has a good one: damage before that entry is then not
        read, nor reported.

        Damage (a CorruptionError naming the file and offset) raises, unless on_damage
        is given: then each is passed to it, in the order of the manifest, and the
        records around it are returned, as `filering cat` prints them. It raises
        NoRingError when there is no ring, ManifestError for a manifest that cannot be
        used, Error for anything else that stops the whole read.
        """
        _count("from_seq", from_seq)
        _count("last", last)
        out = []  # type: List[Record]
        for b in snapshot(self.path, from_seq or 0, since_ns(since), last):
            out.extend(b.records)
            if b.error is not None:
                if on_damage is None:
                    raise b.error
                on_damage(b.error)
        return out

    def last(self, n: int, on_damage: "OnDamage" = None) -> "List[Record]":
        """last returns the last n records of the ring, oldest first (see records)."""
        return self.records(last=n, on_damage=on_damage)

    def next_seq(self) -> int:
        """next_seq returns the sequence number the ring's next record will carry."""
        dfd = open_dir(self.path)
        try:
            batches, floor = _read_last(dfd, self.path, 1, 0)
        finally:
            os.close(dfd)
        return max([floor] + [b.seen + 1 for b in batches])

    def follow(
        self,
        from_seq: "Optional[int]" = None,
        since: "Optional[Since]" = None,
        last: "Optional[int]" = None,
        on_loss: "Optional[Callable[[Loss], Any]]" = None,
        on_damage: "OnDamage" = None,
    ) -> "Follower":
        """follow returns a Follower: the records the selection picks, then every new one.

        The selection is that of records(), applied to the ring as it is now; with none,
        every retained record, then new ones; with last=0, only records appended from
        now on. See Follower.
        """
        from ._follow import Follower

        return Follower(self.path, from_seq=from_seq, since=since_ns(since), last=last, on_loss=on_loss, on_damage=on_damage)

    def afollow(
        self,
        from_seq: "Optional[int]" = None,
        since: "Optional[Since]" = None,
        last: "Optional[int]" = None,
        on_loss: "Optional[Callable[[Loss], Any]]" = None,
        on_damage: "OnDamage" = None,
    ) -> "AsyncFollower":
        """afollow is follow for asyncio: `async for record in ring.afollow(): ...`."""
        from ._follow import AsyncFollower

        return AsyncFollower(self.path, from_seq=from_seq, since=since_ns(since), last=last, on_loss=on_loss, on_damage=on_damage)

    def taker(self) -> "Taker":
        """taker returns a Taker, which claims sealed segments one at a time (see Taker)."""
        from ._take import Taker

        return Taker(self.path)

    def take(self, follow: bool = False, on_damage: "OnDamage" = None, timeout: "Optional[float]" = None) -> "Iterator[Record]":
        """take yields the records of each sealed segment it claims (single-consumer mode).

        Each sealed segment goes to exactly one of any number of competing takers
        (docs/FORMAT.md, "Taking"). A segment is deleted once every record of it was
        yielded and the next is asked for: stop early (break, an exception) and it
        stays claimed, delivered again by the next taker. With follow, it waits for
        newly sealed segments (until timeout seconds pass without one, if given).
        Damage raises after the records before it, the segment set aside as
        N.damaged, unless on_damage is given.
        """
        from ._take import take

        return take(self.path, follow=follow, on_damage=on_damage, timeout=timeout)

    def stat(self) -> Stat:
        """stat summarizes the ring: the manifest, every listed segment's header, the hot
        segment's records (from its last index entry when it has an index that serves;
        sealed segments are counted by the manifest), the producer."""
        path = self.path
        dfd = open_dir(path)
        try:
            opened = open_set(dfd, path, 0)
            m = opened.manifest
            st = Stat(
                path=path,
                first_seq=0,
                last_seq=0,
                records=0,
                segments=0,
                segments_max=m.segments_max,
                segment_size=m.segment_size,
                hot_segment="",
                generation=m.generation,
                producer_pid=None,
                id=None,
                damage=[],
            )
            try:
                for seg in opened.each():
                    st.segments += 1
                    if seg.damage is not None:
                        st.damage.append(seg.damage)
                        continue
                    first, last = seg.first_seq, seg.last_seq
                    if not seg.listed_sealed:
                        st.hot_segment = seg.name
                        last = _hot_last(dfd, seg, st.damage)
                        if last < first:
                            continue
                    if st.first_seq == 0:
                        st.first_seq = first
                    st.last_seq = last
                    st.records += last - first + 1
            finally:
                opened.close()
            st.producer_pid = producer_pid(dfd, path)
            try:
                st.id = _read_id(dfd, path)
            except Error:
                st.id = None
            return st
        finally:
            os.close(dfd)

    def producer_pid(self) -> "Optional[int]":
        """producer_pid returns the pid of the producer running on the ring, or None.

        The producer holds a lock on the ring's lock file for as long as it runs; 0
        means one holds it but its pid could not be read.
        """
        dfd = open_dir(self.path)
        try:
            return producer_pid(dfd, self.path)
        finally:
            os.close(dfd)


def _read_id(dfd: int, path: str) -> "Optional[str]":
    """_read_id reads the ring's identity file; None when there is none."""
    ipath = os.path.join(path, ID_FILE)
    try:
        fd, _ = open_regular(dfd, ID_FILE)
    except FileNotFoundError:
        return None
    except NotRegular as e:
        raise Error("open %s: %s" % (ipath, e), ipath, "not-regular")
    except OSError as e:
        raise Error("open %s: %s" % (ipath, e.strerror), ipath, None, None, e.errno)
    try:
        b = os.read(fd, 64)
    except OSError as e:
        raise Error("read %s: %s" % (ipath, e.strerror), ipath, None, None, e.errno)
    finally:
        os.close(fd)
    if len(b) != 33 or b[32:] != b"\n" or b[:32].strip(b"0123456789abcdef"):
        raise Error("%s: bad ring identity: want 32 lowercase hexadecimal digits and a newline" % ipath, ipath, "id")
    return b[:32].decode("ascii")


# struct flock, as the kernel takes it for F_OFD_GETLK (and F_GETLK on 64-bit): short
# l_type, short l_whence, then 64-bit l_start and l_len, int l_pid, with C alignment.
_FLOCK = struct.Struct("@hhqqi")
_F_OFD_GETLK = 36  # Linux, every architecture; fcntl.F_OFD_GETLK needs Python 3.9
_F_WRLCK = 1
_F_UNLCK = 2


def producer_pid(dfd: int, path: str) -> "Optional[int]":
    """producer_pid queries the lock on the ring's lock file (docs/FORMAT.md, "The producer's lock").

    It returns None when no producer holds it, its pid when one does, 0 when the pid
    cannot be read from the file.
    """
    import fcntl

    try:
        fd = os.open(LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno in (_errno.EACCES, _errno.ELOOP):
            return None
        raise Error("open %s: %s" % (os.path.join(path, LOCK_FILE), e.strerror), path, None, None, e.errno)
    try:
        query = _FLOCK.pack(_F_WRLCK, 0, 0, 0, 0) + bytes(32)
        try:
            got = fcntl.fcntl(fd, getattr(fcntl, "F_OFD_GETLK", _F_OFD_GETLK), query)
        except OSError as e:
            if e.errno != _errno.EINVAL:
                raise Error("query lock %s: %s" % (os.path.join(path, LOCK_FILE), e.strerror), path, None, None, e.errno)
            got = fcntl.fcntl(fd, fcntl.F_GETLK, query)  # a kernel without OFD locks
        if _FLOCK.unpack_from(got)[0] == _F_UNLCK:
            return None
        try:
            text = os.pread(fd, 32, 0)
        except OSError:
            return 0
        pid = 0
        for c in text:
            if not 48 <= c <= 57 or pid > 1 << 30:
                break
            pid = pid * 10 + c - 48
        return pid
    finally:
        os.close(fd)
