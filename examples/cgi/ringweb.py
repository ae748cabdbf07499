"""ringweb: the JSON endpoint shared by graph.cgi and app.py (standard library only).

    GET <endpoint>?last=N               the latest N records (default 300, at most 100000)
    GET <endpoint>?after=SEQ&wait=S     records newer than SEQ; if there are none yet,
                                        wait up to S seconds (at most 60) for one

Both answer {"records": [{"seq": 7, "time_ns": 1700000000000000000, "value": 21.5},
...], "last_seq": 7}: records in increasing sequence order (with after=, at most the
newest `last` of those newer than SEQ), and last_seq, the sequence number of the newest
record in the ring (0 when it holds none). "value" is the payload as a number when it
is a decimal number (like 21.5, -3, 1e-3), else the payload as a string.

Errors are JSON too, {"error": "..."}, with status 400 (bad query), 404 (no ring at
the configured directory), 405 (not GET or HEAD) or 500 (anything else, such as a
damaged segment).

While waiting, the ring directory is watched with inotify (through ctypes), with a
rescan every second in case an event was missed, and every 100 ms when inotify is not
available, as docs/FORMAT.md ("Wake-ups") recommends.
"""

import json
import math
import os
import re
import select
import struct
import time
from urllib.parse import parse_qs

import filering_reader

DEFAULT_RING = "/run/ring/sensor"  # used when FILERING_RING is not set
DEFAULT_LAST = 300  # records returned when the query has no last=
MAX_LAST = 100000  # larger last= values are clamped to this
MAX_WAIT = 60.0  # larger wait= values are clamped to this, in seconds
RESCAN = 1.0  # rescan interval while inotify works, in seconds
POLL = 0.1  # rescan interval without inotify (or after its queue overflowed)

_NUMBER = re.compile(r"\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*")
_COUNT = re.compile(r"[0-9]{1,19}")
_SECONDS = re.compile(r"[0-9]{1,6}(?:\.[0-9]{0,6})?")


class BadRequest(Exception):
    """The query string is not valid; the message says why."""


def parse_query(query_string):
    """parse_query returns (last, after, wait) from a query string.

    after is None when absent; wait is 0 unless given. Unknown parameters are ignored
    (so cache-busting parameters do no harm).
    """
    try:
        params = parse_qs(query_string or "", keep_blank_values=True, strict_parsing=False, max_num_fields=100)
    except ValueError as e:
        raise BadRequest(str(e))

    def one(name, pattern, what):
        values = params.get(name)
        if not values:
            return None
        if len(values) > 1 or not pattern.fullmatch(values[0]):
            raise BadRequest("%s must be %s" % (name, what))
        return values[0]

    last = one("last", _COUNT, "a non-negative integer")
    after = one("after", _COUNT, "a non-negative integer (a sequence number)")
    wait = one("wait", _SECONDS, "a number of seconds")
    last = DEFAULT_LAST if last is None else min(int(last), MAX_LAST)
    after = None if after is None else int(after)
    if after is not None and after >= 1 << 63:
        raise BadRequest("after is too large")
    wait = 0.0 if wait is None else min(float(wait), MAX_WAIT)
    return last, after, wait


def value_of(payload):
    """value_of returns the payload as a float if it is a decimal number, else as text."""
    text = payload.decode("utf-8", "replace")
    if _NUMBER.fullmatch(text):
        value = float(text)
        if math.isfinite(value):
            return value
    return text


def _record(rec):
    seq, time_ns, payload = rec
    return {"seq": seq, "time_ns": time_ns, "value": value_of(payload)}


def _newest_seq(ring_dir):
    newest = filering_reader.read_records(ring_dir, last=1, check_all=False)
    return newest[-1][0] if newest else 0


def query(ring_dir, last=DEFAULT_LAST, after=None, wait=0.0, watcher_factory=None):
    """query returns the response document for last, after and wait (see the module doc).

    It raises filering_reader.Error (NotFoundError when the ring does not exist).
    """
    if after is None:
        records = filering_reader.read_records(ring_dir, last=last, check_all=False)
        return {"records": [_record(r) for r in records], "last_seq": records[-1][0] if records else _newest_seq(ring_dir)}
    deadline = time.monotonic() + wait
    watcher = None
    try:
        if wait > 0:
            # Watch before the first look, so a record that arrives in between wakes us.
            watcher = (watcher_factory or DirWatcher)(ring_dir)
        while True:
            records = filering_reader.read_records(ring_dir, last=last, from_seq=after + 1, check_all=False)
            remaining = deadline - time.monotonic()
            if records or remaining <= 0:
                break
            watcher.wait(remaining)
    finally:
        if watcher is not None:
            watcher.close()
    newest = records[-1][0] if records else _newest_seq(ring_dir)
    return {"records": [_record(r) for r in records], "last_seq": newest}


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}


def _json(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def respond(ring_dir, query_string, method="GET"):
    """respond answers one request; it returns (status line, headers, body bytes).

    The status line is like "200 OK"; headers is a list of (name, value). It never
    raises for a bad request or a bad ring: those become JSON error responses.
    """
    try:
        if method not in ("GET", "HEAD"):
            code, doc = 405, {"error": "method %s not allowed; use GET" % method}
        else:
            last, after, wait = parse_query(query_string)
            code, doc = 200, query(ring_dir, last, after, wait)
    except BadRequest as e:
        code, doc = 400, {"error": str(e)}
    except filering_reader.NotFoundError as e:
        code, doc = 404, {"error": str(e)}
    except filering_reader.Error as e:
        code, doc = 500, {"error": str(e)}
    except Exception as e:  # report it as JSON rather than as an HTML error page
        code, doc = 500, {"error": "%s: %s" % (type(e).__name__, e)}
    body = _json(doc) + b"\n"
    headers = [
        ("Content-Type", "application/json; charset=utf-8"),
        ("Cache-Control", "no-store"),
        ("Content-Length", str(len(body))),
    ]
    if code == 405:
        headers.append(("Allow", "GET, HEAD"))
    if method == "HEAD":
        body = b""
    return "%d %s" % (code, _REASONS[code]), headers, body


# ---------------------------------------------------------------------------------------
# Waiting for the ring directory to change

IN_MODIFY = 0x00000002
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
WATCH_MASK = IN_MODIFY | IN_MOVED_TO | IN_CREATE | IN_DELETE
_EVENT = struct.Struct("=iIII")  # struct inotify_event without its name


def _inotify_watch(path):
    """_inotify_watch returns an inotify fd watching directory path (raises OSError)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    init1 = libc.inotify_init1
    init1.argtypes = [ctypes.c_int]
    init1.restype = ctypes.c_int
    add = libc.inotify_add_watch
    add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    add.restype = ctypes.c_int
    fd = init1(os.O_NONBLOCK | os.O_CLOEXEC)  # IN_NONBLOCK | IN_CLOEXEC
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, "inotify_init1: " + os.strerror(err))
    if add(fd, os.fsencode(path), WATCH_MASK) < 0:
        err = ctypes.get_errno()
        os.close(fd)
        raise OSError(err, "inotify_add_watch %s: %s" % (path, os.strerror(err)))
    return fd


class DirWatcher(object):
    """DirWatcher waits for changes in a directory: inotify events, or a timer.

    Events are hints: wait() also returns after RESCAN seconds, or POLL seconds when
    inotify is unavailable (no ctypes, no inotify, out of watches) or its queue
    overflowed; the caller rescans whenever wait() returns.
    """

    def __init__(self, path):
        try:
            self.fd = _inotify_watch(path)
        except (ImportError, AttributeError, OSError):
            self.fd = None

    @property
    def polling(self):
        return self.fd is None

    def wait(self, timeout):
        """wait returns after an event in the directory, or after min(timeout, interval)."""
        if self.fd is None:
            time.sleep(max(0.0, min(timeout, POLL)))
            return
        ready, _, _ = select.select([self.fd], [], [], max(0.0, min(timeout, RESCAN)))
        if ready:
            self._drain()

    def _drain(self):
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                self.close()
                return
            pos = 0
            while pos + _EVENT.size <= len(data):
                _wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
                pos += _EVENT.size + length
                if mask & (IN_Q_OVERFLOW | IN_IGNORED):
                    # Events were lost, or the directory went away: poll from now on.
                    self.close()
                    return

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
