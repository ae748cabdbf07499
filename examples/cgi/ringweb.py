"""ringweb: the endpoints shared by graph.cgi, app.py and sse.py, as `filering serve` has them.

    GET <endpoint>?last=N               the latest N records (default 300, at most 100000)
    GET <endpoint>?after=SEQ&wait=S     records newer than SEQ; if there are none yet,
                                        wait up to S seconds (at most 60) for one
    GET healthz                         {"ok": true, ...}; 503 when there is no ring, no
                                        producer holds it, or its newest record is older
                                        than `stale` seconds (see health)
    GET metrics                         the ring in the Prometheus text format (see metrics)

route() answers all three by path; respond() the records endpoint alone. page() returns
the live graph page with a server's defaults (units, y-range, time window; see
parse_units and page_defaults).

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
import time

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


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error", 503: "Service Unavailable"}


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


def _answer(code, content_type, text, method, extra=()):
    """_answer returns (status line, headers, body) for a body text."""
    body = text.encode("utf-8", "backslashreplace")
    headers = [("Content-Type", content_type), ("Cache-Control", "no-store"), ("Content-Length", str(len(body)))]
    headers.extend(extra)
    return "%d %s" % (code, _REASONS[code]), headers, b"" if method == "HEAD" else body


def _newest_record(ring):
    newest = ring.last(1)
    return newest[-1] if newest else None


def health(ring_dir, stale=None, clients=0):
    """health returns (ok, document) of the ring, as `filering serve`'s /healthz.

    It is ok when a producer holds the ring's lock and, when stale (seconds) is given,
    the newest record is no older than that. The document is {"ok", "reason" (when not
    ok), "last_seq", "records", "producer_pid" (None when no producer holds the lock),
    "clients" (the server's event streams)}.
    """
    doc = {"ok": False, "last_seq": 0, "records": 0, "producer_pid": None, "clients": clients}
    try:
        ring = filering.open(ring_dir)
        st = ring.stat()
        doc["last_seq"], doc["records"] = st.last_seq, st.records
        if st.producer_pid is None:
            doc["reason"] = "no producer holds the ring"
            return False, doc
        doc["producer_pid"] = st.producer_pid or None
        if stale is not None and stale > 0:
            rec = _newest_record(ring)
            if rec is None:
                doc["reason"] = "the ring holds no record, stale is %gs" % stale
                return False, doc
            age = time.time() - rec.time_ns / 1e9
            if age > stale:
                doc["reason"] = "newest record is %.3gs old, stale is %gs" % (age, stale)
                return False, doc
    except filering.NoRingError:
        doc["reason"] = "no ring at %s" % ring_dir
        return False, doc
    except filering.Error as e:
        doc["reason"] = str(e)
        return False, doc
    doc["ok"] = True
    return True, doc


def _json(v):
    """_json writes the few kinds of values the documents here hold, as json.dumps does compactly."""
    if v is None:
        return "null"
    if v is True or v is False:
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, dict):
        return "{%s}" % ",".join("%s:%s" % (_string(k), _json(x)) for k, x in v.items())
    raise TypeError("cannot write %r as JSON" % (v,))


METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value):
    """_label escapes a Prometheus label value: backslash, double quote and newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metrics(ring_dir, clients=0):
    """metrics returns the ring in the Prometheus text exposition format (version 0.0.4),
    every sample labelled ring="RING_DIR", with the names `filering serve`'s /metrics uses:

        filering_ring_present                   1 when the ring can be read, else 0
        filering_records                        records the ring holds
        filering_last_sequence                  sequence number of the newest record (0: none)
        filering_last_record_timestamp_seconds  time of the newest record (absent when none)
        filering_producer_up                    1 when a producer holds the ring's lock
        filering_clients                        the server's event streams (clients)

    (filering serve also counts the records its one follower found lost; the servers
    here have no such follower.)
    """
    present = records = last_seq = up = 0
    last_time = None
    try:
        ring = filering.open(ring_dir)
        st = ring.stat()
        present, records, last_seq = 1, st.records, st.last_seq
        up = 0 if st.producer_pid is None else 1
        rec = _newest_record(ring)
        if rec is not None and rec.time_ns > 0:
            last_time = rec.time_ns
    except filering.Error:
        pass
    label = '{ring="%s"}' % _label(ring_dir)
    out = []

    def gauge(name, help_text, value):
        out.append("# HELP %s %s\n# TYPE %s gauge\n%s%s %s\n" % (name, help_text, name, name, label, value))

    gauge("filering_ring_present", "Whether there is a readable ring at the path (1) or not (0).", present)
    gauge("filering_records", "Records the ring holds.", records)
    gauge("filering_last_sequence", "Sequence number of the newest record (0: none).", last_seq)
    if last_time is not None:
        gauge("filering_last_record_timestamp_seconds", "Time of the newest record, in seconds since the Unix epoch.",
              "%d.%09d" % divmod(last_time, 1000000000))
    gauge("filering_producer_up", "Whether a producer holds the ring's lock (1) or not (0).", up)
    gauge("filering_clients", "Event streams connected.", clients)
    return "".join(out)


def route(ring_dir, path, query_string, method="GET", stale=None, clients=0):
    """route answers the endpoint at path ("/records", "/healthz" or "/metrics"): it
    returns (status line, headers, body), or None for another path."""
    if path == "/records":
        return respond(ring_dir, query_string, method)
    if path not in ("/healthz", "/metrics"):
        return None
    if method not in ("GET", "HEAD"):
        return _answer(405, "application/json; charset=utf-8", _error("method %s not allowed; use GET" % method) + "\n", method,
                       [("Allow", "GET, HEAD")])
    if path == "/metrics":
        return _answer(200, METRICS_CONTENT_TYPE, metrics(ring_dir, clients), method)
    ok, doc = health(ring_dir, stale, clients)
    return _answer(200 if ok else 503, "application/json; charset=utf-8", _json(doc) + "\n", method,
                   () if ok else [("Retry-After", "1")])


def parse_units(spec):
    """parse_units reads the unit= syntax of the page (and of `filering serve --unit`):
    one unit for every series ("°C"), or, when spec holds a ":", SERIES:UNIT entries
    separated by commas and at most one unit alone, that of the series not named
    ("temp:°C,hum:%", "°C,hum:%"). It returns (unit, {series: unit}) and raises
    ValueError saying what is wrong."""
    if ":" not in spec:
        _check_unit(spec, spec)
        return spec, {}
    unit, units, default = "", {}, False
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, named, u = item.partition(":")
        name, u = name.strip(), u.strip()
        if not named:
            if default:
                raise ValueError("unit %r: two units for the series not named (%r and %r)" % (spec, unit, item))
            _check_unit(spec, item)
            unit, default = item, True
            continue
        if not name or len(name.encode("utf-8")) > 128:
            raise ValueError("unit %r: entry %r: want a series name of 1 to 128 bytes" % (spec, item))
        if name in units:
            raise ValueError("unit %r: series %r twice" % (spec, name))
        _check_unit(spec, u)
        units[name] = u
    if len(units) > 64:
        raise ValueError("unit %r: more than 64 series" % spec)
    return unit, units


def _check_unit(spec, unit):
    if len(unit.encode("utf-8", "surrogatepass")) > 32:
        raise ValueError("unit %r: %r: want at most 32 bytes of UTF-8" % (spec, unit))


def parse_window(text):
    """parse_window reads a time window as the page does (90, 90s, 500ms, 5m, 5min, 2h,
    1d) and returns it in seconds; it raises ValueError."""
    t = text.strip()
    for suffix, mult in (("ms", 0.001), ("min", 60), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)):
        if t.endswith(suffix):
            t, scale = t[: -len(suffix)].strip(), mult
            break
    else:
        scale = 1
    whole, dot, frac = t.partition(".")
    if not whole or any(c not in _DIGITS for c in whole + frac) or (dot and not frac):
        raise ValueError("window %r: want a duration such as 90s, 5m or 2h" % text)
    return float(t) * scale


def page_defaults(unit="", min=None, max=None, window=None, title=""):  # noqa: A002 (the page's names)
    """page_defaults returns the page's defaults as window.FILERING_PAGE takes them: unit
    is the unit= syntax (parse_units), min and max fix the y-range, window is in seconds.
    It raises ValueError when they are out of range."""
    cfg = {}
    if title:
        cfg["title"] = title
    u, units = parse_units(unit or "")
    if u:
        cfg["unit"] = u
    if units:
        cfg["units"] = units
    for name, v in (("min", min), ("max", max)):
        if v is not None:
            if not math.isfinite(v):
                raise ValueError("%s %r: want a finite number" % (name, v))
            cfg[name] = v
    if min is not None and max is not None and not min < max:
        raise ValueError("min %r, max %r: want min below max" % (min, max))
    if window is not None:
        if not window >= 0:
            raise ValueError("window %r: must not be negative" % window)
        if window > 0:
            cfg["window"] = window
    return cfg


def page(index_html, defaults=None, events=False):
    """page returns the live graph page index_html (bytes) with a server's defaults
    (page_defaults) and, when events, told to read the event stream at "events"."""
    head = ""
    if events:
        head += '<script>window.FILERING_EVENTS = "events";</script>\n'
    if defaults:
        # No "<" reaches the script: _string leaves it, so write it as \u003c.
        head += "<script>window.FILERING_PAGE = %s;</script>\n" % _json(defaults).replace("<", "\\u003c")
    if not head:
        return index_html
    return index_html.replace(b"<script>", head.encode("utf-8") + b"<script>", 1)


def add_page_options(ap):
    """add_page_options adds the options of the page's defaults and of /healthz, those of
    `filering serve`, to an argparse.ArgumentParser; page_options reads them."""
    ap.add_argument("--unit", default="", help="the page shows the values in UNIT: °C, or per series temp:°C,hum:%% (?unit= overrides it)")
    ap.add_argument("--min", type=float, metavar="Y", help="the page's y-axis starts at Y (?min= overrides it)")
    ap.add_argument("--max", type=float, metavar="Y", help="the page's y-axis ends at Y (?max= overrides it)")
    ap.add_argument("--window", metavar="DURATION", help="the page draws the last DURATION of records: 90s, 5m, 2h (?window= overrides it)")
    ap.add_argument("--stale", metavar="DURATION", help="/healthz fails when the newest record is older than DURATION")


def page_options(ap, args):
    """page_options returns (page defaults, stale seconds or None) from the options
    add_page_options adds, or exits with a usage error (ap.error) saying what is wrong."""
    try:
        window = None if args.window is None else parse_window(args.window)
        stale = None if args.stale is None else parse_window(args.stale)
        return page_defaults(args.unit, args.min, args.max, window), stale
    except ValueError as e:
        ap.error(str(e))
