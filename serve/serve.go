// Package serve serves a filering ring over HTTP: the latest records as JSON, long polls
// for newer ones, a Server-Sent Events stream of every record, a health check, and a
// live graph page that draws the records as they arrive.
//
// A Server is the http.Handler of one ring directory, which need not exist yet. A Go
// program mounts it in its own http.ServeMux, under a prefix if it likes, and runs its
// hub:
//
//	s, err := serve.New("/run/ring/sensor", serve.Options{})
//	if err != nil {
//		return err
//	}
//	defer s.Close()
//	go s.Run(ctx) // the one follower of the ring that feeds every event stream
//	mux.Handle("/sensor/", http.StripPrefix("/sensor", s))
//
// or lets it run an HTTP server of its own with Serve, as `filering serve` does. The
// page refers to the other endpoints by relative URLs: serve it at a path that ends in
// a slash.
//
// Rings serves a directory of rings (such as /run/ring, holding /run/ring/sensor and
// others) the same way: an index of them, the metrics of them all, and the endpoints
// of each ring's Server under its name, made when a client first asks and let go of
// when unused. See Rings.
//
// # Endpoints
//
// Relative to where the Server is mounted:
//
//	GET /                        the live graph page
//	GET /records?last=N          the latest N records as JSON (default 300, at most MaxLast)
//	GET /records?after=SEQ&wait=S
//	                             records newer than SEQ, waiting up to S seconds (at most 60) for one
//	GET /events                  Server-Sent Events, one per record, id = sequence number;
//	                             resumes after Last-Event-ID, or ?after=SEQ, or starts with ?last=N
//	GET /healthz                 {"ok":true,...}; 503 and {"ok":false,"reason":"...",...} when there
//	                             is no ring, no producer holds it, or (Options.Stale) its newest
//	                             record is too old
//	GET /metrics                 the ring's records, newest sequence number and record time,
//	                             records lost, producer up and event streams, in the
//	                             Prometheus text exposition format (see the metrics handler)
//
// The page draws one line per number of a payload ("21.5 40", "21.5,40", "[21.5,40]")
// or per numeric field of a JSON object ({"temp":21.5,"hum":40}), with a legend, and
// lists the payloads that are not numeric under the graph. Its time axis is wall-clock
// time; it can be paused. Options.Page gives it units (one for every series, or one per
// series: see ParseUnits), a fixed y-range and a time window, which its query
// parameters (unit=, min=, max=, window=) override.
//
// Records are {"seq":N,"time_ns":T,"value":V}: V is the payload as a JSON number when it
// is a decimal number, else as a string. /records responses are written as they are
// read; at most RecordsConcurrent are read at once, and a request that finds no turn
// within RecordsQueueWait gets 503 with Retry-After. Until a ring exists at the path,
// /records and /healthz answer 503 with Retry-After, and the Server picks the ring up
// when it appears, or when it is removed and created anew (event streams are told with
// a "restart" event). The handlers' documentation gives each document in full.
//
// # Goroutines, concurrency and stopping
//
// A Server's methods are safe for concurrent use. Besides the goroutines net/http runs
// requests in, a Server has one: the hub, which follows the ring and keeps its newest
// records (Options.Buffer of them) for the event streams, so that one reader of the ring
// serves every client and a slow client slows nobody. The hub runs in Run, in the
// caller's goroutine, until Run's context is done or Close is called; without it, event
// streams and long polls (/records?after=&wait=) see no new record. Serve runs it itself.
//
// Event streams and long polls end when their request's context is done (the client goes
// away, or the http.Server's BaseContext is cancelled, as Serve does); they do not end by
// themselves, so an http.Server.Shutdown without a cancelled BaseContext waits for them
// until its own context expires. Close stops the hub, waits for Run to return, and lets
// go of the ring directory; requests still running keep what they hold until they end,
// and later ones are answered 503.
package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/filering/filering/examples/cgi"
	"github.com/filering/filering/recordio"
)

// Limits and defaults.
const (
	// DefaultBuffer is the number of records the hub keeps when Options.Buffer is 0, and
	// MaxBuffer the most it may keep.
	DefaultBuffer = 4096
	MaxBuffer     = 1 << 20
	// MaxLast is the largest last= that /records and /events accept; a larger one is
	// refused with 400.
	MaxLast = 100000
	// RecordsConcurrent is how many /records requests may read the ring at once. A long
	// poll takes its place only once it has something to read.
	RecordsConcurrent = 8
	// RecordsQueueWait is how long a /records request waits for its turn before it is
	// answered 503 with Retry-After.
	RecordsQueueWait = 5 * time.Second
)

// ErrClosed is the error of requests that reach a Server after Close: they are answered
// 503.
var ErrClosed = errors.New("serve: server closed")

// Options configure New. The zero value gives the defaults.
type Options struct {
	// Buffer is how many of the newest records the hub keeps in memory, encoded as
	// events, for event streams to start from and to catch up with: DefaultBuffer when
	// 0, from 1 to MaxBuffer otherwise. A stream that asks for older records reads them
	// from the ring itself.
	Buffer int
	// Stale, when positive, makes /healthz fail when the newest record is older than it.
	Stale time.Duration
	// Page holds defaults of the live graph page; its query parameters override them.
	Page Page
}

// check gives o's zero members their defaults, Buffer buffer, and reports what is out
// of range.
func (o *Options) check(buffer int) error {
	if o.Buffer == 0 {
		o.Buffer = buffer
	}
	if o.Buffer < 1 || o.Buffer > MaxBuffer {
		return fmt.Errorf("serve: Buffer %d: want 1 to %d", o.Buffer, MaxBuffer)
	}
	if o.Stale < 0 {
		return fmt.Errorf("serve: Stale %v: must not be negative", o.Stale)
	}
	return o.Page.check()
}

// Page holds defaults of the live graph page, which it takes from
// window.FILERING_PAGE. The zero value leaves them to the page: no unit, an autoscaled
// y-range, and every record it keeps drawn.
type Page struct {
	// Title, when not empty, is the page's title and heading (at most 128 bytes of
	// UTF-8); Rings gives each ring's page the ring's name.
	Title string
	// Unit is the unit of the values (unit=), shown on the axis, in the legend and in
	// the header: at most 32 bytes of UTF-8. Series that Units names have their own.
	Unit string
	// Units gives series a unit of their own, by series name: the name the legend shows
	// (a JSON field such as "temp" or "a.b", a name from labels=, "value"), or "#N" for
	// the Nth number of a payload. The axis shows a unit when every series drawn has the
	// same one. At most MaxUnits entries; names of at most 128 bytes and no ',' or ':';
	// units as Unit, with no ','. ParseUnits reads them, with Unit, from the unit= syntax.
	Units map[string]string
	// Min and Max, when not nil, fix the bottom and the top of the y-range (min=, max=).
	// They must be finite, and Min below Max when both are set.
	Min, Max *float64
	// Window, when positive, draws only the records of that long before the newest
	// (window=).
	Window time.Duration
}

// MaxUnits is the most series Page.Units may name.
const MaxUnits = 64

// ParseUnits reads the unit= syntax of the live graph page (and of `filering serve
// --unit`): either one unit for every series ("°C"), or, when spec holds a ':', a
// comma-separated list of SERIES:UNIT entries, with at most one entry that is a unit
// alone, the unit of the series not named ("temp:°C,hum:%" or "°C,hum:%"). Spaces
// around names, units and entries are dropped in the list form. It returns the unit
// for every series (Page.Unit) and the units by series (Page.Units, nil when none), or
// an error saying which entry is wrong.
func ParseUnits(spec string) (unit string, units map[string]string, err error) {
	if !strings.Contains(spec, ":") {
		if err := checkUnit(spec); err != nil {
			return "", nil, fmt.Errorf("unit %q: %v", spec, err)
		}
		return spec, nil, nil
	}
	def := false
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, u, named := strings.Cut(item, ":")
		name, u = strings.TrimSpace(name), strings.TrimSpace(u)
		switch {
		case !named && def:
			return "", nil, fmt.Errorf("unit %q: two units for the series not named (%q and %q)", spec, unit, item)
		case !named:
			if err := checkUnit(item); err != nil {
				return "", nil, fmt.Errorf("unit %q: %q: %v", spec, item, err)
			}
			unit, def = item, true
			continue
		case name == "":
			return "", nil, fmt.Errorf("unit %q: entry %q names no series", spec, item)
		}
		if units == nil {
			units = map[string]string{}
		}
		if _, dup := units[name]; dup {
			return "", nil, fmt.Errorf("unit %q: series %q twice", spec, name)
		}
		if len(units) == MaxUnits {
			return "", nil, fmt.Errorf("unit %q: more than %d series", spec, MaxUnits)
		}
		if err := checkSeriesUnit(name, u); err != nil {
			return "", nil, fmt.Errorf("unit %q: %v", spec, err)
		}
		units[name] = u
	}
	return unit, units, nil
}

// checkUnit reports what is wrong with one unit.
func checkUnit(u string) error {
	if len(u) > 32 || !utf8.ValidString(u) {
		return errors.New("want at most 32 bytes of UTF-8")
	}
	return nil
}

// checkSeriesUnit reports what is wrong with the unit u of the series name.
func checkSeriesUnit(name, u string) error {
	if name == "" || len(name) > 128 || !utf8.ValidString(name) || strings.ContainsAny(name, ",:") {
		return fmt.Errorf("series name %q: want 1 to 128 bytes of UTF-8 without ',' or ':'", name)
	}
	if err := checkUnit(u); err != nil {
		return fmt.Errorf("unit %q of series %q: %v", u, name, err)
	}
	if strings.Contains(u, ",") {
		return fmt.Errorf("unit %q of series %q: must not hold ','", u, name)
	}
	return nil
}

// check reports what is wrong with p.
func (p Page) check() error {
	if len(p.Title) > 128 || !utf8.ValidString(p.Title) {
		return fmt.Errorf("serve: page title %q: want at most 128 bytes of UTF-8", p.Title)
	}
	if err := checkUnit(p.Unit); err != nil {
		return fmt.Errorf("serve: page unit %q: %v", p.Unit, err)
	}
	if len(p.Units) > MaxUnits {
		return fmt.Errorf("serve: page units: %d series, want at most %d", len(p.Units), MaxUnits)
	}
	for name, u := range p.Units {
		if err := checkSeriesUnit(name, u); err != nil {
			return fmt.Errorf("serve: page units: %v", err)
		}
	}
	switch {
	case p.Min != nil && (math.IsNaN(*p.Min) || math.IsInf(*p.Min, 0)):
		return fmt.Errorf("serve: page min %v: want a finite number", *p.Min)
	case p.Max != nil && (math.IsNaN(*p.Max) || math.IsInf(*p.Max, 0)):
		return fmt.Errorf("serve: page max %v: want a finite number", *p.Max)
	case p.Min != nil && p.Max != nil && !(*p.Min < *p.Max):
		return fmt.Errorf("serve: page min %v, max %v: want min below max", *p.Min, *p.Max)
	case p.Window < 0:
		return fmt.Errorf("serve: page window %v: must not be negative", p.Window)
	}
	return nil
}

// script returns the script that gives the page its defaults: window.FILERING_PAGE,
// with the members the page reads (title, unit, units, min, max, window in seconds), or
// nothing when p is the zero value.
func (p Page) script() []byte {
	cfg := map[string]any{}
	if p.Title != "" {
		cfg["title"] = p.Title
	}
	if p.Unit != "" {
		cfg["unit"] = p.Unit
	}
	if len(p.Units) > 0 {
		cfg["units"] = p.Units
	}
	if p.Min != nil {
		cfg["min"] = *p.Min
	}
	if p.Max != nil {
		cfg["max"] = *p.Max
	}
	if p.Window > 0 {
		cfg["window"] = p.Window.Seconds()
	}
	if len(cfg) == 0 {
		return nil
	}
	b, _ := json.Marshal(cfg) // escapes <, > and &: safe inside <script>
	return fmt.Appendf(nil, "<script>window.FILERING_PAGE = %s;</script>\n", b)
}

// Server answers the HTTP endpoints of one ring directory. See the package
// documentation for the endpoints, the goroutine it needs and how to stop it.
type Server struct {
	src    *ringSource
	hub    *hub
	mux    *http.ServeMux
	page   []byte
	limits *recordsLimits
	stale  time.Duration    // /healthz fails when the newest record is older; 0: no check
	now    func() time.Time // the clock /healthz measures staleness with

	closing context.Context // done once Close is called: stops the hub
	stop    context.CancelFunc
	mu      sync.Mutex
	running bool // Run was called
	closed  bool
	hubs    sync.WaitGroup // Run, while it runs
}

// New returns the Server of the ring directory at dir, which need not exist yet. It
// fails when opts is out of range, or when dir cannot be a ring directory: a file, a
// symbolic link, a directory it may not read. The caller runs the hub (Run or Serve) and
// calls Close when done.
func New(dir string, opts Options) (*Server, error) {
	if err := opts.check(DefaultBuffer); err != nil {
		return nil, err
	}
	s := newServer(dir, opts.Buffer)
	s.stale = opts.Stale
	s.setPage(opts.Page)
	if _, err := s.Waiting(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// newServer returns the server of the ring at path, keeping buffer records for event
// streams, with no check of the path. Tests change its fields before they use it.
func newServer(path string, buffer int) *Server {
	s := &Server{
		src:    newRingSource(path),
		hub:    newHub(buffer),
		mux:    http.NewServeMux(),
		limits: newRecordsLimits(RecordsConcurrent),
		now:    time.Now,
	}
	s.closing, s.stop = context.WithCancel(context.Background())
	s.setPage(Page{})
	s.mux.HandleFunc("GET /{$}", s.index)
	s.mux.HandleFunc("GET /records", s.records)
	s.mux.HandleFunc("GET /events", s.events)
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /metrics", s.metrics)
	return s
}

// setPage makes the page the Server answers: the live graph page, told to read the
// event stream and given p's defaults.
func (s *Server) setPage(p Page) {
	// The page reads Server-Sent Events when it finds window.FILERING_EVENTS.
	head := append([]byte("<script>window.FILERING_EVENTS = \"events\";</script>\n"), p.script()...)
	s.page = bytes.Replace(cgi.IndexHTML, []byte("<script>"), append(head, "<script>"...), 1)
}

// Run runs the hub, the one follower of the ring that feeds every event stream and wakes
// the long polls, until ctx is done or Close is called. It waits for a ring when there
// is none at the path yet, and follows the new one when the ring is created anew. Call
// it once, in a goroutine of its own (or call Serve, which calls it); a second call
// panics. After Close it returns at once.
func (s *Server) Run(ctx context.Context) {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		panic("serve: Server.Run called twice")
	}
	s.running = true
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.hubs.Add(1)
	s.mu.Unlock()
	defer s.hubs.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.closing, cancel)()
	s.hub.run(ctx, s.src)
}

// Serve answers HTTP requests on ln, with the hub running, until ctx is done; then it
// shuts the HTTP server down, gives the requests running two seconds to end, and
// returns nil. It closes ln. Requests' contexts derive from ctx, so event streams and
// long polls end when it is done. When serving fails (ln fails), it returns that error.
// Serve calls Run: call one or the other, once. Call Close after Serve returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return serveHTTP(ctx, ln, s, s.Run)
}

// serveHTTP answers HTTP requests on ln with h, with run running in a goroutine of its
// own, until ctx is done; then it shuts the HTTP server down, gives the requests running
// two seconds to end, stops run (cancelling its context) and waits for it, and returns
// nil. It closes ln. Requests' contexts derive from ctx. When serving fails, it returns
// that error, after stopping run.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, run func(context.Context)) error {
	runCtx, stopRun := context.WithCancel(ctx)
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		run(runCtx)
	}()
	defer func() { stopRun(); <-runDone }()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
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

// Close stops the hub, waits for Run to return, and lets go of the ring directory.
// Requests still running keep what they use until they end; later requests are answered
// 503 (ErrClosed). It returns nil; closing again does nothing.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.stop()
	s.hubs.Wait()
	s.src.close()
	return nil
}

// Waiting reports whether there is no ring at the path yet: no directory, or no manifest
// in it. Until there is, /records and /healthz answer 503. It fails when the path cannot
// be a ring directory.
func (s *Server) Waiting() (bool, error) {
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

// ServeHTTP answers the endpoints listed in the package documentation, and 404 or 405
// for anything else.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(s.page)
}

// httpError answers code with {"error":"msg"}.
func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	b := append([]byte(`{"error":`), recordio.AppendJSONString(nil, []byte(strings.ToValidUTF8(msg, "\uFFFD")))...)
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
