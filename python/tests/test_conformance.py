"""The conformance corpus (testdata/conformance), unchanged, against the filering package.

Each case of the corpus is a test of each class below: TestCommandLine runs
`python3 -m filering cat DIR ARGS` and compares its stdout byte for byte, its exit status
and its stderr; TestLibrary calls Ring.records(on_damage=...) and compares the records
(formatted with filering.format_records) and the errors (file, offset, kind).
testdata/conformance/README.md says how a case is run; this file follows it.
"""

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import unittest

import filering

from helpers import CORPUS, check_installed, tmp_base

TIMEOUT = 20  # seconds a run may take: a reader blocked on a FIFO fails
KINDS = [
    "no-ring", "manifest", "not-regular", "size", "header", "sealed-word", "committed-word",
    "record-size", "checksum", "sequence", "missing", "last-seq",
]


def load_cases():
    out = []
    if not os.path.isdir(CORPUS):
        return out
    for name in sorted(os.listdir(CORPUS)):
        d = os.path.join(CORPUS, name)
        spec_path = os.path.join(d, "case.json")
        if os.path.isdir(d) and os.path.isfile(spec_path):
            with open(spec_path, "rb") as f:
                out.append((name, d, json.loads(f.read().decode("utf-8"))))
    return out


def materialize(case_dir, spec, dst):
    """materialize copies the case's ring/ to dst (made here) and applies the setup steps."""
    os.mkdir(dst)
    src = os.path.join(case_dir, "ring")
    if os.path.isdir(src):
        for name in sorted(os.listdir(src)):
            p = os.path.join(src, name)
            if not stat.S_ISREG(os.lstat(p).st_mode):
                raise AssertionError("%s: ring/ holds only regular files" % p)
            with open(p, "rb") as f:
                data = f.read()
            with open(os.path.join(dst, name), "wb") as f:
                f.write(data)
    for step in spec["setup"]:
        path = step["path"]
        if path != "." and (not path or "/" in path or path == ".."):
            raise AssertionError("setup path %r is not a name in the ring" % path)
        p = os.path.join(dst, path)
        op = step["op"]
        if op == "mkfifo":
            os.mkfifo(p, 0o644)
        elif op == "mkdir":
            os.mkdir(p, 0o755)
        elif op == "symlink":
            os.symlink(step["target"], p)
        elif op == "chmod":
            os.chmod(p, int(step["mode"], 8))
        else:
            raise AssertionError("unknown setup op %r" % op)


def unmaterialize(dst):
    if not os.path.lexists(dst):
        return
    os.chmod(dst, 0o755)
    for name in os.listdir(dst):
        p = os.path.join(dst, name)
        if not os.path.islink(p):
            os.chmod(p, 0o755)
    shutil.rmtree(dst)


def selection(args):
    last, from_seq, fmt = None, None, "lines"
    it = iter(args)
    for opt in it:
        value = next(it)
        if opt == "--last":
            last = int(value)
        elif opt == "--from":
            from_seq = int(value)
        elif opt == "--format":
            fmt = value
        else:
            raise AssertionError("unknown option %r" % opt)
    return last, from_seq, fmt


_PATH_CHAR = re.compile(r"[A-Za-z0-9._/-]")


def _names(line, path):
    start = 0
    while True:
        i = line.find(path, start)
        if i < 0:
            return False
        end = i + len(path)
        if end == len(line) or not _PATH_CHAR.match(line[end]):
            return True
        start = end


def check_stderr(stderr, ring, errors):
    """check_stderr returns what is wrong with stderr for the expected errors (README.md)."""
    text = stderr.decode("utf-8", "replace")
    if not errors:
        return [] if not stderr else ["no error expected, stderr is %r" % text]
    lines = text[:-1].split("\n") if text.endswith("\n") else text.split("\n")
    used = [False] * len(lines)
    problems = []
    for e in errors:
        name = ring if e["file"] is None else ring + "/" + e["file"]
        off = None if e["offset"] is None else re.compile(r"\boffset %d\b" % e["offset"])
        for i, line in enumerate(lines):
            if not used[i] and _names(line, name) and (off is None or off.search(line)):
                used[i] = True
                break
        else:
            problems.append("no line of stderr names %s%s" % (name, "" if off is None else " with offset %d" % e["offset"]))
    for i, line in enumerate(lines):
        if not used[i] and ring + "/" in line:
            problems.append("unexpected error: %r" % line)
    return problems


def _error_entry(ring, e):
    path = e.path
    if path is not None and os.path.dirname(path) == ring:
        path = os.path.basename(path)
    elif path == ring:
        path = None
    return {"file": path, "offset": e.offset, "kind": e.kind}


def _same_errors(got, want):
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):
        if g["file"] != w["file"] or g["kind"] != w["kind"]:
            return False
        if w["offset"] is not None and g["offset"] != w["offset"]:
            return False
    return True


class _Alarm(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Alarm()


class _CorpusCase(unittest.TestCase):
    def setUp(self):
        check_installed()
        self.tmp = tempfile.mkdtemp(prefix="filering-conformance-", dir=tmp_base())
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.n = 0

    def ring(self, case_dir, spec):
        self.n += 1
        dst = os.path.join(self.tmp, "ring%d" % self.n)
        materialize(case_dir, spec, dst)
        self.addCleanup(unmaterialize, dst)
        return dst

    @staticmethod
    def run_name(run):
        return " ".join(run["args"]) or "cat"


class TestCommandLine(_CorpusCase):
    """python3 -m filering cat, byte for byte."""

    def check(self, case_dir, spec):
        for run in spec["runs"]:
            with self.subTest(run=self.run_name(run)):
                ring = self.ring(case_dir, spec)
                with open(os.path.join(case_dir, run["stdout"]), "rb") as f:
                    want = f.read()
                try:
                    p = subprocess.run(
                        [sys.executable, "-m", "filering", "cat", ring] + run["args"],
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        timeout=TIMEOUT,
                    )
                except subprocess.TimeoutExpired:
                    self.fail("the reader did not finish within %d s" % TIMEOUT)
                self.assertEqual(p.stdout, want, "stdout differs from %s" % run["stdout"])
                self.assertEqual(p.returncode, run["exit"], "exit status; stderr: %r" % p.stderr)
                self.assertEqual(check_stderr(p.stderr, ring, run["errors"]), [], "stderr")


class TestLibrary(_CorpusCase):
    """Ring.records(on_damage=...), and format_records."""

    def check(self, case_dir, spec):
        for run in spec["runs"]:
            with self.subTest(run=self.run_name(run)):
                ring = self.ring(case_dir, spec)
                with open(os.path.join(case_dir, run["stdout"]), "rb") as f:
                    want = f.read()
                last, from_seq, fmt = selection(run["args"])
                errors = []
                records = []
                old = signal.signal(signal.SIGALRM, _on_alarm)
                signal.alarm(TIMEOUT)
                try:
                    records = filering.open(ring).records(from_seq=from_seq, last=last or None, on_damage=errors.append)
                except filering.Error as e:
                    errors.append(e)
                except _Alarm:
                    self.fail("records() did not finish within %d s" % TIMEOUT)
                finally:
                    signal.alarm(0)
                    signal.signal(signal.SIGALRM, old)
                self.assertEqual(filering.format_records(records, fmt), want, "records differ from %s" % run["stdout"])
                got = [_error_entry(ring, e) for e in errors]
                self.assertTrue(_same_errors(got, run["errors"]), "errors: got %r (%s), want %r" % (got, [str(e) for e in errors], run["errors"]))
                for e in errors:
                    self.assertIn(e.kind, KINDS)
                    if e.kind not in ("no-ring", "manifest") and not (e.kind == "not-regular" and e.path.endswith("/manifest")):
                        self.assertIsInstance(e, filering.CorruptionError)


def _add_tests():
    cases = load_cases()
    for cls in (TestCommandLine, TestLibrary):
        for name, case_dir, spec in cases:
            def test(self, case_dir=case_dir, spec=spec):
                self.check(case_dir, spec)

            test.__doc__ = "%s: %s" % (name, spec["description"])
            setattr(cls, "test_" + name.replace("-", "_"), test)
    return len(cases)


CASES = _add_tests()


class TestCorpus(unittest.TestCase):
    def test_Present(self):
        # The corpus is in the repository: a missing one is a failure, not a pass.
        self.assertGreater(CASES, 50, "no conformance corpus at %s (set FILERING_REPO)" % CORPUS)

    def test_MaterializeCopiesEveryFile(self):
        # Every file of a case's ring/ is copied, byte for byte, whatever its name:
        # segment indexes (N.idx), names readers do not know, names starting with ".".
        tmp = tempfile.mkdtemp(prefix="filering-conformance-", dir=tmp_base())
        self.addCleanup(shutil.rmtree, tmp, True)
        os.mkdir(os.path.join(tmp, "case"))
        src = os.path.join(tmp, "case", "ring")
        os.mkdir(src)
        files = {
            "manifest": b"{}\n",
            "0000000000000001.seg": bytes(range(256)) * 16,
            "0000000000000001.idx": b"FILERIDX" + bytes(56) + b"\x01" * 24,
            "0000000000000002.idx": b"",
            "id": b"0" * 32 + b"\n",
            ".0000000000000003.seg.new-x": b"tmp",
            "unknown name": b"\xff\x00",
        }
        for name, data in files.items():
            with open(os.path.join(src, name), "wb") as f:
                f.write(data)
        dst = os.path.join(tmp, "ring")
        materialize(os.path.join(tmp, "case"), {"setup": []}, dst)
        self.assertEqual(sorted(os.listdir(dst)), sorted(files))
        for name, data in files.items():
            with open(os.path.join(dst, name), "rb") as f:
                self.assertEqual(f.read(), data, name)

    def test_CheckStderr(self):
        ring = "/tmp/x/ring"
        e = [{"file": "0000000000000002.seg", "offset": 136, "kind": "checksum"}]
        good = b"filering: /tmp/x/ring/0000000000000002.seg: corrupt at offset 136: bad CRC\nfilering: /tmp/x/ring: damaged\n"
        self.assertEqual(check_stderr(good, ring, e), [])
        for bad in (
            b"",
            b"x: /tmp/x/ring/0000000000000002.seg: corrupt at offset 1360\n",
            b"x: /tmp/x/ring/0000000000000002.segment: corrupt at offset 136\n",
            b"x: /tmp/x/ring/0000000000000002.seg: corrupt at offset 136\nx: /tmp/x/ring/0000000000000003.seg: bad\n",
        ):
            self.assertNotEqual(check_stderr(bad, ring, e), [], bad)
        self.assertNotEqual(check_stderr(b"warning\n", ring, []), [])


if __name__ == "__main__":
    unittest.main()
