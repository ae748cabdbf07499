package serve

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/internal/servetest"
	"github.com/filering/filering/publish"
)

// TestServer_MountedUnderPrefix mounts a Server in a program's own ServeMux under a
// prefix, as the package documentation shows: the page, its endpoints (which the page
// names by relative URLs) and the program's other routes all answer.
func TestServer_MountedUnderPrefix(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := publish.Open(dir, publish.Options{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	servetest.AppendAll(t, w, "1", "2", "3")
	s, err := New(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	mux := http.NewServeMux()
	mux.Handle("/sensor/", http.StripPrefix("/sensor", s))
	mux.HandleFunc("/other", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "mine") })
	ts := httptest.NewServer(mux)
	defer ts.Close()

	resp, err := http.Get(ts.URL + "/sensor/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := bufioRead(resp)
	if resp.StatusCode != 200 || !strings.Contains(page, `window.FILERING_EVENTS = "events"`) {
		t.Fatalf("page under /sensor/: %d", resp.StatusCode)
	}
	var doc servetest.ValuesDoc
	if code := servetest.GetJSON(t, ts.URL+"/sensor/records?last=2", &doc); code != 200 || len(doc.Records) != 2 || doc.LastSeq != 3 {
		t.Fatalf("/sensor/records: %d %+v", code, doc)
	}
	if ids := servetest.SSE(t, ts.URL+"/sensor/events?after=0", "", 3); len(ids) != 3 || ids[2] != 3 {
		t.Fatalf("/sensor/events: %v", ids)
	}
	var h struct {
		OK bool `json:"ok"`
	}
	if code := servetest.GetJSON(t, ts.URL+"/sensor/healthz", &h); code != 200 || !h.OK {
		t.Fatalf("/sensor/healthz: %d %+v", code, h)
	}
	resp, err = http.Get(ts.URL + "/other")
	if err != nil {
		t.Fatal(err)
	}
	if body, _ := bufioRead(resp); body != "mine" {
		t.Fatalf("the program's own route: %q", body)
	}
}

// TestServer_Serve: Serve answers on its listener until its context is done, then ends
// the event streams still open and returns nil promptly, with the hub stopped.
func TestServer_Serve(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := publish.Open(dir, publish.Options{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	servetest.AppendAll(t, w, "a", "b")
	s, err := New(dir, Options{Buffer: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()
	sc, done := servetest.EventStream(t, base+"/events?after=0", "")
	defer done()
	if sc == nil {
		t.FailNow()
	}
	for sc.Scan() && sc.Text() != "id: 2" {
	}
	start := time.Now()
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Serve did not return after its context was done")
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("Serve took %v to return: the open event stream held it", d)
	}
	for sc.Scan() {
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("the listener is still open")
	}
}

// TestServer_Close: after Close, Run returns at once, requests are answered 503, and a
// second Close does nothing.
func TestServer_Close(t *testing.T) {
	base, s := startServer(t, ringtest.Dir(t), nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	servetest.WantUnavailable(t, base+"/records", "error", ErrClosed.Error())
	servetest.WantUnavailable(t, base+"/healthz", "reason", ErrClosed.Error())
	s2, err := New(ringtest.Dir(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	ran := make(chan struct{})
	go func() { s2.Run(context.Background()); close(ran) }()
	select {
	case <-ran:
	case <-time.After(time.Minute):
		t.Fatal("Run after Close did not return")
	}
}

// TestNew_Errors: New refuses options out of range and a path that cannot be a ring
// directory, and accepts one where nothing is yet.
func TestNew_Errors(t *testing.T) {
	file := ringtest.Dir(t)
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dir  string
		opts Options
		want string
	}{
		{ringtest.Dir(t), Options{Buffer: -1}, "Buffer -1"},
		{ringtest.Dir(t), Options{Buffer: MaxBuffer + 1}, "Buffer"},
		{ringtest.Dir(t), Options{Stale: -time.Second}, "Stale"},
		{file, Options{}, "not a directory"},
	} {
		if s, err := New(tc.dir, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			if s != nil {
				s.Close()
			}
			t.Errorf("New(%s, %+v): %v; want an error saying %q", tc.dir, tc.opts, err, tc.want)
		}
	}
	s, err := New(ringtest.Dir(t), Options{})
	if err != nil {
		t.Fatalf("New where no ring is yet: %v", err)
	}
	defer s.Close()
	if waiting, err := s.Waiting(); !waiting || err != nil {
		t.Fatalf("Waiting with no ring: %v, %v", waiting, err)
	}
}
