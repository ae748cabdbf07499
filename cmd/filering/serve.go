package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
		Description: "Endpoints:\n" +
			"  GET /                    the live graph page\n" +
			"  GET /records?last=N      the latest N records as JSON (default 300)\n" +
			"  GET /records?after=SEQ&wait=S   records newer than SEQ, waiting up to S seconds for one\n" +
			"  GET /events              Server-Sent Events, one per record, id = sequence number;\n" +
			"                           resumes after Last-Event-ID, or ?after=SEQ, or starts with ?last=N\n" +
			"  GET /healthz             {\"ok\":true,...}\n" +
			"Records are {\"seq\":N,\"time_ns\":T,\"value\":V}: V is the payload as a number when it is a\n" +
			"decimal number, else as a string. One follower reads the ring for every client; a slow\n" +
			"client never slows the producer or the other clients.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8080", Usage: "`ADDRESS` to listen on (loopback unless told otherwise)"},
			&cli.IntFlag{Name: "buffer", Value: 4096, Usage: "records kept in memory for event streams"},
		},
		Action: serve,
	}
}

func serve(c *cli.Context) error {
	dir, err := ringArg(c)
	if err != nil {
		return err
	}
	if c.Int("buffer") < 1 || c.Int("buffer") > 1<<20 {
		return usagef("--buffer %d: want 1 to 1048576", c.Int("buffer"))
	}
	ctx, cancel := signalContext()
	defer cancel()
	r, err := openWhenPresent(ctx, dir)
	if err != nil {
		return quiet(ctx, err)
	}
	defer r.Close()
	ln, err := net.Listen("tcp", c.String("listen"))
	if err != nil {
		return err
	}
	s := newServer(r, c.Int("buffer"))
	go s.hub.run(ctx, r)
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	fmt.Fprintf(c.App.ErrWriter, "filering: serving %s on http://%s/\n", dir, ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shut, done := context.WithTimeout(context.Background(), 2*time.Second)
		defer done()
		srv.Shutdown(shut)
		return nil
	}
}

// server answers the HTTP endpoints of `filering serve`.
type server struct {
	ring *watch.Ring
	hub  *hub
	mux  *http.ServeMux
	page []byte
}

func newServer(r *watch.Ring, buffer int) *server {
	s := &server{ring: r, hub: newHub(buffer), mux: http.NewServeMux()}
	// The page reads Server-Sent Events when it finds window.FILERING_EVENTS.
	s.page = bytes.Replace(cgi.IndexHTML, []byte("<script>"),
		[]byte("<script>window.FILERING_EVENTS = \"events\";</script>\n<script>"), 1)
	s.mux.HandleFunc("GET /{$}", s.index)
	s.mux.HandleFunc("GET /records", s.records)
	s.mux.HandleFunc("GET /events", s.events)
	s.mux.HandleFunc("GET /healthz", s.healthz)
	return s
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

// records answers /records?last=N and /records?after=SEQ&wait=S.
func (s *server) records(w http.ResponseWriter, r *http.Request) {
	last, err := queryUint(r, "last", 300, 100000)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	wait, err := queryUint(r, "wait", 0, 60)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	sel := watch.Selection{Last: int(last)}
	if r.URL.Query().Has("after") {
		after, err := queryUint(r, "after", 0, 1<<63)
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		sel.From = after + 1
		if wait > 0 {
			ctx, cancel := context.WithTimeout(r.Context(), time.Duration(wait)*time.Second)
			s.hub.waitAfter(ctx, after)
			cancel()
		}
	}
	snap, err := s.ring.Snapshot(sel)
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, watch.ErrNoRing) {
			code = http.StatusNotFound
		}
		httpError(w, code, err.Error())
		return
	}
	defer snap.Close()
	b := []byte(`{"records":[`)
	var newest uint64
	for n := 0; snap.Next(); n++ {
		if n > 0 {
			b = append(b, ',')
		}
		rec := snap.Record()
		b = appendRecordJSON(b, rec)
		newest = rec.Seq
	}
	if err := snap.Err(); err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	newest = max(newest, s.hub.newestSeq())
	b = append(b, `],"last_seq":`...)
	b = strconv.AppendUint(b, newest, 10)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(append(b, "}\n"...))
}

// events streams records as Server-Sent Events.
func (s *server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		httpError(w, http.StatusInternalServerError, "streaming not supported")
		return
	}
	next := s.hub.newestSeq() + 1
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		n, err := strconv.ParseUint(id, 10, 64)
		if err != nil {
			httpError(w, http.StatusBadRequest, "Last-Event-ID: want a sequence number")
			return
		}
		next = n + 1
	} else if r.URL.Query().Has("after") {
		n, err := queryUint(r, "after", 0, 1<<63)
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		next = n + 1
	} else if last, err := queryUint(r, "last", 0, 100000); err != nil {
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
	snap, err := s.ring.Snapshot(watch.Selection{From: next})
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
		next = rec.Seq + 1
	}
	if oldest != 0 && next < oldest && len(b) < 1<<20 {
		// Nothing more in the ring before what the hub holds: those were lost.
		b = fmt.Appendf(b, "event: lost\ndata: {\"from\":%d,\"to\":%d}\n\n", next, oldest-1)
		next = oldest
	}
	return b, next, snap.Err()
}

func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	st, err := s.ring.Stat()
	if err != nil && !errors.Is(err, watch.ErrNoRing) {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	pid := "null"
	if st.ProducerPID != 0 {
		pid = strconv.Itoa(st.ProducerPID)
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, "{\"ok\":true,\"last_seq\":%d,\"records\":%d,\"producer_pid\":%s,\"clients\":%d}\n",
		st.LastSeq, st.Records, pid, s.hub.clientCount())
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

// run follows the ring until ctx is done. It is owned by serve.
func (h *hub) run(ctx context.Context, r *watch.Ring) {
	for ctx.Err() == nil {
		f, err := r.Follow(watch.Selection{Last: len(h.slots)})
		if err != nil {
			time.Sleep(watch.FastPollInterval)
			continue
		}
		f.OnWait(h.caughtUp)
		var ev []byte
		for f.Next(ctx) {
			rec := f.Record()
			ev = ev[:0]
			if l, ok := f.Loss(); ok {
				// Streams learn of records the ring overwrote before the hub read them.
				ev = fmt.Appendf(ev, "event: lost\ndata: {\"from\":%d,\"to\":%d}\n\n", l.From, l.To)
			}
			ev = appendEvent(ev, rec)
			h.add(rec.Seq, ev)
		}
		f.Close()
		h.mu.Lock()
		h.current = false
		h.mu.Unlock()
		if ctx.Err() == nil {
			time.Sleep(watch.FastPollInterval) // a damaged ring: try again
		}
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
	if *epoch != h.epoch || (h.current && h.n > 0 && next > h.newest+1) {
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
		next = sl.seq + 1
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
