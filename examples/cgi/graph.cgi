#!/usr/bin/env python3
"""graph.cgi: a CGI script answering with the latest records of a filering ring as JSON.

    GET graph.cgi?last=300              the latest 300 records
    GET graph.cgi?after=SEQ&wait=25     records newer than SEQ, waiting up to 25 s for one
    GET graph.cgi/records?...           the same
    GET graph.cgi/healthz               {"ok": true, ...}, or 503 and why not
    GET graph.cgi/metrics               the ring in the Prometheus text format

The records are {"records": [{"seq": ..., "time_ns": ..., "value": ...}, ...],
"last_seq": N}; see ringweb.py for the details, the error responses, /healthz and
/metrics (the path after the script's name is the CGI variable PATH_INFO). The ring
directory comes from the environment variable FILERING_RING (default /run/ring/sensor);
FILERING_STALE (seconds, or 90s, 5m) makes /healthz fail when the newest record is older.
The page, index.html, is a static file; its query parameters set its units, y-range and
time window (see README.md).

It needs ringweb.py from the same directory as this file (a symbolic link to this file
works: Python looks next to the link's target) and the `filering` package: installed
(`pip install ./python`), copied next to this file, or found in the repository's
python/ directory. Standard library only; Python 3.8 or later. See README.md for nginx
+ fcgiwrap and for `python3 -m http.server --cgi`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))

import ringweb  # noqa: E402


def answer(environ):
    """answer returns (status, headers, body) for the request the CGI environment describes."""
    ring = environ.get("FILERING_RING") or ringweb.DEFAULT_RING
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO") or "/records"
    stale = None
    if environ.get("FILERING_STALE"):
        try:
            stale = ringweb.parse_window(environ["FILERING_STALE"])
        except ValueError as e:
            body = (ringweb._error("FILERING_STALE: %s" % e) + "\n").encode("utf-8")
            return "500 Internal Server Error", [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(body)))], body
    got = ringweb.route(ring, path, environ.get("QUERY_STRING", ""), method, stale)
    if got is None:
        body = (ringweb._error("not found: %s (want /records, /healthz or /metrics)" % path) + "\n").encode("utf-8", "backslashreplace")
        return "404 Not Found", [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(body)))], body
    return got


def main():
    status, headers, body = answer(os.environ)
    head = "Status: %s\r\n" % status
    head += "".join("%s: %s\r\n" % h for h in headers) + "\r\n"
    out = sys.stdout.buffer
    try:
        out.write(head.encode("latin-1") + body)
        out.flush()
    except BrokenPipeError:
        # The client went away; keep the interpreter from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    main()
