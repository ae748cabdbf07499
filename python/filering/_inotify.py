"""Waking up on changes in a ring directory: inotify through ctypes, and a poll timer.

docs/FORMAT.md ("Wake-ups"): watch the ring directory with inotify and rescan on any
event; events are hints, so also rescan on a timer: every POLL seconds, every POLL_FAST
seconds while inotify is unavailable (no ctypes, no inotify, out of instances or
watches) or for FAST_FOR seconds after its queue overflowed.
"""

from __future__ import annotations

import errno as _errno
import os
import struct
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

__all__ = ["Watcher", "POLL", "POLL_FAST"]

POLL = 1.0  # seconds between rescans while inotify works
POLL_FAST = 0.1  # seconds between rescans without inotify, or after an overflow
FAST_FOR = 10.0  # seconds of fast polling after the event queue overflowed

IN_MODIFY = 0x00000002
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
MASK = IN_MODIFY | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
_GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED  # the watched directory went away
_RESCAN = IN_MOVED_FROM | IN_DELETE | IN_Q_OVERFLOW | _GONE  # read the manifest again
_EVENT = struct.Struct("=iIII")  # struct inotify_event, without its name
_FLAGS = os.O_NONBLOCK | os.O_CLOEXEC  # IN_NONBLOCK, IN_CLOEXEC: the same values on Linux
_libc = []  # type: list

# Tests set this to force the polling fallback.
disabled = False


def _functions() -> "Any":
    if not _libc:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        init1 = libc.inotify_init1
        init1.argtypes = [ctypes.c_int]
        init1.restype = ctypes.c_int
        add = libc.inotify_add_watch
        add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        add.restype = ctypes.c_int
        _libc.append((init1, add, ctypes.get_errno))
    return _libc[0]


def inotify_watch(path: str) -> int:
    """inotify_watch returns a non-blocking inotify descriptor watching the directory path.

    It raises OSError when inotify cannot be had (ImportError without ctypes).
    """
    init1, add, get_errno = _functions()
    fd = init1(_FLAGS)
    if fd < 0:
        err = get_errno()
        raise OSError(err, "inotify_init1: %s" % os.strerror(err))
    if add(fd, os.fsencode(path), MASK) < 0:
        err = get_errno()
        os.close(fd)
        raise OSError(err, "inotify_add_watch %s: %s" % (path, os.strerror(err)))
    return fd


class Watcher(object):
    """Watcher waits for changes in a ring directory: an inotify event, or the poll timer.

    fileno() is the inotify descriptor to wait on (readable when events are queued), or
    None while polling. After it is readable, or the interval passed, call drain(),
    which says whether the manifest may have changed.
    """

    def __init__(self, path: "Optional[str]") -> None:
        self.fd = None  # type: Optional[int]
        self.fast_until = float("inf")
        self.events = 0  # for tests and reports
        self.overflows = 0
        if path is None or disabled:
            return
        try:
            self.fd = inotify_watch(path)
            self.fast_until = 0.0
        except (ImportError, AttributeError, OSError):
            self.fd = None

    def fileno(self) -> "Optional[int]":
        return self.fd

    @property
    def polling(self) -> bool:
        """Whether the watcher is polling fast (no inotify, or after an overflow)."""
        return time.monotonic() < self.fast_until

    def interval(self) -> float:
        """interval returns how long to wait at most before rescanning."""
        return POLL_FAST if time.monotonic() < self.fast_until else POLL

    def drain(self) -> bool:
        """drain reads the queued events; it reports whether the manifest may have changed.

        It reports True when no event was queued: the wait ended by the timer.
        """
        if self.fd is None:
            return True
        manifest = False
        got = False
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == _errno.EINTR:
                    continue
                self._lost()
                return True
            if not data:
                break
            got = True
            pos = 0
            while pos + _EVENT.size <= len(data):
                _wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
                name = data[pos + _EVENT.size : pos + _EVENT.size + length].rstrip(b"\0")
                pos += _EVENT.size + length
                self.events += 1
                if mask & _RESCAN or name == b"manifest":
                    manifest = True
                if mask & IN_Q_OVERFLOW:
                    self.overflows += 1
                    self.fast_until = time.monotonic() + FAST_FOR
                if mask & _GONE:
                    self._lost()
                    return True
        return manifest or not got

    def wait(self, timeout: "Optional[float]") -> bool:
        """wait blocks until an event, the poll interval or timeout (seconds) passes.

        It reports whether the manifest may have changed (see drain).
        """
        interval = self.interval()
        if timeout is not None:
            interval = max(0.0, min(interval, timeout))
        if self.fd is None:
            time.sleep(interval)
            return True
        import select

        p = select.poll()
        p.register(self.fd, select.POLLIN)
        try:
            ready = p.poll(interval * 1000.0)
        except InterruptedError:  # pragma: no cover (PEP 475 retries)
            ready = []
        if not ready:
            return True
        return self.drain()

    def _lost(self) -> None:
        """_lost gives up on inotify (the directory went away, or the descriptor failed)."""
        self.close()
        self.fast_until = float("inf")

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)
