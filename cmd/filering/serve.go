package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/filering/filering/examples/cgi"
	"github.com/filering/filering/segment"
	"github.com/filering/filering/watch"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "serve a ring over HTTP: JSON, Server-Sent Events and a live graph page",
		ArgsUsage: "DIR",
		Description: fmt.Sprintf("Endpoints:\n"+
			"  GET /                    the live graph page\n"+
			"  GET /records?last=N      the latest N records as JSON (default 300, at most %d)\n"+
			"  GET /records?after=SEQ&wait=S   records newer than SEQ, waiting up to S seconds for one\n"+
			"  GET /events              Server-Sent Events, one per record, id = sequence number;\n"+
			"                           resumes after Last-Event-ID, or ?after=SEQ, or starts with ?last=N\n"+
			"  GET /healthz             {\"ok\":true,...}; 503 and {\"ok\":false,\"reason\":\"...\",...} when there\n"+
			"                           is no ring, no producer holds it, or (--stale) its newest record is too old\n"+
			"Records are {\"seq\":N,\"time_ns\":T,\"value\":V}: V is the payload as a number when it is a\n"+
			"decimal number, else as a string. One follower reads the ring for every client; a slow\n"+
			"client never slows the producer or the other clients. /records responses are sent as\n"+
			"they are read; at most %d are read at once, and a request that finds no turn within %v\n"+
			"gets 503 with Retry-After. Until a ring exists at DIR, /records and /healthz answer 503\n"+
			"and serve picks the ring up when it appears, or when it is removed and created anew.",
			maxLast, recordsConcurrent, recordsQueueWait),
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8080", Usage: "`ADDRESS` to listen on (loopback unless told otherwise)"},
			&cli.IntFlag{Name: "buffer", Value: 4096, Usage: "records kept in memory for event streams"},
			&cli.DurationFlag{Name: "stale", Usage: "/healthz fails when the newest record is older than `DURATION` (0: no check)"},
		},
		Action: serve,
	}
}

// maxUint64 is the largest sequence number a client may name.
const maxUint64 = math.MaxUint64

// seqAfter returns the sequence number after seq. For the largest one, which no ring
// reaches, it returns seq itself rather than wrapping to 0: what follows it is as far
// ahead of any ring.
func seqAfter(seq uint64) uint64 {
	if seq == maxUint64 {
		return seq
	}
	return seq + 1
}

// serveConfig is what the flags of `filering serve` set.
type serveConfig struct {
	buffer int           // --buffer
	stale  time.Duration // --stale
}

func serve(c *cli.Context) error {
	dir, err := ringArg(c)
	if err != nil {
		return err
	}
	cfg := serveConfig{buffer: c.Int("buffer"), stale: c.Duration("stale")}
	if cfg.buffer < 1 || cfg.buffer > 1<<20 {
		return usagef("--buffer %d: want 1 to 1048576", cfg.buffer)
	}
	if cfg.stale < 0 {
		return usagef("--stale %v: must not be negative", cfg.stale)
	}
	ctx, cancel := signalContext()
	defer cancel()
	ln, err := net.Listen("tcp", c.String("listen"))
	if err != nil {
		return err
	}
	return serveOn(ctx, ln, dir, cfg, c.App.ErrWriter)
}

// serveOn serves the ring at dir on ln until ctx is done, then returns nil; it closes ln.
// It serves at once, whether or not there is a ring at dir yet, and says on stderr when
// there is none; it fails at once when dir cannot be a ring directory (a file, a
// symbolic link, a directory it may not read).
func serveOn(ctx context.Context, ln net.Listener, dir string, cfg serveConfig, stderr io.Writer) error {
	s := newServer(dir, cfg.buffer)
	s.stale = cfg.stale
	defer s.close()
	hubCtx, stopHub := context.WithCancel(ctx)
	hubDone := make(chan struct{})
	go func() {
		defer close(hubDone)
		s.hub.run(hubCtx, s.src)
	}()
	defer func() { stopHub(); <-hubDone }()
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	waiting, err := s.waiting()
	if err != nil {
		// Not a ring directory at all (a file, a symbolic link, no permission): say so
		// now rather than answer every request with it.
		ln.Close()
		return err
	}
	fmt.Fprintf(stderr, "filering: serving %s on http://%s/\n", dir, ln.Addr())
	if waiting {
		fmt.Fprintf(stderr, "filering: no ring at %s yet: waiting for one (/records and /healthz answer 503 until then)\n", dir)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shut, done := context.WithTimeout(context.Background(), 2*time.Second)
		defer done()
		if srv.Shutdown(shut) != nil {
			srv.Close()
		}
		<-errc
		return nil
	}
}

// server answers the HTTP endpoints of `filering serve`.
type server struct {
	src    *ringSource
	hub    *hub
	mux    *http.ServeMux
	page   []byte
	limits *recordsLimits
	stale  time.Duration    // /healthz fails when the newest record is older; 0: no check
	now    func() time.Time // the clock /healthz measures staleness with
}

// newServer returns the server of the ring at path, which need not exist yet. The
// caller runs s.hub.run(ctx, s.src) for the event streams, and calls close when done.
func newServer(path string, buffer int) *server {
	s := &server{
		src:    newRingSource(path),
		hub:    newHub(buffer),
		mux:    http.NewServeMux(),
		limits: newRecordsLimits(recordsConcurrent),
		now:    time.Now,
	}
	// The page reads Server-Sent Events when it finds window.FILERING_EVENTS.
	s.page = bytes.Replace(cgi.IndexHTML, []byte("<script>"),
		[]byte("<script>window.FILERING_EVENTS = \"events\";</script>\n<script>"), 1)
	s.mux.HandleFunc("GET /{$}", s.index)
	s.mux.HandleFunc("GET /records", s.records)
	s.mux.HandleFunc("GET /events", s.events)
	s.mux.HandleFunc("GET /healthz", s.healthz)
	return s
}

// close lets go of the ring; requests still running keep what they use until they end.
func (s *server) close() { s.src.close() }

// waiting reports whether there is no ring at the path yet: no directory, or no manifest
// in it. It fails when the path cannot be a ring directory.
func (s *server) waiting() (bool, error) {
	h, err := s.src.acquire()
	if noRing(err) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	defer h.release()
	_, err = h.ring.Manifest()
	return noRing(err), nil
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *server) index(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(s.page)
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	b := append([]byte(`{"error":`), appendJSONString(nil, []byte(strings.ToValidUTF8(msg, "\uFFFD")))...)
	w.Write(append(b, "}\n"...))
}

// queryUint parses the query parameter name as a whole number, def when absent, and
// caps it at limit.
func queryUint(r *http.Request, name string, def, limit uint64) (uint64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: want a whole number", name, v)
	}
	return min(n, limit), nil
}

// events streams records as Server-Sent Events.
func (s *server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		httpError(w, http.StatusInternalServerError, "streaming not supported")
		return
	}
	// next is the first sequence number the client wants. Ids come from the client and
	// may be anything up to 2^64-1: seqAfter never wraps one around to 0.
	next := seqAfter(s.hub.newestSeq())
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		n, err := strconv.ParseUint(id, 10, 64)
		if err != nil {
			httpError(w, http.StatusBadRequest, "Last-Event-ID: want a sequence number")
			return
		}
		next = seqAfter(n)
	} else if r.URL.Query().Has("after") {
		n, err := queryUint(r, "after", 0, maxUint64)
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		next = seqAfter(n)
	} else if last, err := queryLast(r, 0); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	} else if last > 0 && next > last {
		next -= last
	} else if last > 0 {
		next = 1
	}
	if next > 1 && next-1 > s.hub.newestSeq() {
		// An id from /records, which reads the ring itself, can be ahead of the hub by
		// records it has yet to read: give the hub a moment to reach it before taking
		// it for an id from a ring since created anew.
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		s.hub.waitAfter(ctx, next-2)
		cancel()
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	fl.Flush()

	epoch := s.hub.clients(+1)
	defer s.hub.clients(-1)
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	var buf []byte
	for {
		events, after, changed, behind := s.hub.since(next, &epoch, buf[:0])
		buf, next = events, after
		if behind {
			// Older than what the hub keeps: read those from the ring itself.
			var err error
			if buf, next, err = s.catchUp(next, buf[:0]); err != nil {
				return
			}
		}
		if len(buf) > 0 {
			if _, err := w.Write(buf); err != nil {
				return
			}
			fl.Flush()
			continue
		}
		select {
		case <-r.Context().Done():
			return
		case <-changed:
		case <-ping.C:
			if _, err := w.Write([]byte(": ping\n\n")); err != nil {
				return
			}
			fl.Flush()
		}
	}
}

// catchUp reads records from next on from the ring, up to what the hub holds, as
// events. Records no longer in the ring are announced with a "lost" event.
func (s *server) catchUp(next uint64, b []byte) ([]byte, uint64, error) {
	h, err := s.src.acquire()
	if err != nil {
		return b, next, err
	}
	defer h.release()
	snap, err := h.ring.Snapshot(watch.Selection{From: next})
	if err != nil {
		return b, next, err
	}
	defer snap.Close()
	oldest := s.hub.oldestSeq()
	for len(b) < 1<<20 && snap.Next() {
		rec := snap.Record()
		if oldest != 0 && rec.Seq >= oldest {
			break
		}
		if rec.Seq > next {
			b = fmt.Appendf(b, "event: lost\ndata: {\"from\":%d,\"to\":%d}\n\n", next, rec.Seq-1)
		}
		b = appendEvent(b, rec)
		next = seqAfter(rec.Seq)
	}
	if oldest != 0 && next < oldest && len(b) < 1<<20 {
		// Nothing more in the ring before what the hub holds: those were lost.
		b = fmt.Appendf(b, "event: lost\ndata: {\"from\":%d,\"to\":%d}\n\n", next, oldest-1)
		next = oldest
	}
	return b, next, snap.Err()
}

// decimal matches payloads that are served as JSON numbers. It is compiled on first
// use, not at the start of every filering command.
var decimal = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*$`)
})

// appendRecordJSON appends {"seq":N,"time_ns":T,"value":V}.
func appendRecordJSON(b []byte, r segment.Record) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"time_ns":`...)
	b = strconv.AppendInt(b, r.Time, 10)
	b = append(b, `,"value":`...)
	if len(r.Data) < 64 && decimal().Match(r.Data) {
		if v, err := strconv.ParseFloat(strings.TrimSpace(string(r.Data)), 64); err == nil {
			return append(strconv.AppendFloat(b, v, 'g', -1, 64), '}')
		}
	}
	d := r.Data
	if !utf8.Valid(d) {
		d = bytes.ToValidUTF8(d, []byte("\uFFFD"))
	}
	return append(appendJSONString(b, d), '}')
}

// appendEvent appends one Server-Sent Event for r.
func appendEvent(b []byte, r segment.Record) []byte {
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, "\ndata: "...)
	return append(appendRecordJSON(b, r), "\n\n"...)
}

// hub is the one follower of the ring that every event stream shares: it keeps the last
// records, already encoded as events, in a ring buffer, and wakes the streams when new
// ones arrive. Streams copy what they need under the lock and write without it, so a
// slow client holds up nobody.
type hub struct {
	mu      sync.Mutex
	slots   []hubSlot
	head    int    // index of the oldest record
	n       int    // records held
	newest  uint64 // sequence number of the newest record seen
	changed chan struct{}
	nclient int
	epoch   uint64 // grows when the ring is created anew and sequence numbers restart
	// current is set once the hub's follower has read all the ring had and waits for
	// more. Until then, a client that asks for records beyond the newest the hub holds
	// may be asking for records the hub has yet to read, not ones the ring never had.
	current bool
}

type hubSlot struct {
	seq   uint64
	event []byte
}

func newHub(size int) *hub {
	return &hub{slots: make([]hubSlot, size), changed: make(chan struct{})}
}

// run follows the ring of src until ctx is done, waiting for it when there is none yet.
// It is owned by serve.
func (h *hub) run(ctx context.Context, src *ringSource) {
	for ctx.Err() == nil {
		rh, err := src.acquire()
		if err != nil {
			sleepCtx(ctx, watch.FastPollInterval) // no ring directory (yet)
			continue
		}
		h.follow(ctx, rh.ring)
		rh.release()
		h.mu.Lock()
		h.current = false
		h.mu.Unlock()
		sleepCtx(ctx, watch.FastPollInterval) // a damaged ring: try again
	}
}

// follow adds the records of r to the hub until ctx is done or the follower fails.
func (h *hub) follow(ctx context.Context, r *watch.Ring) {
	f, err := r.Follow(watch.Selection{Last: len(h.slots)})
	if err != nil {
		return
	}
	defer f.Close()
	f.OnWait(h.caughtUp)
	var ev []byte
	for {
		for f.Next(ctx) {
			rec := f.Record()
			ev = ev[:0]
			if l, ok := f.Loss(); ok {
				// Streams learn of records the ring overwrote, or damage hid, before the
				// hub read them.
				ev = fmt.Appendf(ev, "event: lost\ndata: {\"from\":%d,\"to\":%d}\n\n", l.From, l.To)
			}
			ev = appendEvent(ev, rec)
			h.add(rec.Seq, ev)
		}
		// Damage: go on after it (its records show as lost with the next record) rather
		// than start over, which would read the ring again and look like a new one.
		if !f.SkipDamaged() {
			return
		}
	}
}

// sleepCtx waits for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// caughtUp records that the hub's follower has read everything the ring holds, and
// wakes the streams waiting to learn it.
func (h *hub) caughtUp() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.current {
		h.current = true
		close(h.changed)
		h.changed = make(chan struct{})
	}
}

func (h *hub) add(seq uint64, ev []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if seq <= h.newest && h.n > 0 {
		h.head, h.n = 0, 0 // the ring was created anew
		h.epoch++
	}
	i := (h.head + h.n) % len(h.slots)
	if h.n == len(h.slots) {
		h.head = (h.head + 1) % len(h.slots)
	} else {
		h.n++
	}
	h.slots[i] = hubSlot{seq: seq, event: append(h.slots[i].event[:0], ev...)}
	h.newest = seq
	close(h.changed)
	h.changed = make(chan struct{})
}

// since appends to b the events of records from sequence number next on, up to 256 KiB,
// and returns the sequence number to ask for next time and the channel closed when more
// arrive. behind reports that next is older than what the hub holds.
func (h *hub) since(next uint64, epoch *uint64, b []byte) (events []byte, after uint64, changed <-chan struct{}, behind bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if *epoch != h.epoch || (h.current && h.n > 0 && next > seqAfter(h.newest)) {
		// The ring was created anew (or the client has seen numbers this ring never
		// reached): tell the client, and start over with what the hub holds.
		*epoch = h.epoch
		b = append(b, "event: restart\ndata: {}\n\n"...)
		next = 1
		if h.n > 0 {
			next = h.slots[h.head].seq
		}
	}
	if h.n == 0 || next > h.newest {
		return b, next, h.changed, false
	}
	if next < h.slots[h.head].seq {
		return b, next, h.changed, true
	}
	// Sequence numbers in the hub grow, with gaps where its follower lost records:
	// find the first one at or after next.
	lo, hi := 0, h.n
	for lo < hi {
		m := (lo + hi) / 2
		if h.slots[(h.head+m)%len(h.slots)].seq < next {
			lo = m + 1
		} else {
			hi = m
		}
	}
	for k := lo; k < h.n && len(b) < 256<<10; k++ {
		sl := &h.slots[(h.head+k)%len(h.slots)]
		b = append(b, sl.event...)
		next = seqAfter(sl.seq)
	}
	return b, next, h.changed, false
}

// waitAfter waits until the hub has seen a record newer than after, or ctx is done.
func (h *hub) waitAfter(ctx context.Context, after uint64) {
	for {
		h.mu.Lock()
		newest, ch := h.newest, h.changed
		h.mu.Unlock()
		if newest > after {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

func (h *hub) newestSeq() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.newest
}

// oldestSeq returns the oldest sequence number the hub holds, 0 when none.
func (h *hub) oldestSeq() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return 0
	}
	return h.slots[h.head].seq
}

// clients adds d to the count of event streams and returns the current epoch.
func (h *hub) clients(d int) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nclient += d
	return h.epoch
}

// clientCount returns the number of event streams.
func (h *hub) clientCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.nclient
}
