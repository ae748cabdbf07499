package watch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/segment"
)

// missingRing writes a ring that lists n sealed segments of one record each whose files
// are gone (taken and finished), then a hot segment holding records n+1 to n+10.
func missingRing(t *testing.T, n int) string {
	dir := ringtest.Dir(t)
	const size = 4096
	hot := handSeg{Num: uint64(n) + 1, First: uint64(n) + 1, N: 10}
	ringtest.WriteRing(t, dir, size, 7, hot)
	m := readManifest(t, dir)
	es := make([]segment.Entry, 0, n+1)
	for i := 1; i <= n; i++ {
		es = append(es, segment.Entry{Name: segment.Name(uint64(i)), FirstSeq: uint64(i), LastSeq: uint64(i), Sealed: true})
	}
	m.Segments = append(es, m.Segments...)
	m.SegmentsMax = n + 1
	ringtest.PutManifest(t, dir, m)
	if _, err := os.Stat(filepath.Join(dir, segment.Name(1))); !os.IsNotExist(err) {
		t.Fatal("segment 1 exists")
	}
	return dir
}

// TestReaders_ListedMissingSegmentsCostLinear reads a ring that lists 12,000 segments
// whose files takers took: every reader opens each listed segment at most once or twice
// and reads the manifest a bounded number of times, instead of reading the manifest again
// for every missing file (which made `cat --last 10` take seconds with 1,302 of them, and
// more than 10 s with 12,000). Work is counted, not timed.
func TestReaders_ListedMissingSegmentsCostLinear(t *testing.T) {
	const n = 12000
	dir := missingRing(t, n)
	r := openRing(t, dir)
	work := func(what string, maxOpens, maxManifests int64, fn func()) {
		t.Helper()
		before := r.dir.Counts()
		fn()
		after := r.dir.Counts()
		// Opens count the manifest's too.
		opens, manifests := after.Opens-before.Opens-(after.Manifests-before.Manifests), after.Manifests-before.Manifests
		t.Logf("%s: %d opens of segments (or the lock), %d manifest reads", what, opens, manifests)
		if opens > maxOpens || manifests > maxManifests {
			t.Errorf("%s: %d opens and %d manifest reads for %d listed segments; want at most %d and %d",
				what, opens, manifests, n+1, maxOpens, maxManifests)
		}
	}
	work("snapshot --last 10", n+1, 2, func() {
		if got := collect(t, r, Selection{Last: 10}); !equal(got, span(n+1, n+10)) {
			t.Fatalf("last 10: %v", got)
		}
	})
	work("snapshot --last 20", n+1, 2, func() {
		if got := collect(t, r, Selection{Last: 20}); !equal(got, span(n+1, n+10)) {
			t.Fatalf("last 20: %v", got)
		}
	})
	work("snapshot", n+1, 2, func() {
		if got := collect(t, r, Selection{}); !equal(got, span(n+1, n+10)) {
			t.Fatalf("all: %d records", len(got))
		}
	})
	work("stat", n+2, 2, func() {
		st, err := r.Stat()
		if err != nil || st.Records != 10 || st.Segments != 1 {
			t.Fatalf("stat %+v, %v", st, err)
		}
	})
	// A follower that expects every record: the missing ones are one loss; waiting
	// after it costs a manifest read per wake-up, not an open per listed segment.
	work("follow from 1", n+1+10, 20, func() {
		f, err := r.Follow(Selection{From: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var losses []Loss
		f.OnLoss(func(l Loss) { losses = append(losses, l) })
		expectRecordsAfterLoss(t, f, n+1, n+10)
		if want := fmt.Sprint([]Loss{{1, n}}); fmt.Sprint(losses) != want {
			t.Fatalf("losses %v, want %s", losses, want)
		}
		for i := 0; i < 3; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			f.Next(ctx)
			cancel()
		}
	})
}

// expectRecordsAfterLoss reads records from..to from f, in order.
func expectRecordsAfterLoss(t *testing.T, f *Follower, from, to uint64) {
	t.Helper()
	for want := from; want <= to; want++ {
		if !nextWithin(f, 10*time.Second) || f.Record().Seq != want {
			t.Fatalf("want record %d: got %d, %v", want, f.Record().Seq, f.Err())
		}
	}
}
