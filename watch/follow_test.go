package watch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/publish"
	"github.com/filering/filering/segment"
)

// nextWithin calls f.Next with a deadline d from now.
func nextWithin(f *Follower, d time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return f.Next(ctx)
}

// expectRecords reads records from..to from f, each exactly once, with no loss and no
// restart.
func expectRecords(t *testing.T, f *Follower, from, to uint64) {
	t.Helper()
	for want := from; want <= to; want++ {
		if !nextWithin(f, 10*time.Second) {
			t.Fatalf("no record %d: %v", want, f.Err())
		}
		rec := f.Record()
		if rec.Seq != want || string(rec.Data) != fmt.Sprint(want) || f.Restarted() {
			t.Fatalf("record %d (%q), restarted %v; want record %d", rec.Seq, rec.Data, f.Restarted(), want)
		}
		if l, ok := f.Loss(); ok {
			t.Fatalf("record %d: unexpected %v", want, l)
		}
	}
}

// TestFollower_IdleProducerRestart restarts a producer that appends nothing, three times,
// while a follower waits: the follower goes on by sequence number, delivers nothing again
// and does not take the ring for a new one; then it gets the next record. It runs with
// the producer of this round, which keeps an empty hot segment listed at a clean stop,
// and with what producers before did (the empty hot segment removed, its number used
// again), under which the follower used to see segment numbers go back, start over and
// print every record again.
func TestFollower_IdleProducerRestart(t *testing.T) {
	for _, older := range []bool{false, true} {
		t.Run(fmt.Sprintf("empty hot segment removed=%v", older), func(t *testing.T) {
			dir := ringtest.Dir(t)
			stop := func(w *publish.Writer) {
				t.Helper()
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				if older {
					dropEmptyHot(t, dir)
				}
			}
			stop(produce(t, dir, publish.Options{SegmentSize: 4096}, 2))
			r := openRing(t, dir)
			f, err := r.Follow(Selection{})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			expectRecords(t, f, 1, 2)
			for i := 0; i < 3; i++ {
				stop(produce(t, dir, publish.Options{}, 0))
				if nextWithin(f, 300*time.Millisecond) {
					t.Fatalf("after idle restart %d: delivered record %d again (restarted %v)", i+1, f.Record().Seq, f.Restarted())
				}
				if !errors.Is(f.Err(), context.DeadlineExceeded) {
					t.Fatalf("after idle restart %d: %v", i+1, f.Err())
				}
			}
			stop(produce(t, dir, publish.Options{}, 1))
			expectRecords(t, f, 3, 3)
		})
	}
}

// TestFollower_ReportsLossWithoutLaterRecord lets a follower read the first segment of a
// ring, then, while it waits, the producer fills four more and stops, and takers take
// them: the follower reports their records lost at once, without waiting for a record
// that may never come. Whether the producer stopped (every segment sealed), stopped
// keeping an empty hot segment listed, or runs idle, the manifest tells it.
func TestFollower_ReportsLossWithoutLaterRecord(t *testing.T) {
	for _, how := range []string{"producer stopped", "empty hot segment listed", "producer idle"} {
		t.Run(how, func(t *testing.T) {
			dir := ringtest.Dir(t)
			// 4 KiB segments hold 126 records of up to 8 bytes.
			w := produce(t, dir, publish.Options{SegmentSize: 4096, Segments: 16}, 126)
			r := openRing(t, dir)
			f, err := r.Follow(Selection{})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var losses []Loss
			f.OnLoss(func(l Loss) {
				losses = append(losses, l)
				cancel() // the loss is what this test waits for
			})
			expectRecords(t, f, 1, 126)
			if nextWithin(f, 200*time.Millisecond) {
				t.Fatalf("record %d", f.Record().Seq)
			}
			for w.NextSeq() <= 600 {
				w.Append([]byte(fmt.Sprint(w.NextSeq())))
			}
			w.Close()
			switch how {
			case "empty hot segment listed":
				produce(t, dir, publish.Options{}, 0).Close()
			case "producer idle":
				w := produce(t, dir, publish.Options{}, 0)
				defer w.Close()
			}
			for _, e := range readManifest(t, dir).Segments[1:] {
				if e.Sealed {
					if err := os.Rename(filepath.Join(dir, e.Name), filepath.Join(dir, segment.TakenName(e.Number()))); err != nil {
						t.Fatal(err)
					}
				}
			}
			if f.Next(ctx) {
				t.Fatalf("delivered record %d of a taken segment", f.Record().Seq)
			}
			if want := []Loss{{From: 127, To: 600}}; fmt.Sprint(losses) != fmt.Sprint(want) || !errors.Is(f.Err(), context.Canceled) {
				t.Fatalf("losses %v (%v), want %v reported without a later record", losses, f.Err(), want)
			}
		})
	}
}

// TestFollower_FromRingStartReportsRecordsTakenBeforeIt starts a follower that expects
// every record from sequence 1 on (as `filering watch` does on a ring that did not exist
// when it started) on a ring whose sealed segments were all taken already and whose hot
// segment holds nothing yet: the records it will never see are reported lost, 1 to the
// last taken, not skipped silently because the snapshot found nothing to deliver.
func TestFollower_FromRingStartReportsRecordsTakenBeforeIt(t *testing.T) {
	for _, onLoss := range []bool{false, true} {
		t.Run(fmt.Sprintf("OnLoss=%v", onLoss), func(t *testing.T) {
			dir := ringtest.Dir(t)
			w := produce(t, dir, publish.Options{SegmentSize: 4096, Segments: 16}, 400)
			w.Close()
			w = produce(t, dir, publish.Options{}, 0) // running, idle: an empty hot segment
			defer w.Close()
			for _, e := range readManifest(t, dir).Segments {
				if e.Sealed {
					os.Remove(filepath.Join(dir, e.Name)) // taken and done
				}
			}
			r := openRing(t, dir)
			f, err := r.Follow(Selection{From: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var losses []Loss
			if onLoss {
				f.OnLoss(func(l Loss) { losses = append(losses, l) })
			}
			if _, err := w.Append([]byte("401")); err != nil {
				t.Fatal(err)
			}
			if !nextWithin(f, 10*time.Second) || f.Record().Seq != 401 {
				t.Fatalf("no record 401: %v", f.Err())
			}
			if l, ok := f.Loss(); ok {
				losses = append(losses, l)
			}
			if want := []Loss{{From: 1, To: 400}}; fmt.Sprint(losses) != fmt.Sprint(want) {
				t.Fatalf("losses %v, want %v", losses, want)
			}
		})
	}
}

// TestFollower_FromBeyondTheEnd follows from a sequence number the ring has not reached:
// that is not a ring created anew; the follower waits for it, and delivers it.
func TestFollower_FromBeyondTheEnd(t *testing.T) {
	dir := ringtest.Dir(t)
	w := produce(t, dir, publish.Options{SegmentSize: 4096}, 10)
	defer w.Close()
	r := openRing(t, dir)
	f, err := r.Follow(Selection{From: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if nextWithin(f, 200*time.Millisecond) {
		t.Fatalf("delivered record %d", f.Record().Seq)
	}
	for w.NextSeq() <= 100 {
		w.Append([]byte(fmt.Sprint(w.NextSeq())))
	}
	expectRecords(t, f, 100, 100)
}

// TestFollower_DamagedHotSegment damages a record of the hot segment a follower reads:
// it stops once on the damage, reads that segment no more (reporting nothing twice while
// it waits), and once the segment is sealed and a newer one listed, reports the rest of
// its records lost and goes on.
func TestFollower_DamagedHotSegment(t *testing.T) {
	dir := ringtest.Dir(t)
	const size = 4096
	s1 := handSeg{Num: 1, First: 1, N: 10, Sealed: true}
	s2 := handSeg{Num: 2, First: 11, N: 10}
	ringtest.WriteRing(t, dir, size, 1, s1, s2)
	path2 := filepath.Join(dir, segment.Name(2))
	b, _ := os.ReadFile(path2)
	bad := segment.HeaderSize + 3*32 // the fourth record of segment 2, seq 14
	b[bad+24] ^= 1
	os.WriteFile(path2, b, 0o640)

	r := openRing(t, dir)
	f, err := r.Follow(Selection{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var losses []Loss
	f.OnLoss(func(l Loss) { losses = append(losses, l) })
	expectRecords(t, f, 1, 13)
	var ce *segment.CorruptionError
	if nextWithin(f, 5*time.Second) || !errors.As(f.Err(), &ce) || ce.Offset != int64(bad) || !errors.Is(f.Err(), segment.ErrChecksum) {
		t.Fatalf("after record 13: %v, want a checksum error at offset %d", f.Err(), bad)
	}
	if !f.SkipDamaged() {
		t.Fatal("SkipDamaged refused")
	}
	for i := 0; i < 3; i++ {
		if nextWithin(f, 300*time.Millisecond) || !errors.Is(f.Err(), context.DeadlineExceeded) {
			t.Fatalf("waiting after the damage: record %d, %v", f.Record().Seq, f.Err())
		}
	}
	// The producer seals segment 2 (10 records) and starts segment 3.
	s2.Sealed = true
	os.WriteFile(path2, func() []byte { c := s2.Bytes(size); c[bad+24] ^= 1; return c }(), 0o640)
	s3 := handSeg{Num: 3, First: 21, N: 2}
	os.WriteFile(filepath.Join(dir, segment.Name(3)), s3.Bytes(size), 0o640)
	ringtest.PutManifest(t, dir, &segment.Manifest{Version: 1, SegmentSize: size, SegmentsMax: 8, Generation: 2,
		Segments: []segment.Entry{s1.Entry(), s2.Entry(), s3.Entry()}})
	expectRecords(t, f, 21, 22)
	if want := []Loss{{From: 14, To: 20}}; fmt.Sprint(losses) != fmt.Sprint(want) {
		t.Fatalf("losses %v, want %v", losses, want)
	}
}

// TestSnapshot_NegativeTimes reads records whose times are before 1970: with no Since
// they are ordinary records for every reader.
func TestSnapshot_NegativeTimes(t *testing.T) {
	dir := ringtest.Dir(t)
	before1970 := func(seq uint64) int64 { return -int64(seq) * 1e9 }
	ringtest.WriteRing(t, dir, 4096, 1,
		handSeg{Num: 1, First: 1, N: 3, Sealed: true, At: before1970},
		handSeg{Num: 2, First: 4, N: 2, At: before1970})
	r := openRing(t, dir)
	if got := collect(t, r, Selection{}); !equal(got, span(1, 5)) {
		t.Fatalf("all: %v", got)
	}
	if got := collect(t, r, Selection{Last: 2}); !equal(got, span(4, 5)) {
		t.Fatalf("last 2: %v", got)
	}
	if got := collect(t, r, Selection{Since: time.Unix(0, 0)}); len(got) != 0 {
		t.Fatalf("since 1970: %v", got)
	}
	if got := collect(t, r, Selection{Since: time.Unix(-3, 0), Last: 5}); !equal(got, span(1, 3)) {
		t.Fatalf("since 3 s before 1970: %v", got)
	}
	f, err := r.Follow(Selection{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	expectRecords(t, f, 1, 5)
	if f.Record().Time != -5e9 {
		t.Fatalf("record 5 has time %d", f.Record().Time)
	}
	st, err := r.Stat()
	if err != nil || st.Records != 5 || st.FirstSeq != 1 || st.LastSeq != 5 {
		t.Fatalf("stat %+v, %v", st, err)
	}
}

// TestFollower_Spin checks that a spinning follower takes records, and a seal, from the
// segment's memory without waiting: with inotify off, a follower that waited would only
// see them at its next poll; this one sees each without a poll or an event. And with
// Spin(0) it waits as before.
func TestFollower_Spin(t *testing.T) {
	noInotify = true
	defer func() { noInotify = false }()
	dir := ringtest.Dir(t)
	w, err := publish.Open(dir, publish.Options{SegmentSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r := openRing(t, dir)
	f, err := r.Follow(Selection{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Spin(time.Minute)
	appendAfter := func(seq uint64) {
		go func() {
			time.Sleep(20 * time.Millisecond) // the follower is spinning by then
			if _, err := w.Append([]byte(fmt.Sprint(seq))); err != nil {
				t.Error(err)
			}
		}()
	}
	// Enough records to roll: the seal ends the spin on the old segment.
	per := (64<<10 - segment.HeaderSize) / segment.RecordSpan(4)
	for seq := uint64(1); seq <= uint64(per)+3; seq++ {
		if seq%500 == 1 || seq > uint64(per) {
			appendAfter(seq)
		} else if _, err := w.Append([]byte(fmt.Sprint(seq))); err != nil {
			t.Fatal(err)
		}
		expectRecords(t, f, seq, seq)
	}
	if k := f.wake; k.polls+k.events != 0 {
		t.Fatalf("the follower waited: %d polls, %d events", k.polls, k.events)
	}

	f.Spin(0)
	appendAfter(uint64(per) + 4)
	expectRecords(t, f, uint64(per)+4, uint64(per)+4)
	if k := f.wake; k.polls == 0 {
		t.Fatalf("Spin(0): the record came without a poll (%d events with inotify off)", k.events)
	}
}

// TestFollower_DirectWatch checks that a follower waiting at the end of the hot segment
// is woken by its own watch of that segment, not by a poll: each record appended while
// it waits is delivered with an event and no poll, and the watch follows the follower to
// the next segment after a roll. Without the direct watch (noDirect), fsnotify's events
// wake it as before.
func TestFollower_DirectWatch(t *testing.T) {
	for _, direct := range []bool{true, false} {
		t.Run(fmt.Sprintf("direct=%v", direct), func(t *testing.T) {
			noDirect = !direct
			defer func() { noDirect = false }()
			dir := ringtest.Dir(t)
			w, err := publish.Open(dir, publish.Options{SegmentSize: 16 << 10})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			f, err := openRing(t, dir).Follow(Selection{})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			per := (16<<10 - segment.HeaderSize) / segment.RecordSpan(3)
			for seq := uint64(1); seq <= uint64(per)+20; seq++ {
				if seq%100 == 1 || seq > uint64(per) {
					go func() {
						time.Sleep(2 * time.Millisecond) // the follower waits by then, mostly
						if _, err := w.Append([]byte(fmt.Sprint(seq))); err != nil {
							t.Error(err)
						}
					}()
				} else if _, err := w.Append([]byte(fmt.Sprint(seq))); err != nil {
					t.Fatal(err)
				}
				expectRecords(t, f, seq, seq)
			}
			k := f.wake
			if k.polls != 0 || k.events == 0 {
				t.Fatalf("%d polls, %d events: want events only", k.polls, k.events)
			}
			if direct != (k.wd >= 0 && k.in >= 0 && k.seg > 0) {
				t.Fatalf("direct %v, but the waker's watch is %d and woke it %d times", direct, k.wd, k.seg)
			}
		})
	}
}

// TestWaker_LateInterrupt interrupts a direct waker's read after the flags that came with
// the interruption were already taken, as happens when forward is slow between setting
// its flags and interrupting: the wait under way goes on reading until a real event and
// does not report a poll.
func TestWaker_LateInterrupt(t *testing.T) {
	dir := t.TempDir()
	seg, err := os.Create(filepath.Join(dir, "hot"))
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	k := newWaker(dir, true)
	defer k.close()
	if k.in < 0 {
		t.Skip("no inotify instance for a direct watch")
	}
	k.watchFile(seg)
	ctx := context.Background()

	k.flags.Or(flagEvent)
	if _, err := k.wait(ctx); err != nil || k.events != 1 {
		t.Fatalf("wait with flags set: %v, %d events", err, k.events)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		k.interrupt() // late: its flags are already taken
		time.Sleep(20 * time.Millisecond)
		seg.Write([]byte{1})
	}()
	if _, err := k.wait(ctx); err != nil {
		t.Fatal(err)
	}
	if k.polls != 0 || k.seg != 1 {
		t.Fatalf("after a late interruption: %d polls, %d events of the direct watch; want 0 and 1", k.polls, k.seg)
	}
}
