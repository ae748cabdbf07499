"""Tests for ringweb.py, graph.cgi, app.py and sse.py (standard library only; Flask optional).

    python3 -m unittest discover -s examples/cgi -p 'test_*.py'

They read rings with the `filering` package: installed (scripts/python-test.sh runs them
with the copy it installs in a fresh virtual environment) or, from a checkout, the one in
python/. The rings are written by python/tests/helpers.py, from docs/FORMAT.md.
"""

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from unittest import mock
from wsgiref.util import setup_testing_defaults

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(HERE, "..", "..", "python", "tests"))

import app  # noqa: E402
import ringweb  # noqa: E402
from helpers import (  # noqa: E402
    T0,
    Producer,
    align8,
    record_bytes,
    segment_bytes,
    seg_name,
    tmp_base,
    write_file,
    write_manifest,
    write_ring,
)

filering = ringweb.filering
GRAPH_CGI = os.path.join(HERE, "graph.cgi")


class HotRing(object):
    """A ring with one hot segment that a test can append records to, as a producer
    would: record bytes first, then the commit word, then pwrite of the committed word."""

    def __init__(self, path, payloads=(), size=65536):
        self.path = path
        self.size = size
        data, offsets = segment_bytes(1, 1, list(payloads), size, sealed=False)
        self.seg = os.path.join(path, seg_name(1))
        write_file(self.seg, bytes(data))
        write_manifest(path, {"version": 1, "segment_size": size, "segments_max": 4, "generation": 1,
                              "segments": [{"name": seg_name(1), "first_seq": 1, "last_seq": 0, "sealed": False}]})
        self.next_seq = 1 + len(payloads)
        self.end = 64 + sum(align8(24 + len(p)) for p in payloads)

    def append(self, payload, time_ns=None):
        rec = record_bytes(self.next_seq, T0 + self.next_seq if time_ns is None else time_ns, payload)
        fd = os.open(self.seg, os.O_WRONLY)
        try:
            os.pwrite(fd, rec[8:], self.end + 8)
            os.pwrite(fd, rec[:8], self.end)
            self.end += len(rec)
            os.pwrite(fd, struct.pack("<Q", self.end), 56)
        finally:
            os.close(fd)
        self.next_seq += 1


class RingCase(unittest.TestCase):
    def setUp(self):
        self.ring = tempfile.mkdtemp(prefix="filering-web-", dir=tmp_base())
        self.addCleanup(shutil.rmtree, self.ring, True)


class TestParse(unittest.TestCase):
    def test_ParseQuery(self):
        cases = [
            ("", (300, None, 0.0)),
            ("last=5", (5, None, 0.0)),
            ("last=0", (0, None, 0.0)),
            ("last=100000", (100000, None, 0.0)),
            ("last=100001", (100000, None, 0.0)),
            ("last=9999999999999999999", (100000, None, 0.0)),
            ("after=7", (300, 7, 0.0)),
            ("after=7&wait=25", (300, 7, 25.0)),
            ("after=7&wait=0.5&last=10", (10, 7, 0.5)),
            ("after=0&wait=61", (300, 0, 60.0)),
            ("after=1&wait=999999", (300, 1, 60.0)),
            ("_=1699999&after=3", (300, 3, 0.0)),
        ]
        for qs, want in cases:
            with self.subTest(qs):
                self.assertEqual(ringweb.parse_query(qs), want)

    def test_ParseQuery_bad(self):
        for qs in ("last=-1", "last=x", "last=1.5", "last=", "last=1&last=2", "after=-3", "after=abc",
                   "after=9223372036854775808", "wait=-1", "wait=abc", "wait=1e3", "wait=nan", "last=%201"):
            with self.subTest(qs):
                with self.assertRaises(ringweb.BadRequest):
                    ringweb.parse_query(qs)

    def test_ValueOf(self):
        cases = [
            (b"21.5", 21.5), (b"-3", -3.0), (b"+4", 4.0), (b"1e-3", 0.001), (b".5", 0.5), (b"7.", 7.0),
            (b" 42\n", 42.0), (b"0", 0.0),
            (b"nan", "nan"), (b"inf", "inf"), (b"1e999", "1e999"), (b"1_000", "1_000"), (b"0x10", "0x10"),
            (b"", ""), (b"21.5 C", "21.5 C"), (b"\xd9\xa1", "\u0661"), (b"\xff1", "\ufffd1"), (b"hello", "hello"),
        ]
        for payload, want in cases:
            with self.subTest(payload):
                got = ringweb.value_of(payload)
                self.assertEqual(type(got), type(want))
                self.assertEqual(got, want)


class TestJSON(unittest.TestCase):
    def test_RecordJson_asJsonDumps(self):
        # record_json writes what json.dumps(record_doc(...)) would, compactly.
        payloads = [b"21.5", b"-3", b"1e-3", b"1e300", b"7.", b" 42\n", b"text", b'q"uote\\', b"\x00\x1f\x7f", "\u00e9\u2028".encode(), b"\xff", b"0.1", b"123456789012345678"]
        for p in payloads:
            rec = filering.Record(7, -5, p)
            with self.subTest(p):
                self.assertEqual(ringweb.record_json(rec), json.dumps(ringweb.record_doc(rec), separators=(",", ":"), ensure_ascii=False))

    def test_ValueOf_asTheRegexp(self):
        import random
        import re

        number = re.compile(r"\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*")
        rnd = random.Random(1)
        alphabet = "0123456789+-.eE \t\n_x\u0661\u00a0"
        for _ in range(20000):
            text = "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 8)))
            self.assertEqual(ringweb._is_decimal(text), bool(number.fullmatch(text)), repr(text))

    def test_ParseQuery_asParseQs(self):
        from urllib.parse import parse_qs

        for qs in ("a=1&b=2&a=3", "x=%41%42+c", "x=%zz%4", "=1&&b", "a", "a=%C3%A9", "a=%ff"):
            with self.subTest(qs):
                self.assertEqual(ringweb._params(qs), parse_qs(qs, keep_blank_values=True))


class TestQuery(RingCase):
    def test_Last(self):
        write_ring(self.ring, [b"%d" % i for i in range(1, 501)])
        doc = ringweb.query(self.ring, last=3)
        self.assertEqual(doc["last_seq"], 500)
        self.assertEqual(doc["records"], [{"seq": s, "time_ns": T0 + s, "value": float(s)} for s in (498, 499, 500)])
        self.assertEqual(len(ringweb.query(self.ring)["records"]), 300)
        self.assertEqual(ringweb.query(self.ring, last=0), {"records": [], "last_seq": 500})

    def test_EmptyRing(self):
        HotRing(self.ring)
        self.assertEqual(ringweb.query(self.ring), {"records": [], "last_seq": 0})
        self.assertEqual(ringweb.query(self.ring, after=0, wait=0.05), {"records": [], "last_seq": 0})

    def test_After_immediate(self):
        write_ring(self.ring, [b"%d" % i for i in range(1, 101)])
        t = time.monotonic()
        doc = ringweb.query(self.ring, last=300, after=95, wait=5)
        self.assertLess(time.monotonic() - t, 1)
        self.assertEqual([r["seq"] for r in doc["records"]], [96, 97, 98, 99, 100])
        self.assertEqual(doc["last_seq"], 100)
        doc = ringweb.query(self.ring, last=2, after=10)
        self.assertEqual([r["seq"] for r in doc["records"]], [99, 100])

    def test_After_timeout(self):
        HotRing(self.ring, [b"1", b"2"])
        t = time.monotonic()
        doc = ringweb.query(self.ring, after=2, wait=0.3)
        took = time.monotonic() - t
        self.assertEqual(doc, {"records": [], "last_seq": 2})
        self.assertGreaterEqual(took, 0.3)
        self.assertLess(took, 5)

    def wake_after_append(self, delay=0.3):
        ring = HotRing(self.ring, [b"1", b"2"])
        timer = threading.Timer(delay, ring.append, (b"3.25",))
        timer.start()
        self.addCleanup(timer.cancel)
        t = time.monotonic()
        doc = ringweb.query(self.ring, after=2, wait=20)
        return doc, time.monotonic() - t - delay

    def test_After_wakesWithInotify(self):
        from filering import _inotify

        w = _inotify.Watcher(self.ring)
        polling = w.polling
        w.close()
        if polling:
            self.skipTest("inotify is not available here")
        with mock.patch.object(_inotify, "POLL", 30.0):  # only an event can wake it in time
            doc, late = self.wake_after_append()
        self.assertEqual(doc["records"], [{"seq": 3, "time_ns": T0 + 3, "value": 3.25}])
        self.assertEqual(doc["last_seq"], 3)
        self.assertLess(late, 3)

    def test_After_wakesByPolling(self):
        from filering import _inotify

        with mock.patch.object(_inotify, "disabled", True), mock.patch.object(_inotify, "POLL", 30.0):
            doc, late = self.wake_after_append()
        self.assertEqual([r["seq"] for r in doc["records"]], [3])
        self.assertLess(late, 3)

    def test_After_newSegment(self):
        # A roll (new manifest) wakes a waiter too.
        entries = write_ring(self.ring, [b"1", b"2"], hot=False)

        def roll():
            write_ring(self.ring, [b"1", b"2", b"3"], hot=True, generation=2)

        timer = threading.Timer(0.3, roll)
        timer.start()
        self.addCleanup(timer.cancel)
        from filering import _inotify

        with mock.patch.object(_inotify, "POLL", 30.0):
            t = time.monotonic()
            doc = ringweb.query(self.ring, after=2, wait=20)
        self.assertLess(time.monotonic() - t, 5)
        self.assertEqual([r["seq"] for r in doc["records"]], [3])
        self.assertTrue(entries)


class TestRespond(RingCase):
    def body(self, resp):
        status, headers, body = resp
        self.assertEqual(dict(headers)["Content-Type"], "application/json; charset=utf-8")
        return status, json.loads(body.decode("utf-8"))

    def test_Statuses(self):
        write_ring(self.ring, [b"1.5", b"text"])
        status, doc = self.body(ringweb.respond(self.ring, "last=2"))
        self.assertEqual(status, "200 OK")
        self.assertEqual([r["value"] for r in doc["records"]], [1.5, "text"])
        status, doc = self.body(ringweb.respond(self.ring, "last=x"))
        self.assertEqual(status, "400 Bad Request")
        self.assertIn("last", doc["error"])
        missing = os.path.join(self.ring, "missing")
        status, doc = self.body(ringweb.respond(missing, ""))
        self.assertEqual(status, "404 Not Found")
        self.assertIn(missing, doc["error"])
        status, doc = self.body(ringweb.respond(self.ring, "", "POST"))
        self.assertEqual(status, "405 Method Not Allowed")
        status, headers, body = ringweb.respond(self.ring, "", "HEAD")
        self.assertEqual((status, body), ("200 OK", b""))
        self.assertGreater(int(dict(headers)["Content-Length"]), 0)

    def test_Corrupt(self):
        entries = write_ring(self.ring, [b"1", b"2", b"3"], hot=False)
        seg = os.path.join(self.ring, entries[0]["name"])
        with open(seg, "r+b") as f:
            f.seek(entries[0]["offsets"][2] + 24)
            f.write(b"9")
        status, doc = self.body(ringweb.respond(self.ring, "last=1"))
        self.assertEqual(status, "500 Internal Server Error")
        self.assertIn(seg, doc["error"])
        self.assertIn("offset %d" % entries[0]["offsets"][2], doc["error"])

    def test_Unexpected(self):
        with mock.patch.object(ringweb, "_query", side_effect=RuntimeError("boom")):
            status, doc = self.body(ringweb.respond(self.ring, ""))
        self.assertEqual(status, "500 Internal Server Error")
        self.assertEqual(doc["error"], "RuntimeError: boom")


def hold_lock(test, ring):
    """hold_lock starts a process that holds the ring's producer lock, as a running
    producer does, until the test ends, and returns its pid. (A lock of this process
    would go with the first descriptor of the file it closes: POSIX locks do that.)"""
    code = ("import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
            "os.write(fd, b'%d\\n' % os.getpid())\n"
            "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, os.path.join(ring, "lock")], stdout=subprocess.PIPE)
    test.addCleanup(proc.stdout.close)
    test.addCleanup(proc.wait)
    test.addCleanup(proc.kill)
    test.assertEqual(proc.stdout.readline(), b"locked\n")
    return proc.pid


def parse_metrics(test, text):
    """parse_metrics checks the text exposition format as Prometheus reads it (HELP and
    TYPE before each metric's samples) and returns {name: (labels, value)}."""
    samples, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line[len("# TYPE "):].split(" ")
            test.assertIn(kind, ("gauge", "counter"))
            typed.add(name)
        elif line.startswith("# HELP "):
            test.assertTrue(line.split(" ", 3)[3])
        else:
            series, value = line.rsplit(" ", 1)
            name, _, labels = series.partition("{")
            test.assertIn(name, typed, line)
            test.assertNotIn(name, samples)
            samples[name] = ("{" + labels, float(value))
    return samples


class TestEndpoints(RingCase):
    def test_Healthz(self):
        write_ring(self.ring, [b"1", b"2"])
        status, headers, body = ringweb.route(self.ring, "/healthz", "")
        doc = json.loads(body)
        self.assertEqual((status, doc["ok"], doc["reason"], dict(headers)["Retry-After"]), ("503 Service Unavailable", False, "no producer holds the ring", "1"))
        pid = hold_lock(self, self.ring)
        status, _, body = ringweb.route(self.ring, "/healthz", "")
        self.assertEqual((status, json.loads(body)),
                         ("200 OK", {"ok": True, "last_seq": 2, "records": 2, "producer_pid": pid, "clients": 0}))
        # The records were written at T0, long ago.
        status, _, body = ringweb.route(self.ring, "/healthz", "", stale=5)
        self.assertEqual(status, "503 Service Unavailable")
        self.assertIn("newest record is", json.loads(body)["reason"])
        missing = os.path.join(self.ring, "missing")
        status, _, body = ringweb.route(missing, "/healthz", "", "HEAD")
        self.assertEqual((status, body), ("503 Service Unavailable", b""))
        self.assertEqual(ringweb.health(missing)[1]["reason"], "no ring at " + missing)
        status, _, _ = ringweb.route(self.ring, "/healthz", "", "POST")
        self.assertEqual(status, "405 Method Not Allowed")
        self.assertIsNone(ringweb.route(self.ring, "/other", ""))

    def test_Metrics(self):
        write_ring(self.ring, [b"1", b"2", b"3"])
        hold_lock(self, self.ring)
        status, headers, body = ringweb.route(self.ring, "/metrics", "", clients=2)
        self.assertEqual((status, dict(headers)["Content-Type"]), ("200 OK", "text/plain; version=0.0.4; charset=utf-8"))
        m = parse_metrics(self, body.decode("utf-8"))
        label = '{ring="%s"}' % self.ring
        self.assertEqual(m, {
            "filering_ring_present": (label, 1), "filering_records": (label, 3), "filering_last_sequence": (label, 3),
            "filering_last_record_timestamp_seconds": (label, (T0 + 3) / 1e9), "filering_producer_up": (label, 1),
            "filering_clients": (label, 2),
        })
        self.assertIn("filering_last_record_timestamp_seconds%s %d.%09d\n" % (label, (T0 + 3) // 10**9, (T0 + 3) % 10**9), body.decode())
        m = parse_metrics(self, ringweb.metrics(os.path.join(self.ring, 'mis"sing')))
        self.assertEqual(m["filering_ring_present"], ('{ring="%s"}' % os.path.join(self.ring, 'mis\\"sing'), 0))
        self.assertNotIn("filering_last_record_timestamp_seconds", m)

    def test_ParseUnits(self):
        for spec, want in [
            ("", ("", {})),
            ("°C", ("°C", {})),
            ("m/s, km", ("m/s, km", {})),
            ("temp:°C,hum:%", ("", {"temp": "°C", "hum": "%"})),
            ("°C, hum : % ", ("°C", {"hum": "%"})),
            ("#1:V,,#2:A", ("", {"#1": "V", "#2": "A"})),
            ("t:h:m", ("", {"t": "h:m"})),
        ]:
            self.assertEqual(ringweb.parse_units(spec), want, spec)
        for spec in (":°C", "°C,K,a:b", "a:x,a:y", "u" * 33, "a:" + "u" * 33):
            with self.assertRaises(ValueError, msg=spec):
                ringweb.parse_units(spec)

    def test_PageDefaults(self):
        cfg = ringweb.page_defaults("°C,hum:%", 0, 50, ringweb.parse_window("5m"))
        self.assertEqual(cfg, {"unit": "°C", "units": {"hum": "%"}, "min": 0, "max": 50, "window": 300.0})
        html = ringweb.page(b"<p><script>x</script>", dict(cfg, title="</script>"), events=True).decode("utf-8")
        head, _, rest = html.partition("<script>x")
        self.assertEqual(rest, "</script>")
        self.assertEqual(head.count("</script>"), 2)
        script = head.split("window.FILERING_PAGE = ", 1)[1].split(";</script>")[0]
        self.assertEqual(json.loads(script), dict(cfg, title="</script>"))
        self.assertIn('window.FILERING_EVENTS = "events"', head)
        self.assertEqual(ringweb.page(b"<script>", {}), b"<script>")
        for args in (("", 5, 1), ("", float("nan")), ("", None, None, -1)):
            with self.assertRaises(ValueError, msg=args):
                ringweb.page_defaults(*args)
        for text, want in (("90", 90), ("90s", 90), ("500ms", 0.5), ("5m", 300), ("5min", 300), ("2h", 7200), ("1d", 86400), ("1.5h", 5400)):
            self.assertEqual(ringweb.parse_window(text), want, text)
        for text in ("", "x", "1.", "-1s", "5 weeks"):
            with self.assertRaises(ValueError, msg=text):
                ringweb.parse_window(text)


class TestCGI(RingCase):
    def run_cgi(self, query, ring=None, method="GET", path_info=None):
        env = dict(os.environ, QUERY_STRING=query, REQUEST_METHOD=method, FILERING_RING=ring or self.ring,
                   GATEWAY_INTERFACE="CGI/1.1")
        if path_info is not None:
            env["PATH_INFO"] = path_info
        p = subprocess.run([GRAPH_CGI], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr, b"")
        head, _, body = p.stdout.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        return lines[0], dict(l.split(": ", 1) for l in lines[1:]), body

    def test_Records(self):
        write_ring(self.ring, [b"%d" % i for i in range(1, 11)])
        status, headers, body = self.run_cgi("last=2")
        self.assertEqual(status, "Status: 200 OK")
        self.assertEqual(headers["Content-Type"], "application/json; charset=utf-8")
        self.assertEqual(int(headers["Content-Length"]), len(body))
        doc = json.loads(body)
        self.assertEqual(doc, {"records": [{"seq": 9, "time_ns": T0 + 9, "value": 9.0}, {"seq": 10, "time_ns": T0 + 10, "value": 10.0}], "last_seq": 10})

    def test_PathInfo(self):
        write_ring(self.ring, [b"1", b"2"])
        status, _, body = self.run_cgi("last=1", path_info="/records")
        self.assertEqual((status, json.loads(body)["last_seq"]), ("Status: 200 OK", 2))
        status, headers, body = self.run_cgi("", path_info="/metrics")
        self.assertEqual((status, headers["Content-Type"]), ("Status: 200 OK", ringweb.METRICS_CONTENT_TYPE))
        self.assertEqual(parse_metrics(self, body.decode())["filering_records"][1], 2)
        status, _, body = self.run_cgi("", path_info="/healthz")
        self.assertEqual((status, json.loads(body)["reason"]), ("Status: 503 Service Unavailable", "no producer holds the ring"))
        status, _, body = self.run_cgi("", path_info="/nothing")
        self.assertEqual(status, "Status: 404 Not Found")
        self.assertIn("/nothing", json.loads(body)["error"])

    def test_LongPoll(self):
        ring = HotRing(self.ring, [b"1"])
        timer = threading.Timer(0.5, ring.append, (b"2",))
        timer.start()
        self.addCleanup(timer.cancel)
        status, _, body = self.run_cgi("after=1&wait=10")
        self.assertEqual(status, "Status: 200 OK")
        self.assertEqual([r["seq"] for r in json.loads(body)["records"]], [2])

    def test_Errors(self):
        status, _, body = self.run_cgi("", ring=os.path.join(self.ring, "nope"))
        self.assertEqual(status, "Status: 404 Not Found")
        self.assertIn("error", json.loads(body))
        status, _, _ = self.run_cgi("last=abc")
        self.assertEqual(status, "Status: 400 Bad Request")

    def test_ThroughSymlink(self):
        # Installed as a symbolic link in a cgi-bin directory, it still finds its modules.
        write_ring(self.ring, [b"5"])
        bindir = os.path.join(self.ring, "cgi-bin")
        os.mkdir(bindir)
        os.symlink(GRAPH_CGI, os.path.join(bindir, "graph.cgi"))
        env = dict(os.environ, QUERY_STRING="", FILERING_RING=self.ring)
        out = subprocess.run([os.path.join(bindir, "graph.cgi")], env=env, stdout=subprocess.PIPE, timeout=30).stdout
        self.assertTrue(out.startswith(b"Status: 200 OK\r\n"), out)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=30):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def wait_for_port(port, proc, deadline=15):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError("server exited: %s" % proc.stderr.read())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("server did not start")


class TestWSGI(RingCase):
    def call(self, path, query=""):
        environ = {"PATH_INFO": path, "QUERY_STRING": query}
        setup_testing_defaults(environ)
        got = {}

        def start_response(status, headers):
            got["status"], got["headers"] = status, dict(headers)

        body = b"".join(app.make_wsgi_app(self.ring)(environ, start_response))
        return got["status"], got["headers"], body

    def test_Routes(self):
        write_ring(self.ring, [b"1", b"2"])
        status, headers, body = self.call("/")
        self.assertEqual(status, "200 OK")
        self.assertTrue(headers["Content-Type"].startswith("text/html"))
        self.assertIn(b"fileringStats", body)
        status, headers, body = self.call("/records", "last=1")
        self.assertEqual(status, "200 OK")
        self.assertEqual(json.loads(body)["records"][0]["seq"], 2)
        status, _, _ = self.call("/nothing")
        self.assertEqual(status, "404 Not Found")
        status, headers, body = self.call("/metrics")
        self.assertEqual((status, headers["Content-Type"]), ("200 OK", ringweb.METRICS_CONTENT_TYPE))
        self.assertEqual(parse_metrics(self, body.decode())["filering_last_sequence"][1], 2)
        status, _, body = self.call("/healthz")
        self.assertEqual((status, json.loads(body)["ok"]), ("503 Service Unavailable", False))

    def test_PageDefaults(self):
        page = ringweb.page_defaults("temp:°C", 0, 40)
        environ = {"PATH_INFO": "/", "QUERY_STRING": ""}
        setup_testing_defaults(environ)
        body = b"".join(app.make_wsgi_app(self.ring, page)(environ, lambda status, headers: None)).decode("utf-8")
        self.assertIn('window.FILERING_PAGE = {"units":{"temp":"°C"},"min":0,"max":40};', body)
        self.assertEqual(app.env_options({"FILERING_UNIT": "°C,hum:%", "FILERING_WINDOW": "90s", "FILERING_STALE": "5"}),
                         ({"unit": "°C", "units": {"hum": "%"}, "window": 90.0}, 5.0))
        for env, name in (({"FILERING_MIN": "x"}, "FILERING_MIN"), ({"FILERING_WINDOW": "soon"}, "FILERING_WINDOW"),
                          ({"FILERING_MIN": "5", "FILERING_MAX": "1"}, "FILERING_MIN")):
            with self.assertRaisesRegex(ValueError, name):
                app.env_options(env)

    def test_Server(self):
        # The real server, with a long poll held open while other requests are served.
        ring = HotRing(self.ring, [b"1"])
        port = free_port()
        proc = subprocess.Popen([sys.executable, os.path.join(HERE, "app.py"), self.ring, "--port", str(port), "--quiet",
                                 "--unit", "°C", "--window", "5m"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.addCleanup(proc.stderr.close)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.terminate)
        wait_for_port(port, proc)
        base = "http://127.0.0.1:%d" % port
        result = {}
        poller = threading.Thread(target=lambda: result.update(got=get(base + "/records?after=1&wait=20")))
        poller.start()
        time.sleep(0.3)
        t = time.monotonic()
        status, _, body = get(base + "/records?last=5")
        self.assertLess(time.monotonic() - t, 2)
        self.assertEqual((status, json.loads(body)["last_seq"]), (200, 1))
        status, _, body = get(base + "/")
        self.assertEqual(status, 200)
        self.assertIn(b"<canvas", body)
        self.assertIn('window.FILERING_PAGE = {"unit":"°C","window":300.0};'.encode("utf-8"), body)
        status, _, body = get(base + "/metrics")
        self.assertEqual((status, parse_metrics(self, body.decode())["filering_last_sequence"][1]), (200, 1))
        ring.append(b"2.5")
        poller.join(10)
        self.assertFalse(poller.is_alive())
        status, _, body = result["got"]
        self.assertEqual(json.loads(body)["records"], [{"seq": 2, "time_ns": T0 + 2, "value": 2.5}])


    def test_BadOptions(self):
        for args, want in ((["--min", "5", "--max", "1"], "min below max"), (["--unit", "a:x,a:y"], "twice"), (["--window", "soon"], "window")):
            p = subprocess.run([sys.executable, os.path.join(HERE, "app.py"), self.ring] + args, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=30)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn(want, p.stderr.decode("utf-8"))


@unittest.skipUnless(hasattr(__import__("http.server").server, "CGIHTTPRequestHandler"), "http.server has no CGI support")
class TestHTTPServerCGI(RingCase):
    def test_Run(self):
        write_ring(self.ring, [b"%d" % i for i in range(1, 21)])
        www = tempfile.mkdtemp(prefix="filering-www-", dir=tmp_base())
        self.addCleanup(shutil.rmtree, www, True)
        # Run as root, http.server runs CGI scripts as the user "nobody".
        os.chmod(self.ring, 0o755)
        os.chmod(www, 0o755)
        cgi_bin = os.path.join(www, "cgi-bin")
        os.mkdir(cgi_bin)
        # Copies rather than a link: the user "nobody" may not be able to reach this
        # checkout (a link is tested in TestCGI).
        for name in ("graph.cgi", "ringweb.py"):
            shutil.copy(os.path.join(HERE, name), cgi_bin)
        shutil.copytree(os.path.dirname(filering.__file__), os.path.join(cgi_bin, "filering"))
        for root, dirs, files in os.walk(cgi_bin):
            for name in dirs + files:
                os.chmod(os.path.join(root, name), 0o755)
        os.chmod(cgi_bin, 0o755)
        port = free_port()
        env = dict(os.environ, FILERING_RING=self.ring, PYTHONWARNINGS="ignore")
        proc = subprocess.Popen([sys.executable, "-m", "http.server", "--cgi", "--bind", "127.0.0.1", str(port)],
                                cwd=www, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.addCleanup(proc.stderr.close)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.terminate)
        wait_for_port(port, proc)
        status, _, body = get("http://127.0.0.1:%d/cgi-bin/graph.cgi?last=3" % port)
        self.assertEqual(status, 200)
        doc = json.loads(body)
        self.assertEqual([r["seq"] for r in doc["records"]], [18, 19, 20])


try:
    import flask  # noqa: F401

    HAVE_FLASK = True
except ImportError:
    HAVE_FLASK = False


class TestModule(unittest.TestCase):
    def test_App(self):
        # `app` is what `flask --app app run` and `gunicorn app:app` find: a Flask app when
        # Flask is installed, else the WSGI application.
        if HAVE_FLASK:
            import flask

            self.assertIsInstance(app.app, flask.Flask)
        else:
            self.assertIs(app.app, app.application)
        self.assertTrue(callable(app.application))


@unittest.skipUnless(HAVE_FLASK, "Flask is not installed")
class TestFlask(RingCase):
    def test_Routes(self):
        write_ring(self.ring, [b"1", b"2"])
        client = app.create_flask_app(self.ring).test_client()
        resp = client.get("/records?last=1")
        self.assertEqual(resp.status_code, 200)
        self.assertEqual(resp.get_json()["records"][0]["seq"], 2)
        self.assertEqual(client.get("/records?last=-1").status_code, 400)
        self.assertIn(b"fileringStats", client.get("/").data)
        resp = client.get("/metrics")
        self.assertEqual((resp.status_code, resp.headers["Content-Type"]), (200, ringweb.METRICS_CONTENT_TYPE))
        self.assertEqual(client.get("/healthz").status_code, 503)

    def test_FlaskRun(self):
        # The command README.md gives, as written.
        write_ring(self.ring, [b"1", b"2.5"])
        port = free_port()
        env = dict(os.environ, FILERING_RING=self.ring)
        proc = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "run", "--port", str(port)], cwd=HERE, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.addCleanup(proc.stderr.close)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.terminate)
        wait_for_port(port, proc)
        status, _, body = get("http://127.0.0.1:%d/records?last=1" % port)
        self.assertEqual((status, json.loads(body)["records"][0]["value"]), (200, 2.5))


class SSEClient(object):
    """SSEClient reads Server-Sent Events from sse.py with a plain socket."""

    def __init__(self, port, path, headers=()):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        req = "GET %s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n%s\r\n" % (path, "".join("%s: %s\r\n" % h for h in headers))
        self.sock.sendall(req.encode())
        self.buf = b""
        head = self._until(b"\r\n\r\n")
        self.status = head.split(b"\r\n")[0]
        self.headers = head

    def _until(self, sep):
        while sep not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        item, self.buf = self.buf.split(sep, 1)
        return item

    def event(self):
        """event returns the next event as a dict of its fields (comments as "comment")."""
        fields = {}
        for line in self._until(b"\n\n").decode("utf-8").split("\n"):
            name, _, value = line.partition(": ")
            fields[name or "comment"] = value
        return fields

    def close(self):
        self.sock.close()


class TestSSE(RingCase):
    def start(self, *args):
        port = free_port()
        proc = subprocess.Popen([sys.executable, os.path.join(HERE, "sse.py"), self.ring, "--port", str(port)] + list(args),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.addCleanup(proc.stderr.close)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.terminate)
        wait_for_port(port, proc)
        return port

    def client(self, port, path, headers=()):
        c = SSEClient(port, path, headers)
        self.addCleanup(c.close)
        return c

    def test_Stream(self):
        p = Producer(self.ring, segments_max=8)
        for i in range(20):
            p.append(b"%d" % i)
        port = self.start()
        c = self.client(port, "/events?last=3")
        self.assertEqual(c.status, b"HTTP/1.1 200 OK")
        self.assertIn(b"Content-Type: text/event-stream", c.headers)
        got = [c.event() for _ in range(3)]
        self.assertEqual([e["id"] for e in got], ["18", "19", "20"])
        self.assertEqual(json.loads(got[0]["data"]), {"seq": 18, "time_ns": T0 + 18, "value": 17.0})
        p.append(b"21.5")
        e = c.event()
        self.assertEqual((e["id"], json.loads(e["data"])["value"]), ("21", 21.5))
        # EventSource reconnects with Last-Event-ID: the stream resumes after it.
        for i in range(5):
            p.append(b"x%d" % i)
        r = self.client(port, "/events", [("Last-Event-ID", "22")])
        self.assertEqual([r.event()["id"] for _ in range(3)], ["23", "24", "25"])
        r2 = self.client(port, "/events?after=24")
        self.assertEqual(r2.event()["id"], "25")
        # New records only, by default.
        n = self.client(port, "/events")
        p.append(b"new")
        self.assertEqual(n.event()["id"], "27")

    def test_Lost_andRestart(self):
        p = Producer(self.ring, segments_max=2)
        for i in range(400):
            p.append(b"%03d" % i)
        first = filering.open(self.ring).manifest().segments[0].first_seq
        port = self.start()
        c = self.client(port, "/events", [("Last-Event-ID", "5")])
        e = c.event()
        self.assertEqual((e["event"], json.loads(e["data"])), ("lost", {"from": 6, "to": first - 1}))
        self.assertEqual(c.event()["id"], str(first))
        # An id beyond the ring's newest: a ring since created anew.
        r = self.client(port, "/events", [("Last-Event-ID", "100000")])
        self.assertEqual(r.event()["event"], "restart")
        e = r.event()
        self.assertEqual((e["event"], json.loads(e["data"])), ("lost", {"from": 1, "to": first - 1}))
        self.assertEqual(r.event()["id"], str(first))
        bad = self.client(port, "/events", [("Last-Event-ID", "x")])
        self.assertEqual(bad.status, b"HTTP/1.1 400 Bad Request")

    def test_PageAndRecords(self):
        write_ring(self.ring, [b"1", b"2"])
        pid = hold_lock(self, self.ring)
        port = self.start("--unit", "temp:°C,hum:%", "--min", "0", "--max", "50")
        status, _, body = get("http://127.0.0.1:%d/" % port)
        self.assertEqual(status, 200)
        self.assertIn(b'window.FILERING_EVENTS = "events"', body)
        self.assertIn('window.FILERING_PAGE = {"units":{"temp":"°C","hum":"%"},"min":0.0,"max":50.0};'.encode("utf-8"), body)
        status, _, body = get("http://127.0.0.1:%d/records?last=1" % port)
        self.assertEqual((status, json.loads(body)["last_seq"]), (200, 2))
        status, _, body = get("http://127.0.0.1:%d/healthz" % port)
        self.assertEqual((status, json.loads(body)["producer_pid"]), (200, pid))
        # filering_clients counts the event streams open.
        c = self.client(port, "/events?last=1")
        self.assertEqual(c.event()["id"], "2")
        status, _, body = get("http://127.0.0.1:%d/metrics" % port)
        m = parse_metrics(self, body.decode("utf-8"))
        self.assertEqual((status, m["filering_clients"][1], m["filering_records"][1]), (200, 1, 2))


if __name__ == "__main__":
    unittest.main()
