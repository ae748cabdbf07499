package tests

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The forward tests run `filering forward` against a real NATS server with JetStream,
// embedded in the test process and storing its streams in files under a temporary
// directory, and check what the stream holds at the end: every record the ring still
// had when it was forwarded, each exactly once and in sequence order, and a gap marker
// for every record lost before it could be forwarded. FILERING_FORWARD_KILLS sets the
// number of kills of TestForward_KillTorture (100, or 20 with -short or -race):
//
//	FILERING_FORWARD_KILLS=200 go test -count=1 -run Forward -v ./tests/

// natsServer is the embedded server; restart stops it and starts it again on the same
// port and store, as a server that went away and came back.
type natsServer struct {
	t     *testing.T
	store string
	port  int
	srv   *server.Server
}

func startNATS(t *testing.T) *natsServer {
	t.Helper()
	s := &natsServer{t: t, store: t.TempDir(), port: -1}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *natsServer) start() {
	s.t.Helper()
	srv, err := server.NewServer(&server.Options{
		ServerName: "filering-forward-test", Host: "127.0.0.1", Port: s.port,
		JetStream: true, StoreDir: s.store, NoLog: true, NoSigs: true,
	})
	if err != nil {
		s.t.Fatalf("nats server: %v", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		s.t.Fatal("nats server not ready within 10s")
	}
	s.srv = srv
	s.port = srv.Addr().(*net.TCPAddr).Port
}

func (s *natsServer) stop() {
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		s.srv = nil
	}
}

func (s *natsServer) restart() {
	s.t.Helper()
	s.stop()
	s.start()
}

func (s *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// jetStream returns a JetStream context on a connection of the test's own.
func (s *natsServer) jetStream() jetstream.JetStream {
	s.t.Helper()
	nc, err := nats.Connect(s.url())
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		s.t.Fatal(err)
	}
	return js
}

// fwdMsg is a message of the subject as the test reads it.
type fwdMsg struct {
	streamSeq   uint64
	ring        string
	first, last uint64 // the sequence numbers it covers
	gap         bool
	msgID, time string
	data        string
}

// readForwarded reads every message of the subject in stream order.
func readForwarded(t *testing.T, js jetstream.JetStream, stream, subject string) []fwdMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	want := int(info.State.Subjects[subject])
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	var out []fwdMsg
	for len(out) < want {
		batch, err := cons.Fetch(min(1000, want-len(out)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, parseForwarded(t, md.Sequence.Stream, m.Headers(), m.Data()))
		}
		if batch.Error() != nil && !errors.Is(batch.Error(), nats.ErrTimeout) {
			t.Fatal(batch.Error())
		}
		if n == 0 {
			t.Fatalf("subject %s: read %d messages of %d, then nothing more", subject, len(out), want)
		}
	}
	return out
}

func parseForwarded(t *testing.T, seq uint64, h nats.Header, data []byte) fwdMsg {
	t.Helper()
	m := fwdMsg{streamSeq: seq, ring: h.Get("Filering-Ring"), msgID: h.Get("Nats-Msg-Id"), time: h.Get("Filering-Time"), data: string(data)}
	if len(m.ring) != 32 {
		t.Fatalf("stream sequence %d: ring %q", seq, m.ring)
	}
	if g := h.Get("Filering-Gap"); g != "" {
		a, b, _ := strings.Cut(g, "-")
		first, err1 := strconv.ParseUint(a, 10, 64)
		last, err2 := strconv.ParseUint(b, 10, 64)
		if err1 != nil || err2 != nil || first == 0 || last < first || len(data) != 0 || h.Get("Filering-Seq") != "" {
			t.Fatalf("stream sequence %d: bad gap marker %q, %d bytes", seq, g, len(data))
		}
		m.first, m.last, m.gap = first, last, true
		if want := m.ring + ":" + g; m.msgID != want && !strings.HasPrefix(m.msgID, want+":") {
			t.Fatalf("stream sequence %d: Nats-Msg-Id %q for gap %s", seq, m.msgID, g)
		}
		return m
	}
	n, err := strconv.ParseUint(h.Get("Filering-Seq"), 10, 64)
	if err != nil || n == 0 {
		t.Fatalf("stream sequence %d: Filering-Seq %q", seq, h.Get("Filering-Seq"))
	}
	m.first, m.last = n, n
	if want := m.ring + ":" + strconv.FormatUint(n, 10); m.msgID != want && !strings.HasPrefix(m.msgID, want+":") {
		t.Fatalf("stream sequence %d: Nats-Msg-Id %q for record %d", seq, m.msgID, n)
	}
	if ts, err := time.Parse(time.RFC3339Nano, m.time); err != nil || len(m.time) != len("2006-01-02T15:04:05.000000000Z") || ts.Location() != time.UTC {
		t.Fatalf("stream sequence %d: Filering-Time %q", seq, m.time)
	}
	return m
}

// checkForwarded checks the messages of one ring against what the ring holds at the end
// (ring, from `filering cat --format json`, whose last record is the ring's last):
//
//   - the messages follow one another: each the next sequence number, from 1 to the
//     ring's last, as a record or inside a gap marker, each number once;
//   - no gap marker covers a record the ring still holds (those were never lost);
//   - every record still in the ring is in the stream with the same bytes and time;
//   - the payloads, the feeder's increasing ids, increase with the sequence number.
//
// It returns how many records the gap markers stand for.
func checkForwarded(t *testing.T, msgs []fwdMsg, id string, ring []record) (lost uint64) {
	t.Helper()
	if len(ring) == 0 {
		t.Fatal("the ring holds no records")
	}
	retained := map[uint64]record{}
	for _, r := range ring {
		retained[r.Seq] = r
	}
	firstRetained, last := ring[0].Seq, ring[len(ring)-1].Seq
	next := uint64(1)
	prevID := int64(-1)
	for _, m := range msgs {
		if m.ring != id {
			continue
		}
		if m.first != next {
			t.Fatalf("stream sequence %d: covers %d to %d, want %d next (a hole or a duplicate)", m.streamSeq, m.first, m.last, next)
		}
		next = m.last + 1
		if m.gap {
			if m.last >= firstRetained {
				t.Fatalf("stream sequence %d: gap marker %d-%d covers records the ring still holds (from %d)", m.streamSeq, m.first, m.last, firstRetained)
			}
			lost += m.last - m.first + 1
			continue
		}
		idNum, err := strconv.ParseInt(m.data, 10, 64)
		if err != nil || idNum <= prevID {
			t.Fatalf("stream sequence %d: record %d holds %q after id %d", m.streamSeq, m.first, m.data, prevID)
		}
		prevID = idNum
		if r, ok := retained[m.first]; ok {
			p, err := r.payload()
			if err != nil || string(p) != m.data || r.Time != m.time {
				t.Fatalf("record %d: stream holds %q at %s, ring holds %q at %s", m.first, m.data, m.time, p, r.Time)
			}
		}
	}
	if next != last+1 {
		t.Fatalf("ring %s: the stream covers records 1 to %d, the ring's last is %d", id, next-1, last)
	}
	return lost
}

// ringID reads the ring's identity.
func ringID(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(dir + "/id")
	if err != nil || len(b) != 33 {
		t.Fatalf("ring identity: %q, %v", b, err)
	}
	return string(b[:32])
}

// retained returns the records the ring holds now.
func retained(t *testing.T, dir string) []record {
	t.Helper()
	recs, err := parseJSON(mustRun(t, nil, "cat", "--format", "json", dir), false)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// waitForwarded waits until the subject's last message covers the ring's record last.
func waitForwarded(t *testing.T, js jetstream.JetStream, stream, subject, id string, last uint64, fwd func() *proc) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	got := ""
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if st, err := js.Stream(ctx, stream); err == nil {
			if m, err := st.GetLastMsgForSubject(ctx, subject); err == nil {
				got = m.Header.Get("Filering-Ring") + ":" + m.Header.Get("Filering-Seq") + m.Header.Get("Filering-Gap")
				if got == id+":"+strconv.FormatUint(last, 10) {
					cancel()
					return
				}
			}
		}
		cancel()
		if p := fwd(); p.exited() {
			t.Fatalf("%s exited (%v); stderr:\n%s", p.name, p.err, p.stderr.Bytes())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("subject %s: last message %s within 60s, want %s:%d; forwarder stderr:\n%s", subject, got, id, last, tail(fwd().stderr.Bytes()))
}

// forwarderLogOK checks a forwarder's standard error for lines it must never print.
func forwarderLogOK(t *testing.T, stderr []byte) {
	t.Helper()
	for _, line := range strings.Split(string(stderr), "\n") {
		if strings.Contains(line, "internal error") || strings.Contains(line, "panic") || strings.Contains(line, "DATA RACE") {
			t.Fatalf("forwarder said %q", line)
		}
	}
}

// forwardArgs returns the command line of a forwarder of dir to subject.
func forwardArgs(srv *natsServer, dir, stream, subject, lockDir string, extra ...string) []string {
	return append([]string{"forward", dir, "--server", srv.url(), "--stream", stream, "--subject", subject,
		"--create-stream", "--duplicates", "1s", "--lock-dir", lockDir}, extra...)
}

// TestForward_KillTorture forwards a ring fed all along while the forwarder and the
// producer are killed with SIGKILL at random instants, the server is shut down and
// started again on the same store, and the forwarder is stopped (killed, and frozen
// with SIGSTOP) for longer than the stream's duplicate window (1 s here).
func TestForward_KillTorture(t *testing.T) {
	kills := envCount(t, "FILERING_FORWARD_KILLS", short(100, 20))
	srv := startNATS(t)
	js := srv.jetStream()
	dir := ring(t)
	lockDir := t.TempDir()
	// A small ring (8 segments of 4 KiB, about a thousand records) fed at about 3000
	// records a second: a forwarder away for a few hundred milliseconds loses some.
	args := forwardArgs(srv, dir, "TORTURE", "torture.ring", lockDir, "--window", "64")
	var stderrs []byte
	fwd := startProc(t, args...) // before the ring exists: it forwards from record 1
	nextID := 1
	startFeed := func() (*proc, *feeder) {
		p := startProducer(t, dir, "--segment-size", "4KiB", "--segments", "8")
		base := nextID
		fd := feed(p.stdin, feedOptions{line: func(k int) string { return strconv.Itoa(base + k - 1) }, chunk: 10, pause: 3 * time.Millisecond, keep: true})
		return p, fd
	}
	prod, fd := startFeed()
	stopFeed := func() {
		nextID += fd.halt() + 1000 // ids lost in a pipe stay below the next run's
	}
	restartForwarder := func(pause time.Duration) {
		fwd.cmd.Process.Kill()
		fwd.wait()
		stderrs = append(stderrs, fwd.stderr.Bytes()...)
		time.Sleep(pause)
		fwd = startProc(t, args...)
	}
	waitFor(t, 10*time.Second, "ring", func() bool { return exists(dir + "/id") })
	stats := map[string]int{}
	for i := range kills {
		time.Sleep(time.Duration(20+rand.IntN(150)) * time.Millisecond)
		switch {
		case i == kills/3 || i == 2*kills/3:
			srv.restart()
			stats["server restarts"]++
			fallthrough // and a kill as well
		case rand.IntN(4) == 0:
			prod.cmd.Process.Kill()
			prod.wait()
			stopFeed()
			if !producerLogOK(prod.stderr.Bytes(), "after an unclean stop") {
				t.Fatalf("producer stderr: %q", prod.stderr.Bytes())
			}
			prod, fd = startFeed()
			stats["producer kills"]++
		case i == kills/2:
			restartForwarder(1500 * time.Millisecond) // away longer than the duplicate window
			stats["forwarder kills"]++
		case i == kills/2+1:
			fwd.stop() // frozen longer than the duplicate window
			time.Sleep(1500 * time.Millisecond)
			fwd.cont()
		case rand.IntN(8) == 0:
			restartForwarder(time.Duration(300+rand.IntN(400)) * time.Millisecond) // some records lost
			stats["forwarder kills"]++
		default:
			restartForwarder(0)
			stats["forwarder kills"]++
		}
	}
	// The end: the producer stops, the forwarder catches up, and is interrupted.
	stopFeed()
	prod.stdin.Close()
	if code := prod.wait(); code != 0 {
		t.Fatalf("producer: exit %d: %s", code, prod.stderr.Bytes())
	}
	recs := retained(t, dir)
	id := ringID(t, dir)
	waitForwarded(t, js, "TORTURE", "torture.ring", id, recs[len(recs)-1].Seq, func() *proc { return fwd })
	fwd.interrupt()
	stderrs = append(stderrs, fwd.stderr.Bytes()...)
	forwarderLogOK(t, stderrs)

	msgs := readForwarded(t, js, "TORTURE", "torture.ring")
	lost := checkForwarded(t, msgs, id, recs)
	gaps := 0
	for _, m := range msgs {
		if m.gap {
			gaps++
		}
	}
	t.Logf("%v; %d records, %d messages, %d gap markers for %d lost records", stats, recs[len(recs)-1].Seq, len(msgs), gaps, lost)
	if lost > 0 && !strings.Contains(string(stderrs), "before they could be forwarded") {
		t.Fatalf("%d records lost, none reported; stderr:\n%s", lost, tail(stderrs))
	}
}

// TestForward_TwoRingsOneStream forwards two rings into one stream, on two subjects,
// killing each forwarder a few times.
func TestForward_TwoRingsOneStream(t *testing.T) {
	srv := startNATS(t)
	js := srv.jetStream()
	lockDir := t.TempDir()
	type side struct {
		dir, subject string
		args         []string
		fwd, prod    *proc
		fd           *feeder
	}
	sides := []*side{{dir: ring(t), subject: "two.a"}, {dir: ring(t), subject: "two.b"}}
	for _, s := range sides {
		s.args = forwardArgs(srv, s.dir, "TWO", s.subject, lockDir)
		s.fwd = startProc(t, s.args...)
		s.prod = startProducer(t, s.dir, "--segment-size", "64KiB", "--segments", "64")
		s.fd = feed(s.prod.stdin, feedOptions{chunk: 20, pause: 5 * time.Millisecond, keep: true})
	}
	for i := range short(6, 3) {
		time.Sleep(time.Duration(50+rand.IntN(150)) * time.Millisecond)
		s := sides[i%2]
		s.fwd.cmd.Process.Kill()
		s.fwd.wait()
		forwarderLogOK(t, s.fwd.stderr.Bytes())
		s.fwd = startProc(t, s.args...)
	}
	for _, s := range sides {
		s.fd.halt()
		s.prod.stdin.Close()
		if code := s.prod.wait(); code != 0 {
			t.Fatalf("producer: exit %d: %s", code, s.prod.stderr.Bytes())
		}
	}
	for _, s := range sides {
		recs := retained(t, s.dir)
		id := ringID(t, s.dir)
		waitForwarded(t, js, "TWO", s.subject, id, recs[len(recs)-1].Seq, func() *proc { return s.fwd })
		s.fwd.interrupt()
		forwarderLogOK(t, s.fwd.stderr.Bytes())
		msgs := readForwarded(t, js, "TWO", s.subject)
		if lost := checkForwarded(t, msgs, id, recs); lost != 0 {
			t.Fatalf("%s: %d records lost in a ring that holds them all", s.subject, lost)
		}
		for _, m := range msgs {
			if m.ring != id {
				t.Fatalf("%s: a message of ring %s", s.subject, m.ring)
			}
		}
	}
}

// TestForward_RingCreatedAnew removes the ring while it is forwarded and creates it
// again: the stream goes on with the new ring's records from 1, and says so.
func TestForward_RingCreatedAnew(t *testing.T) {
	srv := startNATS(t)
	js := srv.jetStream()
	dir := ring(t)
	fwd := startProc(t, forwardArgs(srv, dir, "ANEW", "anew", t.TempDir())...)
	mustRun(t, lines(100), "produce", dir)
	old := ringID(t, dir)
	waitForwarded(t, js, "ANEW", "anew", old, 100, func() *proc { return fwd })
	oldRecs := retained(t, dir)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	mustRun(t, lines(50), "produce", dir)
	id := ringID(t, dir)
	if id == old {
		t.Fatal("the new ring has the old one's identity")
	}
	waitForwarded(t, js, "ANEW", "anew", id, 50, func() *proc { return fwd })
	fwd.interrupt()
	forwarderLogOK(t, fwd.stderr.Bytes())
	msgs := readForwarded(t, js, "ANEW", "anew")
	if len(msgs) != 150 {
		t.Fatalf("%d messages, want 150", len(msgs))
	}
	checkForwarded(t, msgs, old, oldRecs)
	checkForwarded(t, msgs, id, retained(t, dir))
	if !strings.Contains(string(fwd.stderr.Bytes()), "the ring was created anew (identity "+id+")") {
		t.Fatalf("stderr: %q", fwd.stderr.Bytes())
	}
}

// TestForward_SecondForwarderRefused starts a second forwarder of the same ring to the
// same subject: it must refuse, naming the first one's pid.
func TestForward_SecondForwarderRefused(t *testing.T) {
	srv := startNATS(t)
	dir := ring(t)
	lockDir := t.TempDir()
	args := forwardArgs(srv, dir, "ONE", "one", lockDir)
	first := startProc(t, args...)
	waitFor(t, 10*time.Second, "the first forwarder's lock", func() bool {
		entries, _ := os.ReadDir(lockDir)
		return len(entries) == 1
	})
	r := run(t, nil, args...)
	if r.code != 1 || !strings.Contains(string(r.stderr), fmt.Sprintf("pid %d already forwards", first.pid())) {
		t.Fatalf("second forwarder: %v", r)
	}
	// Another subject is another forwarder.
	other := startProc(t, forwardArgs(srv, dir, "ONE", "two", lockDir)...)
	time.Sleep(200 * time.Millisecond)
	if other.exited() {
		t.Fatalf("forwarder to another subject: %v, %q", other.err, other.stderr.Bytes())
	}
	other.interrupt()
	first.signal(syscall.SIGTERM)
	if code := first.wait(); code != 0 {
		t.Fatalf("first forwarder: exit %d after SIGTERM: %q", code, first.stderr.Bytes())
	}
}

func TestForward_Usage(t *testing.T) {
	for _, args := range [][]string{
		{"forward", "/tmp/x", "--stream", "S", "--subject", "s"},
		{"forward", "/tmp/x", "--server", "nats://127.0.0.1:1", "--subject", "s"},
		{"forward", "/tmp/x", "--server", "nats://127.0.0.1:1", "--stream", "S", "--subject", "s", "--max-age", "1h"},
		{"forward", "/tmp/x", "--server", "nats://127.0.0.1:1", "--stream", "S", "--subject", "s", "--window", "0"},
		{"forward", "/tmp/x", "--server", "nats://127.0.0.1:1", "--stream", "S", "--subject", "s", "--tls-cert", "c.pem"},
	} {
		if r := run(t, nil, args...); r.code != 2 {
			t.Errorf("filering %s: %v, want exit 2", strings.Join(args, " "), r)
		}
	}
}
