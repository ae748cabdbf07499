package tests

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// This file holds what the torture and soak tests share: processes whose output is read
// as it comes rather than kept whole, a fast parser for the JSON Lines records they print,
// and bookkeeping of sequence numbers in spans and tallies.

// envCount returns the positive integer in the environment variable name, or def when it
// is unset or empty.
func envCount(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

// lineStream is a filering process whose standard output the test reads as it comes,
// handing complete lines to a callback, instead of keeping it in a buffer: followers and
// takers in these tests print hundreds of megabytes.
type lineStream struct {
	*proc
	read    chan struct{} // closed when standard output reached EOF and every line was handed over
	partial int           // bytes of an unterminated last line left at EOF; valid after read
}

// streamOptions shape how a lineStream's output is read.
type streamOptions struct {
	chunk int           // read at most this many bytes at a time; 256 KiB when 0
	pause time.Duration // sleep this long after every read: a slow reader
}

// startStream starts filering args with its standard output going to a pipe that a
// goroutine reads. onLines gets every run of complete lines read, newline included, on
// that goroutine, one call at a time; the slice is valid only during the call. The
// process is killed, and the reading waited for, when t ends.
func startStream(t *testing.T, o streamOptions, onLines func([]byte), args ...string) *lineStream {
	t.Helper()
	if o.chunk <= 0 {
		o.chunk = 256 << 10
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := newProc(t, args...)
	p.cmd.Stdout = pw
	p.start()
	pw.Close()
	s := &lineStream{proc: p, read: make(chan struct{})}
	go func() {
		defer close(s.read)
		defer pr.Close()
		buf := make([]byte, 2*o.chunk)
		n := 0 // bytes held in buf: the start of a line not finished yet
		for {
			if len(buf)-n < o.chunk {
				nb := make([]byte, n+2*o.chunk)
				copy(nb, buf[:n])
				buf = nb
			}
			k, err := pr.Read(buf[n : n+o.chunk])
			n += k
			if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
				onLines(buf[:i+1])
				n = copy(buf, buf[i+1:n])
			}
			if err != nil {
				s.partial = n
				return
			}
			if o.pause > 0 {
				time.Sleep(o.pause)
			}
		}
	}()
	// Registered after start's cleanup, so it runs first: end the process, then wait
	// for its output.
	t.Cleanup(func() {
		if !p.exited() {
			p.cmd.Process.Kill()
		}
		<-s.read
	})
	return s
}

// finish waits until the stream's output has been read to its end. The process must
// have exited or be about to.
func (s *lineStream) finish() {
	s.t.Helper()
	select {
	case <-s.read:
	case <-time.After(procTimeout):
		s.t.Fatalf("%s: output still open %v after it should have ended", s.name, procTimeout)
	}
}

// eachLine calls fn for every line of chunk, without its newline, and stops at the
// first error.
func eachLine(chunk []byte, fn func(line []byte) error) error {
	for len(chunk) > 0 {
		i := bytes.IndexByte(chunk, '\n')
		if i < 0 {
			return fn(chunk)
		}
		if err := fn(chunk[:i]); err != nil {
			return err
		}
		chunk = chunk[i+1:]
	}
	return nil
}

// jsonLine splits one line of `--format json` output, without its newline, into its
// sequence number and payload. It accepts exactly what filering prints for a payload of
// printable ASCII with nothing to escape, the only payloads these tests write:
// {"seq":N,"time":"2006-01-02T15:04:05.000000000Z","data":"..."}. It is a strict,
// allocation-free stand-in for parseJSON where millions of lines go by.
func jsonLine(line []byte) (seq uint64, data []byte, err error) {
	const pre, mid, post = `{"seq":`, `,"time":"`, `","data":"`
	const timeLen = len("2006-01-02T15:04:05.000000000Z")
	rest, ok := bytes.CutPrefix(line, []byte(pre))
	if !ok {
		return 0, nil, fmt.Errorf("record line %q: does not start with %s", line, pre)
	}
	i := bytes.IndexByte(rest, ',')
	if i < 0 {
		return 0, nil, fmt.Errorf("record line %q: no time", line)
	}
	seq, ok = decimal(rest[:i])
	if !ok || seq == 0 || rest[0] == '0' {
		return 0, nil, fmt.Errorf("record line %q: bad seq", line)
	}
	rest, ok = bytes.CutPrefix(rest[i:], []byte(mid))
	if !ok || len(rest) < timeLen {
		return 0, nil, fmt.Errorf("record line %q: no time", line)
	}
	ts := rest[:timeLen]
	for j, c := range ts {
		var want byte
		switch j {
		case 4, 7:
			want = '-'
		case 10:
			want = 'T'
		case 13, 16:
			want = ':'
		case 19:
			want = '.'
		case 29:
			want = 'Z'
		}
		if want != 0 && c != want || want == 0 && (c < '0' || c > '9') {
			return 0, nil, fmt.Errorf("record line %q: bad time %q", line, ts)
		}
	}
	rest, ok = bytes.CutPrefix(rest[timeLen:], []byte(post))
	if !ok {
		return 0, nil, fmt.Errorf("record line %q: no data after the time", line)
	}
	data, ok = bytes.CutSuffix(rest, []byte(`"}`))
	if !ok || bytes.IndexByte(data, '"') >= 0 || bytes.IndexByte(data, '\\') >= 0 {
		return 0, nil, fmt.Errorf("record line %q: data is not a plain string", line)
	}
	return seq, data, nil
}

// decimal parses b, one or more ASCII digits, as an unsigned number below 10^18.
func decimal(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

// seqSpan is an inclusive range of sequence numbers.
type seqSpan struct{ from, to uint64 }

// spanList is a list of sequence numbers kept as spans of consecutive numbers, in the
// order they were added.
type spanList []seqSpan

// add appends seq, extending the last span when seq follows it.
func (l *spanList) add(seq uint64) {
	if n := len(*l); n > 0 && (*l)[n-1].to+1 == seq {
		(*l)[n-1].to = seq
		return
	}
	*l = append(*l, seqSpan{seq, seq})
}

// count returns how many sequence numbers the list holds.
func (l spanList) count() uint64 {
	var n uint64
	for _, s := range l {
		n += s.to - s.from + 1
	}
	return n
}

// waitingNotice is the line a follower prints once when it starts before its ring exists.
func waitingNotice(dir string) string {
	return "filering: " + dir + ": no ring yet; waiting for it to be created"
}

// lossNotices parses a follower's standard error, which may hold nothing but exact loss
// reports for dir (`filering: DIR: lost N records (A to B)`), after, as its first line,
// the notice of a follower that started before its ring existed; it returns the lost
// spans.
func lossNotices(stderr []byte, dir string) (spanList, error) {
	var lost spanList
	for i, line := range strings.Split(strings.TrimSuffix(string(stderr), "\n"), "\n") {
		if line == "" || i == 0 && line == waitingNotice(dir) {
			continue
		}
		m := lossLine.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("unexpected line on stderr: %q", line)
		}
		count, _ := strconv.ParseUint(m[2], 10, 64)
		from, _ := strconv.ParseUint(m[3], 10, 64)
		to, _ := strconv.ParseUint(m[4], 10, 64)
		if m[1] != dir || from == 0 || from > to || count != to-from+1 {
			return nil, fmt.Errorf("malformed loss report %q (ring %s)", line, dir)
		}
		lost = append(lost, seqSpan{from, to})
	}
	return lost, nil
}

// checkTiling checks that the spans of records a follower printed and the spans it
// reported lost cover from..to together, each number exactly once.
func checkTiling(printed, lost spanList, from, to uint64) error {
	all := make([]seqSpan, 0, len(printed)+len(lost))
	all = append(append(all, printed...), lost...)
	slices.SortFunc(all, func(a, b seqSpan) int { return cmp.Compare(a.from, b.from) })
	next := from
	for _, s := range all {
		switch {
		case s.from < next:
			return fmt.Errorf("%d..%d printed or reported lost twice (%d printed spans, %d losses)", s.from, min(s.to, next-1), len(printed), len(lost))
		case s.from > next:
			return fmt.Errorf("%d..%d neither printed nor reported lost (%d printed spans, %d losses)", next, s.from-1, len(printed), len(lost))
		}
		next = s.to + 1
	}
	if next != to+1 {
		return fmt.Errorf("printed and lost records end at %d, want %d", next-1, to)
	}
	return nil
}

// seqTally counts, for every sequence number, how many times a record with it was
// printed and which process printed it first. It is safe for concurrent use.
type seqTally struct {
	mu    sync.Mutex
	count []uint8 // saturates at 255
	owner []uint8 // 1 + the index of the first process that printed it; 0 for none
}

// add notes that process who printed seq and returns how many times seq has been printed.
func (c *seqTally) add(seq uint64, who int) uint8 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if seq >= uint64(len(c.count)) {
		n := max(2*uint64(len(c.count)), seq+1, 1<<16)
		c.count = append(c.count, make([]uint8, n-uint64(len(c.count)))...)
		c.owner = append(c.owner, make([]uint8, n-uint64(len(c.owner)))...)
	}
	if c.count[seq] == 0 {
		c.owner[seq] = uint8(who + 1)
	}
	if c.count[seq] < 255 {
		c.count[seq]++
	}
	return c.count[seq]
}

// get returns how often seq was printed and by which process first (-1 for none).
func (c *seqTally) get(seq uint64) (count uint8, who int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if seq >= uint64(len(c.count)) {
		return 0, -1
	}
	return c.count[seq], int(c.owner[seq]) - 1
}

// missing returns the first number in from..to never printed, or 0 when all were.
func (c *seqTally) missing(from, to uint64) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	for s := from; s <= to; s++ {
		if s >= uint64(len(c.count)) || c.count[s] == 0 {
			return s
		}
	}
	return 0
}

// total returns how many distinct sequence numbers were printed, and how many prints
// there were in all.
func (c *seqTally) total() (distinct, prints uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.count {
		if n > 0 {
			distinct++
			prints += uint64(n)
		}
	}
	return distinct, prints
}

// firstError keeps the first few errors reported from any goroutine.
type firstError struct {
	mu   sync.Mutex
	errs []string
	n    int
}

func (e *firstError) add(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if len(e.errs) < 10 {
		e.errs = append(e.errs, fmt.Sprintf(format, args...))
	}
}

// check fails t if any error was reported.
func (e *firstError) check(t *testing.T) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n > 0 {
		t.Fatalf("%d errors; the first ones:\n%s", e.n, strings.Join(e.errs, "\n"))
	}
}

// waitIdle waits until every thread of the process sleeps, twice in a row 20 ms apart:
// a reader that has started and now blocks, waiting for its ring to appear.
func (p *proc) waitIdle() {
	p.t.Helper()
	idle := func() bool { return allTasks(p.pid(), 'S') }
	waitFor(p.t, 20*time.Second, p.name+" waiting", func() bool {
		if !idle() {
			return false
		}
		time.Sleep(20 * time.Millisecond)
		return idle()
	})
}

// heldTaken returns the names of the claimed segments (*.taken) the process holds open
// and locked: the segments it owns as a taker. (A taker also opens claims it does not
// own, for a moment, to find out whether their owner is alive; those it has not locked.)
func (p *proc) heldTaken() []string {
	locks, _ := os.ReadFile("/proc/locks")
	var names []string
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", p.pid()))
	for _, fd := range fds {
		target, err := os.Readlink(fd)
		if err != nil || !strings.HasSuffix(target, ".taken") {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(fd, &st) != nil {
			continue
		}
		// A line of /proc/locks: "1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF".
		for _, line := range strings.Split(string(locks), "\n") {
			f := strings.Fields(line)
			if len(f) >= 6 && f[1] == "FLOCK" && f[4] == strconv.Itoa(p.pid()) &&
				strings.HasSuffix(f[5], ":"+strconv.FormatUint(st.Ino, 10)) {
				names = append(names, filepath.Base(target))
				break
			}
		}
	}
	return names
}

// durations summarizes measured times for reports.
type durations []time.Duration

func (d durations) String() string {
	if len(d) == 0 {
		return "none measured"
	}
	s := slices.Clone(d)
	slices.Sort(s)
	q := func(f float64) time.Duration { return s[min(len(s)-1, int(f*float64(len(s))))] }
	return fmt.Sprintf("min %v, median %v, p90 %v, max %v over %d", s[0].Round(10*time.Microsecond),
		q(0.5).Round(10*time.Microsecond), q(0.9).Round(10*time.Microsecond), s[len(s)-1].Round(10*time.Microsecond), len(s))
}
