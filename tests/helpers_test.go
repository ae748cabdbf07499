package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// raceEnabled is set when the tests run under -race; the binary is then built with it.
var raceEnabled = false

// runTimeout bounds every command run with run; procTimeout every wait on a process.
const (
	runTimeout  = 30 * time.Second
	procTimeout = 30 * time.Second
)

// short picks the smaller count under -short, and under -race, where every filering
// process runs several times slower.
func short(full, small int) int {
	if testing.Short() || raceEnabled {
		return small
	}
	return full
}

// ring returns the path of a ring directory that does not exist yet, inside a fresh
// directory on /dev/shm (t.TempDir when /dev/shm is absent) removed when t ends.
func ring(t *testing.T) string {
	t.Helper()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		parent, err := os.MkdirTemp("/dev/shm", "filering-itest-")
		if err == nil {
			t.Cleanup(func() { os.RemoveAll(parent) })
			return filepath.Join(parent, "ring")
		}
	}
	return filepath.Join(t.TempDir(), "ring")
}

// result is what a finished command left.
type result struct {
	stdout, stderr []byte
	code           int // exit status; -1 when killed by a signal
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, stderr %q", r.code, r.stderr)
}

// execute runs filering with args and stdin (nil for none) and returns what it did. It
// may be called from any goroutine.
func execute(stdin []byte, args ...string) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return result{}, fmt.Errorf("filering %s: did not finish within %v", strings.Join(args, " "), runTimeout)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return result{}, fmt.Errorf("filering %s: %v", strings.Join(args, " "), err)
	}
	return result{stdout: stdout.Bytes(), stderr: stderr.Bytes(), code: cmd.ProcessState.ExitCode()}, nil
}

// run is execute for the test's goroutine: it fails the test if the command cannot be
// started or runs longer than runTimeout.
func run(t *testing.T, stdin []byte, args ...string) result {
	t.Helper()
	r, err := execute(stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// mustRun runs filering and fails the test unless it exits 0 with nothing on stderr.
func mustRun(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	r := run(t, stdin, args...)
	if r.code != 0 || len(r.stderr) != 0 {
		t.Fatalf("filering %s: %v", strings.Join(args, " "), r)
	}
	return r.stdout
}

// producerLogOK reports whether a producer's standard error holds nothing but lines
// containing one of the allowed phrases (warnings about the file system always pass).
func producerLogOK(stderr []byte, allowed ...string) bool {
	for _, line := range strings.Split(strings.TrimSuffix(string(stderr), "\n"), "\n") {
		if line == "" {
			continue
		}
		ok := strings.HasPrefix(line, "filering: warning: ")
		for _, a := range allowed {
			ok = ok || strings.Contains(line, a)
		}
		if !ok {
			return false
		}
	}
	return true
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Bytes returns a copy of what was written so far.
func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// proc is a filering process running in the background. Its standard output and error go
// to buffers unless the caller set cmd.Stdout or cmd.Stderr before start.
type proc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser // set by withStdin
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited and its output is copied
	err    error         // from cmd.Wait, valid after done
}

// newProc prepares filering args; call start to run it. It is killed when t ends.
func newProc(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: "filering " + strings.Join(args, " "), cmd: exec.Command(bin, args...),
		stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	return p
}

// withStdin gives the process a pipe as standard input, p.stdin.
func (p *proc) withStdin() *proc {
	p.t.Helper()
	w, err := p.cmd.StdinPipe()
	if err != nil {
		p.t.Fatal(err)
	}
	p.stdin = w
	return p
}

func (p *proc) start() *proc {
	p.t.Helper()
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("%s: %v", p.name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	p.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// startProc starts filering args in the background with no standard input.
func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	return newProc(t, args...).start()
}

// startProducer starts `filering produce` with flags and dir, its standard input a pipe.
func startProducer(t *testing.T, dir string, flags ...string) *proc {
	t.Helper()
	return newProc(t, append(append([]string{"produce"}, flags...), dir)...).withStdin().start()
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit and returns its exit status (-1 when a signal
// killed it). It fails the test after procTimeout.
func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(procTimeout):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("%s: still running after %v; killed it. stderr: %q", p.name, procTimeout, p.stderr.Bytes())
	}
	return p.cmd.ProcessState.ExitCode()
}

// signal sends sig to the process.
func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("%s: signal %v: %v", p.name, sig, err)
	}
}

// stop sends SIGSTOP and waits until every thread of the process has stopped, so that
// nothing the test does afterwards is seen by the process before cont.
func (p *proc) stop() {
	p.t.Helper()
	p.signal(syscall.SIGSTOP)
	waitFor(p.t, 10*time.Second, "stopped process", func() bool { return allTasks(p.pid(), 'T') })
}

// allTasks reports whether every thread of process pid is in the given state, as
// /proc/PID/task/*/stat shows it after the command name: "pid (comm) S ...".
func allTasks(pid int, state byte) bool {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		i := bytes.LastIndexByte(b, ')')
		if err != nil || i < 0 || i+2 >= len(b) || b[i+2] != state {
			return false
		}
	}
	return true
}

// repeatedly runs body in n goroutines, each over and over until the returned stop is
// called or body returns false. stop waits for them to end; it also runs at cleanup,
// before the ring is removed, should the test end early.
func repeatedly(t *testing.T, n int, body func() bool) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	stop = sync.OnceFunc(func() { close(quit); wg.Wait() })
	t.Cleanup(stop)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-quit:
					return
				default:
				}
				if !body() {
					return
				}
			}
		}()
	}
	return stop
}

// waitOpen waits until the process holds path open. A reader opens its ring directory
// only after it has set up its signal handling, so this tells that a SIGINT will be
// handled rather than end it before it has started.
func (p *proc) waitOpen(path string) {
	p.t.Helper()
	waitFor(p.t, 10*time.Second, p.name+" holding "+path+" open", func() bool {
		fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", p.pid()))
		for _, fd := range fds {
			if target, err := os.Readlink(fd); err == nil && target == path {
				return true
			}
		}
		return false
	})
}

// cont resumes a process stopped by stop.
func (p *proc) cont() {
	p.t.Helper()
	p.signal(syscall.SIGCONT)
}

// interrupt sends SIGINT and fails the test unless the process then exits 0.
func (p *proc) interrupt() {
	p.t.Helper()
	p.signal(syscall.SIGINT)
	if code := p.wait(); code != 0 {
		p.t.Fatalf("%s: exit %d after SIGINT, want 0; stderr: %q", p.name, code, p.stderr.Bytes())
	}
}

// waitOutput polls the process's standard output until ok accepts it, and fails the test
// after timeout or when the process exits first.
func (p *proc) waitOutput(timeout time.Duration, what string, ok func([]byte) bool) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if ok(p.stdout.Bytes()) {
			return
		}
		if p.exited() {
			if ok(p.stdout.Bytes()) {
				return
			}
			p.t.Fatalf("%s exited (%v) before %s; stderr: %q", p.name, p.err, what, p.stderr.Bytes())
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: no %s within %v; stderr: %q", p.name, what, timeout, p.stderr.Bytes())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitFor polls cond every 10ms and fails the test when it is still false after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// feeder writes numbered lines to a producer's standard input from its own goroutine.
type feeder struct {
	stop    chan struct{}
	done    chan struct{}
	written int   // lines written and flushed to the pipe; valid after done
	err     error // the write error that ended it, if any; valid after done
}

// feedOptions describe what a feeder writes.
type feedOptions struct {
	line  func(k int) string // the text of line k (k from 1), without the newline; default decimal k
	count int                // lines to write; 0 for no limit (until stopped or a write fails)
	chunk int                // when > 0, flush and sleep pause after every chunk lines
	pause time.Duration
	keep  bool // leave w open when done (default: close it, ending the producer's input)
}

// feed starts writing lines to w. Without a chunk it writes as fast as the pipe takes
// them, through a 64 KiB buffer.
func feed(w io.WriteCloser, o feedOptions) *feeder {
	f := &feeder{stop: make(chan struct{}), done: make(chan struct{})}
	if o.line == nil {
		o.line = strconv.Itoa
	}
	go func() {
		defer close(f.done)
		bw := bufio.NewWriterSize(w, 64<<10)
		buffered := 0
		flush := func() bool {
			if f.err = bw.Flush(); f.err != nil {
				return false
			}
			f.written += buffered
			buffered = 0
			return true
		}
		defer func() {
			if !o.keep {
				w.Close()
			}
		}()
		for k := 1; o.count == 0 || k <= o.count; k++ {
			if _, f.err = bw.WriteString(o.line(k) + "\n"); f.err != nil {
				return
			}
			buffered++
			if o.chunk > 0 && k%o.chunk == 0 {
				if !flush() {
					return
				}
				select {
				case <-f.stop:
					return
				case <-time.After(o.pause):
				}
				continue
			}
			if bw.Available() < 64 { // the buffer was just written out, or is about to be
				select {
				case <-f.stop:
					flush()
					return
				default:
				}
			}
		}
		flush()
	}()
	return f
}

// halt stops the feeder and waits for it; it returns how many lines reached the pipe.
func (f *feeder) halt() int {
	select {
	case <-f.done:
	default:
		close(f.stop)
		<-f.done
	}
	return f.written
}

// lines returns the input "1\n2\n...n\n".
func lines(n int) []byte {
	var b bytes.Buffer
	for k := 1; k <= n; k++ {
		b.WriteString(strconv.Itoa(k))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// record is one line of `--format json` output.
type record struct {
	Seq     uint64  `json:"seq"`
	Time    string  `json:"time"`
	Data    *string `json:"data"`
	DataB64 *string `json:"data_b64"`
}

// payload returns the record's bytes, from data or data_b64.
func (r record) payload() ([]byte, error) {
	switch {
	case r.Data != nil && r.DataB64 == nil:
		return []byte(*r.Data), nil
	case r.Data == nil && r.DataB64 != nil:
		return base64.StdEncoding.DecodeString(*r.DataB64)
	}
	return nil, fmt.Errorf("seq %d: want exactly one of data and data_b64", r.Seq)
}

// parseJSON parses JSON Lines output. A last line without its newline is left out when
// partial is set (output of a process still writing); otherwise it is an error.
func parseJSON(out []byte, partial bool) ([]record, error) {
	if partial {
		if i := bytes.LastIndexByte(out, '\n'); i >= 0 {
			out = out[:i+1]
		} else {
			out = nil
		}
	} else if len(out) > 0 && out[len(out)-1] != '\n' {
		return nil, fmt.Errorf("output does not end with a newline: %q", tail(out))
	}
	var recs []record
	for n, line := range bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n")) {
		if len(line) == 0 && len(out) == 0 {
			break
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		var r record
		if err := dec.Decode(&r); err != nil {
			return nil, fmt.Errorf("line %d %q: %v", n+1, line, err)
		}
		if _, err := time.Parse(time.RFC3339Nano, r.Time); err != nil {
			return nil, fmt.Errorf("line %d: time: %v", n+1, err)
		}
		if r.Seq == 0 {
			return nil, fmt.Errorf("line %d %q: no seq", n+1, line)
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// checkNumbered checks records whose payloads are their own decimal sequence numbers:
// every seq is the one before plus one, and every payload matches its seq.
func checkNumbered(recs []record) error {
	for i, r := range recs {
		if i > 0 && r.Seq != recs[i-1].Seq+1 {
			return fmt.Errorf("record %d: seq %d after %d, want %d", i, r.Seq, recs[i-1].Seq, recs[i-1].Seq+1)
		}
		p, err := r.payload()
		if err != nil {
			return err
		}
		if string(p) != strconv.FormatUint(r.Seq, 10) {
			return fmt.Errorf("record %d: seq %d holds %q, want %q", i, r.Seq, p, strconv.FormatUint(r.Seq, 10))
		}
	}
	return nil
}

// seqRange describes the sequence numbers of recs, for messages.
func seqRange(recs []record) string {
	if len(recs) == 0 {
		return "none"
	}
	return fmt.Sprintf("seq %d to %d", recs[0].Seq, recs[len(recs)-1].Seq)
}

// lastSeq returns the seq of the last complete JSON line in out, 0 if none.
func lastSeq(out []byte) uint64 {
	i := bytes.LastIndexByte(out, '\n')
	if i < 0 {
		return 0
	}
	line := out[:i]
	if j := bytes.LastIndexByte(line, '\n'); j >= 0 {
		line = line[j+1:]
	}
	var r record
	if json.Unmarshal(line, &r) != nil {
		return 0
	}
	return r.Seq
}

// segmentFiles returns the *.seg and *.taken names in dir.
func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	for _, pat := range []string{"*.seg", "*.taken"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, m...)
	}
	return names
}

// tail returns the end of b, for messages.
func tail(b []byte) []byte {
	if len(b) > 200 {
		return b[len(b)-200:]
	}
	return b
}

// exists reports whether path exists.
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
