package tests

import (
	"cmp"
	"context"
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
)

// TestWatch_BeforeRingExists starts a follower on a directory that does not exist yet,
// then a producer: the follower prints every record, in order, and ends cleanly on
// SIGINT. The ring's 16 KiB segments hold 510 records each, so the follower crosses
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
	if len(w.stderr.Bytes()) != 0 {
		t.Errorf("watch wrote to stderr: %q", w.stderr.Bytes())
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
	w := newProc(t, "watch", "--format", "json", dir)
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
	for _, line := range strings.Split(strings.TrimSuffix(string(w.stderr.Bytes()), "\n"), "\n") {
		if line == "" {
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
			w := startProc(t, "watch", "--format", "json", dir)
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
	cmd := exec.CommandContext(ctx, "sh", "-c", `{ "$0" watch "$1" 2>"$2"; echo $? >"$3"; } | head -n 5`,
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

	w := startProc(t, "watch", "--format", "json", dir)
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
