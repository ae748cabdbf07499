"""Takers: single-consumer mode (docs/FORMAT.md, "Taking").

Each sealed segment is taken by exactly one of any number of competing takers: a taker
opens it, locks it (flock, LOCK_EX | LOCK_NB) and renames N.seg to N.taken with
renameat2(RENAME_NOREPLACE); only then is it the taker's. It delivers the records, then
deletes N.taken. A taker that dies in between leaves N.taken behind with no lock held;
the next taker finds it, locks it, checks that the name still refers to the file it
locked, and delivers it again: at least once across a taker crash, exactly once
otherwise. A claimed segment found damaged delivers the records before the damage and
is set aside as N.damaged, where no taker looks, so that it blocks nothing.
"""

from __future__ import annotations

import errno as _errno
import fcntl
import os

from ._errors import CorruptionError, Error
from ._format import DAMAGED_SUFFIX, HEADER_SIZE, SEG_SUFFIX, TAKEN_SUFFIX, parse_segment_name, segment_name
from ._inotify import Watcher
from ._ring import open_dir, read_manifest
from ._segment import Cursor, NotRegular, header_valid, open_claimed, open_regular, resource_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterator, List, Optional

    from ._format import Record
    from ._manifest import Entry
    from ._segment import Segment

__all__ = ["Taker", "Claim", "take", "rename_noreplace"]

RENAME_NOREPLACE = 1
_renameat2 = []  # type: List[Any]


def _renameat2_function() -> "Any":
    if not _renameat2:
        fn = None
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            fn = libc.renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
            fn = (fn, ctypes.get_errno)
        except (ImportError, AttributeError, OSError):
            fn = None  # an old C library: link and unlink below
        _renameat2.append(fn)
    return _renameat2[0]


def rename_noreplace(dfd: int, old: str, new: str) -> None:
    """rename_noreplace renames old to new in the directory dfd, failing if new exists.

    renameat2(RENAME_NOREPLACE) where the C library has it, else link(2) and unlink(2),
    which fail the same way: FileNotFoundError when old is gone, FileExistsError when
    new exists.
    """
    fn = _renameat2_function()
    if fn is not None:
        call, get_errno = fn
        if call(dfd, os.fsencode(old), dfd, os.fsencode(new), RENAME_NOREPLACE) == 0:
            return
        err = get_errno()
        if err not in (_errno.ENOSYS, _errno.EINVAL):
            raise OSError(err, os.strerror(err), old, None, new)
    os.link(old, new, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
    try:
        os.unlink(old, dir_fd=dfd)
    except FileNotFoundError:
        pass


class Claim(object):
    """Claim is a sealed segment a Taker claimed: N.taken, locked, the taker's alone.

    Read its records (iterate, records() or batches()), then call done() to delete it,
    or set_aside() when .error reports damage, or release() to give it up unfinished: it
    stays claimed, and the next taker delivers it again. .redelivered says it was claimed
    before by a taker that died; .number is the segment's number, .path where it is now.
    .error is the damage found (a CorruptionError): at once for a segment damaged as a
    whole, after the records before it for a damaged record.
    """

    def __init__(self, taker: "Taker", seg: "Segment", name: str, redelivered: bool, aside: bool = False) -> None:
        self._dfd = taker._dfd
        self._dir = taker.path
        self._seg = seg
        self._name = name
        self.number = seg.number  # type: int
        self.redelivered = redelivered
        self._aside = aside
        self.error = seg.damage  # type: Optional[CorruptionError]
        self._cursor = None if seg.damage is not None else Cursor(seg)

    @property
    def path(self) -> str:
        """Where the segment is now: DIR/N.taken, or DIR/N.damaged once set aside."""
        return os.path.join(self._dir, self._name)

    def batches(self) -> "Iterator[List[Record]]":
        """batches yields the segment's records a window at a time, in order."""
        c = self._cursor
        while c is not None and not c.done:
            recs = c.read(0, once=True)
            if c.error is not None:
                self.error = c.error
            if recs:
                yield recs
            elif not c.done:
                break  # not sealed after all: nothing more will come from it
        self._cursor = None

    def __iter__(self) -> "Iterator[Record]":
        for batch in self.batches():
            for rec in batch:
                yield rec

    def records(self) -> "List[Record]":
        """records returns all the segment's records (those before any damage)."""
        out = []  # type: List[Record]
        for batch in self.batches():
            out.extend(batch)
        return out

    def done(self) -> None:
        """done deletes the claimed segment and releases it. Call it once every record was delivered."""
        try:
            os.unlink(self._name, dir_fd=self._dfd)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise Error("remove %s: %s" % (self.path, e.strerror), self.path, None, None, e.errno)
        finally:
            self.release()

    def set_aside(self) -> str:
        """set_aside renames the claimed segment to N.damaged, keeps it for inspection and
        releases it; it returns the new path."""
        try:
            if not self._aside:
                name = segment_name(self.number, DAMAGED_SUFFIX)
                try:
                    rename_noreplace(self._dfd, self._name, name)
                except OSError as e:
                    raise Error("set aside %s: %s" % (self.path, e.strerror), self.path, None, None, e.errno)
                self._name, self._aside = name, True
            return self.path
        finally:
            self.release()

    def release(self) -> None:
        """release closes the segment without deleting it (it stays claimed, and is delivered again)."""
        self._cursor = None
        self._seg.close()

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc: "Any") -> None:
        self.release()

    def __repr__(self) -> str:
        return "<filering.Claim %s%s>" % (self.path, " (redelivered)" if self.redelivered else "")


class Taker(object):
    """Taker claims the sealed segments of a ring, one at a time (see the module documentation).

        with ring.taker() as taker:
            while True:
                claim = taker.claim()
                if claim is None:
                    taker.wait()
                    continue
                with claim:
                    for rec in claim: ...
                    claim.set_aside() if claim.error else claim.done()

    It needs write permission on the ring directory (to rename), so it runs as the
    producer's user. Not safe for concurrent use: run one per thread or process.
    """

    def __init__(self, path: str) -> None:
        self.path = os.fspath(path)
        self._dfd = open_dir(self.path)
        self._watcher = None  # type: Optional[Watcher]

    def claim(self) -> "Optional[Claim]":
        """claim claims the oldest sealed segment, or one a dead taker left, or returns None.

        A damaged segment is claimed too: its .error says what is wrong.
        """
        dfd = self._dfd
        try:
            names = sorted(os.listdir(dfd))
        except OSError as e:
            raise Error("list %s: %s" % (self.path, e.strerror), self.path, None, None, e.errno)
        listed = {}  # type: Dict[int, Entry]
        size = 0
        try:
            m = read_manifest(dfd, self.path)
            listed = dict((e[1], e) for e in m.segments)
            size = m.segment_size
        except Error:
            pass
        for name in names:
            num = parse_segment_name(name, TAKEN_SUFFIX)
            if num:
                c = self._reclaim(name, num, listed.get(num), size)
                if c is not None:
                    return c
        for name in names:
            num = parse_segment_name(name, SEG_SUFFIX)
            if not num:
                continue
            c = self._claim(name, num, listed.get(num), size)
            if c == "hot":
                break  # the hot segment: everything after it is newer
            if c is not None:
                return c  # type: ignore[return-value]
        return None

    def _open(self, name: str, num: int) -> "Any":
        """_open opens a segment's file; it returns the fd, None when it is gone, or a Claim
        of a file that cannot be opened as a segment, set aside at once."""
        try:
            fd, _ = open_regular(self._dfd, name)
            return fd
        except FileNotFoundError:
            return None
        except NotRegular as e:
            return self._set_aside_unopened(name, num, CorruptionError(os.path.join(self.path, name), None, "not-regular", str(e)))
        except OSError as e:
            err = resource_error(e, os.path.join(self.path, name))
            if err is not None:
                raise err
            return self._set_aside_unopened(
                name, num, CorruptionError(os.path.join(self.path, name), None, None, "open: %s" % e.strerror, e.errno)
            )

    def _claim(self, name: str, num: int, entry: "Optional[Entry]", size: int) -> "Any":
        fd = self._open(name, num)
        if fd is None or isinstance(fd, Claim):
            return fd
        try:
            hdr = os.pread(fd, HEADER_SIZE, 0)
        except OSError:
            hdr = b""
        if entry is None or not entry[4]:
            h = header_valid(hdr)
            if h is not None and h[3] == 0:
                os.close(fd)
                return "hot"
        # Sealed, or damaged: either way it is claimed, and a damaged one set aside.
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None  # another taker is working on it
        taken = segment_name(num, TAKEN_SUFFIX)
        try:
            rename_noreplace(self._dfd, name, taken)
        except (FileNotFoundError, FileExistsError):
            os.close(fd)
            return None  # another taker, or the producer's retention, was first
        except OSError as e:
            os.close(fd)
            raise Error("take %s: %s" % (os.path.join(self.path, name), e.strerror), self.path, None, None, e.errno)
        return Claim(self, open_claimed(self._dfd, self.path, taken, num, fd, entry, size), taken, False)

    def _reclaim(self, name: str, num: int, entry: "Optional[Entry]", size: int) -> "Optional[Claim]":
        fd = self._open(name, num)
        if fd is None or isinstance(fd, Claim):
            return fd  # type: ignore[no-any-return]
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None  # its taker is alive
        # The claim may have been finished and removed between our open and our lock.
        try:
            a = os.fstat(fd)
            b = os.stat(name, dir_fd=self._dfd, follow_symlinks=False)
            same = a.st_ino == b.st_ino and a.st_dev == b.st_dev
        except OSError:
            same = False
        if not same:
            os.close(fd)
            return None
        return Claim(self, open_claimed(self._dfd, self.path, name, num, fd, entry, size), name, True)

    def _set_aside_unopened(self, name: str, num: int, damage: CorruptionError) -> "Optional[Claim]":
        """_set_aside_unopened renames a file under a segment's name that cannot be opened as a
        segment: nobody can lock it, and the rename itself is the claim."""
        aside = segment_name(num, DAMAGED_SUFFIX)
        try:
            rename_noreplace(self._dfd, name, aside)
        except (FileNotFoundError, FileExistsError):
            return None
        except OSError as e:
            raise Error("%s; setting it aside failed: %s" % (damage, e.strerror), damage.path, None, None, e.errno)
        from ._segment import Segment

        seg = Segment(os.path.join(self.path, name), name, num, 0, 0, 0, True)
        seg.damage = damage
        return Claim(self, seg, aside, False, aside=True)

    def wait(self, timeout: "Optional[float]" = None) -> None:
        """wait blocks until something in the ring directory changes, the poll interval
        passes, or timeout seconds pass, so that a claim may find a newly sealed segment."""
        if self._watcher is None:
            self._watcher = Watcher(self.path)
        self._watcher.wait(timeout)

    def close(self) -> None:
        """close releases the ring directory and the watch."""
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        if self._dfd is not None:
            os.close(self._dfd)
            self._dfd = None  # type: ignore[assignment]

    def __enter__(self) -> "Taker":
        return self

    def __exit__(self, *exc: "Any") -> None:
        self.close()


def take(path: str, follow: bool = False, on_damage: "Optional[Callable[[CorruptionError], Any]]" = None, timeout: "Optional[float]" = None) -> "Iterator[Record]":
    """take yields the records of every sealed segment it claims; see Ring.take."""
    import time

    taker = Taker(path)
    try:
        idle_since = time.monotonic()
        while True:
            claim = taker.claim()
            if claim is None:
                if not follow:
                    return
                if timeout is not None:
                    remaining = idle_since + timeout - time.monotonic()
                    if remaining <= 0:
                        return
                    taker.wait(remaining)
                else:
                    taker.wait()
                continue
            try:
                for batch in claim.batches():
                    for rec in batch:
                        yield rec
                if claim.error is not None:
                    err = claim.error
                    claim.set_aside()
                    if on_damage is None:
                        raise err
                    on_damage(err)
                else:
                    claim.done()
            finally:
                claim.release()
            idle_since = time.monotonic()
    finally:
        taker.close()
