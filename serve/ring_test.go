package serve

import (
	"os"
	"testing"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/internal/servetest"
	"github.com/filering/filering/publish"
)

// TestServe_RecordsRecreatedRing: after the ring directory is removed and a new producer
// creates the ring again at the same path, /records serves the new ring's records (it
// answered 404 "no ring in this directory" for ever, from the removed directory).
func TestServe_RecordsRecreatedRing(t *testing.T) {
	dir := ringtest.Dir(t)
	w, err := publish.Open(dir, publish.Options{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	servetest.AppendAll(t, w, "a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9", "a10")
	base, _ := startServer(t, dir, nil)
	var doc servetest.ValuesDoc
	if code := servetest.GetJSON(t, base+"/records?last=5", &doc); code != 200 || len(doc.Records) != 5 || doc.Records[4].Value != "a10" {
		t.Fatalf("first ring: %d %+v", code, doc)
	}

	w.Close()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	servetest.WantUnavailable(t, base+"/records?last=5", "error", "no ring at "+dir)

	w, err = publish.Open(dir, publish.Options{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	servetest.AppendAll(t, w, "b1", "b2", "b3")
	doc = servetest.ValuesDoc{}
	if code := servetest.GetJSON(t, base+"/records?last=5", &doc); code != 200 || len(doc.Records) != 3 ||
		doc.Records[0].Seq != 1 || doc.Records[0].Value != "b1" || doc.Records[2].Value != "b3" || doc.LastSeq != 3 {
		t.Fatalf("the ring created anew: %d %+v; want b1 to b3, seq 1 to 3", code, doc)
	}
	var h struct {
		OK          bool `json:"ok"`
		ProducerPID int  `json:"producer_pid"`
	}
	if code := servetest.GetJSON(t, base+"/healthz", &h); code != 200 || !h.OK || h.ProducerPID != os.Getpid() {
		t.Fatalf("healthz of the ring created anew: %d %+v", code, h)
	}
}

// TestServe_RingSourceRemovedDirectory: a directory held is let go of once it is removed, even
// when the path is given back to a directory that got the same inode number.
func TestServe_RingSourceRemovedDirectory(t *testing.T) {
	dir := ringtest.Dir(t)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src := newRingSource(dir)
	defer src.close()
	h, err := src.acquire()
	if err != nil {
		t.Fatal(err)
	}
	defer h.release()
	if !h.current() {
		t.Fatal("a directory just opened is not current")
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if h.current() {
		t.Fatal("a removed directory is still current")
	}
	if _, err := src.acquire(); !noRing(err) {
		t.Fatalf("acquire with no directory: %v; want no ring", err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	h2, err := src.acquire()
	if err != nil {
		t.Fatal(err)
	}
	defer h2.release()
	if h2 == h || !h2.current() {
		t.Fatal("the new directory was not opened")
	}
}
