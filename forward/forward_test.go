package forward

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/filering/filering/forward/cursor"
	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/publish"
	"github.com/filering/filering/watch"
)

// newRing creates a ring at a new path with n numbered records.
func newRing(t testing.TB, opts publish.Options, n int) (string, *publish.Writer, string) {
	t.Helper()
	dir := ringtest.Dir(t)
	w, err := publish.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	appendN(t, w, n)
	return dir, w, w.ID()
}

// appendN appends the next n numbered records.
func appendN(t testing.TB, w *publish.Writer, n int) {
	t.Helper()
	for range n {
		k := w.NextSeq()
		if _, err := w.Append(numbered(k)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestForward_Basic(t *testing.T) {
	srv := startServer(t)
	js := srv.js(t)
	createStream(t, js, jetstream.StreamConfig{Name: "S", Subjects: []string{"ring.>"}})
	dir, w, id := newRing(t, publish.Options{SegmentSize: 4096, Segments: 64}, 300)
	var logs collectLogs
	f, err := New(srv.connect(t), Config{Dir: dir, Stream: "S", Subject: "ring.a", Logf: logs.logf, Window: 16})
	if err != nil {
		t.Fatal(err)
	}
	r := runForwarder(t, f)
	waitStored(t, js, "S", "ring.a", cursor.Cursor{Ring: id, Seq: 300})
	appendN(t, w, 200)
	waitStored(t, js, "S", "ring.a", cursor.Cursor{Ring: id, Seq: 500})
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	msgs := readSubject(t, js, "S", "ring.a")
	checkChain(t, msgs)
	if len(msgs) != 500 {
		t.Fatalf("%d messages, want 500", len(msgs))
	}
	for i, m := range msgs {
		k := uint64(i + 1)
		if m.span.gap || m.span.first != k || m.data != string(numbered(k)) || m.id != id+":"+itoa(k) {
			t.Fatalf("message %d: %+v", i, m)
		}
		if _, err := time.Parse(time.RFC3339Nano, m.time); err != nil || len(m.time) != len(timeLayout)-len("Z07:00")+1 {
			t.Fatalf("message %d: time %q", i, m.time)
		}
	}
	if st := f.Stats(); st.Records != 500 || st.Gaps != 0 {
		t.Fatalf("stats %+v", st)
	}
	if logs.String() != "" {
		t.Fatalf("logs: %s", logs.String())
	}
	_ = context.Background()
}

// checkRecords checks that the messages of ring id hold the numbered records first to
// last, each once and in order, with gap markers exactly over the ranges in gaps.
func checkRecords(t testing.TB, msgs []stored, id string, first, last uint64, gaps ...[2]uint64) {
	t.Helper()
	if err := recordsErr(msgs, id, first, last, gaps...); err != nil {
		t.Fatal(err)
	}
}

func recordsErr(msgs []stored, id string, first, last uint64, gaps ...[2]uint64) error {
	next := first
	gi := 0
	for _, m := range msgs {
		if m.span.ring != id {
			continue
		}
		if m.span.first != next {
			return fmt.Errorf("stream sequence %d: %v, want sequence %d next", m.seq, m.span, next)
		}
		if m.span.gap {
			if gi >= len(gaps) || gaps[gi] != [2]uint64{m.span.first, m.span.last} {
				return fmt.Errorf("stream sequence %d: unexpected %v (want gaps %v)", m.seq, m.span, gaps)
			}
			gi++
		} else if m.data != string(numbered(m.span.first)) {
			return fmt.Errorf("stream sequence %d: record %d holds %q", m.seq, m.span.first, m.data)
		}
		next = m.span.last + 1
	}
	if next != last+1 || gi != len(gaps) {
		return fmt.Errorf("ring %s: messages end before %d (want %d), %d of %d gaps", id, next, last+1, gi, len(gaps))
	}
	return nil
}

func TestForward_ResumeAcrossRuns(t *testing.T) {
	srv := startServer(t)
	js := srv.js(t)
	createStream(t, js, jetstream.StreamConfig{Name: "S", Subjects: []string{"ring.a"}})
	dir, w, id := newRing(t, publish.Options{SegmentSize: 1 << 20, Segments: 8}, 1000)
	for run := 1; run <= 5; run++ {
		f, err := New(srv.connect(t), Config{Dir: dir, Stream: "S", Subject: "ring.a", Window: 64})
		if err != nil {
			t.Fatal(err)
		}
		r := runForwarder(t, f)
		waitStored(t, js, "S", "ring.a", cursor.Cursor{Ring: id, Seq: uint64(1000 * run)})
		if err := r.stop(t); err != nil {
			t.Fatal(err)
		}
		appendN(t, w, 1000)
	}
	checkRecords(t, readSubject(t, js, "S", "ring.a"), id, 1, 5000)
}

func TestForward_GapWhileStopped(t *testing.T) {
	srv := startServer(t)
	js := srv.js(t)
	createStream(t, js, jetstream.StreamConfig{Name: "S", Subjects: []string{"ring.a"}})
	dir, w, id := newRing(t, publish.Options{SegmentSize: 4096, Segments: 4}, 50)
	var logs collectLogs
	cfg := Config{Dir: dir, Stream: "S", Subject: "ring.a", Logf: logs.logf}
	f, _ := New(srv.connect(t), cfg)
	r := runForwarder(t, f)
	waitStored(t, js, "S", "ring.a", cursor.Cursor{Ring: id, Seq: 50})
	r.stop(t)
	appendN(t, w, 2000) // far more than 4 segments of 4 KiB hold
	first := firstRetained(t, dir)
	f, _ = New(srv.connect(t), cfg)
	r = runForwarder(t, f)
	waitStored(t, js, "S", "ring.a", cursor.Cursor{Ring: id, Seq: 2050})
	r.stop(t)
	checkRecords(t, readSubject(t, js, "S", "ring.a"), id, 1, 2050, [2]uint64{51, first - 1})
	want := fmt.Sprintf("%s: lost %d records (51 to %d) before they could be forwarded", dir, first-51, first-1)
	if !logs.has(want) {
		t.Fatalf("no %q in the logs:\n%s", want, logs.String())
	}
	if st := f.Stats(); st.Gaps != 1 || st.Lost != first-51 {
		t.Fatalf("stats %+v", st)
	}
}

// firstRetained returns the first record the ring at dir still holds.
func firstRetained(t testing.TB, dir string) uint64 {
	t.Helper()
	r, err := watch.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s, err := r.Snapshot(watch.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Next() {
		t.Fatalf("%s: no records", dir)
	}
	return s.Record().Seq
}

func TestForward_FirstRunSelection(t *testing.T) {
	srv := startServer(t)
	js := srv.js(t)
	dir, w, id := newRing(t, publish.Options{SegmentSize: 1 << 20}, 100)
	// One ring goes to one subject of a stream (JetStream deduplicates by identifier
	// across the whole stream): one stream each.
	for _, c := range []struct {
		stream string
		sel    watch.Selection
		first  uint64
	}{
		{"ALL", watch.Selection{}, 1},
		{"LAST", watch.Selection{Last: 10}, 91},
		{"FROM", watch.Selection{From: 42}, 42},
		{"SINCE", watch.Selection{Since: time.Now()}, 101},
	} {
		createStream(t, js, jetstream.StreamConfig{Name: c.stream, Subjects: []string{c.stream}})
		f, _ := New(srv.connect(t), Config{Dir: dir, Stream: c.stream, Subject: c.stream, First: c.sel})
		r := runForwarder(t, f)
		if c.first <= 100 {
			waitStored(t, js, c.stream, c.stream, cursor.Cursor{Ring: id, Seq: 100})
			r.stop(t)
			checkRecords(t, readSubject(t, js, c.stream, c.stream), id, c.first, 100)
		} else {
			appendN(t, w, 1)
			waitStored(t, js, c.stream, c.stream, cursor.Cursor{Ring: id, Seq: 101})
			r.stop(t)
			checkRecords(t, readSubject(t, js, c.stream, c.stream), id, 101, 101)
		}
	}
	// The selection is for a first run only: later runs go on from the stream.
	appendN(t, w, 5)
	f, _ := New(srv.connect(t), Config{Dir: dir, Stream: "LAST", Subject: "LAST", First: watch.Selection{Last: 1}})
	r := runForwarder(t, f)
	waitStored(t, js, "LAST", "LAST", cursor.Cursor{Ring: id, Seq: 106})
	r.stop(t)
	checkRecords(t, readSubject(t, js, "LAST", "LAST"), id, 91, 106)
}

func TestForward_OneRingTwoSubjectsOfAStream(t *testing.T) {
	srv := startServer(t)
	js := srv.js(t)
	createStream(t, js, jetstream.StreamConfig{Name: "S", Subjects: []string{"ring.*"}})
	dir, _, id := newRing(t, publish.Options{SegmentSize: 1 << 20}, 10)
	f, _ := New(srv.connect(t), Config{Dir: dir, Stream: "S", Subject: "ring.a"})
	r := runForwarder(t, f)
	waitStored(t, js, "S", "ring.a", cursor.Cursor{Ring: id, Seq: 10})
	r.stop(t)
	f, _ = New(srv.connect(t), Config{Dir: dir, Stream: "S", Subject: "ring.b"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := f.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "under subject ring.a already") {
		t.Fatalf("Run: %v, want an error saying the ring is in the stream under ring.a", err)
	}
}

func TestForward_RingCreatedAnew(t *testing.T) {
	srv := startServer(t)
	js := srv.js(t)
	createStream(t, js, jetstream.StreamConfig{Name: "S", Subjects: []string{"ring.a"}})
	opts := publish.Options{SegmentSize: 4096, Segments: 4}
	dir, w, id1 := newRing(t, opts, 30)
	var logs collectLogs
	f, _ := New(srv.connect(t), Config{Dir: dir, Stream: "S", Subject: "ring.a", Logf: logs.logf})
	r := runForwarder(t, f)
	waitStored(t, js, "S", "ring.a", cursor.Cursor{Ring: id1, Seq: 30})

	// While it runs: the ring is removed and created again, and starts with record 1.
	w.Close()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	w2, err := publish.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w2.Close() })
	id2 := w2.ID()
	appendN(t, w2, 20)
	waitStored(t, js, "S", "ring.a", cursor.Cursor{Ring: id2, Seq: 20})
	r.stop(t)

	// While it is stopped: created anew again, and records 1 on are overwritten before
	// the forwarder comes back.
	w2.Close()
	os.RemoveAll(dir)
	w3, err := publish.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w3.Close() })
	id3 := w3.ID()
	appendN(t, w3, 1000)
	first := firstRetained(t, dir)
	f, _ = New(srv.connect(t), Config{Dir: dir, Stream: "S", Subject: "ring.a", Logf: logs.logf})
	r = runForwarder(t, f)
	waitStored(t, js, "S", "ring.a", cursor.Cursor{Ring: id3, Seq: 1000})
	r.stop(t)

	msgs := readSubject(t, js, "S", "ring.a")
	checkChain(t, msgs)
	checkRecords(t, msgs, id1, 1, 30)
	checkRecords(t, msgs, id2, 1, 20)
	checkRecords(t, msgs, id3, 1, 1000, [2]uint64{1, first - 1})
	for _, id := range []string{id2, id3} {
		if !logs.has("created anew (identity " + id + ")") {
			t.Fatalf("ring %s: not reported created anew:\n%s", id, logs.String())
		}
	}
}

func TestForward_ServerRestarts(t *testing.T) {
	srv := startServer(t)
	js := srv.js(t)
	createStream(t, js, jetstream.StreamConfig{Name: "S", Subjects: []string{"ring.a"}})
	dir, w, id := newRing(t, publish.Options{SegmentSize: 1 << 20, Segments: 16}, 0)
	var logs collectLogs
	f, _ := New(srv.connect(t), Config{Dir: dir, Stream: "S", Subject: "ring.a", Window: 256, Logf: logs.logf})
	r := runForwarder(t, f)
	// Records flow all along, on their own goroutine.
	stop := make(chan struct{})
	fed := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				fed <- nil
				return
			default:
			}
			for range 50 {
				if _, err := w.Append(numbered(w.NextSeq())); err != nil {
					fed <- err
					return
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	for range 3 {
		time.Sleep(300 * time.Millisecond)
		srv.restart()
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	if err := <-fed; err != nil {
		t.Fatal(err)
	}
	last := w.NextSeq() - 1
	waitStored(t, srv.js(t), "S", "ring.a", cursor.Cursor{Ring: id, Seq: last})
	r.stop(t)
	checkRecords(t, readSubject(t, srv.js(t), "S", "ring.a"), id, 1, last)
	if st := f.Stats(); st.Resumes < 2 {
		t.Fatalf("stats %+v: resumed fewer than twice over three restarts", st)
	}
}

// TestForward_TooLargeMidRun makes JetStream refuse a record that became too large for
// the stream after the forwarder read its limits, with more records published behind
// it: whether those were stored (and had to be removed and published again) or not, the
// stream must end with every record once, in order, and a gap marker for the refused one.
func TestForward_TooLargeMidRun(t *testing.T) {
	srv := startServer(t)
	js := srv.js(t)
	st := createStream(t, js, jetstream.StreamConfig{Name: "S", Subjects: []string{"ring.a"}})
	dir, w, id := newRing(t, publish.Options{SegmentSize: 1 << 20}, 10)
	var logs collectLogs
	f, _ := New(srv.connect(t), Config{Dir: dir, Stream: "S", Subject: "ring.a", Logf: logs.logf})
	r := runForwarder(t, f)
	waitStored(t, js, "S", "ring.a", cursor.Cursor{Ring: id, Seq: 10})
	// The forwarder read the stream's limits when it resumed; now they change under it.
	cfg := st.CachedInfo().Config
	cfg.MaxMsgSize = 2000
	if _, err := js.UpdateStream(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	batch := [][]byte{[]byte(strings.Repeat("x", 3000))}
	for k := uint64(12); k <= 100; k++ {
		batch = append(batch, numbered(k))
	}
	if _, _, err := w.AppendBatch(batch); err != nil {
		t.Fatal(err)
	}
	var err error
	waitFor(t, "every record in order, and a gap marker for record 11", func() bool {
		err = recordsErr(readSubject(t, js, "S", "ring.a"), id, 1, 100, [2]uint64{11, 11})
		return err == nil
	})
	r.stop(t)
	checkRecords(t, readSubject(t, js, "S", "ring.a"), id, 1, 100, [2]uint64{11, 11})
	if !logs.has("record 11 is 3000 bytes") {
		t.Fatalf("logs:\n%s", logs.String())
	}
}

// TestForward_RepairHole finds the stream as a forwarder killed with a hole in its
// window leaves it: a record refused, the ones published behind it stored. The next
// forwarder must remove those, publish the missing record, then them again, in order,
// with new identifiers (JetStream still remembers the removed ones').
func TestForward_RepairHole(t *testing.T) {
	srv := startServer(t)
	js := srv.js(t)
	createStream(t, js, jetstream.StreamConfig{Name: "S", Subjects: []string{"ring.a"}})
	dir, _, id := newRing(t, publish.Options{SegmentSize: 1 << 20}, 30)
	ctx := context.Background()
	var acked uint64
	for k := uint64(1); k <= 20; k++ {
		if k == 11 {
			continue // refused
		}
		s := span{ring: id, first: k, last: k, acked: min(acked, 10)}
		a, err := js.PublishMsg(ctx, &nats.Msg{Subject: "ring.a", Data: numbered(k), Header: s.header(time.Now().UnixNano(), 0)})
		if err != nil {
			t.Fatal(err)
		}
		acked = a.Sequence
	}
	var logs collectLogs
	f, _ := New(srv.connect(t), Config{Dir: dir, Stream: "S", Subject: "ring.a", Logf: logs.logf})
	r := runForwarder(t, f)
	waitStored(t, js, "S", "ring.a", cursor.Cursor{Ring: id, Seq: 30})
	r.stop(t)
	msgs := readSubject(t, js, "S", "ring.a")
	checkRecords(t, msgs, id, 1, 30)
	if want := "holds records 12 to 20 of ring " + id + " at stream sequences 11 to 19, without records 11 to 11 before them"; !logs.has(want) {
		t.Fatalf("no %q in the logs:\n%s", want, logs.String())
	}
	if st := f.Stats(); st.Repairs != 1 || st.Records != 20 {
		t.Fatalf("stats %+v, want 1 repair and 20 records", st)
	}
	for _, m := range msgs {
		reissued := strings.Count(m.id, ":") == 2
		if k := m.span.first; reissued != (k >= 12 && k <= 20) {
			t.Fatalf("record %d: identifier %q", k, m.id)
		}
	}
}

// TestForward_RemovedCopies starts a forwarder after another one removed messages to
// publish them again and was killed before it did: JetStream still remembers their
// identifiers, and the new forwarder must publish the records with new ones.
func TestForward_RemovedCopies(t *testing.T) {
	srv := startServer(t)
	js := srv.js(t)
	st := createStream(t, js, jetstream.StreamConfig{Name: "S", Subjects: []string{"ring.a"}})
	dir, _, id := newRing(t, publish.Options{SegmentSize: 1 << 20}, 20)
	f, _ := New(srv.connect(t), Config{Dir: dir, Stream: "S", Subject: "ring.a"})
	r := runForwarder(t, f)
	waitStored(t, js, "S", "ring.a", cursor.Cursor{Ring: id, Seq: 20})
	r.stop(t)
	for seq := uint64(11); seq <= 20; seq++ {
		if err := st.DeleteMsg(context.Background(), seq); err != nil {
			t.Fatal(err)
		}
	}
	f, _ = New(srv.connect(t), Config{Dir: dir, Stream: "S", Subject: "ring.a"})
	r = runForwarder(t, f)
	waitStored(t, js, "S", "ring.a", cursor.Cursor{Ring: id, Seq: 20})
	r.stop(t)
	checkRecords(t, readSubject(t, js, "S", "ring.a"), id, 1, 20)
}

func TestForward_ForeignMessage(t *testing.T) {
	srv := startServer(t)
	js := srv.js(t)
	createStream(t, js, jetstream.StreamConfig{Name: "S", Subjects: []string{"ring.a"}})
	if _, err := js.Publish(context.Background(), "ring.a", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	dir, _, _ := newRing(t, publish.Options{SegmentSize: 1 << 20}, 20)
	f, _ := New(srv.connect(t), Config{Dir: dir, Stream: "S", Subject: "ring.a"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.Run(ctx); err == nil || !strings.Contains(err.Error(), "not a message a forwarder published") {
		t.Fatalf("Run: %v", err)
	}
}

func TestForward_NoStreamYet(t *testing.T) {
	srv := startServer(t)
	js := srv.js(t)
	dir, _, id := newRing(t, publish.Options{SegmentSize: 1 << 20}, 20)
	var logs collectLogs
	nc := srv.connect(t)
	f, _ := New(nc, Config{Dir: dir, Stream: "S", Subject: "ring.a", Logf: logs.logf})
	runForwarder(t, f)
	waitFor(t, "the missing stream reported", func() bool { return logs.has("stream S not found") })
	if err := EnsureStream(context.Background(), nc, StreamOptions{Name: "S", Subject: "ring.a", Duplicates: time.Second}); err != nil {
		t.Fatal(err)
	}
	// A second subject joins the stream.
	if err := EnsureStream(context.Background(), nc, StreamOptions{Name: "S", Subject: "ring.b"}); err != nil {
		t.Fatal(err)
	}
	waitStored(t, js, "S", "ring.a", cursor.Cursor{Ring: id, Seq: 20})
	st, _ := js.Stream(context.Background(), "S")
	if subj := st.CachedInfo().Config.Subjects; len(subj) != 2 || st.CachedInfo().Config.Duplicates != time.Second {
		t.Fatalf("stream config %+v", st.CachedInfo().Config)
	}
}

// waitFor polls cond and fails the test when it is still false after 30 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 30s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLock(t *testing.T) {
	lockDir := filepath.Join(t.TempDir(), "locks")
	dir := ringtest.Dir(t)
	l, err := AcquireLock(lockDir, dir, "S", "ring.a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := AcquireLock(lockDir, dir, "S", "ring.a"); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second lock: %v", err)
	}
	l2, err := AcquireLock(lockDir, dir, "S", "ring.b") // another subject: another lock
	if err != nil {
		t.Fatal(err)
	}
	l2.Release()
	l.Release()
	l, err = AcquireLock(lockDir, dir, "S", "ring.a")
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	l.Release()
}
