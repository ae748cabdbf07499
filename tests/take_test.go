package tests

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTake_CompetingTakers runs three takers against a producer that seals segments by
// age and by size: between them they print every record exactly once, each in order.
func TestTake_CompetingTakers(t *testing.T) {
	dir := ring(t)
	// 16 KiB segments hold 510 records of this size; the ring keeps 64 of them, more
	// than n needs, so retention never removes a segment before a taker can take it.
	n := short(20000, 6000)
	p := startProducer(t, dir, "--segment-size", "16KiB", "--segments", "64", "--seal-after", "50ms")
	f := feed(p.stdin, feedOptions{count: n, chunk: 100, pause: 5 * time.Millisecond})
	waitFor(t, 10*time.Second, "manifest", func() bool { return exists(filepath.Join(dir, "manifest")) })

	takers := make([]*proc, 3)
	for i := range takers {
		takers[i] = startProc(t, "take", "--follow", "--format", "json", dir)
	}
	for _, tk := range takers {
		tk.waitOpen(dir)
	}
	<-f.done
	if f.err != nil || f.written != n {
		t.Fatalf("fed %d of %d lines: %v", f.written, n, f.err)
	}
	if code := p.wait(); code != 0 || !producerLogOK(p.stderr.Bytes()) {
		t.Fatalf("producer: exit %d, stderr %q", code, p.stderr.Bytes())
	}
	// The producer's clean exit sealed the last segment: the takers take it too.
	waitFor(t, 20*time.Second, "ring emptied by the takers", func() bool { return len(segmentFiles(t, dir)) == 0 })

	seen := make([]int, n+1)
	for i, tk := range takers {
		tk.interrupt()
		if b := tk.stderr.Bytes(); len(b) != 0 {
			t.Errorf("taker %d wrote to stderr: %q", i, b)
		}
		recs, err := parseJSON(tk.stdout.Bytes(), false)
		if err != nil {
			t.Fatalf("taker %d: %v", i, err)
		}
		for j, r := range recs {
			if j > 0 && r.Seq <= recs[j-1].Seq {
				t.Errorf("taker %d printed seq %d after %d: it takes the oldest sealed segment first", i, r.Seq, recs[j-1].Seq)
			}
			if pl, err := r.payload(); err != nil || string(pl) != strconv.FormatUint(r.Seq, 10) {
				t.Fatalf("taker %d: seq %d holds %q (%v)", i, r.Seq, pl, err)
			}
			if r.Seq < 1 || r.Seq > uint64(n) {
				t.Fatalf("taker %d printed seq %d, outside 1..%d", i, r.Seq, n)
			}
			seen[r.Seq]++
		}
		t.Logf("taker %d printed %d records", i, len(recs))
	}
	var missing, repeated []int
	for seq := 1; seq <= n; seq++ {
		switch {
		case seen[seq] == 0:
			missing = append(missing, seq)
		case seen[seq] > 1:
			repeated = append(repeated, seq)
		}
	}
	if len(missing) > 0 || len(repeated) > 0 {
		t.Errorf("of 1..%d, %d records were printed by no taker (first ones: %v) and %d more than once (first ones: %v)",
			n, len(missing), missing[:min(len(missing), 10)], len(repeated), repeated[:min(len(repeated), 10)])
	}
}

// TestTake_FollowBeforeRingExists starts `take --follow` on a directory that does not
// exist yet: it says once that it waits, and takes every sealed segment once a producer
// makes the ring; without --follow, the missing ring is an error.
func TestTake_FollowBeforeRingExists(t *testing.T) {
	dir := ring(t)
	if r := run(t, nil, "take", dir); r.code != 1 || !strings.Contains(string(r.stderr), dir) {
		t.Fatalf("take without --follow on a missing ring: %v, want exit 1 naming it", r)
	}
	tk := startProc(t, "take", "--follow", "--format", "json", dir)
	time.Sleep(200 * time.Millisecond) // let it find the directory missing
	if tk.exited() {
		t.Fatalf("take --follow exited before the ring existed: %v, stderr %q", tk.err, tk.stderr.Bytes())
	}
	const n = 2000
	// A clean stop seals the last segment: the taker gets every record.
	if r := run(t, lines(n), "produce", "--segment-size", "16KiB", "--segments", "64", dir); r.code != 0 || !producerLogOK(r.stderr) {
		t.Fatalf("produce: %v", r)
	}
	tk.waitOutput(20*time.Second, "record 2000", func(out []byte) bool { return lastSeq(out) == n })
	tk.interrupt()
	recs, err := parseJSON(tk.stdout.Bytes(), false)
	if err == nil {
		err = checkNumbered(recs)
	}
	if err != nil || len(recs) != n {
		t.Fatalf("take printed %d records (%v), want %d", len(recs), err, n)
	}
	if got, want := string(tk.stderr.Bytes()), waitingNotice(dir)+"\n"; got != want {
		t.Errorf("take wrote to stderr %q, want only %q", got, want)
	}
}
