package watch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/publish"
	"github.com/filering/filering/segment"
)

// produce appends records "1".."n" (payload = decimal sequence number) to a new ring.
func produce(t testing.TB, dir string, opts publish.Options, n int) *publish.Writer {
	t.Helper()
	w, err := publish.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		seq, err := w.Append([]byte(fmt.Sprint(w.NextSeq())))
		if err != nil {
			t.Fatal(err)
		}
		_ = seq
	}
	return w
}

func openRing(t testing.TB, dir string) *Ring {
	t.Helper()
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func collect(t testing.TB, r *Ring, sel Selection) []uint64 {
	t.Helper()
	s, err := r.Snapshot(sel)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var seqs []uint64
	for s.Next() {
		rec := s.Record()
		if string(rec.Data) != fmt.Sprint(rec.Seq) {
			t.Fatalf("record %d carries %q", rec.Seq, rec.Data)
		}
		seqs = append(seqs, rec.Seq)
	}
	if s.Err() != nil {
		t.Fatal(s.Err())
	}
	return seqs
}

func span(a, b uint64) []uint64 {
	var s []uint64
	for i := a; i <= b; i++ {
		s = append(s, i)
	}
	return s
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSnapshot_Selections(t *testing.T) {
	dir := ringtest.Dir(t)
	// 4 KiB segments hold ~150 of these records: 1000 records fill 7 or so, 4 retained.
	w := produce(t, dir, publish.Options{SegmentSize: 4096, Segments: 4}, 1000)
	defer w.Close()
	r := openRing(t, dir)
	all := collect(t, r, Selection{})
	if len(all) == 0 || all[len(all)-1] != 1000 || !equal(all, span(all[0], 1000)) {
		t.Fatalf("all: %d records, %v...", len(all), all[:min(3, len(all))])
	}
	first := all[0]
	cases := []struct {
		name string
		sel  Selection
		want []uint64
	}{
		{"last 1", Selection{Last: 1}, span(1000, 1000)},
		{"last 10", Selection{Last: 10}, span(991, 1000)},
		{"last more than the hot segment", Selection{Last: 300}, span(701, 1000)},
		{"last more than retained", Selection{Last: 100000}, all},
		{"from", Selection{From: 900}, span(900, 1000)},
		{"from before the oldest", Selection{From: 1}, all},
		{"from beyond the newest", Selection{From: 5000}, nil},
		{"from and last", Selection{From: 990, Last: 5}, span(996, 1000)},
		{"last capped by from", Selection{From: 998, Last: 50}, span(998, 1000)},
		{"since the future", Selection{Since: time.Now().Add(time.Hour)}, nil},
		{"since the past", Selection{Since: time.Now().Add(-time.Hour)}, all},
		{"since the past, last 3", Selection{Since: time.Now().Add(-time.Hour), Last: 3}, span(998, 1000)},
	}
	_ = first
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := collect(t, r, c.sel); !equal(got, c.want) {
				t.Fatalf("got %d records %v..., want %d", len(got), got[:min(5, len(got))], len(c.want))
			}
		})
	}
}

func TestSnapshot_EmptyRing(t *testing.T) {
	dir := ringtest.Dir(t)
	w := produce(t, dir, publish.Options{}, 0)
	defer w.Close()
	r := openRing(t, dir)
	if got := collect(t, r, Selection{Last: 5}); len(got) != 0 {
		t.Fatalf("empty ring gave %v", got)
	}
	st, err := r.Stat()
	if err != nil || st.Records != 0 || st.ProducerPID != os.Getpid() {
		t.Fatalf("stat %+v %v", st, err)
	}
}

func TestSnapshot_NoRing(t *testing.T) {
	dir := ringtest.Dir(t)
	os.MkdirAll(dir, 0o750)
	r := openRing(t, dir)
	if _, err := r.Snapshot(Selection{}); !errors.Is(err, ErrNoRing) {
		t.Fatalf("Snapshot of an empty directory: %v", err)
	}
}

// A segment taken (renamed away) while the manifest still lists it is skipped.
func TestSnapshot_VanishedSegment(t *testing.T) {
	dir := ringtest.Dir(t)
	w := produce(t, dir, publish.Options{SegmentSize: 4096, Segments: 8}, 600)
	w.Close()
	r := openRing(t, dir)
	m, _ := r.Manifest()
	gone := m.Segments[1]
	if err := os.Rename(filepath.Join(dir, gone.Name), filepath.Join(dir, "elsewhere")); err != nil {
		t.Fatal(err)
	}
	got := collect(t, r, Selection{})
	for _, s := range got {
		if s >= gone.FirstSeq && s <= gone.LastSeq {
			t.Fatalf("record %d of the vanished segment delivered", s)
		}
	}
	if want := 600 - (m.Segments[0].FirstSeq - 1) - (gone.LastSeq - gone.FirstSeq + 1); uint64(len(got)) != want {
		t.Fatalf("got %d records, want %d", len(got), want)
	}
	// --last counts records, not sequence numbers: across the gap it still gives n.
	for _, n := range []int{1, 5, len(got) - 3, len(got), len(got) + 10} {
		last := collect(t, r, Selection{Last: n})
		want := got[max(len(got)-n, 0):]
		if !equal(last, want) {
			t.Fatalf("last %d across a gap: got %d records %v, want %d", n, len(last), last[:min(3, len(last))], len(want))
		}
	}
}

// Snapshots taken while the producer appends and rolls are always contiguous.
func TestSnapshot_WhileProducing(t *testing.T) {
	dir := ringtest.Dir(t)
	w := produce(t, dir, publish.Options{SegmentSize: 4096, Segments: 3}, 1)
	r := openRing(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			w.Append([]byte(fmt.Sprint(w.NextSeq())))
		}
	}()
	for i := 0; ctx.Err() == nil && i < 300; i++ {
		got := collect(t, r, Selection{Last: 50 + i})
		if len(got) == 0 || !equal(got, span(got[0], got[len(got)-1])) {
			t.Fatalf("snapshot %d not contiguous: %v", i, got)
		}
	}
	cancel()
	<-done
	w.Close()
}

func TestFollower_StartsBeforeRingAndSeesAll(t *testing.T) {
	dir := ringtest.Dir(t)
	os.MkdirAll(dir, 0o750)
	r := openRing(t, dir)
	f, err := r.Follow(Selection{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const n = 3000
	go func() {
		w := produce(t, dir, publish.Options{SegmentSize: 8192, Segments: 64}, 0)
		for i := 0; i < n; i++ {
			w.Append([]byte(fmt.Sprint(w.NextSeq())))
			if i%500 == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
		w.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for want := uint64(1); want <= n; want++ {
		if !f.Next(ctx) {
			t.Fatalf("stopped before record %d: %v", want, f.Err())
		}
		if rec := f.Record(); rec.Seq != want || string(rec.Data) != fmt.Sprint(want) {
			t.Fatalf("record %d: %d %q", want, rec.Seq, rec.Data)
		}
		if l, ok := f.Loss(); ok {
			t.Fatalf("unexpected %v", l)
		}
	}
}

func TestFollower_ReportsLossExactly(t *testing.T) {
	for _, poll := range []bool{false, true} {
		t.Run(fmt.Sprintf("polling=%v", poll), func(t *testing.T) {
			noInotify = poll
			defer func() { noInotify = false }()
			dir := ringtest.Dir(t)
			w := produce(t, dir, publish.Options{SegmentSize: 4096, Segments: 2}, 10)
			defer w.Close()
			r := openRing(t, dir)
			f, err := r.Follow(Selection{})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for i := 1; i <= 10; i++ {
				if !f.Next(ctx) || f.Record().Seq != uint64(i) {
					t.Fatalf("record %d: %v", i, f.Err())
				}
			}
			// Overwrite the ring several times over while the follower sleeps; it
			// still holds segment 1 open, so it reads that to its end first.
			for i := 0; i < 2000; i++ {
				w.Append([]byte(fmt.Sprint(w.NextSeq())))
			}
			var got, lost uint64
			next := uint64(11)
			for next <= 2010 {
				if !f.Next(ctx) {
					t.Fatalf("stopped at %d: %v", next, f.Err())
				}
				rec := f.Record()
				if l, ok := f.Loss(); ok {
					if l.From != next || l.To != rec.Seq-1 {
						t.Fatalf("loss %v, expected from %d to %d", l, next, rec.Seq-1)
					}
					lost += l.Count()
				} else if rec.Seq != next {
					t.Fatalf("record %d without a loss report, expected %d", rec.Seq, next)
				}
				got++
				next = rec.Seq + 1
			}
			if got+lost != 2000 || lost == 0 {
				t.Fatalf("read %d + lost %d, want 2000 with some lost", got, lost)
			}
		})
	}
}

func TestTaker_ExactlyOnce(t *testing.T) {
	dir := ringtest.Dir(t)
	w := produce(t, dir, publish.Options{SegmentSize: 4096, Segments: 1000}, 0)
	r := openRing(t, dir)
	var mu sync.Mutex
	var taken []uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tk := r.Taker()
			defer tk.Close()
			for {
				seg, err := tk.Take()
				if errors.Is(err, ErrNothingToTake) {
					select {
					case <-stop:
						return
					default:
						time.Sleep(time.Millisecond)
						continue
					}
				}
				if err != nil {
					t.Error(err)
					return
				}
				var local []uint64
				for seg.Next() {
					local = append(local, seg.Record().Seq)
				}
				if seg.Err() != nil {
					t.Error(seg.Err())
				}
				seg.Done()
				mu.Lock()
				taken = append(taken, local...)
				mu.Unlock()
			}
		}()
	}
	const n = 20000
	for i := 0; i < n; i++ {
		w.Append([]byte(fmt.Sprint(w.NextSeq())))
	}
	w.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		k := len(taken)
		mu.Unlock()
		if k >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	sort.Slice(taken, func(i, j int) bool { return taken[i] < taken[j] })
	if !equal(taken, span(1, n)) {
		t.Fatalf("took %d records; want each of 1..%d exactly once", len(taken), n)
	}
}

func TestTaker_RedeliversAbandonedClaim(t *testing.T) {
	dir := ringtest.Dir(t)
	w := produce(t, dir, publish.Options{SegmentSize: 4096}, 300)
	w.Close()
	r := openRing(t, dir)
	tk := r.Taker()
	seg, err := tk.Take()
	if err != nil {
		t.Fatal(err)
	}
	first := seg.Number()
	seg.Next()
	seg.Close() // dies without finishing: the claim stays, unlocked
	if _, err := os.Stat(filepath.Join(dir, segment.TakenName(first))); err != nil {
		t.Fatalf("claim not left behind: %v", err)
	}
	again, err := r.Taker().Take()
	if err != nil {
		t.Fatal(err)
	}
	if again.Number() != first || !again.Redeliver {
		t.Fatalf("took segment %d (redeliver %v), want %d again", again.Number(), again.Redeliver, first)
	}
	n := 0
	for again.Next() {
		n++
	}
	if n == 0 || again.Err() != nil {
		t.Fatalf("redelivered %d records: %v", n, again.Err())
	}
	again.Done()
}

func TestTaker_SkipsHotSegment(t *testing.T) {
	dir := ringtest.Dir(t)
	w := produce(t, dir, publish.Options{}, 5)
	defer w.Close()
	r := openRing(t, dir)
	if _, err := r.Taker().Take(); !errors.Is(err, ErrNothingToTake) {
		t.Fatalf("took from a ring with only a hot segment: %v", err)
	}
}

func BenchmarkSnapshotLast1000(b *testing.B) {
	dir := ringtest.Dir(b)
	w := produce(b, dir, publish.Options{}, 16<<20/40)
	defer w.Close()
	r := openRing(b, dir)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s, err := r.Snapshot(Selection{Last: 1000})
		if err != nil {
			b.Fatal(err)
		}
		for s.Next() {
		}
		s.Close()
	}
}

func TestFollower_SurvivesRingRecreated(t *testing.T) {
	for _, how := range []string{"directory replaced", "contents replaced"} {
		t.Run(how, func(t *testing.T) {
			dir := ringtest.Dir(t)
			w := produce(t, dir, publish.Options{SegmentSize: 4096}, 300)
			w.Close()
			r := openRing(t, dir)
			f, err := r.Follow(Selection{From: 300})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if !f.Next(ctx) || f.Record().Seq != 300 {
				t.Fatalf("first record: %v", f.Err())
			}
			if how == "directory replaced" {
				os.RemoveAll(dir)
			} else {
				names, _ := filepath.Glob(filepath.Join(dir, "*"))
				for _, n := range names {
					os.Remove(n)
				}
			}
			w = produce(t, dir, publish.Options{SegmentSize: 4096}, 5)
			defer w.Close()
			for want := uint64(1); want <= 5; want++ {
				if !f.Next(ctx) {
					t.Fatalf("stopped waiting for record %d of the new ring: %v", want, f.Err())
				}
				if rec := f.Record(); rec.Seq != want || f.Restarted() != (want == 1) {
					t.Fatalf("record %d, restarted %v; want %d", rec.Seq, f.Restarted(), want)
				}
			}
		})
	}
}

func TestFollower_NoAllocationsPerRecord(t *testing.T) {
	dir := ringtest.Dir(t)
	w := produce(t, dir, publish.Options{SegmentSize: 1 << 20}, 1)
	defer w.Close()
	r := openRing(t, dir)
	f, err := r.Follow(Selection{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := context.Background()
	f.Next(ctx)
	p := make([]byte, 64)
	for i := 0; i < 3000; i++ {
		w.Append(p)
	}
	if n := testing.AllocsPerRun(2000, func() {
		if !f.Next(ctx) {
			t.Fatal(f.Err())
		}
	}); n != 0 {
		t.Fatalf("Follower.Next allocates %.2f times per record", n)
	}
}

func BenchmarkFollow(b *testing.B) {
	for _, n := range []int{64, 1024, 65536} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			dir := ringtest.Dir(b)
			w := produce(b, dir, publish.Options{SegmentSize: 64 << 20, Segments: 4}, 0)
			defer w.Close()
			r := openRing(b, dir)
			f, err := r.Follow(Selection{})
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			p := make([]byte, n)
			ctx := context.Background()
			b.SetBytes(int64(n))
			b.ReportAllocs()
			b.ResetTimer()
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; i < b.N; i++ {
					w.Append(p)
				}
			}()
			for i := 0; i < b.N; i++ {
				if !f.Next(ctx) {
					b.Fatal(f.Err())
				}
				if l, ok := f.Loss(); ok {
					b.Fatalf("follower fell behind: %v", l)
				}
			}
			<-done
		})
	}
}

func BenchmarkSnapshot(b *testing.B) {
	for _, n := range []int{64, 1024, 65536} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			dir := ringtest.Dir(b)
			w := produce(b, dir, publish.Options{SegmentSize: 4 << 20, Segments: 4}, 0)
			p := make([]byte, n)
			var count int
			for w.Append(p); count*n < 8<<20; count++ {
				w.Append(p)
			}
			w.Close()
			r := openRing(b, dir)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; {
				s, err := r.Snapshot(Selection{})
				if err != nil {
					b.Fatal(err)
				}
				for ; i < b.N && s.Next(); i++ {
				}
				s.Close()
			}
		})
	}
}

// A segment truncated under a reader's mapping (not something a filering producer ever
// does) makes reads fault: the reader reports corruption instead of crashing.
// TestSnapshot_SegmentTruncatedUnderMapping truncates segments under a snapshot's
// mappings, on small pages and on 2 MiB segments, which are mapped on huge pages where
// the kernel allows: the fault is reported as corruption, not a crash.
func TestSnapshot_SegmentTruncatedUnderMapping(t *testing.T) {
	for _, c := range []struct {
		size    int64
		records int
	}{{64 << 10, 2000}, {2 << 20, 70000}} {
		t.Run(fmt.Sprint(c.size), func(t *testing.T) { truncatedUnderMapping(t, c.size, c.records) })
	}
}

func truncatedUnderMapping(t *testing.T, segmentSize int64, records int) {
	dir := ringtest.Dir(t)
	w := produce(t, dir, publish.Options{SegmentSize: segmentSize}, records)
	w.Close()
	r := openRing(t, dir)
	s, err := r.Snapshot(Selection{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Next() { // the first segment is mapped now
		t.Fatalf("no first record: %v", s.Err())
	}
	m, _ := r.Manifest()
	for _, e := range m.Segments {
		if err := os.Truncate(filepath.Join(dir, e.Name), 4096); err != nil {
			t.Fatal(err)
		}
	}
	n := 1
	for s.Next() {
		n++
	}
	var ce *segment.CorruptionError
	if !errors.As(s.Err(), &ce) || !errors.Is(s.Err(), segment.ErrFault) {
		t.Fatalf("after %d records: error %v, want a fault reported as corruption", n, s.Err())
	}
	// A segment truncated before it is mapped is refused before it is mapped, and
	// reported as segment-level damage; the snapshot goes on with the next.
	if len(m.Segments) > 1 {
		if !s.SkipDamaged() || s.Next() || !errors.Is(s.Err(), segment.ErrShort) || !errors.As(s.Err(), &ce) || ce.Offset != 4096 {
			t.Fatalf("next truncated segment: %v", s.Err())
		}
	}
	// Opening the truncated files afresh finds them damaged before mapping them.
	s2, err := r.Snapshot(Selection{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.Next() || !errors.Is(s2.Err(), segment.ErrShort) {
		t.Fatalf("snapshot of truncated segments: %v", s2.Err())
	}
}

func TestTaker_SetsAsideDamagedSegment(t *testing.T) {
	dir := ringtest.Dir(t)
	w := produce(t, dir, publish.Options{SegmentSize: 4096}, 400)
	w.Close()
	m, _ := openRing(t, dir).Manifest()
	first := m.Segments[0]
	b, _ := os.ReadFile(filepath.Join(dir, first.Name))
	b[segment.HeaderSize+3*32+24] ^= 1 // the payload byte of the fourth record
	os.WriteFile(filepath.Join(dir, first.Name), b, 0o640)

	r := openRing(t, dir)
	tk, err := r.Taker().Take()
	if err != nil || tk.Number() != first.Number() {
		t.Fatalf("Take: %v", err)
	}
	n := 0
	for tk.Next() {
		n++
	}
	if n != 3 || !errors.Is(tk.Err(), segment.ErrChecksum) {
		t.Fatalf("read %d records before %v", n, tk.Err())
	}
	path, err := tk.SetAside()
	if err != nil || !strings.HasSuffix(path, ".damaged") {
		t.Fatalf("SetAside: %q %v", path, err)
	}
	next, err := r.Taker().Take()
	if err != nil || next.Number() != m.Segments[1].Number() {
		t.Fatalf("the damaged segment blocks the next one: %v", err)
	}
	next.Done()
}

// After a damaged record, SkipDamaged lets a snapshot and a follower go on with the
// segments after it; the follower reports what it skipped as lost.
func TestSkipDamaged(t *testing.T) {
	dir := ringtest.Dir(t)
	w := produce(t, dir, publish.Options{SegmentSize: 4096, Segments: 16}, 600)
	w.Close()
	r := openRing(t, dir)
	m, _ := r.Manifest()
	bad := m.Segments[1]
	b, _ := os.ReadFile(filepath.Join(dir, bad.Name))
	b[segment.HeaderSize+5*32+24] ^= 1 // the payload of the sixth record
	os.WriteFile(filepath.Join(dir, bad.Name), b, 0o640)

	s, err := r.Snapshot(Selection{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got []uint64
	for {
		for s.Next() {
			got = append(got, s.Record().Seq)
		}
		if !s.SkipDamaged() {
			break
		}
	}
	if s.Err() != nil || got[len(got)-1] != 600 || len(got) != 600-int(bad.LastSeq-bad.FirstSeq+1)+5 {
		t.Fatalf("snapshot read %d records to %d, err %v", len(got), got[len(got)-1], s.Err())
	}

	f, err := r.Follow(Selection{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n, lost uint64
	for n+lost < 600 {
		if !f.Next(ctx) {
			if !errors.Is(f.Err(), segment.ErrChecksum) || !f.SkipDamaged() {
				t.Fatalf("follower stopped: %v", f.Err())
			}
			continue
		}
		if l, ok := f.Loss(); ok {
			lost += l.Count()
		}
		n++
	}
	if lost != bad.LastSeq-bad.FirstSeq+1-5 {
		t.Fatalf("follower read %d and reported %d lost", n, lost)
	}
}
