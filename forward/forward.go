// Package forward moves the records of a filering ring into a NATS JetStream stream,
// each record stored exactly once and in sequence order, across kills of the forwarder
// and the producer, restarts of the server and lost connections; records the ring lost
// before they could be forwarded are stood for by gap markers, never skipped silently.
//
// A Forwarder publishes every record of the ring directory Config.Dir to Config.Subject,
// one message per record: the payload is the record's bytes, and headers carry the ring's
// identity, the sequence number and the record's time (see HeaderRing and the others).
// It keeps no state of its own: the stream is the state. On start, after every reconnect
// and after any failed publish it reads the last message stored for the subject,
// checks the order of the messages that could have been published ahead of an
// acknowledgement, and continues after the last one. docs/FORWARD.md gives the whole
// argument, the failure cases and the limits.
//
//	nc, err := forward.Connect(forward.ConnectOptions{Servers: "nats://127.0.0.1:4222"})
//	f, err := forward.New(nc, forward.Config{Dir: "/run/ring/sensor", Stream: "SENSORS", Subject: "sensors.board1"})
//	err = f.Run(ctx) // until ctx is cancelled
package forward

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/filering/filering/forward/cursor"
	"github.com/filering/filering/watch"
)

// Defaults of Config.
const (
	DefaultWindow        = 1024
	DefaultInflightBytes = 16 << 20
	DefaultAckTimeout    = 10 * time.Second
	minBackoff           = 50 * time.Millisecond
	maxBackoff           = 5 * time.Second
	// batchItems and batchBytes bound what the ring reader hands over at once.
	batchItems = 256
	batchBytes = 1 << 20
	// headerRoom is what the headers of a record's message take at most, beyond the
	// payload, when checking a record against the largest message the stream takes.
	headerRoom = 512
)

// Config says what a Forwarder forwards, where to, and how.
type Config struct {
	Dir     string // the ring directory
	Stream  string // the JetStream stream; it must exist and take Subject
	Subject string // the subject every message of the ring is published to
	// First selects where a first run starts, when the stream holds nothing for
	// Subject: the zero Selection is every record the ring retains.
	First watch.Selection
	// Window is the most records published and not yet acknowledged (DefaultWindow
	// when 0); InflightBytes the most payload bytes (DefaultInflightBytes when 0).
	Window        int
	InflightBytes int
	// AckTimeout is how long an acknowledgement may take before the publish counts as
	// failed (DefaultAckTimeout when 0).
	AckTimeout time.Duration
	// Logf receives what the forwarder reports: records lost before they could be
	// forwarded, rings created anew, reconnects, repairs. Nil discards it.
	Logf func(format string, args ...any)
}

// Stats counts what a Forwarder did. Records and Gaps count messages JetStream
// acknowledged.
type Stats struct {
	Records uint64        // records stored
	Gaps    uint64        // gap markers stored
	Lost    uint64        // records the gap markers stand for
	Resumes uint64        // times the forwarder read the stream's last message and resumed
	Repairs uint64        // times it removed messages stored out of order (see docs/FORWARD.md)
	Last    cursor.Cursor // the position after the last message stored
}

// Forwarder forwards one ring to one subject. Its methods other than Run and Stats must
// not be called concurrently with Run.
type Forwarder struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	cfg Config
	// pos is the position after the last message known stored, kept across sessions:
	// where to continue should the stream's retention have removed every message of the
	// subject meanwhile.
	pos cursor.Cursor
	// read is the last record read from the ring read last, stored or not, and
	// readPrev the same for the ring before: when a ring is gone (created anew) before
	// the records read after the stored ones were stored, they are reported lost.
	read, readPrev cursor.Cursor
	// reissue makes the identifiers of the records from..upTo of ring reissue.ring new
	// (see HeaderMsgID): copies of them were removed from the stream, and JetStream's
	// deduplication would otherwise take them for the removed copies.
	reissue struct {
		ring              string
		from, upTo, token uint64
	}
	mu    sync.Mutex
	stats Stats
	// running guards against two concurrent Runs.
	running atomic.Bool
}

// New returns a Forwarder that publishes through nc, which stays the caller's: close it
// after Run has returned. The connection must not buffer
// publishes while it reconnects (nats.ReconnectBufSize(-1), as Connect sets): a message
// buffered then could be stored after later ones sent on the new connection.
func New(nc *nats.Conn, cfg Config) (*Forwarder, error) {
	switch {
	case cfg.Dir == "":
		return nil, errors.New("forward: no ring directory")
	case cfg.Stream == "":
		return nil, errors.New("forward: no stream")
	case cfg.Subject == "":
		return nil, errors.New("forward: no subject")
	case nc.Opts.ReconnectBufSize >= 0:
		return nil, errors.New("forward: the NATS connection buffers publishes while it reconnects; connect with nats.ReconnectBufSize(-1)")
	case cfg.Window < 0 || cfg.InflightBytes < 0 || cfg.AckTimeout < 0:
		return nil, errors.New("forward: negative window, in-flight bytes or acknowledgement timeout")
	}
	if cfg.Window == 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.InflightBytes == 0 {
		cfg.InflightBytes = DefaultInflightBytes
	}
	if cfg.AckTimeout == 0 {
		cfg.AckTimeout = DefaultAckTimeout
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	js, err := jetstream.New(nc,
		// The window is enforced here; the library's own limit only has to stay out
		// of its way, with room for acknowledgements abandoned by an earlier session.
		jetstream.WithPublishAsyncMaxPending(2*cfg.Window+16))
	if err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	return &Forwarder{nc: nc, js: js, cfg: cfg}, nil
}

// Stats returns what the forwarder did so far. It may be called at any time.
func (f *Forwarder) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// errPermanent marks an error that retrying cannot mend: Run returns it.
type errPermanent struct{ error }

func (e errPermanent) Unwrap() error { return e.error }

// Run forwards until ctx is done, and returns nil then: the records published and not
// yet acknowledged are waited for (up to the acknowledgement timeout) before it returns.
// It reconnects and resumes by itself; it returns an error only for what retrying
// cannot mend: a subject that holds messages a forwarder did not publish, or taken by
// another stream.
func (f *Forwarder) Run(ctx context.Context) error {
	if !f.running.CompareAndSwap(false, true) {
		return errors.New("forward: Run is already running")
	}
	defer f.running.Store(false)
	status := f.nc.StatusChanged(nats.CONNECTED, nats.RECONNECTING, nats.DISCONNECTED, nats.CLOSED)
	defer f.nc.RemoveStatusListener(status)
	backoff := minBackoff
	lastErr := ""
	for {
		if err := f.waitConnected(ctx, status); err != nil {
			return err
		}
		progress, err := f.session(ctx, status)
		if ctx.Err() != nil {
			return nil
		}
		var perm errPermanent
		if errors.As(err, &perm) {
			return perm.error
		}
		if progress {
			backoff = minBackoff
		}
		if msg := err.Error(); msg != lastErr || progress {
			f.cfg.Logf("%s: %v", f.cfg.Dir, err)
			lastErr = msg
		}
		// A little jitter, so that many forwarders cut off together do not return together.
		d := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// waitConnected waits until the connection is up. It returns nil when ctx is done too
// (Run then returns nil), and an error when the connection was closed.
func (f *Forwarder) waitConnected(ctx context.Context, status <-chan nats.Status) error {
	for {
		switch f.nc.Status() {
		case nats.CONNECTED:
			return nil
		case nats.CLOSED:
			return errors.New("forward: the NATS connection is closed")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-status:
		case <-time.After(time.Second): // status events are hints: the channel may drop some
		}
	}
}

// item is one record or gap to publish.
type item struct {
	span
	time    int64
	data    []byte
	newRing bool
	note    string // what to report once it is stored (a gap marker's loss)
}

// pending is a message published and not yet examined.
type pending struct {
	item item
	ok   <-chan *jetstream.PubAck
	err  <-chan error
	size int
	sent time.Time
}

// errDuplicate is an acknowledgement that JetStream took the message for a duplicate of
// one it stored at seq: another copy is (or was) in the stream.
type errDuplicate struct {
	item item
	seq  uint64
}

func (e *errDuplicate) Error() string {
	return fmt.Sprintf("JetStream took %v for a duplicate of stream sequence %d", e.item.span, e.seq)
}

// errDisconnected ends a session when the connection goes down.
var errDisconnected = errors.New("disconnected from the NATS server")

// errAckTimeout ends a session when an acknowledgement takes longer than the timeout.
var errAckTimeout = errors.New("no acknowledgement within the timeout")

// session is one run of the pipeline: resume from the stream, then follow the ring and
// publish until something fails or ctx is done.
type session struct {
	f      *Forwarder
	st     jetstream.Stream
	limit  int // the largest message the stream and the server take
	fence  *uint64
	fenced bool   // the fenced first message was published
	anchor uint64 // stream sequence of the newest message known stored in order
	prev   span   // the last message published (or found stored) that the next follows
	has    bool   // prev is set
	ackSeq uint64 // stream sequence of the last acknowledgement examined
	queue  []pending
	head   int
	bytes  int
	gotAck bool
	recon  uint64 // the connection's reconnect count when the session began
}

func (s *session) inflight() int { return len(s.queue) - s.head }

// session resumes and forwards until a failure or ctx; it reports whether any message was
// acknowledged.
func (f *Forwarder) session(ctx context.Context, status <-chan nats.Status) (bool, error) {
	s := &session{f: f, recon: f.nc.Stats().Reconnects}
	st, err := f.js.Stream(ctx, f.cfg.Stream)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return false, fmt.Errorf("stream %s not found (create it, or run with --create-stream)", f.cfg.Stream)
		}
		return false, fmt.Errorf("stream %s: %w", f.cfg.Stream, err)
	}
	s.st = st
	s.limit = int(f.nc.MaxPayload())
	if m := st.CachedInfo().Config.MaxMsgSize; m > 0 && int(m) < s.limit {
		s.limit = int(m)
	}
	rp, err := f.resume(ctx, st)
	if err != nil {
		return false, err
	}
	s.fence, s.anchor, s.prev, s.has = &rp.subjLast, rp.subjLast, rp.tail, rp.hasTail
	pos := rp.tail.end()
	if !rp.hasTail {
		pos = f.pos // the subject is empty: go on from what this process stored, if anything
		s.anchor = 0
	}
	f.mu.Lock()
	f.stats.Resumes++
	f.mu.Unlock()

	src, err := cursor.Follow(f.cfg.Dir, pos, cursor.Options{First: f.cfg.First, Logf: func(format string, args ...any) {
		f.cfg.Logf(format, args...)
	}})
	if err != nil {
		return false, err
	}
	rctx, stop := context.WithCancel(ctx)
	rd := startReader(rctx, src)
	defer func() {
		stop()
		<-rd.done
		src.Close()
		// What the reader read and the pipeline never took was read all the same.
		for {
			select {
			case b := <-rd.out:
				for _, it := range b {
					f.noteRead(it)
				}
				continue
			default:
			}
			break
		}
	}()
	err = s.pump(ctx, rd, status)
	stored, abandoned := s.drain()
	if abandoned || errors.Is(err, errAckTimeout) {
		// The server did not answer in time: start over on a new connection, which
		// also fails the acknowledgements abandoned here in the library.
		f.nc.ForceReconnect()
	}
	if ctx.Err() != nil {
		// Stopping: should some of what was in flight have failed, mend the order of
		// what the stream holds now rather than at the next start.
		if !stored && !abandoned && f.nc.IsConnected() {
			mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.AckTimeout)
			f.resume(mctx, st)
			cancel()
		}
		return s.gotAck, nil
	}
	var dup *errDuplicate
	if errors.As(err, &dup) {
		if derr := f.duplicate(context.WithoutCancel(ctx), st, dup); derr != nil {
			err = derr
		}
	}
	return s.gotAck, err
}

// noteRead remembers it as the last record read from its ring.
func (f *Forwarder) noteRead(it item) {
	switch {
	case it.ring != f.read.Ring:
		f.readPrev, f.read = f.read, it.end()
	case it.last > f.read.Seq:
		f.read = it.end()
	}
}

// lastRead returns the last sequence number read from ring, if it is one of the last two
// rings read.
func (f *Forwarder) lastRead(ring string) (uint64, bool) {
	switch ring {
	case f.read.Ring:
		return f.read.Seq, true
	case f.readPrev.Ring:
		return f.readPrev.Seq, true
	}
	return 0, false
}

// reader follows the ring on its own goroutine and hands its items over in batches:
// a batch goes when it is full or when the ring has nothing more for now.
type reader struct {
	out  chan []item
	done chan struct{}
	err  error // valid after done
}

func startReader(ctx context.Context, src *cursor.Follower) *reader {
	rd := &reader{out: make(chan []item, 2), done: make(chan struct{})}
	go func() {
		defer close(rd.done)
		var b []item
		n := 0
		flush := func() {
			if len(b) == 0 {
				return
			}
			select {
			case rd.out <- b:
				b, n = nil, 0
			case <-ctx.Done():
			}
		}
		src.OnWait(flush)
		for src.Next(ctx) {
			it := src.Item()
			x := item{span: span{ring: it.Ring, first: it.Seq, last: it.To, gap: it.Kind == cursor.Gap}, time: it.Time, newRing: it.NewRing}
			if it.Kind == cursor.Record {
				x.data = append([]byte(nil), it.Data...) // valid until the next Next otherwise
			} else {
				x.note = fmt.Sprintf("lost %d records (%d to %d) before they could be forwarded", it.To-it.Seq+1, it.Seq, it.To)
			}
			if b == nil {
				b = make([]item, 0, batchItems)
			}
			b = append(b, x)
			n += len(x.data)
			if len(b) >= batchItems || n >= batchBytes {
				flush()
			}
		}
		flush()
		rd.err = src.Err()
	}()
	return rd
}

// pump publishes the reader's items, keeping at most the window in flight, and examines
// acknowledgements in publishing order. It returns the first failure; ctx.Err() when ctx
// is done.
func (s *session) pump(ctx context.Context, rd *reader, status <-chan nats.Status) error {
	f := s.f
	var backlog []item
	readerDone := rd.done
	tick := time.NewTicker(max(f.cfg.AckTimeout/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		// Publish what the window allows.
		for len(backlog) > 0 {
			it := backlog[0]
			if s.fenced && s.inflight() > 0 {
				break // nothing goes behind the fenced first message until it is stored
			}
			if it.newRing {
				if s.inflight() > 0 {
					break // the old ring's messages must all be stored before the new ring's first
				}
				if old, ok := s.oldRingTail(); ok {
					backlog = append([]item{old}, backlog...)
					continue
				}
			}
			if s.inflight() >= f.cfg.Window || (s.inflight() > 0 && s.bytes+len(it.data) > f.cfg.InflightBytes) {
				break
			}
			if err := s.publish(it); err != nil {
				return err
			}
			backlog = backlog[1:]
		}
		var in <-chan []item
		if len(backlog) == 0 {
			in = rd.out
		}
		var okc <-chan *jetstream.PubAck
		var errc <-chan error
		if s.inflight() > 0 {
			p := &s.queue[s.head]
			okc, errc = p.ok, p.err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case b := <-in:
			for _, it := range b {
				f.noteRead(it)
			}
			backlog = b
		case a := <-okc:
			if err := s.acked(a); err != nil {
				return err
			}
		case err := <-errc:
			return s.failed(err)
		case <-tick.C:
			if s.inflight() > 0 && time.Since(s.queue[s.head].sent) > f.cfg.AckTimeout {
				return fmt.Errorf("publish %v to %s: %w (%v)", s.queue[s.head].item.span, f.cfg.Subject, errAckTimeout, f.cfg.AckTimeout)
			}
		case <-status:
			if f.nc.Status() != nats.CONNECTED || f.nc.Stats().Reconnects != s.recon {
				return errDisconnected
			}
		case <-readerDone:
			// Deliver what it handed over before it stopped, then stop.
			readerDone = nil
			select {
			case b := <-rd.out:
				backlog = append(backlog, b...)
				for _, it := range b {
					f.noteRead(it)
				}
				readerDone = rd.done
				continue
			default:
			}
			if rd.err != nil && ctx.Err() == nil {
				return fmt.Errorf("%s: %w", f.cfg.Dir, rd.err)
			}
		}
	}
}

// oldRingTail returns a gap marker for the records of the previous ring that were read
// from it but not stored before it was created anew, if there are any.
func (s *session) oldRingTail() (item, bool) {
	if !s.has {
		return item{}, false
	}
	read, ok := s.f.lastRead(s.prev.ring)
	if !ok || read <= s.prev.last {
		return item{}, false
	}
	old := item{span: span{ring: s.prev.ring, first: s.prev.last + 1, last: read, gap: true}}
	old.note = fmt.Sprintf("lost %d records (%d to %d) of the ring's previous identity %s before they could be forwarded",
		old.last-old.first+1, old.first, old.last, old.ring)
	return old, true
}

// publish publishes one item asynchronously.
func (s *session) publish(it item) error {
	f := s.f
	if !it.gap && len(it.data)+headerRoom > s.limit {
		// JetStream would refuse it: a gap marker stands for it, and says why.
		it.note = fmt.Sprintf("record %d is %d bytes, more than the %d bytes a message of stream %s may hold with its headers; a gap marker stands for it",
			it.first, len(it.data), s.limit, f.cfg.Stream)
		it.gap, it.data = true, nil
	}
	if s.has && !it.span.follows(s.prev) {
		// Cannot happen: the ring follower covers every sequence number.
		return fmt.Errorf("internal error: %v does not follow %v", it.span, s.prev)
	}
	if it.newRing {
		f.cfg.Logf("%s: the ring was created anew (identity %s); forwarding it from its first record", f.cfg.Dir, it.ring)
	}
	it.acked = s.anchor
	var reissue uint64
	if r := &f.reissue; r.ring == it.ring && it.last >= r.from && it.first <= r.upTo {
		reissue = r.token
	}
	msg := &nats.Msg{Subject: f.cfg.Subject, Data: it.data, Header: it.span.header(it.time, reissue)}
	opts := []jetstream.PublishOpt{jetstream.WithRetryAttempts(0)}
	if s.fence != nil {
		// The first message of a session is stored only if the subject's last message
		// is still the one this session resumed after.
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(*s.fence))
		s.fence, s.fenced = nil, true
	}
	fut, err := f.js.PublishMsgAsync(msg, opts...)
	if err != nil {
		return fmt.Errorf("publish %v: %w", it.span, err)
	}
	s.queue = append(s.queue, pending{item: it, ok: fut.Ok(), err: fut.Err(), size: len(it.data), sent: time.Now()})
	s.bytes += len(it.data)
	s.prev, s.has = it.span, true
	return nil
}

// pop removes the oldest pending message.
func (s *session) pop() pending {
	p := s.queue[s.head]
	s.queue[s.head] = pending{}
	s.head++
	s.bytes -= p.size
	if s.head == len(s.queue) {
		s.queue, s.head = s.queue[:0], 0
	} else if s.head >= 1024 && s.head*2 >= len(s.queue) {
		n := copy(s.queue, s.queue[s.head:])
		clear(s.queue[n:])
		s.queue, s.head = s.queue[:n], 0
	}
	return p
}

// acked examines the acknowledgement of the oldest pending message.
func (s *session) acked(a *jetstream.PubAck) error {
	f := s.f
	p := s.pop()
	switch {
	case a.Stream != f.cfg.Stream:
		return errPermanent{fmt.Errorf("subject %s is stored by stream %s, not %s", f.cfg.Subject, a.Stream, f.cfg.Stream)}
	case a.Duplicate:
		return &errDuplicate{item: p.item, seq: a.Sequence}
	case a.Sequence <= s.ackSeq:
		return fmt.Errorf("JetStream stored %v at stream sequence %d, before the message published ahead of it (%d)", p.item.span, a.Sequence, s.ackSeq)
	}
	s.ackSeq, s.anchor, s.gotAck = a.Sequence, a.Sequence, true
	f.pos = p.item.end()
	f.mu.Lock()
	if p.item.gap {
		f.stats.Gaps++
		f.stats.Lost += p.item.last - p.item.first + 1
	} else {
		f.stats.Records++
	}
	f.stats.Last = f.pos
	f.mu.Unlock()
	if p.item.note != "" {
		f.cfg.Logf("%s: %s", f.cfg.Dir, p.item.note)
	}
	return nil
}

// failed turns the error of the oldest pending message into the session's.
func (s *session) failed(err error) error {
	p := s.pop()
	return fmt.Errorf("publish %v to %s: %w", p.item.span, s.f.cfg.Subject, err)
}

// drain waits for every message still in flight to be acknowledged or to fail (the
// library fails them at once when the connection goes down), and examines them in
// order while they succeed; it abandons them all when one is not answered within the
// acknowledgement timeout. After it, nothing this session published can still be
// stored, except what the server holds and has not handled yet (see docs/FORWARD.md).
// It reports whether every one was stored, and whether it abandoned some.
func (s *session) drain() (stored, abandoned bool) {
	stored = true
	for s.inflight() > 0 {
		p := &s.queue[s.head]
		t := time.NewTimer(max(time.Until(p.sent.Add(s.f.cfg.AckTimeout)), 0))
		select {
		case a := <-p.ok:
			if stored {
				stored = s.acked(a) == nil
			} else {
				s.pop()
			}
		case <-p.err:
			stored = false
			s.pop()
		case <-t.C:
			clear(s.queue)
			s.queue, s.head, s.bytes = s.queue[:0], 0, 0
			return false, true
		}
		t.Stop()
	}
	return stored, false
}

// duplicate looks at the copy JetStream took a message for. When that copy is gone
// (a forwarder removed it to publish the records again in order), the records around
// it are published with new identifiers from now on; otherwise the copy is in the
// stream and resuming continues after it.
func (f *Forwarder) duplicate(ctx context.Context, st jetstream.Stream, dup *errDuplicate) error {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.AckTimeout)
	defer cancel()
	m, err := st.GetMsg(ctx, dup.seq)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		// The removed copies were at most a window of records past it.
		f.reissueRange(dup.item.ring, dup.item.first, dup.item.last+uint64(f.cfg.Window), dup.seq)
	case err == nil && m.Subject != f.cfg.Subject:
		return errPermanent{fmt.Errorf("stream %s holds %v under subject %s already: a ring goes to one subject of a stream", f.cfg.Stream, dup.item.span, m.Subject)}
	}
	return nil
}

// reissueRange gives the records from..upTo of ring new identifiers made with token, a
// stream sequence number of a removed message: no identifier made with it was used
// before it was removed.
func (f *Forwarder) reissueRange(ring string, from, upTo, token uint64) {
	r := &f.reissue
	if r.ring != ring || r.upTo == 0 {
		r.ring, r.from, r.upTo = ring, from, 0
	}
	r.from = min(r.from, from)
	r.upTo = max(r.upTo, upTo)
	r.token = max(r.token, token)
}
