#!/usr/bin/env python3
"""app.py: the live graph as a WSGI application (standard library only; Flask optional).

    python3 app.py /run/ring/sensor --port 8000      # wsgiref, a thread per request
    FILERING_RING=/run/ring/sensor flask --app app run     # with Flask installed
    FILERING_RING=/run/ring/sensor gunicorn --threads 8 app:app    # any WSGI server

Routes:
    /                                  index.html from this directory (the live graph)
    /records?last=N                    the latest N records as JSON
    /records?after=SEQ&wait=S          records newer than SEQ, waiting up to S seconds

The JSON is the same as graph.cgi's (see ringweb.py). The module-level `app` serves the
ring named by the environment variable FILERING_RING (default /run/ring/sensor): a
Flask app when Flask is installed (so that `flask --app app run` finds it), else the
plain WSGI application `application`, which every WSGI server can serve as well.
make_wsgi_app(ring_dir) and create_flask_app(ring_dir) build them for another directory.

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


def ring_dir():
    """ring_dir returns the ring the module-level apps serve: $FILERING_RING or the default."""
    return os.environ.get("FILERING_RING") or ringweb.DEFAULT_RING


def index_page(method="GET"):
    """index_page returns (status, headers, body) of the live graph page."""
    with open(INDEX, "rb") as f:
        body = f.read()
    headers = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-cache"),
    ]
    return "200 OK", headers, b"" if method == "HEAD" else body


def make_wsgi_app(ring):
    """make_wsgi_app returns a WSGI application serving the ring in the directory ring."""

    def application(environ, start_response):
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/records":
            status, headers, body = ringweb.respond(ring, environ.get("QUERY_STRING", ""), method)
        elif path in ("/", "/index.html") and method in ("GET", "HEAD"):
            status, headers, body = index_page(method)
        else:
            body = b'{"error":"not found"}\n'
            status = "404 Not Found"
            headers = [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(body)))]
        start_response(status, headers)
        return [body]

    return application


# The WSGI application, for any WSGI server: app:application.
application = make_wsgi_app(ring_dir())


def create_flask_app(ring=None):
    """create_flask_app returns a Flask app with the same routes (needs Flask installed)."""
    from flask import Flask, Response, request

    ring = ring or ring_dir()
    flask_app = Flask(__name__, static_folder=None)

    def response(status, headers, body):
        return Response(body, status=status, headers=[h for h in headers if h[0] != "Content-Length"])

    @flask_app.route("/records", methods=["GET", "HEAD"])
    def records():
        return response(*ringweb.respond(ring, request.query_string.decode("latin-1"), request.method))

    @flask_app.route("/", methods=["GET", "HEAD"])
    def index():
        return response(*index_page("GET"))

    return flask_app


try:
    import flask  # noqa: F401
except ImportError:
    # No Flask: `app` is the plain WSGI application (gunicorn app:app and the like).
    app = application
else:
    # `flask --app app run` looks for a Flask instance named app.
    app = create_flask_app()


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """A wsgiref server with one thread per request, so long polls do not block others."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


def main(argv=None):
    ap = argparse.ArgumentParser(description="Serve the live graph of a filering ring.")
    ap.add_argument("ring", nargs="?", default=ring_dir(), help="ring directory (default: $FILERING_RING or %s)" % ringweb.DEFAULT_RING)
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    ap.add_argument("--quiet", action="store_true", help="do not log requests")
    args = ap.parse_args(argv)
    handler = _QuietHandler if args.quiet else WSGIRequestHandler
    with make_server(args.host, args.port, make_wsgi_app(args.ring), server_class=ThreadingWSGIServer, handler_class=handler) as server:
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
