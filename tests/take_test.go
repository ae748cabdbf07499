package tests

import (
	"path/filepath"
	"strconv"
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
