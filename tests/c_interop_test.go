package tests

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The C library (c/filering.c) against the Go implementation, through their programs:
// c/filering-produce and c/filering-read are built with `make -C c` and driven like the
// filering binary. The tests skip when no C compiler (or make) is installed, unless
// FILERING_REQUIRE_C=1, which makes that a failure.

// cBuild holds the result of building the C programs, once per test binary.
var cBuild struct {
	once          sync.Once
	produce, read string
	skip          string
	err           error
}

// cPrograms builds the C programs (once) and returns their paths.
func cPrograms(t *testing.T) (produce, read string) {
	t.Helper()
	cBuild.once.Do(func() {
		cc := os.Getenv("CC")
		if cc == "" {
			cc = "cc"
		}
		for _, tool := range []string{cc, "make"} {
			if _, err := exec.LookPath(tool); err != nil {
				cBuild.skip = fmt.Sprintf("%s not found", tool)
				return
			}
		}
		dir, err := filepath.Abs("../c")
		if err != nil {
			cBuild.err = err
			return
		}
		out, err := exec.Command("make", "-C", dir, "filering-produce", "filering-read").CombinedOutput()
		if err != nil {
			cBuild.err = fmt.Errorf("make -C %s: %v\n%s", dir, err, out)
			return
		}
		cBuild.produce = filepath.Join(dir, "filering-produce")
		cBuild.read = filepath.Join(dir, "filering-read")
	})
	switch {
	case cBuild.err != nil:
		t.Fatal(cBuild.err)
	case cBuild.skip != "" && os.Getenv("FILERING_REQUIRE_C") == "1":
		t.Fatalf("the C programs cannot be built: %s (FILERING_REQUIRE_C=1)", cBuild.skip)
	case cBuild.skip != "":
		t.Skipf("the C programs cannot be built: %s", cBuild.skip)
	}
	return cBuild.produce, cBuild.read
}

// newCProc prepares the C program prog with args, like newProc does the filering binary.
func newCProc(t *testing.T, prog string, args ...string) *proc {
	t.Helper()
	p := newProc(t, args...)
	p.name = filepath.Base(prog) + " " + strings.Join(args, " ")
	p.cmd = exec.Command(prog, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	return p
}

// runC runs the C program prog with args and stdin (nil for none) and returns what it did.
func runC(t *testing.T, stdin []byte, prog string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %s: did not finish within %v", prog, strings.Join(args, " "), runTimeout)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("%s %s: %v", prog, strings.Join(args, " "), err)
	}
	return result{stdout: stdout.Bytes(), stderr: stderr.Bytes(), code: cmd.ProcessState.ExitCode()}
}

// interopPayloads returns n payloads of every kind the output formats treat apart: plain
// text, empty, JSON escapes and control characters, multi-byte UTF-8, invalid UTF-8 and
// binary of every length, and a few large ones.
func interopPayloads(n int) [][]byte {
	rng := rand.New(rand.NewPCG(11, 12))
	ps := make([][]byte, n)
	for i := range ps {
		switch i % 8 {
		case 0:
			ps[i] = []byte(strconv.Itoa(i + 1))
		case 1:
			ps[i] = []byte{}
		case 2:
			ps[i] = []byte("quote \" backslash \\ tab \t newline \n cr \r bell \x07 del \x7f slash / <html>")
		case 3:
			ps[i] = []byte("h\u00e9llo \u20ac \U0001F600 \u2028 \ufeff \uffff \U0010FFFF \u0085")
		case 4:
			b := make([]byte, rng.IntN(300))
			for j := range b {
				b[j] = byte(rng.IntN(256))
			}
			ps[i] = b
		case 5:
			ps[i] = []byte{0xed, 0xa0, 0x80, 'x', 0xc0, 0x80, 0xf4, 0x90, 0x80, 0x80, 0xe2, 0x82}
		case 6:
			b := make([]byte, 1+rng.IntN(3))
			for j := range b {
				b[j] = byte(rng.IntN(256))
			}
			ps[i] = b
		case 7:
			if i%64 == 7 {
				ps[i] = bytes.Repeat([]byte("large "), 5000) // 30000 bytes
			} else {
				ps[i] = []byte(fmt.Sprintf("record %d of %d", i+1, n))
			}
		}
	}
	return ps
}

// framesOf encodes payloads in the frames format.
func framesOf(ps [][]byte) []byte {
	var b bytes.Buffer
	for _, p := range ps {
		binary.Write(&b, binary.LittleEndian, uint32(len(p)))
		b.Write(p)
	}
	return b.Bytes()
}

// sameBytes fails the test when got differs from want, showing where.
func sameBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	lo := max(0, i-80)
	t.Errorf("%s: %d bytes, want %d; first difference at byte %d:\n got  %q\n want %q", what, len(got), len(want), i,
		got[lo:min(len(got), i+80)], want[lo:min(len(want), i+80)])
}

// readerRuns are the selections and formats both readers are compared on.
var readerRuns = [][]string{
	{"--format", "json"},
	{"--format", "raw"},
	{},
	{"--last", "7", "--format", "json"},
	{"--last", "1000", "--format", "raw"},
	{"--from", "1000", "--format", "json"},
	{"--last", "3", "--from", "50", "--format", "json"},
	{"--since", "1h", "--format", "json"},
	{"--since", "1h", "--last", "5", "--format", "json"},
	{"--from", "999999"},
}

// compareReaders checks that filering-read prints, byte for byte, what `filering cat`
// prints for every run of readerRuns on the ring at dir.
func compareReaders(t *testing.T, read, dir string) {
	t.Helper()
	for _, args := range readerRuns {
		what := strings.Join(args, " ")
		want := mustRun(t, nil, append(append([]string{"cat"}, args...), dir)...)
		got := runC(t, nil, read, append(args, dir)...)
		if got.code != 0 || len(got.stderr) != 0 {
			t.Errorf("filering-read %s: %v", what, got)
			continue
		}
		sameBytes(t, "filering-read "+what+" against filering cat", got.stdout, want)
	}
}

// checkPayloads checks that recs are seq 1, 2, ... holding the payloads ps.
func checkPayloads(t *testing.T, recs []record, ps [][]byte) {
	t.Helper()
	if len(recs) != len(ps) {
		t.Fatalf("%d records, want %d", len(recs), len(ps))
	}
	for i, r := range recs {
		p, err := r.payload()
		if err != nil || r.Seq != uint64(i+1) || !bytes.Equal(p, ps[i]) {
			t.Fatalf("record %d: seq %d holding %q (%v); want seq %d holding %q", i, r.Seq, p, err, i+1, ps[i])
		}
	}
}

// TestCInterop_CProducerGoReader: a ring the C producer wrote is read by `filering cat`
// with every payload intact, and filering-read prints the same bytes as `filering cat`.
func TestCInterop_CProducerGoReader(t *testing.T) {
	produce, read := cPrograms(t)
	dir := ring(t)
	ps := interopPayloads(3000)
	r := runC(t, framesOf(ps), produce, "--input", "frames", "--segment-size", "64KiB", "--segments", "64", dir)
	if r.code != 0 || len(r.stderr) != 0 {
		t.Fatalf("filering-produce: %v", r)
	}
	recs, err := parseJSON(mustRun(t, nil, "cat", "--format", "json", dir), false)
	if err != nil {
		t.Fatal(err)
	}
	checkPayloads(t, recs, ps)
	compareReaders(t, read, dir)
	// The C producer's lines, and a second run on the same ring that goes on with its
	// sequence.
	r = runC(t, []byte("one\ntwo\nthree without newline"), produce, dir)
	if r.code != 0 || len(r.stderr) != 0 {
		t.Fatalf("filering-produce: %v", r)
	}
	if out := mustRun(t, nil, "cat", "--from", "3001", dir); string(out) != "one\ntwo\nthree without newline\n" {
		t.Fatalf("cat --from 3001: %q", out)
	}
	compareReaders(t, read, dir)
}

// TestCInterop_GoProducerCReader: filering-read prints the same bytes as `filering cat`
// on a ring the Go producer wrote, while it writes (a hot segment) and after it stopped.
func TestCInterop_GoProducerCReader(t *testing.T) {
	_, read := cPrograms(t)
	dir := ring(t)
	ps := interopPayloads(2500)
	p := startProducer(t, dir, "--input", "frames", "--segment-size", "64KiB", "--segments", "64")
	if _, err := p.stdin.Write(framesOf(ps)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "every record in the ring", func() bool {
		r, err := execute(nil, "cat", "--last", "1", "--format", "json", dir)
		return err == nil && lastSeq(r.stdout) == uint64(len(ps))
	})
	compareReaders(t, read, dir) // the producer runs: the last segment is hot
	p.stdin.Close()
	if code := p.wait(); code != 0 {
		t.Fatalf("produce: exit %d, stderr %q", code, p.stderr.Bytes())
	}
	recs, err := parseJSON(runC(t, nil, read, "--format", "json", dir).stdout, false)
	if err != nil {
		t.Fatal(err)
	}
	checkPayloads(t, recs, ps)
	compareReaders(t, read, dir)
}

// TestCInterop_CFollowerLiveGoProducer: filering-read --follow, started before the ring
// exists, prints every record a live Go producer appends, byte for byte as `filering
// cat` prints them afterwards; a C follower that falls behind the ring reports exactly
// what it lost, and the records it printed and the losses it reported cover every
// number once.
func TestCInterop_CFollowerLiveGoProducer(t *testing.T) {
	_, read := cPrograms(t)
	dir := ring(t)
	n := short(20000, 5000)
	f := newCProc(t, read, "--follow", "--format", "json", dir).start()
	f.waitIdle()
	p := startProducer(t, dir, "--segment-size", "16KiB", "--segments", "64")
	fd := feed(p.stdin, feedOptions{count: n, chunk: 500, pause: 2 * time.Millisecond, keep: true})
	<-fd.done
	f.waitOutput(10*time.Second, fmt.Sprintf("record %d", n), func(out []byte) bool { return lastSeq(out) == uint64(n) })
	p.stdin.Close()
	if code := p.wait(); code != 0 {
		t.Fatalf("produce: exit %d, stderr %q", code, p.stderr.Bytes())
	}
	f.interrupt()
	if got, want := string(f.stderr.Bytes()), waitingNotice(dir)+"\n"; got != want {
		t.Errorf("filering-read --follow stderr %q, want %q", got, want)
	}
	sameBytes(t, "filering-read --follow against filering cat", f.stdout.Bytes(),
		mustRun(t, nil, "cat", "--format", "json", dir))

	// A follower stopped while the ring wraps around (8 segments of 16 KiB hold about
	// 4000 of these records): exact losses, and nothing printed twice or skipped.
	dir = ring(t)
	p = startProducer(t, dir, "--segment-size", "16KiB", "--segments", "8")
	fd = feed(p.stdin, feedOptions{count: 100, keep: true})
	<-fd.done
	waitFor(t, 10*time.Second, "record 100", func() bool {
		r, err := execute(nil, "cat", "--last", "1", "--format", "json", dir)
		return err == nil && lastSeq(r.stdout) == 100
	})
	f = newCProc(t, read, "--follow", "--format", "json", dir).start()
	f.waitOutput(10*time.Second, "record 100", func(out []byte) bool { return lastSeq(out) == 100 })
	f.stop()
	fd = feed(p.stdin, feedOptions{count: 30000, keep: true, line: func(k int) string { return strconv.Itoa(100 + k) }})
	<-fd.done
	waitFor(t, 10*time.Second, "record 30100", func() bool {
		r, err := execute(nil, "cat", "--last", "1", "--format", "json", dir)
		return err == nil && lastSeq(r.stdout) == 30100
	})
	f.cont()
	f.waitOutput(10*time.Second, "record 30100", func(out []byte) bool { return lastSeq(out) == 30100 })
	p.stdin.Close()
	p.wait()
	f.interrupt()
	recs, err := parseJSON(f.stdout.Bytes(), false)
	if err == nil {
		err = checkNumberedGaps(recs)
	}
	if err != nil {
		t.Fatal(err)
	}
	var printed spanList
	for _, r := range recs {
		printed.add(r.Seq)
	}
	lost, err := lossNotices(f.stderr.Bytes(), dir)
	if err == nil {
		err = checkTiling(printed, lost, 1, 30100)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(lost) == 0 {
		t.Fatalf("a follower stopped while 30000 records went through a ring holding 4000 reported no loss")
	}
}

// checkNumberedGaps checks records whose payloads are their own decimal sequence
// numbers, in strictly increasing order (gaps allowed).
func checkNumberedGaps(recs []record) error {
	for i, r := range recs {
		if i > 0 && r.Seq <= recs[i-1].Seq {
			return fmt.Errorf("record %d: seq %d after %d", i, r.Seq, recs[i-1].Seq)
		}
		p, err := r.payload()
		if err != nil {
			return err
		}
		if string(p) != strconv.FormatUint(r.Seq, 10) {
			return fmt.Errorf("seq %d holds %q", r.Seq, p)
		}
	}
	return nil
}

// TestCInterop_TakingTurns: the Go and the C producer take turns on one ring, each run
// killed with SIGKILL at a random instant and the next one, of the other kind,
// recovering the ring: the sequence goes on with no number reused and nothing
// committed dropped, and each refuses to open the ring while the other runs, naming its
// pid.
func TestCInterop_TakingTurns(t *testing.T) {
	produce, read := cPrograms(t)
	dir := ring(t)
	rounds := short(12, 6)
	flags := []string{"--segment-size", "64KiB", "--segments", "64"}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 3))
	t.Logf("seed %d", seed)
	recovered := "after an unclean stop"
	start := func(c bool) *proc {
		if c {
			return newCProc(t, produce, append(flags, dir)...).withStdin().start()
		}
		return startProducer(t, dir, flags...)
	}
	var in strings.Builder
	for k := 1; k <= 100; k++ {
		in.WriteString(roundLine(0)(k) + "\n")
	}
	if r := runC(t, []byte(in.String()), produce, append(flags, dir)...); r.code != 0 || len(r.stderr) != 0 {
		t.Fatalf("filering-produce: %v", r)
	}
	for round := 1; round <= rounds; round++ {
		p := start(round%2 == 0)
		fd := feed(p.stdin, feedOptions{line: roundLine(round), chunk: 20, pause: time.Millisecond})
		time.Sleep(time.Duration(rng.IntN(80_000)) * time.Microsecond)
		p.signal(syscall.SIGKILL)
		if code := p.wait(); code != -1 {
			t.Fatalf("round %d: %s ended with status %d before the SIGKILL; stderr %q", round, p.name, code, p.stderr.Bytes())
		}
		fd.halt()
		if !producerLogOK(p.stderr.Bytes(), recovered) {
			t.Errorf("round %d: %s stderr %q", round, p.name, p.stderr.Bytes())
		}
	}
	// Each refuses the ring while the other runs.
	for _, c := range []bool{true, false} {
		p := start(c)
		fd := feed(p.stdin, feedOptions{line: roundLine(rounds + 1), count: 10, keep: true})
		<-fd.done
		lockWant := fmt.Sprintf("%d\n", p.pid())
		waitFor(t, 10*time.Second, "pid in the lock file", func() bool {
			b, _ := os.ReadFile(filepath.Join(dir, "lock"))
			return string(b) == lockWant
		})
		var second result
		if c {
			second = run(t, []byte("intruder\n"), append(append([]string{"produce"}, flags...), dir)...)
		} else {
			second = runC(t, []byte("intruder\n"), produce, append(flags, dir)...)
		}
		if second.code != 1 || !strings.Contains(string(second.stderr), fmt.Sprintf("pid %d", p.pid())) {
			t.Errorf("a second producer while %s runs: %v; want exit 1 naming pid %d", p.name, second, p.pid())
		}
		p.stdin.Close()
		if code := p.wait(); code != 0 || !producerLogOK(p.stderr.Bytes(), recovered) {
			t.Fatalf("%s: exit %d, stderr %q", p.name, code, p.stderr.Bytes())
		}
		rounds++
	}
	out := mustRun(t, nil, "cat", "--format", "json", dir)
	recs, err := parseJSON(out, false)
	if err == nil {
		err = checkRounds(recs)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d records after %d runs", len(recs), rounds+1)
	sameBytes(t, "filering-read against filering cat", runC(t, nil, read, "--format", "json", dir).stdout, out)
}

// runLine parses a payload "R-K" written by roundLine.
func runLine(p []byte) (run, k int, ok bool) {
	a, b, found := strings.Cut(string(p), "-")
	r, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	return r, n, found && err1 == nil && err2 == nil && n >= 1
}

// runBook checks every record any reader prints against the one rule a producer's runs
// obey: run r's line k is appended as one record, lines in order, so all its records
// have sequence number base_r + k for one base_r; and a payload is printed under one
// sequence number only. That catches a wrong payload, a line appended twice, a number
// given twice. It is safe for concurrent use.
type runBook struct {
	mu   sync.Mutex
	base map[int]uint64 // base_r
	maxK map[int]int    // the highest line of run r printed
	errs *firstError
}

func (b *runBook) observe(seq uint64, data []byte, who string) {
	r, k, ok := runLine(data)
	b.mu.Lock()
	defer b.mu.Unlock()
	if !ok || seq < uint64(k) {
		b.errs.add("%s: seq %d holds %q, not a line the test wrote", who, seq, data)
		return
	}
	base := seq - uint64(k)
	if have, ok := b.base[r]; ok && have != base {
		b.errs.add("%s: seq %d holds %q, but run %d's line %d is seq %d", who, seq, data, r, k, have+uint64(k))
		return
	}
	b.base[r] = base
	b.maxK[r] = max(b.maxK[r], k)
}

// skipLine is how a producer says it skipped the numbers a missing hot segment could
// have used.
var skipLine = regexp.MustCompile(`hot segment missing; continuing at sequence (\d+)`)

// TestCInterop_CProducerKills kills the C producer with SIGKILL at random instants, again
// and again, restarting it each time on the same ring, while two `filering watch`
// followers started before the ring exists (`filering watch` and `filering-read
// --follow`) and two competing `filering take` takers read it. The ring has 16 KiB segments, so kills land in appends, rolls and recovery.
// Checked:
//
//   - 0 corrupt: every record printed by anyone holds a line the test wrote, under the
//     sequence number that line must have (runBook);
//   - 0 duplicated: no record is taken twice, no follower prints a number twice, and
//     each run goes on right after the last record the killed run committed;
//   - 0 lost: at the end (the last run stops cleanly, which seals everything) the takers
//     have taken every record every run appended, and each follower's printed records
//     and reported losses cover every number once.
func TestCInterop_CProducerKills(t *testing.T) {
	produce, read := cPrograms(t)
	dir := ring(t)
	kills := short(30, 10)
	// 256 segments hold every record of the test: retention never removes a segment
	// before the takers take it, however slow they are.
	flags := []string{"--segment-size", "16KiB", "--segments", "256"}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 4))
	t.Logf("seed %d, %d kills", seed, kills)
	errs := &firstError{}
	book := &runBook{base: map[int]uint64{}, maxK: map[int]int{}, errs: errs}
	taken := &seqTally{}

	type reader struct {
		s       *lineStream
		prev    uint64
		printed spanList
		newest  atomic.Uint64 // prev, for other goroutines
	}
	var readers []*reader
	startReader := func(i int) {
		who, prog := "follower 0 (filering watch)", ""
		args := []string{"watch", "--all", "--format", "json", dir}
		switch {
		case i == 1:
			who, prog = "follower 1 (filering-read --follow)", read
			args = []string{"--follow", "--format", "json", dir}
		case i >= 2:
			who = fmt.Sprintf("taker %d", i-2)
			args = []string{"take", "--follow", "--format", "json", dir}
		}
		rd := &reader{}
		idx := i
		rd.s = startStreamOf(t, prog, func(chunk []byte) {
			eachLine(chunk, func(line []byte) error {
				seq, data, err := jsonLine(line)
				if err == nil && idx < 2 && seq <= rd.prev {
					err = fmt.Errorf("seq %d after %d", seq, rd.prev)
				}
				if err != nil {
					errs.add("%s: %v", who, err)
					return err
				}
				rd.prev = seq
				rd.newest.Store(seq)
				rd.printed.add(seq)
				book.observe(seq, data, who)
				if idx >= 2 && taken.add(seq, idx) > 1 {
					errs.add("%s: seq %d taken twice", who, seq)
				}
				return nil
			})
		}, args...)
		readers = append(readers, rd)
	}
	// The followers start before the ring exists: every record is one they must print
	// or report lost. The takers start once it exists (`take` needs a ring directory).
	startReader(0)
	startReader(1)
	for _, rd := range readers {
		rd.s.waitIdle()
	}

	skips := map[uint64]bool{}
	notices := func(p *proc) {
		for _, line := range strings.Split(strings.TrimSpace(string(p.stderr.Bytes())), "\n") {
			if m := skipLine.FindStringSubmatch(line); m != nil {
				n, _ := strconv.ParseUint(m[1], 10, 64)
				skips[n] = true
			} else if line != "" && !strings.Contains(line, "after an unclean stop") {
				t.Errorf("%s: stderr %q", p.name, line)
			}
		}
	}
	for round := 1; round <= kills; round++ {
		p := newCProc(t, produce, append(flags, dir)...).withStdin().start()
		fd := feed(p.stdin, feedOptions{line: roundLine(round), chunk: 20, pause: time.Millisecond})
		if round == 1 {
			waitFor(t, 10*time.Second, "the ring", func() bool { return exists(filepath.Join(dir, "manifest")) })
			startReader(2)
			startReader(3)
		}
		time.Sleep(time.Duration(20_000+rng.IntN(200_000)) * time.Microsecond)
		p.signal(syscall.SIGKILL)
		if code := p.wait(); code != -1 {
			t.Fatalf("round %d: filering-produce ended with status %d before the SIGKILL; stderr %q", round, code, p.stderr.Bytes())
		}
		fd.halt()
		notices(p)
	}
	final := kills + 1
	p := newCProc(t, produce, append(flags, dir)...).withStdin().start()
	fd := feed(p.stdin, feedOptions{line: roundLine(final), count: 500})
	<-fd.done
	if code := p.wait(); code != 0 {
		t.Fatalf("the last filering-produce: exit %d, stderr %q", code, p.stderr.Bytes())
	}
	notices(p)

	// Everything is sealed now: wait for the takers to take it all and the followers to
	// print the last record, then stop them.
	m := readManifest(t, dir)
	last := m.Segments[len(m.Segments)-1].LastSeq
	if !m.Segments[len(m.Segments)-1].Sealed || last == 0 {
		t.Fatalf("after a clean stop the last segment is not sealed with records: %+v", m.Segments)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(segmentFiles(t, dir)) != 0 {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "manifest"))
			t.Fatalf("the takers did not take every segment within 20 s: %v left; manifest %s", segmentFiles(t, dir), b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i, rd := range readers[:2] {
		// The takers may take the last records before a follower reads them: then it
		// reports them lost.
		waitFor(t, 20*time.Second, fmt.Sprintf("follower %d to print or report lost seq %d", i, last), func() bool {
			if rd.newest.Load() == last {
				return true
			}
			lost, _ := lossNotices(rd.s.stderr.Bytes(), dir)
			return len(lost) > 0 && lost[len(lost)-1].to == last
		})
	}
	for _, rd := range readers {
		rd.s.signal(syscall.SIGINT)
		if code := rd.s.wait(); code != 0 {
			t.Errorf("%s: exit %d after SIGINT; stderr %q", rd.s.name, code, rd.s.stderr.Bytes())
		}
		rd.s.finish()
	}
	errs.check(t)

	// The runs chain: each starts right after the last record of the one before.
	next := uint64(1)
	appended := uint64(0)
	for r := 1; r <= final; r++ {
		base, ok := book.base[r]
		if !ok {
			continue // killed before it appended anything
		}
		if base+1 != next && !skips[base+1] {
			t.Errorf("run %d starts at seq %d; the runs before ended at %d", r, base+1, next-1)
		}
		next = base + uint64(book.maxK[r]) + 1
		appended += uint64(book.maxK[r])
	}
	if book.maxK[final] != 500 || next != last+1 {
		t.Fatalf("the last run's records end at seq %d, line %d; the manifest says %d", next-1, book.maxK[final], last)
	}
	// 0 lost: the takers took every record appended, each once.
	if distinct, prints := taken.total(); distinct != appended || prints != appended {
		t.Errorf("takers printed %d records (%d distinct); the runs appended %d", prints, distinct, appended)
	}
	for i, rd := range readers[:2] {
		lost, err := lossNotices(rd.s.stderr.Bytes(), dir)
		if err == nil {
			err = checkTiling(rd.printed, lost, 1, last)
		}
		if err != nil {
			t.Errorf("follower %d: %v", i, err)
		}
	}
	t.Logf("%d records appended over %d runs; takers took them all", appended, final)
}

// startStreamOf is startStream for the C program prog ("" for the filering binary).
func startStreamOf(t *testing.T, prog string, onLines func([]byte), args ...string) *lineStream {
	t.Helper()
	if prog == "" {
		return startStream(t, streamOptions{}, onLines, args...)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := newCProc(t, prog, args...)
	p.cmd.Stdout = pw
	p.start()
	pw.Close()
	s := &lineStream{proc: p, read: make(chan struct{})}
	go func() {
		defer close(s.read)
		defer pr.Close()
		buf := make([]byte, 0, 512<<10)
		chunk := make([]byte, 256<<10)
		for {
			k, err := pr.Read(chunk)
			buf = append(buf, chunk[:k]...)
			if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
				onLines(buf[:i+1])
				buf = append(buf[:0], buf[i+1:]...)
			}
			if err != nil {
				s.partial = len(buf)
				return
			}
		}
	}()
	t.Cleanup(func() {
		if !p.exited() {
			p.cmd.Process.Kill()
		}
		<-s.read
	})
	return s
}

// TestCInterop_Help checks that both C programs answer --help and -h with their usage on
// standard output and status 0, naming every flag they take, and touch nothing else: no
// ring is created under a directory named like the flag.
func TestCInterop_Help(t *testing.T) {
	produce, read := cPrograms(t)
	flags := map[string][]string{
		produce: {"--input", "--segment-size", "--segments", "--seal-after", "--mode"},
		read:    {"--follow", "--last", "--from", "--since", "--format"},
	}
	for _, prog := range []string{produce, read} {
		for _, arg := range []string{"--help", "-h"} {
			wd := t.TempDir()
			cmd := exec.Command(prog, arg)
			cmd.Dir = wd
			out, err := cmd.Output()
			name := filepath.Base(prog) + " " + arg
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !bytes.Contains(out, []byte("usage: "+filepath.Base(prog))) {
				t.Errorf("%s: no usage line in %q", name, out)
			}
			for _, f := range flags[prog] {
				if !bytes.Contains(out, []byte("  "+f)) {
					t.Errorf("%s: %s is not described", name, f)
				}
			}
			if left, _ := os.ReadDir(wd); len(left) != 0 {
				t.Errorf("%s: left %s in its working directory", name, left[0].Name())
			}
		}
	}
}
