#!/usr/bin/env python3
"""app.py: the live graph as a WSGI application (standard library only).

    python3 app.py /run/ring/sensor --port 8000     # then open http://127.0.0.1:8000/

Routes:
    /                                  index.html from this directory (the live graph)
    /records?last=N                    the latest N records as JSON
    /records?after=SEQ&wait=S          records newer than SEQ, waiting up to S seconds

The JSON is the same as graph.cgi's (see ringweb.py). Any WSGI server can serve the
module-level `application`, which reads the ring named by the environment variable
FILERING_RING (default /run/ring/sensor); make_app(ring_dir) builds one for another
directory. Flask users can call create_flask_app(ring_dir), or mount `application`
under their own app (see README.md).

Long polls hold a request open for up to `wait` seconds, so serve this with threads
(as main() does) or an asynchronous server, never with a single synchronous worker.
"""

import argparse
import os
import socketserver
import sys
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, HERE)

import ringweb  # noqa: E402

INDEX = os.path.join(HERE, "index.html")


def _index_page(method):
    with open(INDEX, "rb") as f:
        body = f.read()
    headers = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-cache"),
    ]
    return "200 OK", headers, b"" if method == "HEAD" else body


def make_app(ring_dir):
    """make_app returns a WSGI application serving the ring in ring_dir."""

    def application(environ, start_response):
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/records":
            status, headers, body = ringweb.respond(ring_dir, environ.get("QUERY_STRING", ""), method)
        elif path in ("/", "/index.html") and method in ("GET", "HEAD"):
            status, headers, body = _index_page(method)
        else:
            body = b'{"error":"not found"}\n'
            status = "404 Not Found"
            headers = [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(body)))]
        start_response(status, headers)
        return [body]

    return application


application = make_app(os.environ.get("FILERING_RING") or ringweb.DEFAULT_RING)


def create_flask_app(ring_dir=None):
    """create_flask_app returns a Flask app with the same routes (needs Flask installed)."""
    from flask import Flask, Response, request

    ring = ring_dir or os.environ.get("FILERING_RING") or ringweb.DEFAULT_RING
    app = Flask(__name__, static_folder=None)

    @app.route("/records", methods=["GET", "HEAD"])
    def records():
        status, headers, body = ringweb.respond(ring, request.query_string.decode("latin-1"), request.method)
        return Response(body, status=status, headers=[h for h in headers if h[0] != "Content-Length"])

    @app.route("/", methods=["GET", "HEAD"])
    def index():
        status, headers, body = _index_page("GET")
        return Response(body, status=status, headers=[h for h in headers if h[0] != "Content-Length"])

    return app


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """A wsgiref server with one thread per request, so long polls do not block others."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


def main(argv=None):
    ap = argparse.ArgumentParser(description="Serve the live graph of a filering ring.")
    ap.add_argument("ring", nargs="?", default=os.environ.get("FILERING_RING") or ringweb.DEFAULT_RING, help="ring directory (default: $FILERING_RING or %s)" % ringweb.DEFAULT_RING)
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    ap.add_argument("--quiet", action="store_true", help="do not log requests")
    args = ap.parse_args(argv)
    handler = _QuietHandler if args.quiet else WSGIRequestHandler
    with make_server(args.host, args.port, make_app(args.ring), server_class=ThreadingWSGIServer, handler_class=handler) as server:
        host, port = server.server_address[:2]
        sys.stderr.write("serving %s on http://%s:%d/\n" % (args.ring, host, port))
        sys.stderr.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
