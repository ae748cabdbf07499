package serve

import (
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/internal/servetest"
	"github.com/filering/filering/publish"
)

// healthDoc is the /healthz document.
type healthDoc struct {
	OK          *bool   `json:"ok"`
	Reason      *string `json:"reason"`
	LastSeq     uint64  `json:"last_seq"`
	Records     uint64  `json:"records"`
	ProducerPID *int    `json:"producer_pid"`
	Clients     *int    `json:"clients"`
}

// healthz gets /healthz and checks that the document has every field, a reason exactly
// when it is not ok, and status 200 exactly when it is.
func healthz(t *testing.T, base string) (int, healthDoc) {
	t.Helper()
	var h healthDoc
	code := servetest.GetJSON(t, base+"/healthz", &h)
	if h.OK == nil || h.Clients == nil || (h.Reason != nil) == *h.OK || (code == 200) != *h.OK {
		t.Fatalf("healthz: %d, ok %v, reason %v, clients %v", code, h.OK, h.Reason, h.Clients)
	}
	if h.Reason == nil {
		h.Reason = new(string)
	}
	return code, h
}

// TestServe_Healthz: /healthz is ok (200) only when a producer holds the ring's lock and,
// with --stale, the newest record is recent enough; otherwise it is 503 with the reason.
// It said ok with no producer at all.
func TestServe_Healthz(t *testing.T) {
	dir := ringtest.Dir(t)
	var ahead atomic.Int64 // how far the server's clock is ahead of the real one
	base, _ := startServer(t, dir, func(s *Server, _ *httptest.Server) {
		s.stale = 10 * time.Second
		s.now = func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	})

	if code, h := healthz(t, base); code != 503 || *h.Reason != "no ring at "+dir {
		t.Fatalf("no ring: %d %q", code, *h.Reason)
	}
	w, err := publish.Open(dir, publish.Options{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if code, h := healthz(t, base); code != 503 || *h.Reason != "the ring holds no record, --stale is 10s" {
		t.Fatalf("no record yet: %d %q", code, *h.Reason)
	}
	servetest.AppendAll(t, w, "1", "2", "3")
	if code, h := healthz(t, base); code != 200 || h.LastSeq != 3 || h.Records != 3 ||
		h.ProducerPID == nil || *h.ProducerPID != os.Getpid() {
		t.Fatalf("with a producer and fresh records: %d %+v", code, h)
	}

	// The newest record is 42s old by a clock 42s ahead.
	ahead.Store(int64(42 * time.Second))
	if code, h := healthz(t, base); code != 503 || *h.Reason != "newest record is 42s old, --stale is 10s" ||
		h.LastSeq != 3 || h.ProducerPID == nil {
		t.Fatalf("stale: %d %q %+v", code, *h.Reason, h)
	}
	ahead.Store(0)

	w.Close()
	if code, h := healthz(t, base); code != 503 || *h.Reason != "no producer holds the ring" || h.ProducerPID != nil || h.LastSeq != 3 {
		t.Fatalf("no producer: %d %q %+v", code, *h.Reason, h)
	}
}

// TestServe_HealthzNoStale: without --stale, old records and a ring with no record are
// healthy as long as a producer runs; with no producer, it is not.
func TestServe_HealthzNoStale(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := publish.Open(dir, publish.Options{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	base, _ := startServer(t, dir, func(s *Server, _ *httptest.Server) {
		s.now = func() time.Time { return time.Now().Add(1000 * time.Hour) }
	})
	if code, h := healthz(t, base); code != 200 {
		t.Fatalf("no record: %d %q", code, *h.Reason)
	}
	servetest.AppendAll(t, w, "1")
	if code, h := healthz(t, base); code != 200 {
		t.Fatalf("an old record: %d %q", code, *h.Reason)
	}
	w.Close()
	if code, h := healthz(t, base); code != 503 || *h.Reason != "no producer holds the ring" {
		t.Fatalf("no producer: %d %q", code, *h.Reason)
	}
}
