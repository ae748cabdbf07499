"""python3 -m filering against the `filering` command: same bytes out, same exit statuses.

Rings here are written by the Go producer (`filering produce --input frames`); the tests
that need it skip without the binary (see helpers.need_go). The parsers of Go's number
and duration syntax are tested on their own.
"""

import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import unittest

from filering import _cli

from helpers import RingTestCase, check_installed, need_go, sensor_payloads, write_ring


def setUpModule():
    check_installed()


def frames(payloads):
    return b"".join(struct.pack("<I", len(p)) + p for p in payloads)


def produce(go, ring, payloads, *flags):
    """produce appends payloads to ring with `filering produce --input frames`."""
    p = subprocess.run([go, "produce", "--input", "frames"] + list(flags) + [ring], input=frames(payloads), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    if p.returncode != 0:
        raise AssertionError("filering produce: %s" % p.stderr.decode("utf-8", "replace"))


def mixed_payloads(n):
    out = []
    for i in range(n):
        k = i % 6
        if k == 0:
            out.append(b"%d.%03d" % (i, i % 1000))
        elif k == 1:
            out.append(("quote \" backslash \\ newline \n tab \t \u00e9 \u2028 %d" % i).encode("utf-8"))
        elif k == 2:
            out.append(b"\xff\xfe" + struct.pack("<Q", i))
        elif k == 3:
            out.append(b"")
        elif k == 4:
            out.append(bytes(range(32)) + b"\x7f<&>")
        else:
            out.append(b"x" * (i % 300))
    return out


class TestGoSyntax(unittest.TestCase):
    def test_ParseInt(self):
        good = [("0", 0), ("42", 42), ("+7", 7), ("-3", -3), ("0x1f", 31), ("0X1F", 31), ("0o17", 15), ("017", 15), ("0b101", 5),
                ("1_000", 1000), ("0x_1f", 31), ("-0x10", -16), ("9223372036854775807", (1 << 63) - 1), ("-9223372036854775808", -(1 << 63))]
        for text, want in good:
            with self.subTest(text):
                self.assertEqual(_cli.parse_int(text), want)
        for text, why in [("", "parse error"), ("x", "parse error"), ("1.5", "parse error"), ("08", "parse error"), ("0x", "parse error"),
                          ("_1", "parse error"), ("1__0", "parse error"), ("1_", "parse error"), (" 1", "parse error"), ("1e3", "parse error"),
                          ("9223372036854775808", "value out of range"), ("99999999999999999999", "value out of range"), ("\u0661", "parse error")]:
            with self.subTest(text):
                with self.assertRaises(ValueError) as cm:
                    _cli.parse_int(text)
                self.assertEqual(str(cm.exception), why)

    def test_ParseUint(self):
        self.assertEqual(_cli.parse_uint("18446744073709551615"), (1 << 64) - 1)
        for text in ("-1", "+1", "18446744073709551616"):
            with self.subTest(text):
                with self.assertRaises(ValueError):
                    _cli.parse_uint(text)

    def test_ParseDuration(self):
        good = [("0", 0), ("1s", 10**9), ("-1.5h", -5400 * 10**9), ("1h30m", 5400 * 10**9), ("300ms", 300 * 10**6), ("2us", 2000),
                ("2\u00b5s", 2000), ("2\u03bcs", 2000), ("1.5s", 1500 * 10**6), (".5s", 500 * 10**6), ("5.s", 5 * 10**9), ("1ns", 1),
                ("+2m", 120 * 10**9), ("1h2m3s4ms5us6ns", 3723004005006), ("0.1234567891s", 123456789)]
        for text, want in good:
            with self.subTest(text):
                self.assertEqual(_cli.parse_duration(text), want)
        for text in ("", "1", "s", "1x", "1.s5", "-", ".s", "1 s", "9999999999999999999h", "1e3s"):
            with self.subTest(text):
                with self.assertRaises(ValueError):
                    _cli.parse_duration(text)

    def test_FormatDuration(self):
        for ns, want in [(0, "0s"), (10**9, "1s"), (-10**9, "-1s"), (1500 * 10**6, "1.5s"), (5400 * 10**9, "1h30m0s"), (300 * 10**6, "300ms"), (2000, "2\u00b5s"), (1, "1ns"), (3723004005006, "1h2m3.004005006s")]:
            with self.subTest(ns):
                self.assertEqual(_cli.format_duration(ns), want)

    def test_FormatSize(self):
        for n, want in [(512, "512B"), (4096, "4KiB"), (2 << 20, "2MiB"), (3 << 19, "1.5MiB"), (1 << 30, "1GiB"), ((1 << 20) + 1, "1.0MiB")]:
            self.assertEqual(_cli.format_size(n), want)

    def test_GoJsonString(self):
        self.assertEqual(_cli.go_json_string('a"b\\c<d>&\n\x01\u2028\u00e9'), '"a\\"b\\\\c\\u003cd\\u003e\\u0026\\n\\u0001\\u2028\u00e9"')


class TestAgainstGo(RingTestCase):
    """The Python command against the Go command, on the same rings, byte for byte."""

    def setUp(self):
        RingTestCase.setUp(self)
        self.go = need_go(self)

    def both(self, *args, **kw):
        """both runs the Go and the Python command with args; it returns both results."""
        go = subprocess.run([self.go] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, **kw)
        py = self.run_cli(*args, **kw)
        return go, py

    def assertSame(self, *args, stderr=True):
        go, py = self.both(*args)
        self.assertEqual(py.stdout, go.stdout, "stdout of %s" % (args,))
        self.assertEqual(py.returncode, go.returncode, "exit status of %s; stderr %r / %r" % (args, go.stderr, py.stderr))
        if stderr:
            self.assertEqual(py.stderr, go.stderr, "stderr of %s" % (args,))
        return go, py

    def test_Cat(self):
        ring = self.path("r")
        payloads = mixed_payloads(3000)
        produce(self.go, ring, payloads, "--segment-size", "16KiB", "--segments", "6")
        for args in ([], ["--format", "json"], ["--format", "lines"], ["--format", "raw"], ["--last", "1"], ["--last", "700", "--format", "json"],
                     ["--from", "2500", "--format", "raw"], ["--from", "2990", "--last", "5", "--format", "json"], ["--last", "0"], ["--from", "0"],
                     ["--since", "1h", "--format", "json"], ["--since", "1h", "--last", "3", "--format", "json"], ["--last=4"], ["-last", "4"],
                     ["--last", "0x10"], ["--from", "2_999"], ["--format=json", "--last", "2"], ["--last", "100000000"], ["--from", "18446744073709551615"]):
            with self.subTest(args=args):
                self.assertSame("cat", ring, *args)
                self.assertSame("cat", *(args + [ring]))

    def test_Cat_since(self):
        ring = self.path("r")
        produce(self.go, ring, [b"early %d" % i for i in range(50)])
        time.sleep(3)
        produce(self.go, ring, [b"late %d" % i for i in range(50)])
        go, py = self.assertSame("cat", "--since", "2s", ring)
        self.assertEqual(go.stdout, b"".join(b"late %d\n" % i for i in range(50)))

    def test_Cat_damage(self):
        ring = self.path("r")
        produce(self.go, ring, sensor_payloads(2000), "--segment-size", "16KiB")
        seg = os.path.join(ring, sorted(n for n in os.listdir(ring) if n.endswith(".seg"))[1])
        with open(seg, "r+b") as f:
            f.seek(64 + 24 + 32 * 10)
            b = f.read(1)
            f.seek(64 + 24 + 32 * 10)
            f.write(bytes([b[0] ^ 1]))
        go, py = self.assertSame("cat", "--format", "json", ring, stderr=False)
        self.assertEqual(py.returncode, 1)
        self.assertEqual(py.stderr.count(b"\n"), 1)
        self.assertIn(("%s: corrupt at offset %d: " % (seg, 64 + 32 * 10)).encode(), py.stderr)

    def test_Usage(self):
        ring = self.path("r")
        produce(self.go, ring, [b"a", b"b"])
        same_stderr = [
            ["cat", ring, "--last", "abc"],
            ["cat", ring, "--last", "-1"],
            ["cat", ring, "--last", "99999999999999999999"],
            ["cat", ring, "--from", "-1"],
            ["cat", ring, "--bogus"],
            ["cat", ring, "--format", "xml"],
            ["cat"],
            ["cat", ring, ring],
            ["cat", ring, "--since", "1x"],
            ["cat", ring, "--since", "-1s"],
            ["cat", ring, "--last"],
            ["wait", ring, "--timeout", "-1s"],
            ["stat", ring, "--json=maybe"],
            ["take", ring, "--format", "xml"],
        ]
        for args in same_stderr:
            with self.subTest(args=args):
                go, py = self.both(*args)
                self.assertEqual(py.returncode, go.returncode, (go.stderr, py.stderr))
                self.assertEqual(py.returncode, 2)
                self.assertEqual(py.stdout, b"")
                self.assertEqual(py.stderr, go.stderr)
        for args in (["frobnicate", ring], ["cat", "--help"], ["--help"]):
            with self.subTest(args=args):
                go, py = self.both(*args)
                self.assertEqual(py.returncode, go.returncode)

    def test_Errors(self):
        missing = self.path("none")
        go, py = self.assertSame("cat", missing)
        self.assertEqual(py.returncode, 1)
        empty = self.path("empty")
        os.mkdir(empty)
        go, py = self.assertSame("cat", empty, stderr=False)
        self.assertEqual(py.stderr, ("filering: %s: no ring in this directory (no manifest)\n" % empty).encode())
        go, py = self.assertSame("stat", empty, stderr=False)
        go, py = self.assertSame("take", missing, stderr=False)

    def test_Stat(self):
        ring = self.path("r")
        produce(self.go, ring, mixed_payloads(2000), "--segment-size", "8KiB", "--segments", "5")
        self.assertSame("stat", ring)
        self.assertSame("stat", "--json", ring)
        # With a producer running, and a hot segment.
        p = subprocess.Popen([self.go, "produce", ring], stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            p.stdin.write(b"one\ntwo\n")
            p.stdin.flush()
            deadline = time.time() + 10
            while time.time() < deadline:
                out = subprocess.run([self.go, "stat", "--json", ring], stdout=subprocess.PIPE).stdout
                if b'"producer_pid":%d' % p.pid in out and b'"last_seq":2002' in out:
                    break
                time.sleep(0.05)
            go, py = self.assertSame("stat", ring)
            self.assertIn(b"pid %d" % p.pid, py.stdout)
            self.assertSame("stat", "--json", ring)
        finally:
            p.stdin.close()
            p.wait(10)

    def test_Wait(self):
        ring = self.path("r")
        produce(self.go, ring, [b"%d" % i for i in range(30)])
        self.assertSame("wait", "--after", "10", ring)
        self.assertSame("wait", ring)
        go, py = self.assertSame("wait", "--after", "30", "--timeout", "300ms", ring)
        self.assertEqual(py.returncode, 3)

    def test_Wait_wakes(self):
        ring = self.path("r")
        produce(self.go, ring, [b"a"])
        py = subprocess.Popen([sys.executable, "-m", "filering", "wait", "--after", "1", "--timeout", "20s", ring], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(0.5)
        produce(self.go, ring, [b"b", b"c"])
        out, err = py.communicate(timeout=20)
        self.assertEqual((py.returncode, out, err), (0, b"3\n", b""))

    def test_Take(self):
        payloads = mixed_payloads(2500)
        rings = [self.path("go"), self.path("py")]
        produce(self.go, rings[0], payloads, "--segment-size", "16KiB", "--segments", "50")
        shutil.copytree(rings[0], rings[1])
        # A claim left by a dead taker, and a damaged sealed segment.
        for ring in rings:
            names = sorted(n for n in os.listdir(ring) if n.endswith(".seg"))
            os.rename(os.path.join(ring, names[2]), os.path.join(ring, names[2][:-4] + ".taken"))
            with open(os.path.join(ring, names[4]), "r+b") as f:
                f.seek(64 + 100)
                f.write(b"\xff\xff")
        go = subprocess.run([self.go, "take", "--format", "json", rings[0]], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        py = self.run_cli("take", "--format", "json", rings[1])
        self.assertEqual(py.stdout, go.stdout)
        self.assertEqual(py.returncode, go.returncode)
        self.assertEqual(py.returncode, 1)
        self.assertEqual(py.stderr.replace(rings[1].encode(), b"R"), go.stderr.replace(rings[0].encode(), b"R"))
        self.assertEqual(sorted(os.listdir(rings[1])), sorted(os.listdir(rings[0])))
        self.assertIn(b"was claimed by a taker that died; delivering it again", py.stderr)
        # Nothing left to take.
        go = subprocess.run([self.go, "take", rings[0]], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        py = self.run_cli("take", rings[1])
        self.assertEqual((py.returncode, py.stdout, py.stderr), (go.returncode, go.stdout, go.stderr))

    def test_Watch(self):
        # A stopped ring: watch prints the selection, then waits; interrupted, it exits 0.
        ring = self.path("r")
        produce(self.go, ring, mixed_payloads(2000), "--segment-size", "8KiB", "--segments", "4")
        for args in (["--last", "5"], ["--format", "json"], ["--from", "1", "--format", "json"], ["--last", "3", "--format", "raw"]):
            with self.subTest(args=args):
                outs = []
                for cmd in ([self.go], [sys.executable, "-m", "filering"]):
                    p = subprocess.Popen(cmd + ["watch"] + args + [ring], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                    time.sleep(1.0)
                    p.send_signal(signal.SIGINT)
                    out, err = p.communicate(timeout=10)
                    outs.append((p.returncode, out, err.replace(ring.encode(), b"R")))
                self.assertEqual(outs[1], outs[0])
                if "--from" in args:
                    self.assertRegex(outs[0][2], b"^filering: R: lost [0-9]+ records \\(1 to [0-9]+\\)\n$")

    def test_Watch_newRing(self):
        # Started before the ring exists: every record from sequence 1.
        ring = self.path("later")
        outs = []
        for cmd in ([self.go], [sys.executable, "-m", "filering"]):
            shutil.rmtree(ring, True)
            p = subprocess.Popen(cmd + ["watch", "--format", "json", ring], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(0.5)
            produce(self.go, ring, [b"%d" % i for i in range(100)], "--segment-size", "4KiB", "--segments", "3")
            time.sleep(1.5)
            p.send_signal(signal.SIGTERM)
            out, err = p.communicate(timeout=10)
            outs.append((p.returncode, len(out.splitlines()), err.replace(ring.encode(), b"R")))
        self.assertEqual(outs[1], outs[0])

    def test_Take_newRing(self):
        # take --follow started before the ring exists waits for it, and takes every
        # sealed segment; the producer's clean stop seals the last.
        ring = self.path("later-take")
        outs = []
        for cmd in ([self.go], [sys.executable, "-m", "filering"]):
            shutil.rmtree(ring, True)
            p = subprocess.Popen(cmd + ["take", "--follow", "--format", "json", ring], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(0.5)
            self.assertIsNone(p.poll(), "take --follow exited before the ring existed")
            produce(self.go, ring, [b"%d" % i for i in range(300)], "--segment-size", "4KiB", "--segments", "64")
            time.sleep(1.5)
            p.send_signal(signal.SIGTERM)
            out, err = p.communicate(timeout=10)
            outs.append((p.returncode, len(out.splitlines()), err.replace(ring.encode(), b"R")))
        self.assertEqual(outs[0][1], 300)
        self.assertEqual(outs[1], outs[0])

    def test_BrokenPipe(self):
        write_ring(self.ring, sensor_payloads(20000), segment_size=1 << 20)
        p = subprocess.Popen("%s -m filering cat %s | head -c 10 > /dev/null" % (sys.executable, self.ring), shell=True, stderr=subprocess.PIPE)
        err = p.communicate(timeout=30)[1]
        self.assertEqual(err, b"")


if __name__ == "__main__":
    unittest.main()
