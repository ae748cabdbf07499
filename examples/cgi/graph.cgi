#!/usr/bin/env python3
"""graph.cgi: a CGI script answering with the latest records of a filering ring as JSON.

    GET graph.cgi?last=300              the latest 300 records
    GET graph.cgi?after=SEQ&wait=25     records newer than SEQ, waiting up to 25 s for one

The answer is {"records": [{"seq": ..., "time_ns": ..., "value": ...}, ...],
"last_seq": N}; see ringweb.py for the details and the error responses. The ring
directory comes from the environment variable FILERING_RING (default /run/ring/sensor).

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


def main():
    ring = os.environ.get("FILERING_RING") or ringweb.DEFAULT_RING
    status, headers, body = ringweb.respond(
        ring, os.environ.get("QUERY_STRING", ""), os.environ.get("REQUEST_METHOD", "GET")
    )
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
