package tests

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/filering/filering/internal/ringtest"
)

// TestWatch_BeforeRingExists starts a follower on a directory that does not exist yet,
// then a producer: the follower says once that it waits for the ring, prints every
// record, in order, and ends cleanly on SIGINT. The ring's 16 KiB segments hold 510 records each, so the follower crosses
// dozens of rolls; 64 of them hold every record.
func TestWatch_BeforeRingExists(t *testing.T) {
	dir := ring(t)
	n := short(20000, 8000)
	w := startProc(t, "watch", "--format", "json", dir)
	time.Sleep(200 * time.Millisecond) // let it find the directory missing
	if w.exited() {
		t.Fatalf("watch exited before the ring existed: %v, stderr %q", w.err, w.stderr.Bytes())
	}
	if exists(dir) {
		t.Fatalf("watch created %s", dir)
	}

	if r := run(t, lines(n), "produce", "--segment-size", "16KiB", "--segments", "64", dir); r.code != 0 || !producerLogOK(r.stderr) {
		t.Fatalf("produce: %v", r)
	}
	w.waitOutput(20*time.Second, fmt.Sprintf("record %d", n), func(out []byte) bool { return lastSeq(out) == uint64(n) })
	w.interrupt()

	recs, err := parseJSON(w.stdout.Bytes(), false)
	if err == nil {
		err = checkNumbered(recs)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != n || recs[0].Seq != 1 {
		t.Fatalf("watch printed %d records (%s), want %d from 1", len(recs), seqRange(recs), n)
	}
	if got, want := string(w.stderr.Bytes()), waitingNotice(dir)+"\n"; got != want {
		t.Errorf("watch wrote to stderr %q, want only %q", got, want)
	}
}

// lossLine is how a follower reports records it will never see.
var lossLine = regexp.MustCompile(`^filering: (.+): lost (\d+) records \((\d+) to (\d+)\)$`)

// startSlowWatch starts `filering watch --format json dir` with its standard output read
// slowly: a long pause after the first read, then 4 KiB a millisecond. Wait for the
// process before reading w.stdout in full.
func startSlowWatch(t *testing.T, dir string) *proc {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w := newProc(t, "watch", "--all", "--format", "json", dir)
	w.cmd.Stdout = pw
	readDone := make(chan struct{})
	// Registered before start, so that it runs after the cleanup that kills the process.
	t.Cleanup(func() { <-readDone })
	w.start()
	pw.Close()
	go func() {
		defer close(readDone)
		defer pr.Close()
		buf := make([]byte, 4096)
		pause := 300 * time.Millisecond
		for {
			k, err := pr.Read(buf)
			w.stdout.Write(buf[:k])
			if err != nil {
				return
			}
			time.Sleep(pause)
			pause = time.Millisecond
		}
	}()
	return w
}

// checkLossCover checks a follower's output, records on standard output and losses on
// standard error, after it has ended: records in increasing order, each holding its
// own number, and together with the lost ranges covering 1..n exactly once. It returns
// how many losses were reported.
func checkLossCover(t *testing.T, w *proc, dir string, n int) int {
	t.Helper()
	recs, err := parseJSON(w.stdout.Bytes(), false)
	if err != nil {
		t.Fatal(err)
	}
	type span struct{ from, to uint64 }
	var spans []span
	for i, rec := range recs {
		if i > 0 && rec.Seq <= recs[i-1].Seq {
			t.Fatalf("watch printed seq %d after %d", rec.Seq, recs[i-1].Seq)
		}
		if p, err := rec.payload(); err != nil || string(p) != strconv.FormatUint(rec.Seq, 10) {
			t.Fatalf("seq %d holds %q (%v)", rec.Seq, p, err)
		}
		spans = append(spans, span{rec.Seq, rec.Seq})
	}
	losses := 0
	for i, line := range strings.Split(strings.TrimSuffix(string(w.stderr.Bytes()), "\n"), "\n") {
		if line == "" || i == 0 && line == waitingNotice(dir) {
			continue
		}
		m := lossLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("unexpected line on stderr: %q", line)
		}
		count, _ := strconv.ParseUint(m[2], 10, 64)
		from, _ := strconv.ParseUint(m[3], 10, 64)
		to, _ := strconv.ParseUint(m[4], 10, 64)
		if m[1] != dir || from > to || count != to-from+1 {
			t.Fatalf("bad loss report %q (ring %s)", line, dir)
		}
		spans = append(spans, span{from, to})
		losses++
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.from, b.from) })
	next := uint64(1)
	for _, s := range spans {
		if s.from != next {
			t.Fatalf("records printed and lost do not tile 1..%d: span %d..%d where %d was expected next (%d records printed, %d losses reported)",
				n, s.from, s.to, next, len(recs), losses)
		}
		next = s.to + 1
	}
	if next != uint64(n)+1 {
		t.Fatalf("records printed and lost end at %d, want %d", next-1, n)
	}
	t.Logf("%d records printed, %d lost in %d reports", len(recs), n-len(recs), losses)
	return losses
}

// TestWatch_ReportsLoss makes a follower fall behind a tiny ring by reading its output
// slowly: what it prints and the losses it reports must together cover every sequence
// number exactly once.
func TestWatch_ReportsLoss(t *testing.T) {
	dir := ring(t)
	n := short(100000, 40000)
	in := lines(n)
	p := startProducer(t, dir, "--segment-size", "4KiB", "--segments", "2")
	if _, err := p.stdin.Write(in[:2]); err != nil { // record 1
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "record 1", func() bool {
		r, err := execute(nil, "cat", dir)
		return err == nil && string(r.stdout) == "1\n"
	})
	w := startSlowWatch(t, dir)
	w.waitOutput(10*time.Second, "record 1", func(out []byte) bool { return lastSeq(out) >= 1 })

	go func() { // the rest, as fast as the producer takes it
		p.stdin.Write(in[2:])
		p.stdin.Close()
	}()
	if code := p.wait(); code != 0 || !producerLogOK(p.stderr.Bytes()) {
		t.Fatalf("producer: exit %d, stderr %q", code, p.stderr.Bytes())
	}
	w.waitOutput(30*time.Second, fmt.Sprintf("record %d", n), func(out []byte) bool { return lastSeq(out) == uint64(n) })
	w.interrupt()
	if checkLossCover(t, w, dir, n) == 0 {
		t.Fatalf("no loss reported although the follower fell behind a ring of 2 x 4KiB")
	}
}

// TestWatch_BeforeRingExistsReportsLoss starts a follower before its ring exists, on an
// empty directory or on one that does not exist yet, holds it (SIGSTOP, as a busy machine
// might) while a producer overruns a tiny ring there, and lets it go: the records it never
// saw must be reported lost, as for any follower that falls behind.
//
// A watch on a directory that does not exist yet waits for it; once it appears, every
// record the ring ever held counts, so those overwritten meanwhile are reported lost.
func TestWatch_BeforeRingExistsReportsLoss(t *testing.T) {
	cases := []struct {
		name   string
		absent bool
	}{
		{"directory empty", false},
		{"directory absent", true},
	}
	for _, c := range cases {
		absent := c.absent
		t.Run(c.name, func(t *testing.T) {
			dir := ring(t)
			n := short(20000, 10000)
			if !absent {
				if err := os.Mkdir(dir, 0o750); err != nil {
					t.Fatal(err)
				}
			}
			w := startProc(t, "watch", "--all", "--format", "json", dir)
			if absent {
				// It polls for the directory: wait until it sleeps between polls.
				w.waitIdle()
			} else {
				w.waitOpen(dir) // it has found no ring and waits for one
			}
			w.stop()
			r := run(t, lines(n), "produce", "--segment-size", "4KiB", "--segments", "2", dir)
			w.cont()
			if r.code != 0 || !producerLogOK(r.stderr) {
				t.Fatalf("produce: %v", r)
			}
			w.waitOutput(20*time.Second, fmt.Sprintf("record %d", n), func(out []byte) bool { return lastSeq(out) == uint64(n) })
			w.interrupt()
			checkLossCover(t, w, dir, n)
		})
	}
}

// TestWatch_PipeToHead checks that a follower whose reader goes away, as in
// `filering watch DIR | head -n 5`, ends quietly.
func TestWatch_PipeToHead(t *testing.T) {
	dir := ring(t)
	p := startProducer(t, dir)
	f := feed(p.stdin, feedOptions{chunk: 1, pause: time.Millisecond})
	waitFor(t, 10*time.Second, "manifest", func() bool { return exists(filepath.Join(dir, "manifest")) })

	tmp := t.TempDir()
	errFile, statusFile := filepath.Join(tmp, "stderr"), filepath.Join(tmp, "status")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", `{ "$0" watch --all "$1" 2>"$2"; echo $? >"$3"; } | head -n 5`,
		bin, dir, errFile, statusFile)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.Output()
	if ctx.Err() != nil {
		t.Fatalf("the pipeline did not end within 20s: watch went on after head exited")
	}
	if err != nil {
		t.Fatalf("sh: %v", err)
	}
	if string(out) != "1\n2\n3\n4\n5\n" {
		t.Errorf("head printed %q, want the first five records", out)
	}
	status, err := os.ReadFile(statusFile)
	if err != nil {
		t.Fatal(err)
	}
	// 0: it noticed the closed pipe and ended; 141: SIGPIPE ended it. Both are quiet.
	if s := strings.TrimSpace(string(status)); s != "0" && s != "141" {
		t.Errorf("watch | head: watch ended with status %s, want 0 or 141 (SIGPIPE)", s)
	}
	if b, err := os.ReadFile(errFile); err != nil || len(b) != 0 {
		t.Errorf("watch | head: stderr %q (%v), want nothing", b, err)
	}

	f.halt()
	if code := p.wait(); code != 0 || !producerLogOK(p.stderr.Bytes()) {
		t.Fatalf("producer: exit %d, stderr %q", code, p.stderr.Bytes())
	}
}

// TestWatch_ReadsSegmentTailBeforeMoving holds a caught-up follower (SIGSTOP) while the
// producer appends to its segment and rolls past it, and makes the first thing the
// follower sees on waking a directory event that is not a record being published (a
// file in the ring directory removed; readers ignore its name). The follower must still
// print the records left in the segment it was reading before it moves to the next one,
// instead of jumping to the next segment and reporting them lost
// ("filering: DIR: lost 410 records (101 to 510)") as it did before commit 8d6a75e.
func TestWatch_ReadsSegmentTailBeforeMoving(t *testing.T) {
	dir := ring(t)
	const first, n = 100, 2000 // 16 KiB segments hold 510 records of this size
	in := lines(n)
	cut := len(lines(first))
	p := startProducer(t, dir, "--segment-size", "16KiB", "--segments", "64")
	if _, err := p.stdin.Write(in[:cut]); err != nil {
		t.Fatal(err)
	}
	catLast := func(want string) func() bool {
		return func() bool {
			r, err := execute(nil, "cat", "--last", "1", dir)
			return err == nil && string(r.stdout) == want+"\n"
		}
	}
	waitFor(t, 10*time.Second, fmt.Sprintf("record %d", first), catLast(strconv.Itoa(first)))

	w := startProc(t, "watch", "--all", "--format", "json", dir)
	w.waitOutput(10*time.Second, fmt.Sprintf("record %d", first), func(out []byte) bool { return lastSeq(out) == first })
	probe := filepath.Join(dir, ".probe")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the follower wakes for it, finds nothing new, waits again
	w.stop()
	if err := os.Remove(probe); err != nil {
		t.Fatal(err)
	}
	if _, err := p.stdin.Write(in[cut:]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, fmt.Sprintf("record %d", n), catLast(strconv.Itoa(n)))
	w.cont()

	w.waitOutput(10*time.Second, fmt.Sprintf("record %d", n), func(out []byte) bool { return lastSeq(out) == n })
	p.stdin.Close()
	if code := p.wait(); code != 0 || !producerLogOK(p.stderr.Bytes()) {
		t.Fatalf("producer: exit %d, stderr %q", code, p.stderr.Bytes())
	}
	w.interrupt()
	if b := w.stderr.Bytes(); len(b) != 0 {
		t.Errorf("watch wrote to stderr: %q", b)
	}
	recs, err := parseJSON(w.stdout.Bytes(), false)
	if err == nil {
		err = checkNumbered(recs)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != n || recs[0].Seq != 1 {
		t.Fatalf("watch printed %d records (%s), want %d from 1", len(recs), seqRange(recs), n)
	}
}

// dropEmptyHot does what producers before this round did at a clean stop: when the last
// entry of dir's manifest is a hot segment holding no record, it removes the entry and
// the file, so that the next producer uses the number again.
func dropEmptyHot(t *testing.T, dir string) {
	t.Helper()
	m := loadManifest(t, dir)
	hot, ok := m.Hot()
	if !ok {
		return
	}
	path := filepath.Join(dir, hot.Name)
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 72 || binary.LittleEndian.Uint64(b[64:]) != 0 {
		return // gone, or holding a record
	}
	m.Segments = m.Segments[:len(m.Segments)-1]
	m.Generation++
	ringtest.PutManifest(t, dir, m)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// TestWatch_IdleProducerRestart restarts, three times, a producer that appends nothing,
// as systemd's Restart= does with a quiet one, while a follower waits, then appends one
// record: the follower prints each record once and never says the ring was created anew.
// It runs with this round's producer (an empty hot segment stays listed at a clean stop)
// and with what producers did before (it was removed, and its number used again), where
// `filering watch` printed a and b again after "the ring was created anew".
func TestWatch_IdleProducerRestart(t *testing.T) {
	for _, older := range []bool{false, true} {
		t.Run(fmt.Sprintf("empty hot segment removed=%v", older), func(t *testing.T) {
			dir := ring(t)
			produce := func(in string) {
				t.Helper()
				mustRun(t, []byte(in), "produce", "--segment-size", "4KiB", dir)
				if older {
					dropEmptyHot(t, dir)
				}
			}
			produce("a\nb\n")
			w := startProc(t, "watch", "--all", "--format", "json", dir)
			w.waitOutput(10*time.Second, "a and b", func(b []byte) bool { return bytes.Count(b, []byte("\n")) == 2 })
			for i := 0; i < 3; i++ {
				time.Sleep(300 * time.Millisecond) // the follower looks at the ring in between
				produce("")
			}
			time.Sleep(1200 * time.Millisecond) // a poll interval: anything printed again shows by now
			produce("c\n")
			w.waitOutput(10*time.Second, "c", func(b []byte) bool { return lastSeq(b) >= 3 })
			w.interrupt()
			recs, err := parseJSON(w.stdout.Bytes(), false)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range recs {
				p, _ := r.payload()
				got = append(got, fmt.Sprintf("%d:%s", r.Seq, p))
			}
			if fmt.Sprint(got) != "[1:a 2:b 3:c]" || len(w.stderr.Bytes()) != 0 {
				t.Fatalf("watch printed %v, said %q; want [1:a 2:b 3:c] and nothing on stderr", got, w.stderr.Bytes())
			}
		})
	}
}

// TestWatch_ReportsLossWithoutLaterRecord holds a follower (SIGSTOP) after it printed the
// first segment, while the producer writes four more and stops, and a taker takes them
// all: when it goes on, the follower reports their records lost at once, though no record
// follows them. Before, it reported them only with the next record, which may never come.
func TestWatch_ReportsLossWithoutLaterRecord(t *testing.T) {
	dir := ring(t)
	in := lines(600)
	first := len(lines(126)) // 4 KiB segments hold 126 of these records
	p := startProducer(t, dir, "--segment-size", "4KiB", "--segments", "16")
	if _, err := p.stdin.Write(in[:first]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "manifest", func() bool { return exists(filepath.Join(dir, "manifest")) })
	w := startProc(t, "watch", "--all", "--format", "json", dir)
	w.waitOutput(10*time.Second, "record 126", func(b []byte) bool { return lastSeq(b) == 126 })
	time.Sleep(100 * time.Millisecond)
	w.stop()
	p.stdin.Write(in[first:])
	p.stdin.Close()
	if code := p.wait(); code != 0 {
		t.Fatalf("producer: exit %d, %q", code, p.stderr.Bytes())
	}
	if r := run(t, nil, "take", dir); r.code != 0 || bytes.Count(r.stdout, []byte("\n")) != 600 {
		t.Fatalf("take: %v, %d lines", r, bytes.Count(r.stdout, []byte("\n")))
	}
	w.cont()
	want := fmt.Sprintf("filering: %s: lost 474 records (127 to 600)\n", dir)
	for deadline := time.Now().Add(10 * time.Second); string(w.stderr.Bytes()) != want; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("watch said %q, printed to %d; want %q", w.stderr.Bytes(), lastSeq(w.stdout.Bytes()), want)
		}
	}
	w.interrupt()
	if lastSeq(w.stdout.Bytes()) != 126 || string(w.stderr.Bytes()) != want {
		t.Fatalf("watch printed to %d, said %q; want to 126 and %q", lastSeq(w.stdout.Bytes()), w.stderr.Bytes(), want)
	}
}

// TestWatch_BeforeRingExistsEverythingTaken starts a follower before its ring exists and
// holds it (SIGSTOP) while a producer writes 600 records and stops and a taker takes
// them all: when it goes on, the follower finds nothing to print and must report all 600
// lost, since it expects every record from 1 on; then it prints the next record. Before,
// it went on from the ring's next sequence number without a word: the torture test's
// "1..43860 neither printed nor reported lost".
func TestWatch_BeforeRingExistsEverythingTaken(t *testing.T) {
	dir := ring(t)
	w := startProc(t, "watch", "--all", "--format", "json", dir)
	w.waitIdle()
	w.stop()
	mustRun(t, lines(600), "produce", "--segment-size", "4KiB", "--segments", "16", dir)
	if r := run(t, nil, "take", dir); r.code != 0 || bytes.Count(r.stdout, []byte("\n")) != 600 {
		t.Fatalf("take: %v", r)
	}
	w.cont()
	want := waitingNotice(dir) + "\n" + fmt.Sprintf("filering: %s: lost 600 records (1 to 600)\n", dir)
	waitFor(t, 10*time.Second, "a loss report", func() bool { return string(w.stderr.Bytes()) == want })
	mustRun(t, []byte("601\n"), "produce", dir)
	w.waitOutput(10*time.Second, "record 601", func(b []byte) bool { return lastSeq(b) == 601 })
	w.interrupt()
	if got := string(w.stderr.Bytes()); got != want {
		t.Fatalf("watch said %q, want %q", got, want)
	}
	if recs, err := parseJSON(w.stdout.Bytes(), false); err != nil || len(recs) != 1 {
		t.Fatalf("watch printed %s (%v), want only record 601", seqRange(recs), err)
	}
}

// TestWatch_DefaultLast10 checks that watch behaves as tail -f and journalctl -f: with
// no selection it prints the last 10 records, then each new one; --last N, --last 0,
// --from SEQ and --all choose otherwise, and --all with another selection is a usage
// error.
func TestWatch_DefaultLast10(t *testing.T) {
	dir := ring(t)
	p := startProducer(t, dir)
	if _, err := p.stdin.Write(lines(50)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "record 50", func() bool {
		r, err := execute(nil, "cat", "--last", "1", dir)
		return err == nil && string(r.stdout) == "50\n"
	})
	seqs := func(from, to uint64) []uint64 {
		var s []uint64
		for q := from; q <= to; q++ {
			s = append(s, q)
		}
		return s
	}
	type watcher struct {
		w    *proc
		want []uint64 // before the new records
	}
	var ws []watcher
	for _, tc := range []struct {
		args []string
		want []uint64
	}{
		{nil, seqs(41, 50)},
		{[]string{"--last", "3"}, seqs(48, 50)},
		{[]string{"--last", "0"}, nil},
		{[]string{"--from", "45"}, seqs(45, 50)},
		{[]string{"--all"}, seqs(1, 50)},
		{[]string{"--last", "2", "--spin", "20ms"}, seqs(49, 50)},
	} {
		args := append(append([]string{"watch", "--format", "json"}, tc.args...), dir)
		ws = append(ws, watcher{startProc(t, args...), tc.want})
	}
	for _, w := range ws {
		if len(w.want) > 0 {
			w.w.waitOutput(10*time.Second, "record 50", func(out []byte) bool { return lastSeq(out) == 50 })
		}
	}
	time.Sleep(300 * time.Millisecond) // --last 0 has looked at the ring by now
	if _, err := p.stdin.Write([]byte("51\n52\n")); err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		w.w.waitOutput(10*time.Second, "record 52", func(out []byte) bool { return lastSeq(out) == 52 })
		w.w.interrupt()
		recs, err := parseJSON(w.w.stdout.Bytes(), false)
		if err != nil {
			t.Fatalf("%s: %v", w.w.name, err)
		}
		var got []uint64
		for _, r := range recs {
			got = append(got, r.Seq)
		}
		if want := append(slices.Clone(w.want), 51, 52); !slices.Equal(got, want) {
			t.Errorf("%s printed %v, want %v", w.w.name, got, want)
		}
	}
	p.stdin.Close()
	p.wait()

	r := run(t, nil, "watch", "--all", "--last", "5", dir)
	if r.code != 2 || !strings.Contains(string(r.stderr), "--all") {
		t.Errorf("watch --all --last 5: %v, want exit status 2 naming --all", r)
	}
}
