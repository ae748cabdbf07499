package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/internal/servetest"
	"github.com/filering/filering/publish"
)

// The tests of `filering serve` as a command: its flags, what it says on stderr, how
// it stops. The HTTP endpoints are tested in package serve.

// serveCmd is `filering serve` running as a child process.
type serveCmd struct {
	t      *testing.T
	cmd    *exec.Cmd
	lines  chan string // its stderr, a line at a time; closed when it exits
	exited chan error  // its exit, after lines is closed
}

// startServeCmd starts `filering serve --listen 127.0.0.1:0 ARGS`; the test's cleanup
// kills it if it still runs.
func startServeCmd(t *testing.T, args ...string) *serveCmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, append([]string{"-test.run=^TestHelperServe$", "--", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "FILERING_TEST_HELPER=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &serveCmd{t: t, cmd: cmd, lines: make(chan string, 100), exited: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
		s.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			for range s.lines {
			}
			<-s.exited
		}
	})
	return s
}

// next returns the next line it prints on stderr.
func (s *serveCmd) next() string {
	s.t.Helper()
	select {
	case l, ok := <-s.lines:
		if !ok {
			s.t.Fatalf("serve exited: %v", <-s.exited)
		}
		return l
	case <-time.After(time.Minute):
		s.t.Fatal("serve printed nothing for a minute")
	}
	return ""
}

// base reads the first line, which must say that it serves what, and returns the base
// URL it names.
func (s *serveCmd) base(what string) string {
	s.t.Helper()
	l := s.next()
	if !strings.HasPrefix(l, "filering: serving "+what+" on http://") {
		s.t.Fatalf("first line %q; want the address serving %s", l, what)
	}
	return strings.TrimSuffix(l[strings.Index(l, "http://"):], "/")
}

// stop sends SIGINT and checks that serve exits 0 saying nothing more.
func (s *serveCmd) stop() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGINT); err != nil {
		s.t.Fatal(err)
	}
	var rest []string
	for l := range s.lines {
		rest = append(rest, l)
	}
	if err := <-s.exited; err != nil {
		s.t.Fatalf("serve after SIGINT: %v; stderr %q", err, rest)
	}
	if len(rest) != 0 {
		s.t.Errorf("serve said more on stderr: %q", rest)
	}
}

// TestServe_WaitsForRing runs `filering serve` on a directory that does not exist: it
// listens at once, says once on stderr that it waits for a ring there, answers 503 with
// the reason on /records and /healthz, and serves the ring once a producer creates it,
// without a restart. It stops on SIGINT with exit status 0.
func TestServe_WaitsForRing(t *testing.T) {
	dir := ringtest.Dir(t)
	s := startServeCmd(t, dir)
	base := s.base(dir)
	if l := s.next(); !strings.Contains(l, "no ring at "+dir+" yet: waiting for one") {
		t.Fatalf("second line %q; want that it waits for a ring", l)
	}
	servetest.WantUnavailable(t, base+"/records?last=5", "error", "no ring at "+dir)
	servetest.WantUnavailable(t, base+"/healthz", "reason", "no ring at "+dir)
	resp, err := http.Get(base + "/records")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After")
	}

	w, err := publish.Open(dir, publish.Options{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	servetest.AppendAll(t, w, "1", "2", "3")
	var doc servetest.ValuesDoc
	if code := servetest.GetJSON(t, base+"/records?last=5", &doc); code != 200 || len(doc.Records) != 3 || doc.LastSeq != 3 {
		t.Fatalf("once the ring exists: %d %+v", code, doc)
	}
	var h struct {
		OK bool `json:"ok"`
	}
	if code := servetest.GetJSON(t, base+"/healthz", &h); code != 200 || !h.OK {
		t.Fatalf("healthz once the ring exists: %d %+v", code, h)
	}
	// The event stream picks the ring up too.
	if ids := servetest.SSE(t, base+"/events?after=0", "", 3); fmt.Sprint(ids) != "[1 2 3]" {
		t.Fatalf("events: %v", ids)
	}
	s.stop()
}

// indexDoc is the part of /rings these tests read.
type indexDoc struct {
	Rings []struct {
		Name    string `json:"name"`
		Records uint64 `json:"records"`
	} `json:"rings"`
}

func (d indexDoc) String() string {
	var b strings.Builder
	for _, r := range d.Rings {
		fmt.Fprintf(&b, "%s:%d ", r.Name, r.Records)
	}
	return strings.TrimSpace(b.String())
}

// TestServe_DirectoryOfRings: `filering serve DIR` on a directory holding rings serves
// each under its name, the index and /metrics of them all; a ring that is DIR itself is
// served as before (TestServe_WaitsForRing).
func TestServe_DirectoryOfRings(t *testing.T) {
	dir := ringtest.Dir(t)
	for name, payloads := range map[string][]string{"a": {"1", "2"}, "b": {"x"}} {
		w, err := publish.Open(dir+"/"+name, publish.Options{SegmentSize: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		servetest.AppendAll(t, w, payloads...)
	}
	s := startServeCmd(t, dir, "--unit", "temp:°C,hum:%")
	base := s.base("the rings in " + dir)
	var idx indexDoc
	if code := servetest.GetJSON(t, base+"/rings", &idx); code != 200 || idx.String() != "a:2 b:1" {
		t.Fatalf("/rings: %d %v; want a:2 b:1", code, idx)
	}
	var doc servetest.ValuesDoc
	if code := servetest.GetJSON(t, base+"/a/records?last=5", &doc); code != 200 || doc.LastSeq != 2 {
		t.Fatalf("/a/records: %d %+v", code, doc)
	}
	resp, err := http.Get(base + "/b/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), `"units":{"hum":"%","temp":"°C"}`) || !strings.Contains(string(page), `"title":"b"`) {
		t.Errorf("/b/ lacks the units and title: %.300s", page[bytes.Index(page, []byte("FILERING_PAGE")):])
	}
	resp, err = http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"filering_rings 2\n", `filering_records{ring="a"} 2` + "\n", `filering_records{ring="b"} 1` + "\n"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q:\n%s", want, metrics)
		}
	}
	s.stop()
}

// TestServe_RingsFlag: with --rings, a directory with no ring yet is served as a
// directory of rings, saying so, and a ring created in it shows.
func TestServe_RingsFlag(t *testing.T) {
	dir := ringtest.Dir(t)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := startServeCmd(t, "--rings", dir)
	base := s.base("the rings in " + dir)
	if l := s.next(); !strings.Contains(l, "no ring in "+dir+" yet") {
		t.Fatalf("second line %q; want that there is no ring yet", l)
	}
	w, err := publish.Open(dir+"/late", publish.Options{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	servetest.AppendAll(t, w, "1")
	var idx indexDoc
	if code := servetest.GetJSON(t, base+"/rings", &idx); code != 200 || idx.String() != "late:1" {
		t.Fatalf("/rings: %d %v; want late:1", code, idx)
	}
	s.stop()
}

// TestServe_NotADirectory: serve on a path that cannot be a ring directory fails at once
// and says why, instead of waiting for a ring there.
func TestServe_NotADirectory(t *testing.T) {
	file := ringtest.Dir(t)
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	code := run([]string{"filering-serve", "--listen", "127.0.0.1:0", file}, strings.NewReader(""), &strings.Builder{}, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), file) || !strings.Contains(stderr.String(), "not a directory") {
		t.Fatalf("exit %d, stderr %q; want 1 and that %s is not a directory", code, stderr.String(), file)
	}
}

// TestServe_BadFlags: flags out of range are usage errors that name the flag.
func TestServe_BadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--stale", "-1s"}, "--stale"},
		{[]string{"--buffer", "0"}, "--buffer 0"},
		{[]string{"--min", "5", "--max", "1"}, "--min 5, --max 1"},
		{[]string{"--window", "-1s"}, "--window"},
		{[]string{"--unit", "°C,K,a:b"}, `--unit "°C,K,a:b": two units`},
		{[]string{"--unit", "a:x,a:y"}, `series "a" twice`},
	} {
		var stderr strings.Builder
		args := append(append([]string{"filering-serve"}, tc.args...), ringtest.Dir(t))
		if code := run(args, strings.NewReader(""), &strings.Builder{}, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}

// TestHelperServe is not a test: run as a child process of the tests above, with
// FILERING_TEST_HELPER=1, it is filering-serve, with the arguments after "--".
func TestHelperServe(t *testing.T) {
	if os.Getenv("FILERING_TEST_HELPER") != "1" {
		return
	}
	i := slices.Index(os.Args, "--")
	args := append([]string{"filering-serve"}, os.Args[i+1:]...)
	os.Args = args
	os.Exit(run(args, os.Stdin, os.Stdout, os.Stderr))
}
