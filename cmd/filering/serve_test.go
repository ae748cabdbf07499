package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/publish"
)

// The tests of `filering serve` as a command: its flags, what it says on stderr, how
// it stops. The HTTP endpoints are tested in package serve.

// valuesDoc is a /records document with the values as strings.
type valuesDoc struct {
	Records []struct {
		Seq   uint64 `json:"seq"`
		Value any    `json:"value"`
	} `json:"records"`
	LastSeq uint64 `json:"last_seq"`
}

func appendAll(t *testing.T, w *publish.Writer, payloads ...string) {
	t.Helper()
	for _, p := range payloads {
		if _, err := w.Append([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
}

// wantUnavailable checks that url answers 503 with a JSON body whose field says what
// it should.
func wantUnavailable(t *testing.T, url, field, want string) {
	t.Helper()
	var doc map[string]any
	if code := getJSON(t, url, &doc); code != 503 {
		t.Fatalf("%s: %d %v; want 503", url, code, doc)
	}
	if s, _ := doc[field].(string); !strings.Contains(s, want) {
		t.Fatalf("%s: %v; want %q saying %q", url, doc, field, want)
	}
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	return resp.StatusCode
}

// eventStream opens an event stream, with Last-Event-ID when lastID is not empty, checks
// its headers and returns a scanner of its lines and the function that closes it. On
// failure it reports the error with t.Error (it may run in any goroutine) and returns a
// nil scanner.
func eventStream(t *testing.T, url, lastID string) (*bufio.Scanner, func()) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		cancel()
		t.Error(err)
		return nil, func() {}
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" || resp.Header.Get("X-Accel-Buffering") != "no" {
		t.Errorf("headers %v", resp.Header)
	}
	return bufio.NewScanner(resp.Body), func() { resp.Body.Close(); cancel() }
}

// sse reads the ids of the first want events of an event stream.
func sse(t *testing.T, url, lastID string, want int) []uint64 {
	t.Helper()
	sc, done := eventStream(t, url, lastID)
	defer done()
	if sc == nil {
		return nil
	}
	var ids []uint64
	for len(ids) < want && sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
			n, _ := strconv.ParseUint(id, 10, 64)
			ids = append(ids, n)
		}
	}
	return ids
}

// TestServe_WaitsForRing runs `filering serve` on a directory that does not exist: it
// listens at once, says once on stderr that it waits for a ring there, answers 503 with
// the reason on /records and /healthz, and serves the ring once a producer creates it,
// without a restart. It stops on SIGINT with exit status 0.
func TestServe_WaitsForRing(t *testing.T) {
	dir := ringtest.Dir(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^TestHelperFilering$", "--", "serve", "--listen", "127.0.0.1:0", dir)
	cmd.Env = append(os.Environ(), "FILERING_TEST_HELPER=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	}()
	next := func() string {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("serve exited: %v", <-exited)
			}
			return l
		case <-time.After(time.Minute):
			t.Fatal("serve printed nothing for a minute")
		}
		return ""
	}
	var base string
	if l := next(); !strings.HasPrefix(l, "filering: serving "+dir+" on http://") {
		t.Fatalf("first line %q; want the address served", l)
	} else {
		base = strings.TrimSuffix(l[strings.Index(l, "http://"):], "/")
	}
	if l := next(); !strings.Contains(l, "no ring at "+dir+" yet: waiting for one") {
		t.Fatalf("second line %q; want that it waits for a ring", l)
	}
	wantUnavailable(t, base+"/records?last=5", "error", "no ring at "+dir)
	wantUnavailable(t, base+"/healthz", "reason", "no ring at "+dir)
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
	appendAll(t, w, "1", "2", "3")
	var doc valuesDoc
	if code := getJSON(t, base+"/records?last=5", &doc); code != 200 || len(doc.Records) != 3 || doc.LastSeq != 3 {
		t.Fatalf("once the ring exists: %d %+v", code, doc)
	}
	var h struct {
		OK bool `json:"ok"`
	}
	if code := getJSON(t, base+"/healthz", &h); code != 200 || !h.OK {
		t.Fatalf("healthz once the ring exists: %d %+v", code, h)
	}
	// The event stream picks the ring up too.
	if ids := sse(t, base+"/events?after=0", "", 3); fmt.Sprint(ids) != "[1 2 3]" {
		t.Fatalf("events: %v", ids)
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	if err := <-exited; err != nil {
		t.Fatalf("serve after SIGINT: %v; stderr %q", err, rest)
	}
	if len(rest) != 0 {
		t.Errorf("serve said more on stderr: %q", rest)
	}
}

// TestServe_NotADirectory: serve on a path that cannot be a ring directory fails at once
// and says why, instead of waiting for a ring there.
func TestServe_NotADirectory(t *testing.T) {
	file := ringtest.Dir(t)
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	code := run([]string{"filering", "serve", "--listen", "127.0.0.1:0", file}, strings.NewReader(""), &strings.Builder{}, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), file) || !strings.Contains(stderr.String(), "not a directory") {
		t.Fatalf("exit %d, stderr %q; want 1 and that %s is not a directory", code, stderr.String(), file)
	}
}

// TestServe_StaleFlag: --stale must not be negative.
func TestServe_StaleFlag(t *testing.T) {
	var stderr strings.Builder
	if code := run([]string{"filering", "serve", "--stale", "-1s", ringtest.Dir(t)}, strings.NewReader(""), &strings.Builder{}, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "--stale") {
		t.Fatalf("exit %d, stderr %q; want 2 and a message about --stale", code, stderr.String())
	}
}
