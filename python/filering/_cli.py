"""python3 -m filering cat|watch|take|stat|wait: the readers of the `filering` command.

Same flags, same output byte for byte, same exit statuses (0; 1 when something failed
or was damaged; 2 for a usage error; 3 when `wait` times out), parsed as the Go
command parses them: flags may come before or after the ring directory, as -flag or
--flag, with the value after = or as the next argument; numbers as Go's strconv reads
them (0x1f, 0o17, 1_000), durations as Go's time.ParseDuration reads them (1h30m, 2.5s,
300ms).

Imports are kept few and late: a CGI script printing the last 1000 records pays for the
interpreter and little else.
"""

from __future__ import annotations

import os
import sys
import time

from ._errors import Error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO, Dict, List, Optional, Set, Tuple

    from ._format import Record

__all__ = ["main"]

EXIT_TIMEOUT = 3  # `wait`: the timeout passed first


class UsageError(Exception):
    """UsageError is a mistake in how the command was called: exit status 2."""


class _Done(Exception):
    """_Done ends a command early with an exit status (after an interrupt, say)."""

    def __init__(self, status: int) -> None:
        Exception.__init__(self, status)
        self.status = status


# ---------------------------------------------------------------------------------------
# Go's number and duration syntax


def _underscore_ok(s: str) -> bool:
    """_underscore_ok is Go's strconv.underscoreOK: underscores only between digits."""
    saw = "^"
    i = 0
    if s[:1] in ("-", "+"):
        s = s[1:]
    hexa = False
    if len(s) >= 2 and s[0] == "0" and s[1].lower() in "box":
        i = 2
        saw = "0"
        hexa = s[1].lower() == "x"
    while i < len(s):
        c = s[i]
        if "0" <= c <= "9" or hexa and "a" <= c.lower() <= "f":
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        else:
            if saw == "_":
                return False
            saw = "!"
        i += 1
    return saw != "_"


def parse_uint(s: str) -> int:
    """parse_uint reads s as Go's strconv.ParseUint(s, 0, 64) does.

    It raises ValueError("parse error") or ValueError("value out of range").
    """
    if not s:
        raise ValueError("parse error")
    base = 10
    body = s
    if s[0] == "0":
        if len(s) >= 3 and s[1].lower() == "b":
            base, body = 2, s[2:]
        elif len(s) >= 3 and s[1].lower() == "o":
            base, body = 8, s[2:]
        elif len(s) >= 3 and s[1].lower() == "x":
            base, body = 16, s[2:]
        else:
            base, body = 8, s[1:]
    n = 0
    underscores = False
    for c in body:
        if c == "_":
            underscores = True
            continue
        d = "0123456789abcdefghijklmnopqrstuvwxyz".find(c.lower()) if c.isascii() and c.isalnum() else -1
        if d < 0 or d >= base:
            raise ValueError("parse error")
        n = n * base + d
        if n >= 1 << 64:
            raise ValueError("value out of range")
    if underscores and not _underscore_ok(s):
        raise ValueError("parse error")
    return n


def parse_int(s: str) -> int:
    """parse_int reads s as Go's strconv.ParseInt(s, 0, 64) does."""
    if not s:
        raise ValueError("parse error")
    neg = s[0] == "-"
    n = parse_uint(s[1:] if s[0] in "+-" else s)
    if n >= 1 << 63 and not (neg and n == 1 << 63):
        raise ValueError("value out of range")
    return -n if neg else n


_UNITS = {
    "ns": 1,
    "us": 1000,
    "\u00b5s": 1000,  # U+00B5 micro sign
    "\u03bcs": 1000,  # U+03BC Greek mu
    "ms": 1000000,
    "s": 1000000000,
    "m": 60000000000,
    "h": 3600000000000,
}


def parse_duration(s: str) -> int:
    """parse_duration reads s as Go's time.ParseDuration and returns nanoseconds.

    It raises ValueError("parse error") when s is not a duration.
    """
    orig = s
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError("parse error: invalid duration %r" % orig)
    total = 0
    while s:
        if not (s[0] == "." or "0" <= s[0] <= "9"):
            raise ValueError("parse error: invalid duration %r" % orig)
        i = 0
        v = 0
        while i < len(s) and "0" <= s[i] <= "9":
            v = v * 10 + ord(s[i]) - 48
            if v > 1 << 63:
                raise ValueError("parse error: invalid duration %r" % orig)
            i += 1
        pre = i > 0
        s = s[i:]
        post = False
        f, scale = 0, 1.0
        if s and s[0] == ".":
            s = s[1:]
            i = 0
            overflow = False
            while i < len(s) and "0" <= s[i] <= "9":
                if not overflow:
                    if f > ((1 << 63) - 1) // 10:
                        overflow = True
                    else:
                        y = f * 10 + ord(s[i]) - 48
                        if y > 1 << 63:
                            overflow = True
                        else:
                            f = y
                            scale *= 10
                i += 1
            post = i > 0
            s = s[i:]
        if not pre and not post:
            raise ValueError("parse error: invalid duration %r" % orig)
        i = 0
        while i < len(s) and not (s[i] == "." or "0" <= s[i] <= "9"):
            i += 1
        if i == 0:
            raise ValueError("parse error: missing unit in duration %r" % orig)
        unit = _UNITS.get(s[:i])
        if unit is None:
            raise ValueError("parse error: unknown unit %r in duration %r" % (s[:i], orig))
        s = s[i:]
        if v > (1 << 63) // unit:
            raise ValueError("parse error: invalid duration %r" % orig)
        v *= unit
        if f > 0:
            v += int(float(f) * (float(unit) / scale))
            if v > 1 << 63:
                raise ValueError("parse error: invalid duration %r" % orig)
        total += v
        if total > 1 << 63:
            raise ValueError("parse error: invalid duration %r" % orig)
    if neg:
        return -total
    if total > (1 << 63) - 1:
        raise ValueError("parse error: invalid duration %r" % orig)
    return total


def format_duration(ns: int) -> str:
    """format_duration writes ns as Go's time.Duration.String does (1h2m3.5s, 300ms, 0s)."""
    if ns == 0:
        return "0s"
    neg = ns < 0
    u = -ns if neg else ns
    if u < 1000000000:
        for unit, name in ((1000000, "ms"), (1000, "\u00b5s"), (1, "ns")):
            if u >= unit or unit == 1:
                text = _frac(u, unit) + name
                break
    else:
        secs = _frac(u % 60000000000, 1000000000) + "s"
        mins = u // 60000000000
        text = secs
        if mins:
            hours, mins = divmod(mins, 60)
            text = "%dm%s" % (mins, secs)
            if hours:
                text = "%dh%s" % (hours, text)
    return "-" + text if neg else text


def _frac(v: int, unit: int) -> str:
    whole, rem = divmod(v, unit)
    if not rem:
        return str(whole)
    digits = len(str(unit)) - 1
    return ("%d.%0*d" % (whole, digits, rem)).rstrip("0")


# ---------------------------------------------------------------------------------------
# The command line, parsed as urfave/cli and Go's flag package parse it


class _Flag(object):
    __slots__ = ("names", "kind", "default")

    def __init__(self, names: "Tuple[str, ...]", kind: str, default: "Any") -> None:
        self.names = names
        self.kind = kind  # "int", "uint", "duration", "string", "bool"
        self.default = default


_SELECTION = (
    _Flag(("last",), "int", 0),
    _Flag(("from",), "uint", 0),
    _Flag(("since",), "duration", 0),
    _Flag(("format",), "string", "lines"),
)
_COMMANDS = {
    "cat": ("print the retained records of a ring and exit", _SELECTION),
    "watch": (
        "print the last 10 records (or those selected), then follow new ones until interrupted",
        _SELECTION + (_Flag(("all",), "bool", False),),
    ),
    "take": (
        "single-consumer mode: take each sealed segment, print its records, delete it",
        (_Flag(("follow", "f"), "bool", False), _Flag(("format",), "string", "lines")),
    ),
    "stat": ("summarize a ring", (_Flag(("json",), "bool", False),)),
    "wait": (
        "wait for a record newer than --after, print the newest sequence number",
        (_Flag(("after",), "uint", 0), _Flag(("timeout",), "duration", 0)),
    ),
}
_USAGES = {
    "last": "--last N           only the last N records",
    "from": "--from SEQ         only records from sequence number SEQ on",
    "since": "--since DURATION   only records appended in the last DURATION (e.g. 30s, 5m)",
    "format": '--format FORMAT    output FORMAT: lines, json (JSON Lines) or raw (length-prefixed frames) (default: "lines")',
    "follow": "--follow, -f       keep waiting for newly sealed segments",
    "all": "--all              print every retained record before following, not only the last 10",
    "json": "--json             print JSON",
    "after": "--after SEQ        wait for a record newer than sequence number SEQ (0: any record)",
    "timeout": "--timeout value    give up after this long (0: wait forever)",
}


def _help(command: "Optional[str]") -> str:
    if command is None:
        lines = [
            "NAME:",
            "   python3 -m filering - the readers of a filering ring, in Python",
            "",
            "USAGE:",
            "   python3 -m filering command [command options] DIR",
            "",
            "COMMANDS:",
        ]
        for name in ("cat", "watch", "take", "stat", "wait"):
            lines.append("   %-7s %s" % (name, _COMMANDS[name][0]))
        lines += ["", "GLOBAL OPTIONS:", "   --help, -h  show help", ""]
        return "\n".join(lines)
    usage, flags = _COMMANDS[command]
    lines = [
        "NAME:",
        "   python3 -m filering %s - %s" % (command, usage),
        "",
        "USAGE:",
        "   python3 -m filering %s [command options] DIR" % command,
        "",
        "OPTIONS:",
    ]
    for f in flags:
        lines.append("   " + _USAGES[f.names[0]])
    lines += ["   --help, -h         show help", ""]
    return "\n".join(lines)


def _value(flag: _Flag, text: str) -> "Any":
    kind = flag.kind
    try:
        if kind == "int":
            return parse_int(text)
        if kind == "uint":
            return parse_uint(text)
        if kind == "duration":
            return parse_duration(text)
        if kind == "bool":
            if text in ("1", "t", "T", "TRUE", "true", "True"):
                return True
            if text in ("0", "f", "F", "FALSE", "false", "False"):
                return False
            raise ValueError("parse error")
    except ValueError as e:
        why = "value out of range" if str(e) == "value out of range" else "parse error"
        raise UsageError('invalid value "%s" for flag -%s: %s' % (text, flag.names[0], why))
    return text


def parse(command: str, args: "List[str]") -> "Tuple[Dict[str, Any], List[str]]":
    """parse reads the flags and arguments of command; UsageError when they are wrong.

    As the Go command does, the flags are first moved before the arguments (each with
    its value, when it takes one and one follows), and then read as Go's flag package
    reads them, up to the first argument or "--". It returns the flag values, by their
    first name (with, under "__given__", the set of flags the arguments named, for the
    defaults that depend on what was asked, as urfave/cli's IsSet), and the arguments.
    """
    flags = _COMMANDS[command][1]
    byname = {}
    for f in flags:
        for n in f.names:
            byname[n] = f

    def takes_value(a: str) -> bool:
        name = a.lstrip("-")
        f = byname.get(name)
        return "=" not in name and f is not None and f.kind != "bool"

    moved = []  # type: List[str]
    rest = []  # type: List[str]
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            rest.extend(args[i:])
            break
        if a.startswith("-") and a != "-":
            moved.append(a)
            if takes_value(a) and i + 1 < len(args):
                moved.append(args[i + 1])
                i += 1
        else:
            rest.append(a)
        i += 1
    args = moved + rest
    values = dict((f.names[0], f.default) for f in flags)  # type: Dict[str, Any]
    given = set()  # type: Set[str]
    values["__given__"] = given
    i = 0
    while i < len(args):
        a = args[i]
        if len(a) < 2 or a[0] != "-":
            break
        i += 1
        if a == "--":
            break
        name = a[2:] if a.startswith("--") else a[1:]
        if not name or name[0] in "-=":
            raise UsageError("bad flag syntax: %s" % a)
        text = None  # type: Optional[str]
        if "=" in name:
            name, text = name.split("=", 1)
        f = byname.get(name)
        if f is None:
            if name in ("help", "h"):
                raise _Help(command)
            raise UsageError("flag provided but not defined: -%s" % name)
        given.add(f.names[0])
        if f.kind == "bool":
            if text is None:
                values[f.names[0]] = True
            elif text in ("1", "t", "T", "TRUE", "true", "True"):
                values[f.names[0]] = True
            elif text in ("0", "f", "F", "FALSE", "false", "False"):
                values[f.names[0]] = False
            else:
                raise UsageError('invalid boolean value "%s" for -%s: parse error' % (text, name))
            continue
        if text is None:
            if i >= len(args):
                raise UsageError("flag needs an argument: -%s" % name)
            text = args[i]
            i += 1
        values[f.names[0]] = _value(f, text)
    return values, args[i:]


class _Help(Exception):
    def __init__(self, command: "Optional[str]") -> None:
        Exception.__init__(self, command)
        self.command = command


def _ring_arg(command: str, positional: "List[str]") -> str:
    if len(positional) != 1:
        raise UsageError("%s: want exactly one ring directory, got %d arguments" % (command, len(positional)))
    return positional[0]


# ---------------------------------------------------------------------------------------
# Output


class _Output(object):
    """_Output buffers formatted records and writes them to a binary stream."""

    def __init__(self, stream: "BinaryIO", fmt: str) -> None:
        if fmt not in ("lines", "json", "raw"):
            raise UsageError('--format "%s": want lines, json or raw' % fmt)
        from ._format import format_records

        self.stream = stream
        self.fmt = fmt
        self.format = format_records
        self.pending = []  # type: List[bytes]
        self.size = 0

    def write(self, records: "List[Record]") -> None:
        for i in range(0, len(records), 4096):
            b = self.format(records[i : i + 4096], self.fmt)
            self.pending.append(b)
            self.size += len(b)
            if self.size >= 65536:
                self.flush()

    def flush(self) -> None:
        if self.pending:
            data = b"".join(self.pending)
            self.pending = []
            self.size = 0
            self.stream.write(data)
        self.stream.flush()


def _notice(text: str) -> None:
    sys.stderr.write("filering: %s\n" % text)
    sys.stderr.flush()


def _since(values: "Dict[str, Any]") -> "Optional[int]":
    d = values["since"]
    if d == 0:
        return None
    if d < 0:
        raise UsageError("--since %s: must not be negative" % format_duration(d))
    import time

    return time.time_ns() - d


def _selection(values: "Dict[str, Any]") -> "Tuple[Optional[int], Optional[int], Optional[int]]":
    last = values["last"]
    if last < 0:
        raise UsageError("--last %d: must not be negative" % last)
    since = _since(values)
    return values["from"] or None, since, last or None


def cmd_cat(values: "Dict[str, Any]", path: str, out: "BinaryIO") -> int:
    from ._ring import since_ns, snapshot

    from_seq, since, last = _selection(values)
    output = _Output(out, values["format"])
    damaged = False
    for b in snapshot(path, from_seq or 0, since_ns(since), last):
        output.write(b.records)
        if b.error is not None:
            output.flush()
            _notice(str(b.error))
            damaged = True
    output.flush()
    return 1 if damaged else 0


def _interruptible() -> None:
    """_interruptible makes SIGTERM end the command as SIGINT does (KeyboardInterrupt)."""
    import signal

    def stop(signum: int, frame: "Any") -> None:
        raise KeyboardInterrupt()

    signal.signal(signal.SIGTERM, stop)


# _DEFAULT_WATCH_LAST is how many retained records watch prints before following when no
# selection is given, as tail -f does.
_DEFAULT_WATCH_LAST = 10


def cmd_watch(values: "Dict[str, Any]", path: str, out: "BinaryIO") -> int:
    from ._follow import Follower
    from ._ring import NoRingError, Ring

    _interruptible()
    given = values["__given__"]
    if values["all"] and given & {"last", "from", "since"}:
        raise UsageError("watch: --all selects every record: not with --last, --from or --since")
    from_seq, since, last = _selection(values)
    output = _Output(out, values["format"])
    waiting = False
    if not os.path.lexists(path):
        _notice("%s: no ring yet; waiting for it to be created" % path)
        waiting = True
    if waiting and last is None and since is None:
        # Every record the ring ever holds is one to print; any missed is lost.
        from_seq = max(from_seq or 0, 1)
    elif "last" in given and last is None:
        # --last 0: only the records appended from now on.
        try:
            newest = Ring(path).stat().last_seq
        except NoRingError:
            newest = 0
        from_seq = max(from_seq or 0, newest + 1)
    elif not given & {"last", "from", "since"} and not values["all"]:
        # As tail -f: the last 10 records, then new ones.
        last = _DEFAULT_WATCH_LAST
    damaged = [False]

    def on_loss(loss: "Any") -> None:
        output.flush()
        _notice("%s: %s" % (path, loss))

    def on_damage(err: Error) -> None:
        output.flush()
        _notice(str(err))
        damaged[0] = True

    follower = None
    try:
        follower = Follower(path, from_seq=from_seq, since=since, last=last, on_loss=on_loss, on_damage=on_damage)
        if not waiting:
            try:
                Ring(path).manifest()
            except NoRingError:
                _notice("%s: no ring yet; waiting for it to be created" % path)
            except Error:
                pass
        while True:
            rec = follower.read(0)
            if rec is None:
                output.flush()
                rec = follower.read()
            if follower.restarted:
                output.flush()
                _notice("%s: the ring was created anew; following it from its first record" % path)
            output.write([rec])  # type: ignore[list-item]
    except KeyboardInterrupt:
        output.flush()
    finally:
        if follower is not None:
            follower.close()
    return 1 if damaged[0] else 0


def cmd_take(values: "Dict[str, Any]", path: str, out: "BinaryIO") -> int:
    from ._take import Taker

    _interruptible()
    output = _Output(out, values["format"])
    damaged = False
    if values["follow"] and not os.path.lexists(path):
        # As watch does: a taker started before its producer waits for the ring.
        _notice("%s: no ring yet; waiting for it to be created" % path)
        try:
            while not os.path.lexists(path):
                time.sleep(0.1)
        except KeyboardInterrupt:
            return 0
    taker = Taker(path)
    try:
        while True:
            claim = taker.claim()
            if claim is None:
                if not values["follow"]:
                    break
                taker.wait()
                continue
            try:
                if claim.redelivered:
                    _notice("%s: segment %d was claimed by a taker that died; delivering it again" % (path, claim.number))
                for batch in claim.batches():
                    output.write(batch)
                # Records reach the output before the segment is deleted: at least once.
                output.flush()
                if claim.error is not None:
                    aside = claim.set_aside()
                    _notice(str(claim.error))
                    _notice("%s: set aside as %s" % (path, aside))
                    damaged = True
                    continue
                claim.done()
            finally:
                claim.release()
    except KeyboardInterrupt:
        pass
    finally:
        taker.close()
    return 1 if damaged else 0


def cmd_wait(values: "Dict[str, Any]", path: str, out: "BinaryIO") -> int:
    from ._follow import Follower

    _interruptible()
    import time

    timeout = values["timeout"]
    if timeout < 0:
        raise UsageError("--timeout %s: must not be negative" % format_duration(timeout))
    deadline = time.monotonic() + timeout / 1e9 if timeout else None

    def on_damage(err: Error) -> None:
        _notice(str(err))

    follower = None
    try:
        follower = Follower(path, from_seq=values["after"] + 1, on_damage=on_damage)
        rec = follower.read(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if rec is None:
            return EXIT_TIMEOUT
        newest = rec[0]
    except KeyboardInterrupt:
        return 0
    finally:
        if follower is not None:
            follower.close()
    from ._ring import Ring

    try:
        st = Ring(path).stat()
        newest = max(newest, st.last_seq)
    except Error:
        pass
    out.write(b"%d\n" % newest)
    out.flush()
    return 0


def cmd_stat(values: "Dict[str, Any]", path: str, out: "BinaryIO") -> int:
    from ._ring import Ring

    st = Ring(path).stat()
    for d in st.damage:
        _notice(str(d))
    tmpfs, fstype = _filesystem(path)
    pid = st.producer_pid or None
    if values["json"]:
        text = '{"dir":%s,"first_seq":%d,"last_seq":%d,"records":%d,"segments":%d,"segments_max":%d,"segment_size":%d,"hot_segment":%s,"generation":%d,"producer_pid":%s,"tmpfs":%s}\n' % (
            go_json_string(path),
            st.first_seq,
            st.last_seq,
            st.records,
            st.segments,
            st.segments_max,
            st.segment_size,
            go_json_string(st.hot_segment),
            st.generation,
            "null" if pid is None else str(pid),
            "true" if tmpfs else "false",
        )
    else:
        fs = "tmpfs" if tmpfs else "NOT tmpfs (%s)" % fstype
        text = "ring:      %s (%s)\nrecords:   %d (sequence %d to %d)\nsegments:  %d of %d, %s each\nhot:       %s\nproducer:  %s\n" % (
            path,
            fs,
            st.records,
            st.first_seq,
            st.last_seq,
            st.segments,
            st.segments_max,
            format_size(st.segment_size),
            st.hot_segment or "none (all sealed)",
            "none running" if pid is None else "pid %d" % pid,
        )
    out.write(text.encode("utf-8", "surrogateescape"))  # a path's bytes as they are
    out.flush()
    return 1 if st.damage else 0


def format_size(n: int) -> str:
    """format_size writes a size in the largest binary unit not above it, as `filering` does:
    "512B", "64KiB", "2MiB", "1.5MiB" (rounded down to one decimal)."""
    for shift, name in ((60, "EiB"), (50, "PiB"), (40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")):
        unit = 1 << shift
        if n >= unit:
            whole, rem = divmod(n, unit)
            if rem == 0:
                return "%d%s" % (whole, name)
            return "%d.%d%s" % (whole, rem * 10 // unit, name)
    return "%dB" % n


def go_json_string(s: str) -> str:
    """go_json_string writes s as Go's encoding/json writes a string (HTML-safe escapes)."""
    out = ['"']
    for ch in s:
        c = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif c < 0x20 or ch in "<>&" or c in (0x2028, 0x2029):
            named = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}.get(ch)
            out.append(named or "\\u%04x" % c)
        elif 0xDC80 <= c <= 0xDCFF:  # a byte of the path that is not UTF-8
            out.append("\\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _filesystem(path: str) -> "Tuple[bool, str]":
    """_filesystem tells whether path is on tmpfs, and the file system type, from the mount table."""
    try:
        real = os.path.realpath(path)
        with open("/proc/self/mountinfo", "rb") as f:
            table = f.read().decode("utf-8", "surrogateescape")
    except OSError:
        return False, ""
    best = None
    for line in table.split("\n"):
        fields = line.split()
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue
        if sep + 1 >= len(fields):
            continue
        point = _unescape(fields[4])
        if not point.startswith("/"):
            continue
        if point != "/" and real != point and not real.startswith(point + "/"):
            continue
        if best is None or len(point) >= len(best[0]):
            best = (point, _unescape(fields[sep + 1]))
    if best is None:
        return False, ""
    return best[1] == "tmpfs", best[1]


def _unescape(s: str) -> str:
    if "\\" not in s:
        return s
    out = []
    i = 0
    while i < len(s):
        if s[i] == "\\" and i + 3 < len(s) and "0" <= s[i + 1] <= "3" and all("0" <= c <= "7" for c in s[i + 2 : i + 4]):
            out.append(chr(int(s[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


# ---------------------------------------------------------------------------------------


_RUN = {"cat": cmd_cat, "watch": cmd_watch, "take": cmd_take, "stat": cmd_stat, "wait": cmd_wait}


def main(argv: "Optional[List[str]]" = None) -> int:
    """main runs the command line argv (sys.argv[1:] by default) and returns the exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    out = sys.stdout.buffer
    try:
        try:
            command = None
            i = 0
            while i < len(args) and args[i].startswith("-") and args[i] != "-":
                if args[i] in ("-h", "--help", "-help"):
                    raise _Help(None)
                raise UsageError("flag provided but not defined: %s" % args[i].lstrip("-"))
            if i >= len(args):
                raise _Help(None)
            command = args[i]
            if command not in _RUN:
                sys.stderr.write('filering: unknown command "%s"; see python3 -m filering --help\n' % command)
                return 2
            values, positional = parse(command, args[i + 1 :])
            path = _ring_arg(command, positional)
            return _RUN[command](values, path, out)
        except _Help as h:
            out.write(_help(h.command).encode("utf-8"))
            out.flush()
            return 0
        except UsageError as e:
            sys.stderr.write("filering: %s\n" % e)
            return 2
        except Error as e:
            sys.stderr.write("filering: %s\n" % e)
            return 1
    except BrokenPipeError:
        # The reader went away, as in `python3 -m filering watch DIR | head`: quietly.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return 0
