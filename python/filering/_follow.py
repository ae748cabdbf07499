"""Followers: the selected records of a ring, then every new one as it is appended.

A follower goes by sequence number, never by segment number or file (docs/FORMAT.md,
"Following"): it delivers records in strictly increasing sequence order, each at most
once, and after any rescan, producer restart or roll it continues with the first record
at or after the next one it expects. Records it will never see (retired by the ring,
taken, lost in a producer crash, skipped as damaged) are reported as losses, exactly,
as soon as the manifest shows they are gone. Only when the ring was created anew (the
directory at its path is another one, or the ring's next sequence number fell below
what the follower already saw) does it start over from the new ring's first record.

The logic is the Go follower's (watch/follow.go), step for step; the waiting differs:
Follower blocks in poll(2) on the inotify descriptor, AsyncFollower awaits it with
loop.add_reader.
"""

from __future__ import annotations

import os
import time

from ._errors import CorruptionError, Error, Loss, NoRingError
from ._inotify import Watcher
from ._ring import _read_last, open_dir, read_manifest, snapshot
from ._index import entry_for
from ._segment import Cursor, open_segment

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, List, Optional

    from ._format import Record
    from ._manifest import Entry, Manifest
    from ._segment import Segment

__all__ = ["Follower", "AsyncFollower"]


class _Core(object):
    """_Core is the follower's state and its non-blocking step; the classes below wait."""

    def __init__(
        self,
        path: str,
        from_seq: "Optional[int]",
        since: "Optional[int]",
        last: "Optional[int]",
        on_loss: "Optional[Callable[[Loss], Any]]",
        on_damage: "Optional[Callable[[CorruptionError], Any]]",
    ) -> None:
        for name, value in (("from_seq", from_seq), ("last", last)):
            if value is not None and (type(value) is not int or value < 0):
                raise ValueError("%s must be a non-negative int or None, not %r" % (name, value))
        self.path = os.fspath(path)
        self.sel = (from_seq or 0, since, last)
        self.on_loss = on_loss
        self.on_damage = on_damage
        self.dfd = None  # type: Optional[int]
        self.dir_id = (0, 0)
        self.watcher = Watcher(None)  # polling until the directory exists
        self.started = False
        self.cur = None  # type: Optional[Segment]
        self.cursor = None  # type: Optional[Cursor]
        self.cur_done = False
        # next is the next sequence number expected: 0 while none is expected yet (a
        # follower of every retained record, before the first).
        self.next = 0
        # known is the highest next sequence number the ring was seen to reach; a ring
        # whose next sequence is below it was created anew.
        self.known = 0
        self.since = None  # type: Optional[int]
        self.since_until = 0  # the since filter applies below this sequence number
        self.queue = []  # type: List[Record]
        self.qpos = 0
        self.damage = None  # type: Optional[CorruptionError]
        self.pend = None  # type: Optional[List[int]]  # a loss learnt, not reported yet
        self.recheck = False
        self.restart = False  # the ring was created anew: say so with the next record
        self.restarted = False
        self.lost = 0
        self.closed = False
        # A follower started before its ring exists follows it from its first record,
        # whatever the selection (docs/FORMAT.md, "Following").
        self.existed = False
        if self._open_dir():  # watch from the start, when the directory exists
            try:
                read_manifest(self.dfd, self.path)  # type: ignore[arg-type]
                self.existed = True
            except NoRingError:
                pass
            except Error:
                self.existed = True  # a ring is there; following reports what is wrong
        if self.existed:
            try:
                self._start()  # the selection applies to the ring as it is now
            except BaseException:
                self.close()
                raise

    # -- opening ----------------------------------------------------------------------

    def _open_dir(self) -> bool:
        """_open_dir opens the ring directory, once it exists, and watches it."""
        try:
            dfd = open_dir(self.path)
        except NoRingError:
            return False
        st = os.fstat(dfd)
        self.dfd = dfd
        self.dir_id = (st.st_dev, st.st_ino)
        self.watcher.close()
        self.watcher = Watcher(self.path)
        return True

    def _start(self) -> None:
        """_start sets where following begins, from the selection, as the ring is now.

        With none, every retained record; from_seq, records from it on (the missing ones
        from it on are reported lost); last=N, the last N records; last=0, only records
        appended from now on; since, records appended since then (older ones are passed
        over, not reported lost). A ring that does not exist yet is followed from its
        first record (sequence 1, or from_seq).
        """
        self.started = True
        from_seq, since, last = self.sel
        if not self.existed:
            self.next = max(from_seq, 1)
            return
        try:
            m = read_manifest(self.dfd, self.path)  # type: ignore[arg-type]
        except NoRingError:
            self.next = max(from_seq, 1)
            return
        self.next = from_seq
        if since is not None:
            self.since = since
            self.since_until = self._ring_next(m)
        if last is None:
            return
        if last == 0:
            self.next = max(from_seq, self._ring_next(m))
            return
        first = 0
        for b in snapshot(self.path, from_seq, since, last, self.dfd):
            if b.records and not first:
                first = b.records[0][0]
        self.next = first if first else max(from_seq, self._ring_next(m))

    def _ring_next(self, m: "Manifest") -> int:
        """_ring_next returns the sequence number the ring's next record will carry."""
        batches, floor = _read_last(self.dfd, self.path, 1, 0)  # type: ignore[arg-type]
        return max([floor] + [b.seen + 1 for b in batches])

    # -- the step ---------------------------------------------------------------------

    def step(self) -> "Optional[Record]":
        """step returns the next record if there is one now, else None (then wait and call again).

        Losses go to on_loss before any later record; damage goes to on_damage, or is
        raised (call again to go on past it).
        """
        if self.closed:
            raise ValueError("the follower is closed")
        while True:
            if self.qpos < len(self.queue):
                rec = self.queue[self.qpos]
                self.qpos += 1
                if self.qpos == len(self.queue):
                    self.queue, self.qpos = [], 0
                if rec[0] < self.next:
                    continue
                if self.since is not None and rec[0] < self.since_until and rec[1] < self.since:
                    self.next = rec[0] + 1  # left out by since: not lost
                    continue
                return self._deliver(rec)
            if self.damage is not None:
                err, self.damage = self.damage, None
                self._report(err)
                continue
            if self.dfd is None:
                if not self._open_dir():
                    return None
            if not self.started:
                self._start()
            if self.cur is not None and not self.cur_done:
                if self._read():
                    continue
            if self.cur is None or self.cur_done or self.recheck:
                self.recheck = False
                if self._advance():
                    continue
            if self.damage is not None:
                continue
            self._flush_loss()
            return None

    def _report(self, err: CorruptionError) -> None:
        if self.on_damage is None:
            raise err
        self.on_damage(err)

    def _deliver(self, rec: "Record") -> "Record":
        if self.next and rec[0] > self.next:
            self._lost(rec[0] - 1)
        self._flush_loss()
        if self.pend is not None:  # no on_loss: counted only
            self.pend = None
        self.restarted, self.restart = self.restart, False
        self.next = rec[0] + 1
        if self.next > self.known:
            self.known = self.next
        if self.since is not None and self.next >= self.since_until:
            self.since = None
        return rec

    def _read(self) -> bool:
        """_read reads the current segment from where it is; it reports whether records came."""
        c = self.cursor
        assert c is not None
        recs = c.read(self.next, once=True)
        if c.seq > self.known:
            self.known = c.seq
        if c.error is not None:
            self.damage = c.error
            c.error = None
        if c.done:
            self.cur_done = True
        if recs:
            self.queue, self.qpos = recs, 0
            return True
        return self.damage is not None

    def _lost(self, to: int) -> None:
        """_lost notes that the records from next to `to` will never be delivered."""
        if not self.next or to < self.next:
            return
        if self.pend is not None:
            self.pend[1] = to
        else:
            self.pend = [self.next, to]
        self.lost += to - self.next + 1
        self.next = to + 1

    def _flush_loss(self) -> None:
        if self.pend is not None and self.on_loss is not None:
            loss = Loss(self.pend[0], self.pend[1])
            self.pend = None
            self.on_loss(loss)

    def _is_cur(self, e: "Entry") -> bool:
        cur = self.cur
        return cur is not None and e[1] == cur.number and (cur.fd is None or cur.same_file(self.dfd, e[0]))  # type: ignore[arg-type]

    def _advance(self) -> bool:
        """_advance reads the manifest and moves to the segment holding the next record.

        It notes as lost the records of listed segments found gone, and reports whether
        there is something to read now. It starts over when the ring was created anew.
        """
        if self._replaced():
            if not self._reopen():
                return False
        try:
            m = read_manifest(self.dfd, self.path)  # type: ignore[arg-type]
        except NoRingError:
            return False
        cur = self.cur
        if cur is not None and not self.cur_done and cur.fd is not None:
            try:
                if cur.words()[0] == 1:
                    return True  # sealed: read it to its end before any newer segment
            except CorruptionError:
                pass
        if self._anew(m):
            self._start_over()
        n = m.next_seq()
        if n > self.known:
            self.known = n
        hot = m.hot()
        if hot is not None and hot[2] > self.known:
            self.known = hot[2]
        for e in m.segments:
            if e[4] and e[3] < self.next:
                continue
            if self._is_cur(e):
                cur = self.cur
                assert cur is not None
                cur.listed_sealed, cur.last_seq = e[4], e[3] if e[4] else 0
                if not self.cur_done or not e[4]:
                    # Reading it, or waiting for a damaged hot segment to be sealed, to
                    # learn how many of its records are lost.
                    return False
                self._lost(e[3])
                continue
            self._lost(e[2] - 1)
            seg = open_segment(self.dfd, self.path, e, m.segment_size)  # type: ignore[arg-type]
            if seg is None:
                if not e[4]:
                    return False  # the hot segment's file is gone: wait for the manifest
                self._lost(e[3])  # taken or retired
                continue
            if self.cur is not None:
                self.cur.close()
            self.cur, self.cursor, self.cur_done = seg, None, False
            if seg.damage is not None:
                self.cur_done = True
                seg.close()
                self.damage = seg.damage
                return False
            self.cursor = self._cursor(seg)
            return True
        return False

    def _cursor(self, seg: "Segment") -> Cursor:
        """_cursor returns a cursor on seg for the next record expected.

        When that record is inside the segment (the first segment of from_seq or last),
        the cursor starts at the entry of the segment's index before it, if the entry
        checks out (docs/FORMAT.md, "The segment index"), else at offset 64. A follower
        delivers as it goes, as a --from read does: damage from the entry on is met
        there, as from offset 64; damage before it is not read.
        """
        i = self.next - seg.first_seq
        if i > 0:
            at = entry_for(self.dfd, seg, i)  # type: ignore[arg-type]
            if at is not None:
                return Cursor(seg, at[0], at[1])
        return Cursor(seg)

    def _anew(self, m: "Manifest") -> bool:
        """_anew reports whether the ring of manifest m was created anew: its next sequence
        number is below what the follower already saw it reach."""
        hot = m.hot()
        if hot is None:
            return m.next_seq() < self.known
        if hot[2] >= self.known or self._is_cur(hot):
            return False
        try:
            seg = open_segment(self.dfd, self.path, hot, m.segment_size)  # type: ignore[arg-type]
        except Error:
            return False
        if seg is None:
            return False
        try:
            if seg.damage is not None:
                return False
            c = Cursor(seg)
            c.read(1 << 64)
            return c.seq < self.known
        finally:
            seg.close()

    def _replaced(self) -> bool:
        """_replaced reports whether the ring's path now names another directory."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) != self.dir_id

    def _reopen(self) -> bool:
        old = self.dfd
        self.dfd = None
        if not self._open_dir():
            self.dfd = old
            return False
        if old is not None:
            os.close(old)
        self._start_over()
        return True

    def _start_over(self) -> None:
        if self.cur is not None:
            self.cur.close()
        self.cur, self.cursor, self.cur_done = None, None, False
        self.queue, self.qpos = [], 0
        self.next, self.known = 1, 0
        self.pend = None
        self.since = None
        self.restart = True

    def after_wait(self, manifest: bool) -> None:
        """after_wait takes what a wait ended with: whether the manifest may have changed."""
        if manifest:
            self.recheck = True

    def close(self) -> None:
        self.closed = True
        if self.cur is not None:
            self.cur.close()
            self.cur = None
        self.watcher.close()
        if self.dfd is not None:
            os.close(self.dfd)
            self.dfd = None


class _Base(object):
    """What Follower and AsyncFollower share."""

    _core = None  # type: _Core

    @property
    def path(self) -> str:
        """The ring directory followed."""
        return self._core.path

    @property
    def next_seq(self) -> int:
        """The sequence number of the next record expected (0 before the first, when none is)."""
        return self._core.next

    @property
    def restarted(self) -> bool:
        """Whether the record just returned is the first of a ring created anew."""
        return self._core.restarted

    @property
    def lost(self) -> int:
        """How many records were reported lost so far."""
        return self._core.lost

    @property
    def polling(self) -> bool:
        """Whether the follower polls (inotify unavailable, or its queue overflowed)."""
        return self._core.watcher.polling

    def fileno(self) -> int:
        """fileno returns the inotify descriptor the follower waits on, or -1 while it polls."""
        fd = self._core.watcher.fileno()
        return -1 if fd is None else fd


class Follower(_Base):
    """Follower yields the selected records of a ring, then every new one as it comes.

        with ring.follow(last=10, on_loss=print) as f:
            for rec in f:
                ...

    Iterating blocks until the next record; read(timeout) returns None when none came
    in time (timeout 0 polls without waiting). Losses are passed to on_loss as Loss
    values as soon as the follower learns of them, before any later record (without
    on_loss they are only counted in .lost). Damage is passed to on_damage; without it,
    a CorruptionError is raised, and iterating again goes on past the damage (the
    records skipped are then reported lost). .restarted says whether the record just
    returned is the first of a ring created anew. A Follower started before its ring
    exists waits for it and expects every record from sequence 1 on.

    It wakes on inotify events on the ring directory and rescans every second anyway
    (every 100 ms without inotify). It holds the ring directory and the segment it reads
    open; close() (or leaving `with`) releases them. Not safe for concurrent use.
    """

    def __init__(
        self,
        path: str,
        from_seq: "Optional[int]" = None,
        since: "Optional[int]" = None,
        last: "Optional[int]" = None,
        on_loss: "Optional[Callable[[Loss], Any]]" = None,
        on_damage: "Optional[Callable[[CorruptionError], Any]]" = None,
    ) -> None:
        self._core = _Core(path, from_seq, since, last, on_loss, on_damage)

    def read(self, timeout: "Optional[float]" = None) -> "Optional[Record]":
        """read returns the next record, waiting up to timeout seconds (None: for ever) for it.

        It returns None when the timeout passes first.
        """
        core = self._core
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            rec = core.step()
            if rec is not None:
                return rec
            remaining = None
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
            w = core.watcher
            if core.dfd is None:
                time.sleep(min(w.interval(), remaining) if remaining is not None else w.interval())
                continue
            core.after_wait(w.wait(remaining))

    def __iter__(self) -> "Follower":
        return self

    def __next__(self) -> "Record":
        if self._core.closed:
            raise StopIteration
        rec = self.read()
        assert rec is not None
        return rec

    def close(self) -> None:
        """close releases the ring directory, the segment held open and the inotify watch."""
        self._core.close()

    def __enter__(self) -> "Follower":
        return self

    def __exit__(self, *exc: "Any") -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._core.close()
        except Exception:
            pass


class AsyncFollower(_Base):
    """AsyncFollower is Follower for asyncio: the waiting is awaited, on the event loop.

        async with ring.afollow(last=0) as f:
            async for rec in f:
                ...

    await read(timeout) returns None when no record came in time. The inotify
    descriptor is watched with loop.add_reader; scanning a window of records is done on
    the loop, in well under a millisecond per wake-up for ordinary records.
    """

    def __init__(
        self,
        path: str,
        from_seq: "Optional[int]" = None,
        since: "Optional[int]" = None,
        last: "Optional[int]" = None,
        on_loss: "Optional[Callable[[Loss], Any]]" = None,
        on_damage: "Optional[Callable[[CorruptionError], Any]]" = None,
    ) -> None:
        self._core = _Core(path, from_seq, since, last, on_loss, on_damage)

    async def read(self, timeout: "Optional[float]" = None) -> "Optional[Record]":
        """read returns the next record, waiting up to timeout seconds (None: for ever) for it."""
        import asyncio

        core = self._core
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            rec = core.step()
            if rec is not None:
                return rec
            w = core.watcher
            wait = w.interval()
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                wait = min(wait, remaining)
            fd = w.fileno() if core.dfd is not None else None
            if fd is None:
                await asyncio.sleep(wait)
                core.after_wait(True)
                continue
            ready = loop.create_future()

            def wake(ready: "asyncio.Future[None]" = ready) -> None:
                if not ready.done():
                    ready.set_result(None)

            loop.add_reader(fd, wake)
            try:
                await asyncio.wait_for(ready, wait)
                manifest = w.drain()
            except asyncio.TimeoutError:
                manifest = True
            finally:
                loop.remove_reader(fd)
            core.after_wait(manifest)

    def __aiter__(self) -> "AsyncFollower":
        return self

    async def __anext__(self) -> "Record":
        if self._core.closed:
            raise StopAsyncIteration
        rec = await self.read()
        assert rec is not None
        return rec

    def close(self) -> None:
        """close releases what the follower holds (see Follower.close)."""
        self._core.close()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> "AsyncFollower":
        return self

    async def __aexit__(self, *exc: "Any") -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._core.close()
        except Exception:
            pass
