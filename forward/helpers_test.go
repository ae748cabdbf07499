package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/filering/filering/forward/cursor"
)

// natsServer is a real NATS server with JetStream on, in this process, storing its
// streams in files under a directory that outlives a restart.
type natsServer struct {
	t     testing.TB
	store string
	port  int
	srv   *server.Server
}

// startServer starts a server on a free port with its store in a new directory.
func startServer(t testing.TB) *natsServer {
	t.Helper()
	s := &natsServer{t: t, store: t.TempDir(), port: -1}
	s.start()
	t.Cleanup(s.shutdown)
	return s
}

func (s *natsServer) start() {
	s.t.Helper()
	opts := &server.Options{
		ServerName: "filering-test",
		Host:       "127.0.0.1",
		Port:       s.port,
		JetStream:  true,
		StoreDir:   s.store,
		NoLog:      true,
		NoSigs:     true,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		s.t.Fatalf("nats server: %v", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		s.t.Fatal("nats server: not ready within 10s")
	}
	s.srv = srv
	if s.port < 0 {
		s.port = srv.Addr().(*net.TCPAddr).Port
	}
}

// restart shuts the server down and starts it again on the same port and store.
func (s *natsServer) restart() {
	s.t.Helper()
	s.shutdown()
	s.start()
}

func (s *natsServer) shutdown() {
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		s.srv = nil
	}
}

func (s *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// connect returns a connection for a Forwarder, closed when the test ends.
func (s *natsServer) connect(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := Connect(ConnectOptions{Servers: s.url(), Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// js returns a plain JetStream context for the test's own checks.
func (s *natsServer) js(t testing.TB) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(s.url())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// createStream creates a stream on the subjects.
func createStream(t testing.TB, js jetstream.JetStream, cfg jetstream.StreamConfig) jetstream.Stream {
	t.Helper()
	if cfg.Storage == 0 {
		cfg.Storage = jetstream.FileStorage
	}
	st, err := js.CreateStream(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// stored is a message of the subject as a test sees it.
type stored struct {
	seq  uint64 // stream sequence
	span span
	id   string
	time string
	data string
}

// readSubject returns every message of the subject, in stream order.
func readSubject(t testing.TB, js jetstream.JetStream, stream, subject string) []stored {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	var out []stored
	for seq := uint64(1); ; {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		s, err := parseSpan(m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, stored{seq: m.Sequence, span: s, id: m.Header.Get(HeaderMsgID), time: m.Header.Get(HeaderTime), data: string(m.Data)})
		seq = m.Sequence + 1
	}
}

// checkChain checks what a subject holds: every message follows the one before it (the
// next sequence number of the same ring, or a new ring from 1), so that each ring's
// records and gap markers cover its sequence numbers once each, in order. It returns
// the messages by ring, in order.
func checkChain(t testing.TB, msgs []stored) map[string][]stored {
	t.Helper()
	byRing := map[string][]stored{}
	for i, m := range msgs {
		if i > 0 && !m.span.follows(msgs[i-1].span) {
			t.Fatalf("stream sequence %d: %v after %v", m.seq, m.span, msgs[i-1].span)
		}
		if m.span.gap && m.data != "" {
			t.Fatalf("stream sequence %d: gap marker with a payload", m.seq)
		}
		byRing[m.span.ring] = append(byRing[m.span.ring], m)
	}
	return byRing
}

// collectLogs is a Logf that keeps the lines.
type collectLogs struct {
	mu    sync.Mutex
	lines []string
}

func (c *collectLogs) logf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = append(c.lines, fmt.Sprintf(format, args...))
}

func (c *collectLogs) has(sub string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

func (c *collectLogs) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.lines, "\n")
}

// running is a Forwarder running on its own goroutine.
type running struct {
	f      *Forwarder
	cancel context.CancelFunc
	done   chan error
}

// runForwarder starts f.Run; stop stops it and returns what Run returned.
func runForwarder(t testing.TB, f *Forwarder) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{f: f, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- f.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t testing.TB) error {
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("forwarder did not stop within 30s")
		return nil
	}
}

// waitStored waits until the subject's last message is at or past the position.
func waitStored(t testing.TB, js jetstream.JetStream, stream, subject string, want cursor.Cursor) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	var last cursor.Cursor
	for time.Now().Before(deadline) {
		st, err := js.Stream(ctx, stream)
		if err == nil {
			m, err := st.GetLastMsgForSubject(ctx, subject)
			if err == nil {
				if s, err := parseSpan(m); err == nil {
					last = s.end()
					if last.Ring == want.Ring && last.Seq >= want.Seq {
						return
					}
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("subject %s: last message %v, want %v, within 30s", subject, last, want)
}

// numbered returns the payload of record k in these tests.
func numbered(k uint64) []byte { return []byte("record " + strconv.FormatUint(k, 10)) }

func itoa(k uint64) string { return strconv.FormatUint(k, 10) }
