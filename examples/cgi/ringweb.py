"""ringweb: the JSON endpoint shared by graph.cgi, app.py and sse.py.

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

The ring is read with the `filering` Python package (python/ in the repository;
`pip install ./python`, or nothing at all from a checkout: the scripts here find it).
While a long poll waits, a filering follower watches the ring directory with inotify,
rescanning every second anyway (every 100 ms without inotify), as docs/FORMAT.md
("Wake-ups") recommends.
"""

import math
import os
import sys

try:  # the C string encoder json.dumps(..., ensure_ascii=False) uses
    from _json import encode_basestring as _string
except ImportError:  # pragma: no cover (CPython always has it)
    from json.encoder import py_encode_basestring as _string

try:
    import filering
except ImportError:  # a checkout of the repository: the package is in python/
    sys.path.insert(1, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "python"))
    import filering

# A CGI script starts a Python process per request: this module imports nothing that
# takes long to import (json, re and urllib.parse together take some 20 ms), and does
# the little parsing and writing it needs itself.

DEFAULT_RING = "/run/ring/sensor"  # used when FILERING_RING is not set
DEFAULT_LAST = 300  # records returned when the query has no last=
MAX_LAST = 100000  # larger last= values are clamped to this
MAX_WAIT = 60.0  # larger wait= values are clamped to this, in seconds
MAX_FIELDS = 100  # query parameters accepted
_DIGITS = frozenset("0123456789")


class BadRequest(Exception):
    """The query string is not valid; the message says why."""


def _unquote(text):
    """_unquote decodes a query string component: + is a space, %XX a byte (UTF-8)."""
    text = text.replace("+", " ")
    if "%" not in text:
        return text
    parts = text.split("%")
    out = bytearray(parts[0].encode("utf-8"))
    for part in parts[1:]:
        code = part[:2]
        if len(code) == 2 and all(c in "0123456789abcdefABCDEF" for c in code):
            out.append(int(code, 16))
            out += part[2:].encode("utf-8")
        else:
            out += b"%" + part.encode("utf-8")
    return out.decode("utf-8", "replace")


def _params(query_string):
    """_params returns the parameters of a query string as {name: [values]} (as parse_qs does)."""
    fields = [f for f in (query_string or "").split("&") if f]
    if len(fields) > MAX_FIELDS:
        raise BadRequest("too many query parameters (at most %d)" % MAX_FIELDS)
    params = {}
    for field in fields:
        name, _, value = field.partition("=")
        params.setdefault(_unquote(name), []).append(_unquote(value))
    return params


def _is_count(text):
    return 0 < len(text) <= 19 and all(c in _DIGITS for c in text)


def _is_seconds(text):
    whole, dot, frac = text.partition(".")
    return 0 < len(whole) <= 6 and all(c in _DIGITS for c in whole) and len(frac) <= 6 and all(c in _DIGITS for c in frac)


def parse_query(query_string):
    """parse_query returns (last, after, wait) from a query string.

    after is None when absent; wait is 0 unless given. Unknown parameters are ignored
    (so cache-busting parameters do no harm).
    """
    params = _params(query_string)

    def one(name, valid, what):
        values = params.get(name)
        if not values:
            return None
        if len(values) > 1 or not valid(values[0]):
            raise BadRequest("%s must be %s" % (name, what))
        return values[0]

    last = one("last", _is_count, "a non-negative integer")
    after = one("after", _is_count, "a non-negative integer (a sequence number)")
    wait = one("wait", _is_seconds, "a number of seconds")
    last = DEFAULT_LAST if last is None else min(int(last), MAX_LAST)
    after = None if after is None else int(after)
    if after is not None and after >= 1 << 63:
        raise BadRequest("after is too large")
    wait = 0.0 if wait is None else min(float(wait), MAX_WAIT)
    return last, after, wait


def _is_decimal(text):
    """_is_decimal tells whether text is a decimal number: [+-]digits[.digits][e[+-]digits],
    or .digits, with white space around it allowed (ASCII digits only)."""
    s = text.strip()
    if s[:1] in ("+", "-"):
        s = s[1:]
    mantissa, e, exponent = s.replace("E", "e").partition("e")
    whole, dot, frac = mantissa.partition(".")
    if not (whole or frac) or any(c not in _DIGITS for c in whole + frac):
        return False
    if not whole and not dot:
        return False
    if e:
        if exponent[:1] in ("+", "-"):
            exponent = exponent[1:]
        return bool(exponent) and all(c in _DIGITS for c in exponent)
    return True


def value_of(payload):
    """value_of returns the payload as a float if it is a decimal number, else as text."""
    text = payload.decode("utf-8", "replace")
    if len(text) < 64 and _is_decimal(text):
        value = float(text)
        if math.isfinite(value):
            return value
    return text


def record_doc(rec):
    """record_doc returns the JSON document of one record: {"seq", "time_ns", "value"}."""
    return {"seq": rec.seq, "time_ns": rec.time_ns, "value": value_of(rec.data)}


def record_json(rec):
    """record_json returns record_doc(rec) written as JSON, as json.dumps writes it compactly."""
    value = value_of(rec.data)
    value = repr(value) if type(value) is float else _string(value)
    return '{"seq":%d,"time_ns":%d,"value":%s}' % (rec.seq, rec.time_ns, value)


def _newest(ring):
    newest = ring.last(1)
    return newest[-1].seq if newest else 0


def query(ring_dir, last=DEFAULT_LAST, after=None, wait=0.0):
    """query returns the response document for last, after and wait (see the module doc).

    It raises filering.Error (filering.NoRingError when the ring does not exist, a
    filering.CorruptionError naming the file and offset of damage).
    """
    records, newest = _query(ring_dir, last, after, wait)
    return {"records": [record_doc(r) for r in records], "last_seq": newest}


def _query(ring_dir, last, after, wait):
    """_query returns the records to answer with, and the newest sequence number."""
    ring = filering.open(ring_dir)
    if after is None:
        records = ring.last(last)
    else:
        records = ring.records(from_seq=after + 1, last=last)
        if not records and wait > 0:
            # Follow from the first record wanted: one appended since the look above
            # is found at once, later ones wake the follower through inotify.
            with ring.follow(from_seq=after + 1) as f:
                if f.read(wait) is not None:
                    records = ring.records(from_seq=after + 1, last=last)
    return records, records[-1].seq if records else _newest(ring)


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}


def _error(message):
    return '{"error":%s}' % _string(message)


def respond(ring_dir, query_string, method="GET"):
    """respond answers one request; it returns (status line, headers, body bytes).

    The status line is like "200 OK"; headers is a list of (name, value). It never
    raises for a bad request or a bad ring: those become JSON error responses.
    """
    try:
        if method not in ("GET", "HEAD"):
            code, text = 405, _error("method %s not allowed; use GET" % method)
        else:
            last, after, wait = parse_query(query_string)
            records, newest = _query(ring_dir, last, after, wait)
            code = 200
            text = '{"records":[%s],"last_seq":%d}' % (",".join([record_json(r) for r in records]), newest)
    except BadRequest as e:
        code, text = 400, _error(str(e))
    except filering.NoRingError as e:
        code, text = 404, _error(str(e))
    except filering.Error as e:
        code, text = 500, _error(str(e))
    except Exception as e:  # report it as JSON rather than as an HTML error page
        code, text = 500, _error("%s: %s" % (type(e).__name__, e))
    body = text.encode("utf-8", "backslashreplace") + b"\n"  # a path that is not UTF-8: \udcXX
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
