package serve

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/internal/servetest"
	"github.com/filering/filering/publish"
	"github.com/filering/filering/segment"
)

// bigRecords is how many records of bigPayload bytes make about 28 MB, more than a
// stalled client's socket buffers can take.
const bigRecords, bigPayload = 14000, 2000

// bigRing returns a ring of 4 MiB segments holding n records (at most bigRecords) of
// bigPayload bytes, numbered 1 to n, with its producer still running.
func bigRing(t *testing.T, n int) string {
	t.Helper()
	dir := ringtest.Dir(t)
	w, err := publish.Open(dir, publish.Options{SegmentSize: 4 << 20, Segments: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	payload := []byte(strings.Repeat("x", bigPayload))
	batch := make([][]byte, 100)
	for i := range batch {
		batch[i] = payload
	}
	for done := 0; done < n; done += len(batch) {
		if _, _, err := w.AppendBatch(batch[:min(len(batch), n-done)]); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// writeMeter wraps a ResponseWriter and keeps the size of the largest single Write: what
// a handler held in memory at once for its response.
type writeMeter struct {
	http.ResponseWriter
	largest *atomic.Int64
}

func (m writeMeter) Write(p []byte) (int, error) {
	for n := m.largest.Load(); int64(len(p)) > n && !m.largest.CompareAndSwap(n, int64(len(p))); n = m.largest.Load() {
	}
	return m.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the real ResponseWriter.
func (m writeMeter) Unwrap() http.ResponseWriter { return m.ResponseWriter }

// seqsDoc is a /records document with only what these tests check of it.
type seqsDoc struct {
	Records []struct {
		Seq uint64 `json:"seq"`
	} `json:"records"`
	LastSeq uint64 `json:"last_seq"`
	Error   string `json:"error"`
}

// TestServe_RecordsMemoryBounded: many concurrent /records?last=100000 on a ring of 2 KB
// records (12 MB each) get every record, while what the server holds for them stays
// within a few write buffers per request and at most RecordsConcurrent requests read the
// ring at once. Before, each response was built whole in memory.
func TestServe_RecordsMemoryBounded(t *testing.T) {
	const records = 6000
	dir := bigRing(t, records)
	var largest atomic.Int64
	base, s := startServer(t, dir, func(s *Server, ts *httptest.Server) {
		s.limits.queueWait = 10 * time.Minute // all get their turn: 503 is tested elsewhere
		ts.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.ServeHTTP(writeMeter{w, &largest}, r)
		})
	})
	const clients = 12
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(base + "/records?last=100000")
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var doc seqsDoc
			if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
				t.Errorf("status %d: %v", resp.StatusCode, err)
				return
			}
			if resp.StatusCode != 200 || len(doc.Records) != records || doc.LastSeq != records || doc.Error != "" {
				t.Errorf("status %d, %d records, last_seq %d, error %q; want 200, %d records",
					resp.StatusCode, len(doc.Records), doc.LastSeq, doc.Error, records)
				return
			}
			for i, r := range doc.Records {
				if r.Seq != uint64(i+1) {
					t.Errorf("record %d has seq %d", i, r.Seq)
					return
				}
			}
		}()
	}
	wg.Wait()
	// A request's buffer: recordsChunk and room for the record that fills it.
	perRequest := int64(recordsChunk + recordsChunk/4)
	if peak := s.limits.peak.Load(); peak <= 0 || peak > RecordsConcurrent*perRequest {
		t.Errorf("the /records responses held up to %d bytes at once; want at most %d (%d requests of %d)",
			peak, RecordsConcurrent*perRequest, RecordsConcurrent, perRequest)
	}
	if n := largest.Load(); n > perRequest {
		t.Errorf("a response was written %d bytes at once; want at most %d", n, perRequest)
	}
	// The handlers let go of their buffers just after the clients have read the end.
	waitUntil(t, "the handlers to release their buffers", func() bool { return s.limits.held.Load() == 0 })
}

// stalledClient sends GET path and then reads nothing, with a receive buffer of 4 KiB, so
// that the server's writes block once its send buffer is full.
func stalledClient(t *testing.T, base, path string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		c.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return err
	}}
	conn, err := d.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	return conn
}

// smallSendBuffers gives the server's connections a send buffer of 16 KiB, so that
// whatever the system's limits a stalled client blocks the server's writes to it soon.
func smallSendBuffers(ts *httptest.Server) {
	ts.Config.ConnState = func(c net.Conn, st http.ConnState) {
		if tc, ok := c.(*net.TCPConn); ok && st == http.StateNew {
			tc.SetWriteBuffer(16 << 10)
		}
	}
}

// waitUntil polls cond until it holds, failing the test after a generous minute.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

// TestServe_RecordsBusy: when as many /records requests as allowed are reading the ring
// (here two clients that read nothing of a 28 MB answer), one more is answered 503 with
// Retry-After and a message that gives the limit, and is served again once they go away.
func TestServe_RecordsBusy(t *testing.T) {
	dir := bigRing(t, bigRecords)
	base, s := startServer(t, dir, func(s *Server, ts *httptest.Server) {
		s.limits = newRecordsLimits(2)
		s.limits.queueWait = 50 * time.Millisecond
		smallSendBuffers(ts)
	})
	a := stalledClient(t, base, "/records?last=100000")
	b := stalledClient(t, base, "/records?last=100000")
	waitUntil(t, "both stalled requests to read the ring", func() bool { return s.limits.active() == 2 })

	resp, err := http.Get(base + "/records?last=5")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e struct{ Error string }
	json.Unmarshal(body, &e)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(e.Error, "at most 2") {
		t.Fatalf("a third request: %d, Retry-After %q, %s; want 503 with Retry-After and the limit",
			resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	// Long polls take a turn only once they have something to read: /healthz and the
	// event streams are not limited at all.
	var h struct{ OK bool }
	if code := servetest.GetJSON(t, base+"/healthz", &h); code != 200 || !h.OK {
		t.Fatalf("healthz while /records is busy: %d %+v", code, h)
	}

	a.Close()
	b.Close()
	waitUntil(t, "the stalled requests to end", func() bool { return s.limits.active() == 0 })
	var doc seqsDoc
	if code := servetest.GetJSON(t, base+"/records?last=5", &doc); code != 200 || len(doc.Records) != 5 || doc.LastSeq != bigRecords {
		t.Fatalf("after the stalled clients left: %d %+v", code, doc)
	}
	// The handlers let go of their buffers just after the clients have read the end.
	waitUntil(t, "the handlers to release their buffers", func() bool { return s.limits.held.Load() == 0 })
}

// TestServe_RecordsStalledClientCutOff: a client that accepts no byte of its answer for
// the stall timeout is cut off, and gives its turn back.
func TestServe_RecordsStalledClientCutOff(t *testing.T) {
	dir := bigRing(t, bigRecords)
	base, s := startServer(t, dir, func(s *Server, ts *httptest.Server) {
		s.limits.stall = 100 * time.Millisecond
		smallSendBuffers(ts)
	})
	stalledClient(t, base, "/records?last=100000")
	waitUntil(t, "the stalled request to read the ring", func() bool { return s.limits.active() == 1 })
	waitUntil(t, "the stalled request to be cut off", func() bool { return s.limits.active() == 0 })
	if held := s.limits.held.Load(); held != 0 {
		t.Errorf("%d bytes still held after the response was cut off", held) // released before the turn
	}
}

// TestServe_RecordsLastLimit: last= above the documented maximum is refused with a 400
// that gives the limit, on /records and /events alike; last=0 answers no record but the
// newest sequence number.
func TestServe_RecordsLastLimit(t *testing.T) {
	base, _ := startServe(t, 20)
	for _, path := range []string{"/records?last=100001", "/records?last=18446744073709551616", "/events?last=100001"} {
		var e struct{ Error string }
		if code := servetest.GetJSON(t, base+path, &e); code != 400 || !strings.Contains(e.Error, "100000") {
			t.Errorf("%s: %d %q; want 400 naming the limit 100000", path, code, e.Error)
		}
	}
	var doc seqsDoc
	if code := servetest.GetJSON(t, base+"/records?last=100000", &doc); code != 200 || len(doc.Records) != 20 {
		t.Errorf("last=100000: %d, %d records", code, len(doc.Records))
	}
	doc = seqsDoc{}
	if code := servetest.GetJSON(t, base+"/records?last=0", &doc); code != 200 || len(doc.Records) != 0 || doc.LastSeq != 20 {
		t.Errorf("last=0: %d %+v; want no record and last_seq 20", code, doc)
	}
}

// TestServe_RecordsLongPayload: a payload longer than what is encoded at a time, with
// characters of several bytes and bytes that are not UTF-8 across the cuts, comes out
// whole and as the short path would encode it.
func TestServe_RecordsLongPayload(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := publish.Open(dir, publish.Options{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	payload := []byte(strings.Repeat("é\"\n\x01€𝄞", 3*recordsPiece/10))
	payload = append(payload, 0xff, 'z')
	if _, err := w.Append(payload); err != nil {
		t.Fatal(err)
	}
	base, _ := startServer(t, dir, nil)
	var doc struct {
		Records []struct{ Value string } `json:"records"`
	}
	if code := servetest.GetJSON(t, base+"/records?last=1", &doc); code != 200 || len(doc.Records) != 1 {
		t.Fatalf("%d %+v", code, doc)
	}
	want := strings.ToValidUTF8(string(payload), "\uFFFD")
	if got := doc.Records[0].Value; got != want {
		t.Fatalf("value of %d bytes, want %d bytes as sent", len(got), len(want))
	}
}

// TestServe_RecordsLastSeq: last_seq is the last record answered, not a newer one the
// event hub has seen meanwhile, which a client would take as read and never ask for;
// with no record to answer it is the ring's newest, never above after=.
func TestServe_RecordsLastSeq(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := publish.Open(dir, publish.Options{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := 1; i <= 50; i++ {
		servetest.AppendAll(t, w, fmt.Sprint(i))
	}
	s := newServer(dir, 1000)
	defer s.Close()
	// The hub, fed by hand, has seen records up to 100 that the ring does not hold (yet).
	for seq := uint64(1); seq <= 100; seq++ {
		s.hub.add(seq, appendEvent(nil, segment.Record{Seq: seq, Data: []byte("x")}))
	}
	ts := httptest.NewServer(s)
	defer ts.Close()
	for _, tc := range []struct {
		query         string
		n             int
		first, lastSq uint64
	}{
		{"last=5", 5, 46, 50},
		{"after=47&last=5", 3, 48, 50},
		{"after=50", 0, 0, 50},
		{"after=70", 0, 0, 50},
		{"last=0", 0, 0, 50},
	} {
		var doc seqsDoc
		code := servetest.GetJSON(t, ts.URL+"/records?"+tc.query, &doc)
		if code != 200 || len(doc.Records) != tc.n || (tc.n > 0 && doc.Records[0].Seq != tc.first) || doc.LastSeq != tc.lastSq {
			t.Errorf("%s: %d %+v; want %d records from %d, last_seq %d", tc.query, code, doc, tc.n, tc.first, tc.lastSq)
		}
	}
}
