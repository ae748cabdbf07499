package serve

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/filering/filering/segment"
)

// Limits and defaults of Rings.
const (
	// DefaultMaxRings is how many rings Rings lists when RingsOptions.MaxRings is 0.
	DefaultMaxRings = 1000
	// DefaultFollowed is how many rings may have a Server at once when
	// RingsOptions.Followed is 0. Each Server's hub is a follower, which uses two
	// inotify instances: 32 of them leave half of Linux's default limit of 128 a user
	// to the rest of the user's programs.
	DefaultFollowed = 32
	// DefaultIdle is how long Rings keeps the Server of a ring no request uses when
	// RingsOptions.Idle is 0.
	DefaultIdle = time.Minute
	// DefaultRingsBuffer is the Buffer of each ring's Server when RingsOptions.Ring.Buffer
	// is 0: enough for the page's 600 records.
	DefaultRingsBuffer = 1024
	// ringRecent is how many of a ring's newest records the index reads for its rate.
	ringRecent = 100
)

// RingsOptions configure NewRings. The zero value gives the defaults.
type RingsOptions struct {
	// Ring configures the Server of each ring, as Options configure New; its Buffer is
	// DefaultRingsBuffer when 0, and its page's title the ring's name when Page.Title
	// is empty.
	Ring Options
	// MaxRings is how many rings the index, /rings and /metrics list at most, the first
	// in name order: DefaultMaxRings when 0.
	MaxRings int
	// Followed is how many rings may have a Server (and so a hub) at once:
	// DefaultFollowed when 0. A request for one more ring when that many are in use is
	// answered 503 with Retry-After.
	Followed int
	// Idle is how long the Server of a ring is kept once no request uses it:
	// DefaultIdle when 0. The Server of a ring whose directory is gone is let go at
	// the next sweep once no request uses it, whatever Idle is.
	Idle time.Duration
}

// Rings serves every ring in a directory of rings, each a subdirectory holding a
// manifest, such as /run/ring with /run/ring/sensor and /run/ring/power in it. Relative
// to where it is mounted:
//
//	GET /                 an index page of the rings: name, newest value, rate of records,
//	                      records held, producer up or not; it refreshes itself
//	GET /rings            the same as JSON (see the index handler)
//	GET /metrics          the metrics of Server's /metrics for every ring listed, each
//	                      sample labelled ring="NAME", in the Prometheus text format
//	GET /healthz          {"ok":true,"rings":N,...}; 503 when the directory cannot be listed
//	/NAME/...             the endpoints of a Server of the ring NAME (the live graph page at
//	                      /NAME/, /NAME/records, /NAME/events, /NAME/healthz, /NAME/metrics)
//
// The directory is listed anew for every request of the first four, so rings created or
// removed after the start show or go. Only real directories are rings (a symbolic link
// is never followed), whose names are at most 128 bytes of ASCII letters, digits, '_',
// '-' and '.', not starting with '.' or '-': the name is a segment of the URL. Rings
// named rings, metrics or healthz are reached with the slash only (/metrics/).
//
// # Goroutines, memory and stopping
//
// A ring's Server is made on the first request for one of its endpoints, and its hub
// runs, on a goroutine Rings owns, until the Server is let go of: when no request has
// used it for RingsOptions.Idle, when its ring is gone and no request uses it, when room
// is needed for another ring (the Server unused the longest), or at Close. Run sweeps
// for those every few seconds; without Run only Close lets go of them. So at most
// RingsOptions.Followed hubs run, each keeping at most its Buffer of records, and at
// most RingsOptions.MaxRings rings are listed. The directory is looked at by one request
// at a time.
//
// Rings's methods are safe for concurrent use. Close stops every hub and waits for them
// and for Run; requests still running keep what they hold until they end, later ones
// are answered 503.
type Rings struct {
	dir      string
	ringOpts Options
	maxRings int
	followed int
	idle     time.Duration
	sweep    time.Duration // how often Run looks for Servers to let go of
	mux      *http.ServeMux
	now      func() time.Time
	looking  chan struct{} // one token: the directory is looked at by one request at a time

	closing context.Context // done once Close is called: stops the hubs
	stop    context.CancelFunc
	mu      sync.Mutex
	live    map[string]*ringEntry
	closed  bool
	running bool           // Run was called
	hubs    sync.WaitGroup // the goroutines running the hubs of live Servers
	runs    sync.WaitGroup // Run, while it runs
}

// ringEntry is the Server of one ring, and its use.
type ringEntry struct {
	name   string
	srv    *Server
	active int       // requests using it now
	used   time.Time // when the last request using it ended (or it was made)
}

// errNotRing means a name does not name a ring in the directory.
var errNotRing = errors.New("no such ring")

// errBusy means that RingsOptions.Followed rings are in use.
var errBusy = errors.New("too many rings followed at once")

// NewRings returns the Rings of the directory dir, which need not exist yet (the index
// is empty until it does). It fails when opts is out of range or dir is not a directory.
// The caller runs Run (or Serve) and calls Close when done.
func NewRings(dir string, opts RingsOptions) (*Rings, error) {
	if err := opts.Ring.check(DefaultRingsBuffer); err != nil {
		return nil, err
	}
	switch {
	case opts.MaxRings < 0:
		return nil, fmt.Errorf("serve: MaxRings %d: must not be negative", opts.MaxRings)
	case opts.Followed < 0:
		return nil, fmt.Errorf("serve: Followed %d: must not be negative", opts.Followed)
	case opts.Idle < 0:
		return nil, fmt.Errorf("serve: Idle %v: must not be negative", opts.Idle)
	}
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("serve rings in %s: not a directory", dir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	rs := &Rings{
		dir:      dir,
		ringOpts: opts.Ring,
		maxRings: cmpOr(opts.MaxRings, DefaultMaxRings),
		followed: cmpOr(opts.Followed, DefaultFollowed),
		idle:     cmpOr(opts.Idle, DefaultIdle),
		mux:      http.NewServeMux(),
		now:      time.Now,
		looking:  make(chan struct{}, 1),
		live:     map[string]*ringEntry{},
	}
	rs.sweep = min(max(rs.idle/4, 10*time.Millisecond), 5*time.Second)
	rs.closing, rs.stop = context.WithCancel(context.Background())
	rs.mux.HandleFunc("GET /{$}", rs.index)
	rs.mux.HandleFunc("GET /rings", rs.index)
	rs.mux.HandleFunc("GET /metrics", rs.metrics)
	rs.mux.HandleFunc("GET /healthz", rs.healthz)
	rs.mux.HandleFunc("GET /{name}", rs.toRing)
	rs.mux.HandleFunc("/{name}/", rs.ring)
	return rs, nil
}

// cmpOr returns v, or def when v is 0.
func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// HoldsRings reports whether dir is a directory of rings rather than a ring: it holds
// no manifest of its own, and at least one subdirectory that is a ring (as Rings lists
// them). A dir that does not exist holds none.
func HoldsRings(dir string) (bool, error) {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, segment.ManifestName), &st); err == nil {
		return false, nil
	}
	names, _, err := listRings(dir, 1)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return len(names) > 0, err
}

// ServeHTTP answers the endpoints listed in the documentation of Rings, and 404 or 405
// for anything else.
func (rs *Rings) ServeHTTP(w http.ResponseWriter, r *http.Request) { rs.mux.ServeHTTP(w, r) }

// Run lets go of the Servers of rings that are gone or unused (see Rings) until ctx is
// done or Close is called. Call it once, in a goroutine of its own (or call Serve, which
// calls it); a second call panics. After Close it returns at once.
func (rs *Rings) Run(ctx context.Context) {
	rs.mu.Lock()
	if rs.running {
		rs.mu.Unlock()
		panic("serve: Rings.Run called twice")
	}
	rs.running = true
	if rs.closed {
		rs.mu.Unlock()
		return
	}
	rs.runs.Add(1)
	rs.mu.Unlock()
	defer rs.runs.Done()
	t := time.NewTicker(rs.sweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-rs.closing.Done():
			return
		case <-t.C:
			rs.letGo()
		}
	}
}

// Serve answers HTTP requests on ln, with Run running, until ctx is done, as
// Server.Serve does. Call Close after it returns.
func (rs *Rings) Serve(ctx context.Context, ln net.Listener) error {
	return serveHTTP(ctx, ln, rs, rs.Run)
}

// Close stops every ring's hub, waits for them and for Run, and lets go of the rings.
// Requests still running keep what they use until they end; later requests are
// answered 503. It returns nil; closing again does nothing.
func (rs *Rings) Close() error {
	rs.mu.Lock()
	if rs.closed {
		rs.mu.Unlock()
		return nil
	}
	rs.closed = true
	live := rs.live
	rs.live = nil
	rs.mu.Unlock()
	rs.stop()
	for _, e := range live {
		e.srv.Close()
	}
	rs.hubs.Wait()
	rs.runs.Wait()
	return nil
}

// Followed returns the names of the rings that have a Server now, in name order.
func (rs *Rings) Followed() []string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	names := make([]string, 0, len(rs.live))
	for name := range rs.live {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// ringName reports whether name may name a ring: 1 to 128 bytes of ASCII letters,
// digits, '_', '-' and '.', not starting with '.' or '-'. So it is a URL path segment
// as it is, and never "." or "..".
func ringName(name string) bool {
	if name == "" || len(name) > 128 || name[0] == '.' || name[0] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// isRing reports whether the entry name of the directory open as dirfd is a ring: a
// directory, not a symbolic link, holding a manifest that is a regular file.
func isRing(dirfd int, name string) bool {
	var st unix.Stat_t
	if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return false
	}
	err := unix.Fstatat(dirfd, name+"/"+segment.ManifestName, &st, unix.AT_SYMLINK_NOFOLLOW)
	return err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG
}

// listRings returns the names of the rings in dir, in name order: the first max of
// them, and whether there were more. It holds at most 2*max names at once, however many
// entries dir has.
func listRings(dir string, max int) (names []string, more bool, err error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false, &os.PathError{Op: "open directory of rings", Path: dir, Err: err}
	}
	f := os.NewFile(uintptr(fd), dir)
	defer f.Close()
	keep := func() {
		slices.Sort(names)
		if len(names) > max {
			names, more = names[:max], true
		}
	}
	for {
		ents, err := f.ReadDir(256)
		for _, e := range ents {
			if name := e.Name(); ringName(name) && e.IsDir() && isRing(fd, name) {
				names = append(names, name)
				if len(names) >= 2*max {
					keep()
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, false, fmt.Errorf("list the directory of rings %s: %w", dir, err)
		}
	}
	keep()
	return names, more, nil
}

// ring answers /NAME/...: the endpoints of the ring's Server.
func (rs *Rings) ring(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	e, err := rs.acquire(name)
	switch {
	case errors.Is(err, errNotRing):
		httpError(w, http.StatusNotFound, fmt.Sprintf("no ring %q in %s", name, rs.dir))
		return
	case errors.Is(err, errBusy):
		unavailable(w, fmt.Sprintf("%d rings are followed, the most at once; retry", rs.followed))
		return
	case errors.Is(err, ErrClosed):
		unavailable(w, err.Error())
		return
	case err != nil:
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	defer rs.release(e)
	http.StripPrefix("/"+name, e.srv).ServeHTTP(w, r)
}

// toRing answers /NAME: a redirect to NAME/, relative, so that it holds under any
// prefix Rings is mounted at.
func (rs *Rings) toRing(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !ringName(name) {
		httpError(w, http.StatusNotFound, fmt.Sprintf("no ring %q in %s", name, rs.dir))
		return
	}
	to := name + "/"
	if r.URL.RawQuery != "" {
		to += "?" + r.URL.RawQuery
	}
	w.Header().Set("Location", to)
	w.WriteHeader(http.StatusMovedPermanently)
}

// acquire returns the entry of the ring name, making its Server when it has none, and
// counts one more request using it; the caller gives it back with release.
func (rs *Rings) acquire(name string) (*ringEntry, error) {
	if !ringName(name) {
		return nil, errNotRing
	}
	rs.mu.Lock()
	if e := rs.live[name]; e != nil && !rs.closed {
		e.active++
		rs.mu.Unlock()
		return e, nil
	}
	rs.mu.Unlock()
	if !isRing(unix.AT_FDCWD, filepath.Join(rs.dir, name)) {
		return nil, errNotRing
	}
	opts := rs.ringOpts
	if opts.Page.Title == "" {
		opts.Page.Title = name
	}
	s, err := New(filepath.Join(rs.dir, name), opts)
	if err != nil {
		return nil, err
	}
	rs.mu.Lock()
	if rs.closed {
		rs.mu.Unlock()
		s.Close()
		return nil, ErrClosed
	}
	if e := rs.live[name]; e != nil { // made meanwhile by another request
		e.active++
		rs.mu.Unlock()
		s.Close()
		return e, nil
	}
	var evict *ringEntry
	if len(rs.live) >= rs.followed {
		for _, e := range rs.live {
			if e.active == 0 && (evict == nil || e.used.Before(evict.used)) {
				evict = e
			}
		}
		if evict == nil {
			rs.mu.Unlock()
			s.Close()
			return nil, errBusy
		}
		delete(rs.live, evict.name)
	}
	e := &ringEntry{name: name, srv: s, active: 1, used: rs.now()}
	rs.live[name] = e
	rs.hubs.Add(1)
	go func() {
		defer rs.hubs.Done()
		s.Run(rs.closing) // until the Server is closed
	}()
	rs.mu.Unlock()
	if evict != nil {
		evict.srv.Close()
	}
	return e, nil
}

// release gives back an entry obtained from acquire.
func (rs *Rings) release(e *ringEntry) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	e.active--
	e.used = rs.now()
}

// letGo closes the Servers that no request uses and that have been unused for
// rs.idle, or whose ring is gone.
func (rs *Rings) letGo() {
	rs.mu.Lock()
	var idle []*ringEntry
	for _, e := range rs.live {
		if e.active == 0 {
			idle = append(idle, e)
		}
	}
	rs.mu.Unlock()
	var gone []*ringEntry
	for _, e := range idle {
		rs.mu.Lock()
		unused := rs.now().Sub(e.used)
		rs.mu.Unlock()
		if unused >= rs.idle || !isRing(unix.AT_FDCWD, filepath.Join(rs.dir, e.name)) {
			gone = append(gone, e)
		}
	}
	rs.mu.Lock()
	n := 0
	for _, e := range gone {
		// Still unused, and still the ring's entry: no request took it meanwhile.
		if e.active == 0 && rs.live[e.name] == e {
			delete(rs.live, e.name)
			gone[n] = e
			n++
		}
	}
	rs.mu.Unlock()
	for _, e := range gone[:n] {
		e.srv.Close()
	}
}

// ringRow is one ring of the index: a member of the "rings" array of /rings.
type ringRow struct {
	Name        string          `json:"name"`
	Present     bool            `json:"present"`
	Records     uint64          `json:"records"`
	LastSeq     uint64          `json:"last_seq"`
	LastTimeNS  int64           `json:"last_time_ns"`
	Value       json.RawMessage `json:"value"`
	Truncated   bool            `json:"value_truncated,omitempty"`
	Rate        float64         `json:"rate"`
	ProducerUp  bool            `json:"producer_up"`
	ProducerPID int             `json:"producer_pid,omitempty"`
	Clients     int             `json:"clients"`
	Error       string          `json:"error,omitempty"`

	lost uint64    // records lost by the ring's hub, for /metrics
	st   ringState // what the look found, for /metrics
}

// ringsDoc is the document of /rings.
type ringsDoc struct {
	Dir       string    `json:"dir"`
	Rings     []ringRow `json:"rings"`
	Truncated bool      `json:"truncated"`
	Error     string    `json:"error,omitempty"`
}

// look lists the rings and looks at each, one request at a time. It fails only when
// ctx is done first.
func (rs *Rings) look(ctx context.Context) (ringsDoc, error) {
	select {
	case rs.looking <- struct{}{}:
	case <-ctx.Done():
		return ringsDoc{}, ctx.Err()
	}
	defer func() { <-rs.looking }()
	doc := ringsDoc{Dir: rs.dir, Rings: []ringRow{}}
	names, more, err := listRings(rs.dir, rs.maxRings)
	if err != nil {
		doc.Error = err.Error()
		return doc, nil
	}
	doc.Truncated = more
	rs.mu.Lock()
	hubs := map[string]*hub{}
	for name, e := range rs.live {
		hubs[name] = e.srv.hub
	}
	rs.mu.Unlock()
	now := rs.now()
	for _, name := range names {
		if ctx.Err() != nil {
			return ringsDoc{}, ctx.Err()
		}
		row := ringRow{Name: name, Value: json.RawMessage("null")}
		h, err := openRingHandle(filepath.Join(rs.dir, name))
		if err == nil {
			row.st = h.look(ringRecent, now)
			h.unref()
		} else {
			row.st.err = err
		}
		st := row.st
		row.Present, row.Records, row.LastSeq, row.LastTimeNS = st.present, st.records, st.lastSeq, st.lastTime
		row.ProducerUp, row.ProducerPID, row.Rate = st.producerPID != 0, st.producerPID, st.rate
		if st.newest != nil {
			row.Value, row.Truncated = preview(st.newest, st.newestLen)
		}
		if st.err != nil {
			row.Error = toValidUTF8(st.err.Error())
		}
		if hb := hubs[name]; hb != nil {
			row.Clients, row.lost = hb.clientCount(), hb.lostCount()
		}
		doc.Rings = append(doc.Rings, row)
	}
	return doc, nil
}

// preview returns the JSON value of a newest payload, of which data is the first
// previewBytes of n: a number or a string, cut between characters when it is longer.
func preview(data []byte, n int) (json.RawMessage, bool) {
	if n <= len(data) {
		return appendValueJSON(nil, data), false
	}
	// Cut before the character that the first previewBytes bytes split, if any.
	for i := len(data) - 1; i >= 0 && i >= len(data)-utf8.UTFMax; i-- {
		if utf8.RuneStart(data[i]) {
			if !utf8.FullRune(data[i:]) {
				data = data[:i]
			}
			break
		}
	}
	return appendValueJSON(nil, data), true
}

// index answers / (HTML) and /rings (JSON): every ring listed, with what a look at it
// found. The JSON document is {"dir":DIR,"rings":[...],"truncated":BOOL}, "truncated"
// when there were more than MaxRings rings, with "error" when the directory could not
// be listed. Each ring is {"name", "present" (it could be read), "records", "last_seq",
// "last_time_ns" (0: no record), "value" (the newest payload as /records gives it,
// at most 256 bytes of it, with "value_truncated":true when cut; null when none),
// "rate" (records a second over the last 10 seconds), "producer_up", "producer_pid"
// (when up), "clients" (its event streams), "error" (why it could not be read)}.
func (rs *Rings) index(w http.ResponseWriter, r *http.Request) {
	doc, err := rs.look(r.Context())
	if err != nil {
		return // the client went away
	}
	w.Header().Set("Cache-Control", "no-store")
	if r.URL.Path == "/rings" {
		w.Header().Set("Content-Type", "application/json")
		b, _ := json.Marshal(doc)
		w.Write(append(b, '\n'))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := indexPage().Execute(w, pageOf(doc, rs.now())); err != nil {
		return // the client went away
	}
}

// metrics answers /metrics: those of Server's /metrics for every ring listed, labelled
// ring="NAME", and filering_rings, the number of rings listed. Rings with no Server
// have 0 clients and 0 records lost.
func (rs *Rings) metrics(w http.ResponseWriter, r *http.Request) {
	doc, err := rs.look(r.Context())
	if err != nil {
		return
	}
	samples := make([]ringSample, len(doc.Rings))
	for i, row := range doc.Rings {
		samples[i] = ringSample{ring: row.Name, st: row.st, lost: row.lost, clients: row.Clients}
	}
	b := fmt.Appendf(nil, "# HELP filering_rings Rings listed in the directory.\n# TYPE filering_rings gauge\nfilering_rings %d\n", len(doc.Rings))
	writeMetrics(w, appendMetrics(b, samples))
}

// healthz answers /healthz: 200 and {"ok":true,"rings":N,"producers_up":M,"truncated":B}
// when the directory can be listed, else 503 and {"ok":false,"reason":"...",...}.
func (rs *Rings) healthz(w http.ResponseWriter, r *http.Request) {
	doc, err := rs.look(r.Context())
	if err != nil {
		return
	}
	up := 0
	for _, row := range doc.Rings {
		up += b01(row.ProducerUp)
	}
	out := map[string]any{"ok": doc.Error == "", "rings": len(doc.Rings), "producers_up": up, "truncated": doc.Truncated}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if doc.Error != "" {
		out["reason"] = doc.Error
		w.Header().Set("Retry-After", retryAfter)
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	b, _ := json.Marshal(out)
	w.Write(append(b, '\n'))
}

//go:embed rings.html
var ringsHTML string

// indexPage is the template of the index page, parsed on first use.
var indexPage = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("rings").Parse(ringsHTML))
})

// indexRow is a ring as the index page shows it.
type indexRow struct {
	Name, Value, Age, Rate, Producer, Error string
	Records                                 uint64
	Up                                      bool
}

// pageOf returns what the index page shows of doc at now.
func pageOf(doc ringsDoc, now time.Time) any {
	rows := make([]indexRow, len(doc.Rings))
	for i, r := range doc.Rings {
		row := indexRow{Name: r.Name, Records: r.Records, Up: r.ProducerUp, Error: r.Error, Value: "–", Age: "–", Producer: "down"}
		if string(r.Value) != "null" {
			var v any
			json.Unmarshal(r.Value, &v)
			if s, ok := v.(string); ok {
				row.Value = fmt.Sprintf("%q", s)
			} else {
				row.Value = string(r.Value)
			}
			if r.Truncated {
				row.Value += "…"
			}
		}
		if r.LastTimeNS != 0 {
			row.Age = roundAge(now.Sub(time.Unix(0, r.LastTimeNS))).String() + " ago"
		}
		row.Rate = strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", r.Rate), "0"), ".") + " /s"
		if r.ProducerUp {
			row.Producer = fmt.Sprintf("up (pid %d)", r.ProducerPID)
		}
		rows[i] = row
	}
	return struct {
		Dir       string
		Rings     []indexRow
		Truncated bool
		Error     string
	}{doc.Dir, rows, doc.Truncated, doc.Error}
}
