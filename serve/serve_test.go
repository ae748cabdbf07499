package serve

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/internal/servetest"
	"github.com/filering/filering/publish"
	"github.com/filering/filering/segment"
)

// startServe runs a Server over real HTTP on a loopback port, with n records
// already in the ring, and returns the base URL and the producer.
func startServe(t *testing.T, n int) (string, *publish.Writer) {
	t.Helper()
	dir := ringtest.Dir(t)
	w, err := publish.Open(dir, publish.Options{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	for i := 1; i <= n; i++ {
		w.Append([]byte(strconv.Itoa(i)))
	}
	base, _ := startServer(t, dir, nil)
	return base, w
}

// startServer runs the Server of the ring at dir, which need not exist yet, over
// real HTTP on a loopback port, and returns the base URL and the server. setup, when not
// nil, may change the server and the HTTP server (its handler, hooks) before they start.
func startServer(t *testing.T, dir string, setup func(*Server, *httptest.Server)) (string, *Server) {
	t.Helper()
	s, err := New(dir, Options{Buffer: 1000})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(s)
	if setup != nil {
		setup(s, ts)
	}
	done := make(chan struct{})
	go func() { s.Run(context.Background()); close(done) }()
	ts.Start()
	// Close stops Run.
	t.Cleanup(func() { ts.Close(); s.Close(); <-done })
	return ts.URL, s
}

type recordsDoc struct {
	Records []struct {
		Seq    uint64 `json:"seq"`
		TimeNS int64  `json:"time_ns"`
		Value  any    `json:"value"`
	} `json:"records"`
	LastSeq uint64 `json:"last_seq"`
}

func TestServe_Records(t *testing.T) {
	base, w := startServe(t, 50)
	var doc recordsDoc
	if code := servetest.GetJSON(t, base+"/records?last=5", &doc); code != 200 || len(doc.Records) != 5 ||
		doc.Records[0].Seq != 46 || doc.Records[4].Value != float64(50) || doc.LastSeq != 50 {
		t.Fatalf("last=5: %d %+v", code, doc)
	}
	// Long poll: the request waits for a record that arrives later.
	go func() {
		time.Sleep(100 * time.Millisecond)
		w.Append([]byte("hello"))
	}()
	start := time.Now()
	doc = recordsDoc{}
	servetest.GetJSON(t, base+"/records?after=50&wait=60", &doc)
	if len(doc.Records) != 1 || doc.Records[0].Seq != 51 || doc.Records[0].Value != "hello" {
		t.Fatalf("long poll: %+v", doc)
	}
	if time.Since(start) >= 60*time.Second {
		t.Fatal("long poll ran to its wait instead of returning when the record arrived")
	}
	var e struct{ Error string }
	if code := servetest.GetJSON(t, base+"/records?last=x", &e); code != 400 || e.Error == "" {
		t.Fatalf("bad query: %d %+v", code, e)
	}
	var h struct {
		OK      bool   `json:"ok"`
		LastSeq uint64 `json:"last_seq"`
	}
	if servetest.GetJSON(t, base+"/healthz", &h); !h.OK || h.LastSeq != 51 {
		t.Fatalf("healthz %+v", h)
	}
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := bufioRead(resp)
	if resp.StatusCode != 200 || !strings.Contains(n, "FILERING_EVENTS") || !strings.Contains(n, "<canvas") {
		t.Fatalf("page: %d", resp.StatusCode)
	}
}

func bufioRead(resp *http.Response) (string, error) {
	defer resp.Body.Close()
	var sb strings.Builder
	_, err := bufio.NewReader(resp.Body).WriteTo(&sb)
	return sb.String(), err
}

func TestServe_EventsResume(t *testing.T) {
	base, w := startServe(t, 100)
	go func() {
		time.Sleep(50 * time.Millisecond)
		for i := 0; i < 20; i++ {
			w.Append([]byte("live"))
		}
	}()
	ids := servetest.SSE(t, base+"/events", "90", 30)
	for i, id := range ids {
		if id != uint64(91+i) {
			t.Fatalf("event %d has id %d, want %d (ids %v)", i, id, 91+i, ids)
		}
	}
	if len(ids) != 30 {
		t.Fatalf("got %d events", len(ids))
	}
	// Resuming from before what the hub keeps reads the ring itself.
	if ids := servetest.SSE(t, base+"/events?after=2", "", 5); len(ids) != 5 || ids[0] != 3 {
		t.Fatalf("resume from the ring: %v", ids)
	}
}

// Fifty clients stream at once while one client stalls (never reads): every reading
// client still gets every record.
func TestServe_ManyClientsOneStalled(t *testing.T) {
	base, w := startServe(t, 0)
	// The stalled client: connects, then reads nothing.
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /events?after=0 HTTP/1.1\r\nHost: x\r\n\r\n")

	const clients, records = 50, 2000
	var wg sync.WaitGroup
	results := make([][]uint64, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i] = servetest.SSE(t, base+"/events?after=0", "", records)
		}(i)
	}
	time.Sleep(200 * time.Millisecond)
	// 4 MB in all: far more than the socket buffers of the stalled client can absorb.
	payload := strings.Repeat("x", 2000)
	for i := 0; i < records; i++ {
		if _, err := w.Append([]byte(payload)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	for i, ids := range results {
		if len(ids) != records || ids[0] != 1 || ids[records-1] != records {
			t.Fatalf("client %d got %d events", i, len(ids))
		}
	}
}

// A client that has seen numbers the ring never reached (it was created anew) is told
// to start over and gets the new ring's records.
func TestServe_EventsRestart(t *testing.T) {
	base, _ := startServe(t, 10)
	sc, done := servetest.EventStream(t, base+"/events", "5000")
	defer done()
	if sc == nil {
		t.FailNow()
	}
	var restart bool
	var ids []string
	for len(ids) < 10 && sc.Scan() {
		if sc.Text() == "event: restart" {
			restart = true
		}
		if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
			ids = append(ids, id)
		}
	}
	if !restart || len(ids) != 10 || ids[0] != "1" {
		t.Fatalf("restart %v, ids %v", restart, ids)
	}
}

// TestHub_ResumeWhileCatchingUp: a stream that resumes beyond the newest record the hub
// holds, while the hub is still reading the ring, waits for the hub; once the hub has
// read all the ring holds, the same request means the ring was created anew.
func TestHub_ResumeWhileCatchingUp(t *testing.T) {
	h := newHub(100)
	for seq := uint64(1); seq <= 50; seq++ {
		h.add(seq, appendEvent(nil, segment.Record{Seq: seq, Data: []byte("x")}))
	}
	epoch := h.clients(+1)
	events, next, _, behind := h.since(91, &epoch, nil)
	if len(events) != 0 || next != 91 || behind {
		t.Fatalf("while catching up: %q, next %d, behind %v; want nothing, next 91", events, next, behind)
	}
	h.caughtUp()
	events, next, _, _ = h.since(91, &epoch, nil)
	if !strings.HasPrefix(string(events), "event: restart\n") || next != 51 {
		t.Fatalf("caught up: %q, next %d; want a restart and the records from 1", events, next)
	}
}

// TestServe_ResumeAheadOfHub: an event stream resuming with an id the hub has not read yet
// (taken from /records, which reads the ring itself) gets the records after it once the
// hub reads them, with no restart event.
func TestServe_ResumeAheadOfHub(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := publish.Open(dir, publish.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	s := newServer(dir, 1000)
	defer s.Close()
	// The hub is fed by hand: it has read records 1 to 50 of a ring that holds 100.
	rec := func(seq uint64) []byte { return appendEvent(nil, segment.Record{Seq: seq, Data: []byte("x")}) }
	for seq := uint64(1); seq <= 50; seq++ {
		s.hub.add(seq, rec(seq))
	}
	s.hub.caughtUp()
	ts := httptest.NewServer(s)
	defer ts.Close()
	go func() {
		time.Sleep(100 * time.Millisecond)
		for seq := uint64(51); seq <= 100; seq++ {
			s.hub.add(seq, rec(seq))
		}
	}()
	sc, done := servetest.EventStream(t, ts.URL+"/events", "80")
	defer done()
	if sc == nil {
		t.FailNow()
	}
	for want := uint64(81); want <= 100 && sc.Scan(); {
		line := sc.Text()
		if strings.HasPrefix(line, "event: ") {
			t.Fatalf("before record %d: %q", want, line)
		}
		if id, ok := strings.CutPrefix(line, "id: "); ok {
			if n, _ := strconv.ParseUint(id, 10, 64); n != want {
				t.Fatalf("event id %d, want %d", n, want)
			}
			want++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestServe_IDsAtTopOfRange: ids and sequence numbers at the top of the uint64 range are
// ids ahead of the ring like any other: a stream resuming after 2^64-1 is told the ring
// restarted and gets its records from 1 (the next id wrapped to 0 and the stream
// replayed the ring with no restart event), and /records after it has nothing.
func TestServe_IDsAtTopOfRange(t *testing.T) {
	base, _ := startServe(t, 10)
	for _, tc := range []struct{ url, lastID string }{
		{base + "/events", "18446744073709551615"},
		{base + "/events", "18446744073709551614"},
		{base + "/events?after=18446744073709551615", ""},
		{base + "/events?after=9223372036854775808", ""},
	} {
		sc, done := servetest.EventStream(t, tc.url, tc.lastID)
		if sc == nil {
			t.FailNow()
		}
		var restart bool
		var ids []string
		for len(ids) < 10 && sc.Scan() {
			if sc.Text() == "event: restart" {
				restart = len(ids) == 0
			}
			if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
				ids = append(ids, id)
			}
		}
		done()
		if !restart || len(ids) != 10 || ids[0] != "1" || ids[9] != "10" {
			t.Errorf("%s Last-Event-ID %q: restart first %v, ids %v; want a restart, then 1 to 10", tc.url, tc.lastID, restart, ids)
		}
	}
	for _, after := range []string{"18446744073709551615", "18446744073709551614", "9223372036854775807"} {
		var doc recordsDoc
		if code := servetest.GetJSON(t, base+"/records?after="+after+"&last=5", &doc); code != 200 || len(doc.Records) != 0 || doc.LastSeq != 10 {
			t.Errorf("/records?after=%s: %d %+v; want no record, last_seq 10", after, code, doc)
		}
	}
	var e struct{ Error string }
	if code := servetest.GetJSON(t, base+"/records?after=18446744073709551616", &e); code != 400 || e.Error == "" {
		t.Errorf("after=2^64: %d %q; want 400", code, e.Error)
	}
	req, _ := http.NewRequest("GET", base+"/events", nil)
	req.Header.Set("Last-Event-ID", "18446744073709551616")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("Last-Event-ID 2^64: %d; want 400", resp.StatusCode)
	}
}

// TestServe_EventsFreshHub: an event stream that starts with the last N records right
// after the Server starts, before its hub has read the ring, gets those records, not
// every record from sequence 1.
func TestServe_EventsFreshHub(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := publish.Open(dir, publish.Options{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := 0; i < 500; i++ {
		w.Append([]byte(strconv.Itoa(i)))
	}
	for range 5 {
		base, _ := startServer(t, dir, nil)
		if ids := servetest.SSE(t, base+"/events?last=2", "", 2); fmt.Sprint(ids) != "[499 500]" {
			t.Fatalf("/events?last=2 at the start: %v, want [499 500]", ids)
		}
	}
}
