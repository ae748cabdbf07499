package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/filering/filering/internal/ringtest"
)

// statDoc is the document `filering stat --json` prints.
type statDoc struct {
	Dir         string          `json:"dir"`
	FirstSeq    uint64          `json:"first_seq"`
	LastSeq     uint64          `json:"last_seq"`
	Records     uint64          `json:"records"`
	Segments    int             `json:"segments"`
	SegmentsMax int             `json:"segments_max"`
	SegmentSize int64           `json:"segment_size"`
	HotSegment  string          `json:"hot_segment"`
	Generation  uint64          `json:"generation"`
	ProducerPID json.RawMessage `json:"producer_pid"`
	TmpFS       bool            `json:"tmpfs"`
}

func stat(t *testing.T, dir string) statDoc {
	t.Helper()
	out := mustRun(t, nil, "stat", "--json", dir)
	var st statDoc
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("stat --json: %v: %q", err, out)
	}
	return st
}

// TestCat_TailAfterWrap fills a small ring many times over and checks that cat prints
// exactly the records the last segments_max segments hold, and that stat agrees.
func TestCat_TailAfterWrap(t *testing.T) {
	const (
		n        = 200000
		segSize  = 64 << 10
		segments = 8
		// Every payload here has at most 6 bytes: 24 + 6 rounded up to 8 is 32 bytes a
		// record, so a segment holds (segSize - 64) / 32 records (docs/FORMAT.md).
		perSegment = (segSize - 64) / 32
	)
	dir := ring(t)
	r := run(t, lines(n), "produce", "--segment-size", "64KiB", "--segments", strconv.Itoa(segments), dir)
	if r.code != 0 || !producerLogOK(r.stderr) {
		t.Fatalf("produce: %v", r)
	}

	out := mustRun(t, nil, "cat", dir)
	var got []int
	for _, line := range bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n")) {
		k, err := strconv.Atoi(string(line))
		if err != nil {
			t.Fatalf("cat printed %q: %v", line, err)
		}
		if len(got) > 0 && k != got[len(got)-1]+1 {
			t.Fatalf("cat printed %d after %d", k, got[len(got)-1])
		}
		got = append(got, k)
	}
	// Segments fill up one after the other, so the ring keeps the last partial one and
	// the segments-1 full ones before it.
	wantCount := (segments-1)*perSegment + n%perSegment
	if len(got) != wantCount || got[len(got)-1] != n {
		t.Fatalf("cat printed %d records ending at %v, want %d records ending at %d", len(got), got[max(len(got)-1, 0):], wantCount, n)
	}

	st := stat(t, dir)
	want := statDoc{Dir: dir, FirstSeq: uint64(got[0]), LastSeq: n, Records: uint64(len(got)), Segments: segments,
		SegmentsMax: segments, SegmentSize: segSize, HotSegment: "", Generation: st.Generation,
		ProducerPID: json.RawMessage("null"), TmpFS: st.TmpFS}
	if fmt.Sprint(st) != fmt.Sprint(want) {
		t.Errorf("stat --json:\n got %+v\nwant %+v", st, want)
	}
	if st.TmpFS != (filepath.Dir(filepath.Dir(dir)) == "/dev/shm") {
		t.Errorf("stat --json says tmpfs %v for %s", st.TmpFS, dir)
	}
}

// TestCat_ConcurrentWithProducer runs snapshots in parallel, again and again, while a
// producer appends and rolls as fast as it can: every snapshot must be a run of
// consecutive records with the right payloads, and never end before an earlier one.
func TestCat_ConcurrentWithProducer(t *testing.T) {
	dir := ring(t)
	p := startProducer(t, dir, "--segment-size", "64KiB", "--segments", "8")
	// Line k is "k", and is record k of this new ring. Up to 500 lines a millisecond:
	// a roll every few milliseconds, and CPU left for the readers.
	f := feed(p.stdin, feedOptions{chunk: 500, pause: time.Millisecond})
	waitFor(t, 10*time.Second, "manifest", func() bool { return exists(filepath.Join(dir, "manifest")) })

	readers, rounds := 3, short(12, 5)
	var wg sync.WaitGroup
	var mu sync.Mutex
	nonEmpty, total := 0, 0
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var prevLast uint64
			for round := range rounds {
				r, err := execute(nil, "cat", "--format", "json", dir)
				if err != nil {
					t.Error(err)
					return
				}
				if r.code != 0 || len(r.stderr) != 0 {
					t.Errorf("reader %d, round %d: cat: %v", i, round, r)
					return
				}
				recs, err := parseJSON(r.stdout, false)
				if err == nil {
					err = checkNumbered(recs)
				}
				if err != nil {
					t.Errorf("reader %d, round %d: %v", i, round, err)
					return
				}
				if len(recs) == 0 {
					continue
				}
				last := recs[len(recs)-1].Seq
				if last < prevLast {
					t.Errorf("reader %d, round %d: snapshot ends at %d, an earlier one at %d", i, round, last, prevLast)
				}
				prevLast = last
				mu.Lock()
				nonEmpty++
				total += len(recs)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if p.exited() {
		t.Fatalf("producer exited while the readers ran: %v, stderr %q", p.err, p.stderr.Bytes())
	}
	written := f.halt()
	if code := p.wait(); code != 0 || !producerLogOK(p.stderr.Bytes()) {
		t.Fatalf("producer: exit %d, stderr %q", code, p.stderr.Bytes())
	}
	t.Logf("%d lines written; %d of %d snapshots non-empty, %d records read", written, nonEmpty, readers*rounds, total)
	if nonEmpty < readers*rounds/2 {
		t.Errorf("only %d of %d snapshots held records", nonEmpty, readers*rounds)
	}

	recs, err := parseJSON(mustRun(t, nil, "cat", "--format", "json", dir), false)
	if err == nil {
		err = checkNumbered(recs)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) == 0 || recs[len(recs)-1].Seq != uint64(written) {
		t.Fatalf("after the producer ended, cat shows %d records, want the last to be %d", len(recs), written)
	}
}

// TestReaders_NegativeTimes reads a ring whose records have times before 1970 (a clock
// set back, or a producer in another language): with no --since they are ordinary
// records, for cat, cat --last, watch, take and stat alike. Before, cat and watch dropped
// them silently (no --since was taken as "since 1970"), and `cat --last 2` printed one.
func TestReaders_NegativeTimes(t *testing.T) {
	dir := ring(t)
	// Record s was appended s ns before 1970, but for record 3, 1 ns after.
	at := func(s uint64) int64 {
		if s == 3 {
			return 1
		}
		return -int64(s)
	}
	ringtest.WriteRing(t, dir, 4096, 1,
		handSeg{Num: 1, First: 1, N: 2, Sealed: true, At: at},
		handSeg{Num: 2, First: 3, N: 2, Sealed: true, At: at},
		handSeg{Num: 3, First: 5, N: 1, At: at})
	line := func(seq uint64) string {
		return fmt.Sprintf(`{"seq":%d,"time":"%s","data":"%d"}`+"\n", seq,
			time.Unix(0, at(seq)).UTC().Format("2006-01-02T15:04:05.000000000Z"), seq)
	}
	want := func(seqs ...uint64) string {
		var b strings.Builder
		for _, s := range seqs {
			b.WriteString(line(s))
		}
		return b.String()
	}
	if got := string(mustRun(t, nil, "cat", "--format", "json", dir)); got != want(1, 2, 3, 4, 5) {
		t.Errorf("cat:\n%s\nwant\n%s", got, want(1, 2, 3, 4, 5))
	}
	if !strings.HasPrefix(line(1), `{"seq":1,"time":"1969-12-31T23:59:59.999999999Z"`) {
		t.Errorf("record 1 prints as %q", line(1))
	}
	if got := string(mustRun(t, nil, "cat", "--format", "json", "--last", "2", dir)); got != want(4, 5) {
		t.Errorf("cat --last 2: %q, want %q", got, want(4, 5))
	}
	if got := string(mustRun(t, nil, "cat", "--format", "json", "--since", "1h", dir)); got != "" {
		t.Errorf("cat --since 1h: %q, want nothing", got)
	}
	w := startProc(t, "watch", "--all", "--format", "json", dir)
	w.waitOutput(10*time.Second, "record 5", func(b []byte) bool { return lastSeq(b) == 5 })
	w.interrupt()
	if got := string(w.stdout.Bytes()); got != want(1, 2, 3, 4, 5) || len(w.stderr.Bytes()) != 0 {
		t.Errorf("watch: %q, %q", got, w.stderr.Bytes())
	}
	st := stat(t, dir)
	if st.Records != 5 || st.FirstSeq != 1 || st.LastSeq != 5 {
		t.Errorf("stat: %+v", st)
	}
	if got := string(mustRun(t, nil, "take", "--format", "json", dir)); got != want(1, 2, 3, 4) {
		t.Errorf("take: %q, want the sealed segments' %q", got, want(1, 2, 3, 4))
	}
}
