package tests

import (
	"fmt"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// TestSoak runs one producer at full speed with 16 followers (`watch --format json`), 4
// snapshot readers (`cat --last 1000` in a loop) and 2 competing takers (`take
// --follow --format json`) on one ring for FILERING_SOAK_SECONDS (3, or 1 with -short
// or -race):
//
//	FILERING_SOAK_SECONDS=60 go test -count=1 -run Soak -v ./tests/
//
// It runs twice: on 16 segments of 64 KiB (a roll every 1636 records), and on 4 segments
// of 2 MiB, which the producer and the readers map on huge pages where the kernel allows.
//
// Every record holds its own sequence number, zero-padded to 10 digits, so that every
// record takes 40 bytes and each 64 KiB segment holds exactly 1636 records: segment k
// holds 1636(k-1)+1 .. 1636k (52427 records for 2 MiB). At the end the writer stops, with the producer still
// running, so its hot segment keeps the last records; then SIGINT ends the producer,
// which seals it, and the takers empty the ring. The counts must add up exactly:
//
//   - Each follower started before the ring existed, so it owes every record 1..N (N
//     lines written): the records it printed and those it reported lost are 1..N,
//     each exactly once. No other line on its stderr.
//   - Takers: each record is printed by at most one taker, once. A segment is taken
//     whole, by one taker, or not at all, and then retention removed it before any
//     taker claimed it: records taken + records of segments never taken = N. The
//     segments the last manifest lists were all taken.
//   - Each snapshot is at most 1000 records in increasing order; cat exits 0 with
//     nothing on stderr.
//   - SIGINT ends the producer, every follower and every taker with status 0.
func TestSoak(t *testing.T) {
	for _, c := range []struct {
		name           string
		size, segments uint64
	}{
		{"64KiB", 64 << 10, 16},
		{"2MiB", 2 << 20, 4},
	} {
		t.Run(c.name, func(t *testing.T) { soak(t, c.size, c.segments) })
	}
}

func soak(t *testing.T, segmentSize, retained uint64) {
	secs := envCount(t, "FILERING_SOAK_SECONDS", short(3, 1))
	perSegment := (segmentSize - 64) / 40
	padded := func(k uint64) string { return fmt.Sprintf("%010d", k) }
	checkPayload := func(seq uint64, data []byte) error {
		if v, ok := decimal(data); !ok || v != seq || len(data) != 10 {
			return fmt.Errorf("seq %d holds %q", seq, data)
		}
		return nil
	}
	dir := ring(t)
	errs := &firstError{}
	began := time.Now()

	followers := make([]*follower, 16)
	for i := range followers {
		who := fmt.Sprintf("follower %d", i)
		followers[i] = startFollower(t, dir, who, errs, func(seq uint64, data []byte) {
			if err := checkPayload(seq, data); err != nil {
				errs.add("%s: %v", who, err)
			}
		})
	}
	for _, f := range followers {
		f.waitIdle()
	}

	p := startProducer(t, dir, "--segment-size", strconv.FormatUint(segmentSize, 10), "--segments", strconv.FormatUint(retained, 10))
	fd := feed(p.stdin, feedOptions{line: func(k int) string { return padded(uint64(k)) }, keep: true})
	waitFor(t, 10*time.Second, "manifest", func() bool { return exists(filepath.Join(dir, "manifest")) })

	taken := &seqTally{}
	takers := make([]*lineStream, 2)
	takenBy := make([]uint64, len(takers))
	for i := range takers {
		who := fmt.Sprintf("taker %d", i)
		var prev uint64
		takers[i] = startStream(t, streamOptions{}, func(chunk []byte) {
			eachLine(chunk, func(line []byte) error {
				seq, data, err := jsonLine(line)
				if err == nil {
					err = checkPayload(seq, data)
				}
				if err == nil && seq <= prev {
					err = fmt.Errorf("seq %d after %d", seq, prev)
				}
				if err == nil && taken.add(seq, i) > 1 {
					err = fmt.Errorf("seq %d printed by a second taker", seq)
				}
				if err != nil {
					errs.add("%s: %v", who, err)
					return err
				}
				prev = seq
				takenBy[i]++
				return nil
			})
		}, "take", "--follow", "--format", "json", dir)
	}

	var snapshots, snapshotRecords atomic.Int64
	stopReaders := repeatedly(t, 4, func() bool {
		res, err := execute(nil, "cat", "--last", "1000", dir)
		if err != nil {
			errs.add("cat: %v", err)
			return false
		}
		if res.code != 0 || len(res.stderr) != 0 {
			errs.add("cat --last 1000: %v", res)
			return true
		}
		var prev uint64
		n := 0
		eachLine(res.stdout, func(line []byte) error {
			v, ok := decimal(line)
			switch {
			case !ok || len(line) != 10:
				errs.add("cat --last 1000: line %q", line)
				return fmt.Errorf("bad line")
			case v <= prev:
				errs.add("cat --last 1000: %d after %d", v, prev)
				return fmt.Errorf("bad order")
			}
			prev = v
			n++
			return nil
		})
		if n > 1000 {
			errs.add("cat --last 1000 printed %d records", n)
		}
		snapshots.Add(1)
		snapshotRecords.Add(int64(n))
		return true
	})

	time.Sleep(time.Duration(secs) * time.Second)
	written := uint64(fd.halt())
	if fd.err != nil {
		t.Fatalf("writing to the producer: %v", fd.err)
	}
	elapsed := time.Since(began)
	waitFor(t, 20*time.Second, fmt.Sprintf("record %d", written), func() bool {
		res, err := execute(nil, "cat", "--last", "1", dir)
		return err == nil && string(res.stdout) == padded(written)+"\n"
	})
	for i, f := range followers {
		waitFor(t, 60*time.Second, fmt.Sprintf("follower %d to print record %d", i, written), func() bool { return f.last.Load() == written })
	}
	p.interrupt()
	if b := p.stderr.Bytes(); !producerLogOK(b) {
		t.Errorf("producer stderr: %q", b)
	}
	stopReaders()
	waitFor(t, 30*time.Second, "the takers to empty the ring", func() bool { return len(segmentFiles(t, dir)) == 0 })
	m := readManifest(t, dir)
	for _, e := range m.Segments {
		waitFor(t, 10*time.Second, fmt.Sprintf("the takers to print %s, seq %d to %d", e.Name, e.FirstSeq, e.LastSeq),
			func() bool { return taken.missing(e.FirstSeq, e.LastSeq) == 0 })
	}
	for _, tk := range takers {
		tk.interrupt()
		tk.finish()
		if b := tk.stderr.Bytes(); len(b) != 0 {
			t.Errorf("%s wrote to stderr: %q", tk.name, b)
		}
	}
	var printed, lost, reports, minPrinted uint64
	minPrinted = written
	for i, f := range followers {
		f.interrupt()
		f.finish()
		ls, err := lossNotices(f.stderr.Bytes(), dir)
		if err == nil {
			err = checkTiling(f.printed, ls, 1, written)
		}
		if err != nil {
			t.Errorf("follower %d: %v", i, err)
		}
		printed += f.printed.count()
		minPrinted = min(minPrinted, f.printed.count())
		lost += ls.count()
		reports += uint64(len(ls))
	}
	errs.check(t)

	// Segment k holds perSegment(k-1)+1 .. perSegment k; the manifest must agree.
	for _, e := range m.Segments {
		k, _ := strconv.ParseUint(e.Name[:16], 10, 64)
		if e.FirstSeq != (k-1)*perSegment+1 || e.LastSeq != min(k*perSegment, written) {
			t.Fatalf("%s holds %d..%d, want %d..%d", e.Name, e.FirstSeq, e.LastSeq, (k-1)*perSegment+1, min(k*perSegment, written))
		}
	}
	segments := (written + perSegment - 1) / perSegment
	var takenRecords, droppedRecords, droppedSegments uint64
	for k := uint64(1); k <= segments; k++ {
		from, to := (k-1)*perSegment+1, min(k*perSegment, written)
		c0, who := taken.get(from)
		for seq := from; seq <= to; seq++ {
			if c, w := taken.get(seq); c != c0 || w != who {
				t.Fatalf("segment %d (seq %d..%d): seq %d printed %d times by taker %d, seq %d %d times by taker %d: not taken whole",
					k, from, to, from, c0, who, seq, c, w)
			}
		}
		if c0 == 0 {
			droppedRecords += to - from + 1
			droppedSegments++
		} else {
			takenRecords += to - from + 1
		}
	}
	if takenRecords+droppedRecords != written || takenRecords != takenBy[0]+takenBy[1] {
		t.Fatalf("taken %d (%d + %d printed) + dropped %d != written %d", takenRecords, takenBy[0], takenBy[1], droppedRecords, written)
	}
	t.Logf("%d s: %d records written (%.0f/s) in %d segments of %d KiB, %d segments retained", secs, written,
		float64(written)/elapsed.Seconds(), segments, segmentSize>>10, len(m.Segments))
	t.Logf("16 followers: %d records printed (%.1f%%; the slowest %d), %d reported lost in %d reports; printed + lost = 16 x %d",
		printed, 100*float64(printed)/float64(16*written), minPrinted, lost, reports, written)
	t.Logf("2 takers: %d + %d records taken, each once; %d segments (%d records) removed by retention before any taker claimed them",
		takenBy[0], takenBy[1], droppedSegments, droppedRecords)
	t.Logf("4 snapshot readers: %d snapshots, %d records; every process ended with status 0 on SIGINT; in %v",
		snapshots.Load(), snapshotRecords.Load(), time.Since(began).Round(time.Millisecond))
}
