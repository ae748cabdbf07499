package tests

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The crash torture tests kill filering processes with SIGKILL at random instants, many
// times in a row, while every other kind of process keeps reading the same ring, and
// check what must survive. FILERING_TORTURE_KILLS sets the number of producer kills (20,
// or 10 with -short or -race; the taker test kills a quarter as many takers, at least 3):
//
//	FILERING_TORTURE_KILLS=300 go test -count=1 -run Torture -v ./tests/

// tortureKills returns the number of producer kills to run.
func tortureKills(t *testing.T) int {
	return envCount(t, "FILERING_TORTURE_KILLS", short(20, 10))
}

// feedRun is what the writer fed one producer process: the lines holding the ids
// first..last, in that order, each line just its id in decimal.
type feedRun struct {
	first, last uint64 // ids handed to the run's pipe; last < first while none
	start       uint64 // the run's first sequence number, from the manifest; 0 when not read
	base        uint64 // the sequence number the records show for id first; valid when seen
	seen        bool   // some reader printed a record of this run
	maxID       uint64 // the highest id of the run any reader printed
}

// ledger knows every id the writer handed to a producer, and checks every record any
// reader prints against it. A producer appends the lines it reads in order, one record
// each, and a line still in its pipe or input buffer when it is killed is never
// appended, so the records of
// one run hold the ids first, first+1, ... up to some id, with consecutive sequence
// numbers: a record with id i of run r must have the sequence number base_r + (i -
// first_r), the same base_r for every record of the run, from whichever reader. That
// one rule catches a payload under the wrong sequence number, an id appended twice, a
// sequence number given to two records, and a record that is not one the writer wrote.
// It is safe for concurrent use.
type ledger struct {
	mu     sync.Mutex
	runs   []*feedRun
	nextID uint64
	errs   *firstError
	// skips holds the sequence numbers at which a producer went on after finding its
	// hot segment gone, skipping every number that segment could have used
	// (docs/FORMAT.md, "Producer recovery").
	skips map[uint64]bool
	max   uint64 // the highest sequence number any reader printed
}

func newLedger(errs *firstError) *ledger {
	return &ledger{nextID: 1, errs: errs, skips: map[uint64]bool{}}
}

// newRun starts the bookkeeping of a new producer run and returns its index.
func (l *ledger) newRun() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.runs = append(l.runs, &feedRun{first: l.nextID, last: l.nextID - 1})
	return len(l.runs) - 1
}

// handed notes that ids up to last are about to be written to run r's pipe, and
// returns the first of them.
func (l *ledger) handed(r int, last uint64) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	first := l.nextID
	l.runs[r].last = last
	l.nextID = last + 1
	return first
}

// setStart records run r's first sequence number as the manifest shows it.
func (l *ledger) setStart(r int, start uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	run := l.runs[r]
	run.start = start
	if run.seen && run.base != start {
		l.errs.add("run %d: the manifest says its first record is seq %d, but readers printed id %d as seq %d", r, start, run.first, run.base)
	}
}

// observe checks the record seq, data that who printed.
func (l *ledger) observe(seq uint64, data []byte, who string) {
	id, ok := decimal(data)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.max = max(l.max, seq)
	r := sort.Search(len(l.runs), func(i int) bool { return l.runs[i].first > id }) - 1
	if !ok || r < 0 || id > l.runs[r].last {
		l.errs.add("%s: seq %d holds %q, not a line the writer wrote (ids 1 to %d)", who, seq, data, l.nextID-1)
		return
	}
	run := l.runs[r]
	if seq <= id-run.first {
		l.errs.add("%s: seq %d holds id %d, the %d-th line of run %d", who, seq, id, id-run.first+1, r)
		return
	}
	base := seq - (id - run.first)
	switch {
	case !run.seen:
		run.seen, run.base = true, base
	case base != run.base:
		l.errs.add("%s: seq %d holds id %d of run %d, so id %d would be seq %d; an earlier record put it at seq %d",
			who, seq, id, r, run.first, base, run.base)
		return
	}
	if run.start != 0 && base != run.start {
		l.errs.add("%s: seq %d holds id %d of run %d, so that run started at seq %d; the manifest said %d", who, seq, id, r, base, run.start)
	}
	run.maxID = max(run.maxID, id)
}

// maxSeq returns the highest sequence number any reader printed so far.
func (l *ledger) maxSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.max
}

// chain checks, once every record that must have been printed was, that the runs
// follow each other: each run's records start right after the last record of the run
// before that has any (or at a number a recovery skipped to), so that no record was
// dropped between the last one a killed producer committed and the first of the next,
// and none was numbered twice. A run whose last record was never printed fails here,
// which is why the test lets the takers take every sealed segment after each restart.
// It returns how many lines the writer handed to producers and how many records they
// appended.
func (l *ledger) chain(last uint64) (handed, appended uint64, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var end uint64 // the last sequence number of the runs so far
	for r, run := range l.runs {
		handed += run.last + 1 - run.first
		if !run.seen {
			continue
		}
		switch {
		case run.base <= end:
			return 0, 0, fmt.Errorf("run %d starts at seq %d, not after %d where the run before ended", r, run.base, end)
		case run.base != end+1 && !l.skips[run.base]:
			return 0, 0, fmt.Errorf("run %d starts at seq %d, but the run before ended at %d and no producer said it skipped to %d",
				r, run.base, end, run.base)
		}
		n := run.maxID - run.first + 1
		appended += n
		end = run.base + n - 1
	}
	if end != last {
		return 0, 0, fmt.Errorf("the runs end at seq %d, the ring at %d", end, last)
	}
	return handed, appended, nil
}

// idWriter feeds a producer consecutive ids, one a line, from its own goroutine, as fast
// as the pipe takes them. Unlike feed, it tells the ledger the last id of every write
// before it makes it: a producer killed during a write may have read any part of it.
type idWriter struct {
	stop, done chan struct{}
}

// startIDWriter writes the ids after the last one handed out to w for run r, up to and
// including limit (no limit when 0). It never closes w.
func startIDWriter(w io.Writer, l *ledger, r int, limit uint64) *idWriter {
	iw := &idWriter{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(iw.done)
		buf := make([]byte, 0, 64<<10)
		next := l.nextIDForWriter()
		for {
			select {
			case <-iw.stop:
				return
			default:
			}
			buf = buf[:0]
			id := next
			for len(buf) < 64<<10-24 && (limit == 0 || id <= limit) {
				buf = strconv.AppendUint(buf, id, 10)
				buf = append(buf, '\n')
				id++
			}
			if len(buf) == 0 {
				return
			}
			l.handed(r, id-1)
			if _, err := w.Write(buf); err != nil {
				return
			}
			next = id
		}
	}()
	return iw
}

// nextIDForWriter returns the next id to hand out.
func (l *ledger) nextIDForWriter() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nextID
}

// halt stops the writer and waits for it.
func (iw *idWriter) halt() {
	select {
	case <-iw.stop:
	default:
		close(iw.stop)
	}
	<-iw.done
}

// Notices a producer may print about a recovery.
var (
	recoveredLine  = regexp.MustCompile(`^filering: .*: recovered \d+ records after an unclean stop; next sequence \d+$`)
	hotMissingLine = regexp.MustCompile(`^filering: .*: hot segment missing; continuing at sequence (\d+)$`)
)

// producerNotices reads a producer's standard error, which may hold only recovery
// notices and warnings, and notes the sequence numbers it skipped to.
func producerNotices(path string, l *ledger) (recovered, missing int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		switch m := hotMissingLine.FindStringSubmatch(line); {
		case line == "" || strings.HasPrefix(line, "filering: warning: "):
		case recoveredLine.MatchString(line):
			recovered++
		case m != nil:
			missing++
			seq, _ := strconv.ParseUint(m[1], 10, 64)
			l.mu.Lock()
			l.skips[seq] = true
			l.mu.Unlock()
		default:
			return 0, 0, fmt.Errorf("producer stderr: unexpected line %q", line)
		}
	}
	return recovered, missing, nil
}

// follower is the bookkeeping of one `filering watch --format json` process.
type follower struct {
	*lineStream
	prev    uint64   // last seq printed
	printed spanList // what it printed
	last    atomic.Uint64
}

// startFollower starts `filering watch --format json dir`, checking every record it
// prints with check (called on the stream's goroutine) as it comes: strictly
// increasing sequence numbers.
func startFollower(t *testing.T, dir, who string, errs *firstError, check func(seq uint64, data []byte)) *follower {
	f := &follower{}
	f.lineStream = startStream(t, streamOptions{}, func(chunk []byte) {
		eachLine(chunk, func(line []byte) error {
			seq, data, err := jsonLine(line)
			if err == nil && seq <= f.prev {
				err = fmt.Errorf("seq %d after %d", seq, f.prev)
			}
			if err != nil {
				errs.add("%s: %v", who, err)
				return err
			}
			f.prev = seq
			f.printed.add(seq)
			f.last.Store(seq)
			check(seq, data)
			return nil
		})
	}, "watch", "--all", "--format", "json", dir)
	return f
}

// TestTorture_ProducerKills kills the producer with SIGKILL at random instants, again
// and again, each time restarting it on the same ring with the writer going on where it
// left off. The ring has 16 KiB segments, 16 of them, so at full speed the producer
// rolls and replaces the manifest every few hundred records and kills land in every
// part of its work: appending, rolling, retiring, recovering. Meanwhile two followers,
// a loop of `cat --last 500` snapshots and two competing takers read the same ring.
//
// Takers remove the sealed segments they take, so followers and snapshots find them
// missing; the producer's retention also overwrites segments nobody took. What still
// holds, and is checked:
//
//   - No reader prints anything on stderr but followers' exact loss reports; cat exits
//     0 every time; takers exit 0 on SIGINT and never redeliver (no taker dies here).
//   - Within one process's output, sequence numbers strictly increase.
//   - Every record holds a line the writer wrote, under the sequence number that line
//     must have (see ledger): no wrong payload, no number used twice, no line twice.
//   - Each restarted producer continues its sequence right after the last record the
//     killed one committed: nothing committed is dropped by recovery (ledger.chain).
//   - After each restart the manifest's sealed segments follow each other without a
//     gap (except where a producer said it skipped numbers), and the takers deliver
//     every record they hold. The writer pauses until then, so retention cannot remove
//     them first. Records a taker printed count once: never two takers, never twice.
//   - The followers' printed records and reported losses together cover 1..last, each
//     number once: a follower never skips a record silently.
//
// Not checked, because nothing outside the producer can see it: the records of
// segments that retention removed before any reader printed them. Their number is
// known exactly at the end (appended minus taken), and reported.
//
// It measures the recovery time: from starting `filering produce` on a ring whose
// producer was killed to the first new record being readable, seen by a `filering wait`
// started beforehand.
func TestTorture_ProducerKills(t *testing.T) {
	kills := tortureKills(t)
	flags := []string{"--segment-size", "16KiB", "--segments", "16"}
	dir := ring(t)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("seed %d, %d kills", seed, kills)
	began := time.Now()
	errs := &firstError{}
	l := newLedger(errs)
	taken := &seqTally{}

	// The followers start before the ring exists: every record is one they must print
	// or report lost.
	followers := make([]*follower, 2)
	for i := range followers {
		who := fmt.Sprintf("follower %d", i)
		followers[i] = startFollower(t, dir, who, errs, func(seq uint64, data []byte) { l.observe(seq, data, who) })
	}
	for _, f := range followers {
		f.waitIdle()
	}

	var (
		recovery           durations
		baseline           durations // of `filering cat --last 1`, start to exit, for comparison
		recovered, missing int
		earlyKills         int
		stderrDir          = t.TempDir()
	)
	// start starts a producer run and writes its first line. Its standard error goes
	// to a file, so that what it printed before its first record is there once the
	// record is.
	start := func() (*proc, int, string) {
		r := l.newRun()
		p := newProc(t, append(append([]string{"produce"}, flags...), dir)...).withStdin()
		errPath := filepath.Join(stderrDir, fmt.Sprintf("producer-%d", r))
		ef, err := os.Create(errPath)
		if err != nil {
			t.Fatal(err)
		}
		defer ef.Close()
		p.cmd.Stderr = ef
		p.start()
		id := l.handed(r, l.nextIDForWriter())
		if _, err := fmt.Fprintf(p.stdin, "%d\n", id); err != nil {
			t.Fatalf("write to the producer: %v", err)
		}
		return p, r, errPath
	}
	// notices checks a producer's stderr and learns the numbers it skipped to; final
	// is set once the producer has ended, to count its notices.
	notices := func(errPath string, final bool) {
		t.Helper()
		rec, miss, err := producerNotices(errPath, l)
		if err != nil {
			t.Fatal(err)
		}
		if final {
			recovered += rec
			missing += miss
		}
	}
	// kill ends a producer run with SIGKILL.
	kill := func(p *proc, errPath string) {
		t.Helper()
		p.signal(syscall.SIGKILL)
		if code := p.wait(); code != -1 {
			b, _ := os.ReadFile(errPath)
			t.Fatalf("producer ended with status %d before the SIGKILL; stderr %q", code, b)
		}
		notices(errPath, true)
	}
	// restart starts a producer, measures how long its first record takes to become
	// readable, and checks the ring it recovered; then it lets the takers take every
	// sealed segment and checks they did. It returns with the producer running, its
	// first line appended and the writer paused.
	restart := func(first bool) (*proc, int, string) {
		t.Helper()
		var w *proc
		if !first {
			after := l.maxSeq()
			c0 := time.Now()
			if r := run(t, nil, "cat", "--last", "1", "--format", "json", dir); r.code == 0 {
				after = max(after, lastSeq(r.stdout))
			}
			baseline = append(baseline, time.Since(c0))
			w = startProc(t, "wait", "--after", strconv.FormatUint(after, 10), "--timeout", "5s", dir)
			w.waitOpen(dir)
		}
		t0 := time.Now()
		p, r, errPath := start()
		if first {
			waitFor(t, 10*time.Second, "the first record", func() bool {
				r, err := execute(nil, "cat", dir)
				return err == nil && r.code == 0 && len(r.stdout) > 0
			})
		} else {
			if code := w.wait(); code != 0 {
				t.Fatalf("no new record readable within 5s of restarting the producer: wait exited %d, stderr %q", code, w.stderr.Bytes())
			}
			recovery = append(recovery, time.Since(t0))
		}
		if p.exited() {
			b, _ := os.ReadFile(errPath)
			t.Fatalf("producer exited: %v; stderr %q", p.err, b)
		}
		notices(errPath, false)

		m := readManifest(t, dir)
		n := len(m.Segments)
		if n == 0 || m.Segments[n-1].Sealed {
			t.Fatalf("manifest after a restart has no hot segment: %+v", m.Segments)
		}
		hot := m.Segments[n-1]
		l.setStart(r, hot.FirstSeq)
		if w != nil {
			if got, err := strconv.ParseUint(strings.TrimSpace(string(w.stdout.Bytes())), 10, 64); err != nil || got < hot.FirstSeq {
				t.Fatalf("filering wait printed %q; want the new producer's first record, %d or later", w.stdout.Bytes(), hot.FirstSeq)
			}
		}
		l.mu.Lock()
		for i, e := range m.Segments {
			if i < n-1 && (!e.Sealed || e.LastSeq < e.FirstSeq) {
				t.Errorf("manifest after a restart: entry %d is not a sealed segment: %+v", i, m.Segments)
			}
			if i > 0 && e.FirstSeq != m.Segments[i-1].LastSeq+1 && !l.skips[e.FirstSeq] {
				t.Errorf("manifest after a restart: %s starts at seq %d, %s ended at %d, and no producer said it skipped to %d",
					e.Name, e.FirstSeq, m.Segments[i-1].Name, m.Segments[i-1].LastSeq, e.FirstSeq)
			}
		}
		l.mu.Unlock()
		if t.Failed() {
			t.FailNow()
		}
		waitFor(t, 20*time.Second, "the takers to take every sealed segment", func() bool {
			names := segmentFiles(t, dir)
			return len(names) == 1 && filepath.Base(names[0]) == hot.Name
		})
		for _, e := range m.Segments[:n-1] {
			waitFor(t, 10*time.Second, fmt.Sprintf("the takers to print %s, seq %d to %d", e.Name, e.FirstSeq, e.LastSeq),
				func() bool { return taken.missing(e.FirstSeq, e.LastSeq) == 0 })
		}
		errs.check(t)
		return p, r, errPath
	}

	p, r, errPath := restart(true)

	takers := make([]*lineStream, 2)
	for i := range takers {
		who := fmt.Sprintf("taker %d", i)
		var prev uint64
		takers[i] = startStream(t, streamOptions{}, func(chunk []byte) {
			eachLine(chunk, func(line []byte) error {
				seq, data, err := jsonLine(line)
				if err == nil && seq <= prev {
					err = fmt.Errorf("seq %d after %d", seq, prev)
				}
				if err == nil && taken.add(seq, i) > 1 {
					err = fmt.Errorf("seq %d printed by more than one taker (first by taker %d)", seq, func() int { _, w := taken.get(seq); return w }())
				}
				if err != nil {
					errs.add("%s: %v", who, err)
					return err
				}
				prev = seq
				l.observe(seq, data, who)
				return nil
			})
		}, "take", "--follow", "--format", "json", dir)
	}
	var snapshots, snapshotRecords atomic.Int64
	stopReaders := repeatedly(t, 1, func() bool {
		res, err := execute(nil, "cat", "--format", "json", "--last", "500", dir)
		if err != nil {
			errs.add("cat: %v", err)
			return false
		}
		if res.code != 0 || len(res.stderr) != 0 {
			errs.add("cat --last 500: %v", res)
			return true
		}
		var prev uint64
		n := 0
		eachLine(res.stdout, func(line []byte) error {
			seq, data, err := jsonLine(line)
			if err == nil && seq <= prev {
				err = fmt.Errorf("seq %d after %d", seq, prev)
			}
			if err != nil {
				errs.add("cat --last 500: %v", err)
				return err
			}
			prev = seq
			n++
			l.observe(seq, data, "cat")
			return nil
		})
		if n > 500 {
			errs.add("cat --last 500 printed %d records", n)
		}
		snapshots.Add(1)
		snapshotRecords.Add(int64(n))
		return true
	})

	for done := 0; done < kills; {
		// Full speed, then a kill at a random instant.
		wr := startIDWriter(p.stdin, l, r, 0)
		time.Sleep(time.Duration(rng.Int64N(int64(30 * time.Millisecond))))
		kill(p, errPath)
		wr.halt()
		done++
		// Now and then, kill the next producer before or just after its first record:
		// during its recovery.
		for done < kills && rng.IntN(8) == 0 {
			p, _, errPath = start()
			time.Sleep(time.Duration(rng.Int64N(int64(3 * time.Millisecond))))
			kill(p, errPath)
			done++
			earlyKills++
		}
		p, r, errPath = restart(false)
		errs.check(t)
	}

	// A last run writes a few segments' worth and stops writing, keeping its hot
	// segment: every follower must get to its last record. Then SIGINT seals it and
	// the takers take everything.
	lastID := l.nextIDForWriter() + 3000 - 1
	wr := startIDWriter(p.stdin, l, r, lastID)
	<-wr.done
	var last uint64
	waitFor(t, 20*time.Second, fmt.Sprintf("the last line, id %d", lastID), func() bool {
		res, err := execute(nil, "cat", "--last", "1", "--format", "json", dir)
		if err != nil || res.code != 0 {
			return false
		}
		recs, err := parseJSON(res.stdout, false)
		if err != nil || len(recs) != 1 {
			return false
		}
		d, _ := recs[0].payload()
		last = recs[0].Seq
		return string(d) == strconv.FormatUint(lastID, 10)
	})
	for i, f := range followers {
		waitFor(t, 30*time.Second, fmt.Sprintf("follower %d to print seq %d", i, last), func() bool { return f.last.Load() == last })
	}
	p.interrupt()
	notices(errPath, true)
	waitFor(t, 20*time.Second, "the takers to empty the ring", func() bool { return len(segmentFiles(t, dir)) == 0 })
	final := readManifest(t, dir)
	for _, e := range final.Segments {
		waitFor(t, 10*time.Second, fmt.Sprintf("the takers to print %s, seq %d to %d", e.Name, e.FirstSeq, e.LastSeq),
			func() bool { return taken.missing(e.FirstSeq, e.LastSeq) == 0 })
	}
	stopReaders()

	for _, tk := range takers {
		tk.interrupt()
		tk.finish()
		if b := tk.stderr.Bytes(); len(b) != 0 {
			t.Errorf("%s wrote to stderr: %q", tk.name, b)
		}
	}
	var printed, lost, lossReports uint64
	for i, f := range followers {
		f.interrupt()
		f.finish()
		ls, err := lossNotices(f.stderr.Bytes(), dir)
		if err == nil {
			err = checkTiling(f.printed, ls, 1, last)
		}
		if err != nil {
			t.Errorf("follower %d: %v", i, err)
		}
		printed += f.printed.count()
		lost += ls.count()
		lossReports += uint64(len(ls))
	}
	errs.check(t)
	handed, appended, err := l.chain(last)
	if err != nil {
		t.Fatal(err)
	}
	distinct, _ := taken.total()
	t.Logf("%d producer kills survived (%d of them during recovery), seed %d, in %v", kills, earlyKills, seed, time.Since(began).Round(time.Millisecond))
	t.Logf("lines written %d; records appended %d (seq 1 to %d, %d numbers skipped by %d recoveries that found the hot segment gone); lines lost with the killed producers (read ahead, or still in the pipe) %d",
		handed, appended, last, last-appended, missing, handed-appended)
	t.Logf("records taken %d, each exactly once; not taken (overwritten by retention first) %d", distinct, appended-distinct)
	t.Logf("followers: %d records printed, %d reported lost in %d reports; %d snapshots of up to 500 records (%d records); %d recovery notices",
		printed, lost, lossReports, snapshots.Load(), snapshotRecords.Load(), recovered)
	t.Logf("recovery time, producer start to first new record readable: %v", recovery)
	t.Logf("for comparison, `filering cat --last 1` from start to exit: %v", baseline)
}

// takerNotice is how a taker reports a segment it delivers again.
var takerNotice = regexp.MustCompile(`^filering: (.+): segment (\d+) was claimed by a taker that died; delivering it again$`)

// TestTorture_TakerKills kills takers with SIGKILL in the middle of printing a segment,
// again and again, and starts a new one each time. The segments are large (256 KiB,
// 6552 records) and the takers' output is read slowly, so a kill lands mid-segment; the
// taker is stopped (SIGSTOP) just before the kill to learn which claimed segment it held.
// At least once: the takers' outputs together hold every record the producer wrote
// (the ring retains them all); a record printed more than once belongs to a segment held
// by a killed taker, and every such segment was delivered again exactly once per kill
// that interrupted it, with a notice. Nothing else is ever printed twice.
func TestTorture_TakerKills(t *testing.T) {
	kills := max(3, tortureKills(t)/4)
	const segSize, perSegment = 256 << 10, (256<<10 - 64) / 40 // 10-byte payloads: 40 bytes a record
	segs := 2*kills + 4
	n := segs * perSegment
	dir := ring(t)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 2))
	t.Logf("seed %d, %d taker kills, %d records in %d segments", seed, kills, n, segs)
	began := time.Now()

	p := startProducer(t, dir, "--segment-size", "256KiB", "--segments", strconv.Itoa(segs+4))
	feed(p.stdin, feedOptions{count: n, line: func(k int) string { return fmt.Sprintf("%010d", k) }})
	waitFor(t, 10*time.Second, "manifest", func() bool { return exists(filepath.Join(dir, "manifest")) })

	errs := &firstError{}
	taken := &seqTally{}
	var all []*lineStream
	var mine []*spanList // what each taker printed, in the order of all
	startTaker := func(slow bool) *lineStream {
		i := len(all)
		who := fmt.Sprintf("taker %d", i)
		printed := &spanList{}
		o := streamOptions{}
		if slow {
			o = streamOptions{chunk: 16 << 10, pause: 4 * time.Millisecond} // 4 MB/s
		}
		s := startStream(t, o, func(chunk []byte) {
			eachLine(chunk, func(line []byte) error {
				seq, data, err := jsonLine(line)
				if err == nil {
					if v, ok := decimal(data); !ok || v != seq || len(data) != 10 {
						err = fmt.Errorf("seq %d holds %q", seq, data)
					}
				}
				if err != nil {
					errs.add("%s: %v", who, err)
					return err
				}
				printed.add(seq)
				taken.add(seq, i)
				return nil
			})
		}, "take", "--follow", "--format", "json", dir)
		all = append(all, s)
		mine = append(mine, printed)
		return s
	}
	live := []*lineStream{startTaker(true), startTaker(true)}
	heldAtKill := map[uint64]int{} // segment number -> kills of a taker holding it
	midSegment := 0
	for k := 0; k < kills; k++ {
		i := rng.IntN(len(live))
		s := live[i]
		waitFor(t, 30*time.Second, s.name+" holding a claimed segment", func() bool { return len(s.heldTaken()) > 0 })
		time.Sleep(time.Duration(rng.Int64N(int64(60 * time.Millisecond))))
		s.stop()
		held := s.heldTaken()
		s.signal(syscall.SIGKILL)
		if code := s.wait(); code != -1 {
			t.Fatalf("%s ended with status %d before the SIGKILL; stderr %q", s.name, code, s.stderr.Bytes())
		}
		for _, name := range held {
			num, err := strconv.ParseUint(strings.TrimSuffix(name, ".taken"), 10, 64)
			if err != nil {
				t.Fatalf("claimed segment %q", name)
			}
			heldAtKill[num]++
		}
		if len(held) > 0 {
			midSegment++
		}
		live[i] = startTaker(true)
	}
	live = append(live, startTaker(false)) // to finish sooner

	if code := p.wait(); code != 0 || !producerLogOK(p.stderr.Bytes()) {
		t.Fatalf("producer: exit %d, stderr %q", code, p.stderr.Bytes())
	}
	waitFor(t, 120*time.Second, "the takers to empty the ring", func() bool { return len(segmentFiles(t, dir)) == 0 })
	waitFor(t, 20*time.Second, "the takers' output", func() bool { return taken.missing(1, uint64(n)) == 0 })
	for _, s := range live {
		s.interrupt()
	}
	redelivered := map[uint64]int{}
	partial := 0
	for _, s := range all {
		s.finish()
		partial += s.partial
		for _, line := range strings.Split(strings.TrimSuffix(string(s.stderr.Bytes()), "\n"), "\n") {
			m := takerNotice.FindStringSubmatch(line)
			if line == "" {
				continue
			}
			if m == nil || m[1] != dir {
				t.Errorf("%s: unexpected line on stderr: %q", s.name, line)
				continue
			}
			num, _ := strconv.ParseUint(m[2], 10, 64)
			redelivered[num]++
		}
	}
	errs.check(t)
	for i, printed := range mine {
		sp := slices.Clone(*printed)
		slices.SortFunc(sp, func(a, b seqSpan) int { return int(a.from) - int(b.from) })
		for j := 1; j < len(sp); j++ {
			if sp[j].from <= sp[j-1].to {
				t.Errorf("taker %d printed seq %d more than once", i, sp[j].from)
			}
		}
	}

	// The producer ended cleanly and retained every segment: the manifest maps each
	// sequence number to its segment.
	m := readManifest(t, dir)
	if len(m.Segments) != segs || m.Segments[0].FirstSeq != 1 || m.Segments[segs-1].LastSeq != uint64(n) {
		t.Fatalf("manifest lists %d segments, want %d holding 1..%d: %+v", len(m.Segments), segs, n, m.Segments)
	}
	repeated := 0
	for _, e := range m.Segments {
		num, _ := strconv.ParseUint(strings.TrimSuffix(e.Name, ".seg"), 10, 64)
		if redelivered[num] != heldAtKill[num] {
			t.Errorf("segment %d: held by %d killed takers, delivered again %d times", num, heldAtKill[num], redelivered[num])
		}
		for seq := e.FirstSeq; seq <= e.LastSeq; seq++ {
			c, _ := taken.get(seq)
			if int(c) > 1+heldAtKill[num] {
				t.Fatalf("seq %d (segment %d) printed %d times; %d killed takers held its segment", seq, num, c, heldAtKill[num])
			}
			repeated += int(c) - 1
		}
	}
	for num := range redelivered {
		if heldAtKill[num] == 0 {
			t.Errorf("segment %d delivered again although no killed taker held it", num)
		}
	}
	if midSegment == 0 {
		t.Errorf("no kill landed while a taker held a segment")
	}
	_, prints := taken.total()
	again := 0
	for _, c := range redelivered {
		again += c
	}
	t.Logf("%d taker kills survived, %d of them mid-segment; %d deliveries again, of %d distinct segments; %d records, all printed, %d prints, %d of them repeats; %d bytes of lines cut off by the kills; in %v",
		kills, midSegment, again, len(redelivered), n, prints, repeated, partial, time.Since(began).Round(time.Millisecond))
}
