#!/usr/bin/env python3
"""app.py: the live graph as a WSGI application (standard library only; Flask optional).

    python3 app.py /run/ring/sensor --port 8000      # wsgiref, a thread per request
    FILERING_RING=/run/ring/sensor flask --app app run     # with Flask installed
    FILERING_RING=/run/ring/sensor gunicorn --threads 8 app:app    # any WSGI server

Routes, as `filering serve` has them (but for its event stream: see sse.py):
    /                                  index.html from this directory (the live graph)
    /records?last=N                    the latest N records as JSON
    /records?after=SEQ&wait=S          records newer than SEQ, waiting up to S seconds
    /healthz                           {"ok": true, ...}, or 503 and why not
    /metrics                           the ring in the Prometheus text format

The JSON is the same as graph.cgi's (see ringweb.py). The page takes the defaults the
options give (--unit, --min, --max, --window: units, a fixed y-range, a time window, as
`filering serve` takes them); its query parameters override them. --stale S makes
/healthz fail when the newest record is older than S seconds.

The module-level `app` serves the ring named by the environment variable FILERING_RING
(default /run/ring/sensor), with the options from FILERING_UNIT, FILERING_MIN,
FILERING_MAX, FILERING_WINDOW and FILERING_STALE: a Flask app when Flask is installed (so
that `flask --app app run` finds it), else the plain WSGI application `application`, which
every WSGI server can serve as well. make_wsgi_app(ring_dir, ...) and
create_flask_app(ring_dir, ...) build them for another directory.

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


def env_options(environ=None):
    """env_options returns (page defaults, stale) from FILERING_UNIT, FILERING_MIN,
    FILERING_MAX, FILERING_WINDOW and FILERING_STALE; it raises ValueError naming the
    variable that is wrong."""
    environ = os.environ if environ is None else environ

    def get(name, parse):
        text = environ.get(name, "")
        if not text:
            return None
        try:
            return parse(text)
        except ValueError as e:
            raise ValueError("%s=%s: %s" % (name, text, e))

    page = get("FILERING_UNIT", lambda t: t) or ""
    lo, hi = get("FILERING_MIN", float), get("FILERING_MAX", float)
    window, stale = get("FILERING_WINDOW", ringweb.parse_window), get("FILERING_STALE", ringweb.parse_window)
    try:
        return ringweb.page_defaults(page, lo, hi, window), stale
    except ValueError as e:
        raise ValueError("FILERING_UNIT, FILERING_MIN, FILERING_MAX or FILERING_WINDOW: %s" % e)


def index_page(method="GET", defaults=None):
    """index_page returns (status, headers, body) of the live graph page, with defaults
    (ringweb.page_defaults) for it."""
    with open(INDEX, "rb") as f:
        body = ringweb.page(f.read(), defaults)
    headers = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-cache"),
    ]
    return "200 OK", headers, b"" if method == "HEAD" else body


def make_wsgi_app(ring, page=None, stale=None):
    """make_wsgi_app returns a WSGI application serving the ring in the directory ring,
    its page with the defaults page (ringweb.page_defaults), and /healthz failing when the
    newest record is older than stale seconds (when given)."""

    def application(environ, start_response):
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        answer = ringweb.route(ring, path, environ.get("QUERY_STRING", ""), method, stale)
        if answer is not None:
            status, headers, body = answer
        elif path in ("/", "/index.html") and method in ("GET", "HEAD"):
            status, headers, body = index_page(method, page)
        else:
            body = b'{"error":"not found"}\n'
            status = "404 Not Found"
            headers = [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(body)))]
        start_response(status, headers)
        return [body]

    return application


def _module_app():
    page, stale = env_options()
    return make_wsgi_app(ring_dir(), page, stale)


# The WSGI application, for any WSGI server: app:application.
application = _module_app()


def create_flask_app(ring=None, page=None, stale=None):
    """create_flask_app returns a Flask app with the same routes (needs Flask installed).
    With no arguments, it serves what the environment says, as the module-level app."""
    from flask import Flask, Response, request

    if ring is None and page is None and stale is None:
        page, stale = env_options()
    ring = ring or ring_dir()
    flask_app = Flask(__name__, static_folder=None)

    def response(status, headers, body):
        return Response(body, status=status, headers=[h for h in headers if h[0] != "Content-Length"])

    def endpoint(path):
        return response(*ringweb.route(ring, path, request.query_string.decode("latin-1"), request.method, stale))

    flask_app.add_url_rule("/records", "records", lambda: endpoint("/records"), methods=["GET", "HEAD"])
    flask_app.add_url_rule("/healthz", "healthz", lambda: endpoint("/healthz"), methods=["GET", "HEAD"])
    flask_app.add_url_rule("/metrics", "metrics", lambda: endpoint("/metrics"), methods=["GET", "HEAD"])

    @flask_app.route("/", methods=["GET", "HEAD"])
    def index():
        return response(*index_page("GET", page))

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
    ringweb.add_page_options(ap)
    args = ap.parse_args(argv)
    page, stale = ringweb.page_options(ap, args)
    handler = _QuietHandler if args.quiet else WSGIRequestHandler
    wsgi = make_wsgi_app(args.ring, page, stale)
    with make_server(args.host, args.port, wsgi, server_class=ThreadingWSGIServer, handler_class=handler) as server:
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
