package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/internal/servetest"
	"github.com/filering/filering/publish"
)

// ringsDir returns a new, empty directory for rings, removed when the test ends.
func ringsDir(t *testing.T) string {
	t.Helper()
	dir := ringtest.Dir(t)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// makeRing creates the ring name in dir with the payloads in it, and returns its
// producer, closed when the test ends.
func makeRing(t *testing.T, dir, name string, payloads ...string) *publish.Writer {
	t.Helper()
	w, err := publish.Open(filepath.Join(dir, name), publish.Options{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	servetest.AppendAll(t, w, payloads...)
	return w
}

// startRings serves the rings in dir over real HTTP on a loopback port, with Run
// running and sweeping every 20 ms, and returns the base URL and the Rings.
func startRings(t *testing.T, dir string, opts RingsOptions) (string, *Rings) {
	t.Helper()
	rs, err := NewRings(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	rs.sweep = 20 * time.Millisecond
	ts := httptest.NewServer(rs)
	ran := make(chan struct{})
	go func() { rs.Run(context.Background()); close(ran) }()
	// Close stops Run and every hub.
	t.Cleanup(func() { ts.Close(); rs.Close(); <-ran })
	return ts.URL, rs
}

func getRings(t *testing.T, base string) ringsDoc {
	t.Helper()
	var doc ringsDoc
	if code := servetest.GetJSON(t, base+"/rings", &doc); code != 200 {
		t.Fatalf("/rings: %d %+v", code, doc)
	}
	return doc
}

func ringNames(doc ringsDoc) []string {
	var names []string
	for _, r := range doc.Rings {
		names = append(names, r.Name)
	}
	return names
}

func get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestRings_IndexAndEndpoints: the index lists the rings of the directory, and only
// them (not a file, a directory with no manifest, a symbolic link to a ring, a name
// that cannot be a URL segment), with what they hold; each ring's endpoints answer
// under /NAME/.
func TestRings_IndexAndEndpoints(t *testing.T) {
	dir := ringsDir(t)
	makeRing(t, dir, "power", "1", "2", "3")
	makeRing(t, dir, "sensor", `{"temp":21.5}`, `{"temp":21.75}`)
	makeRing(t, dir, "text", strings.Repeat("é", 300))
	outside := ringsDir(t)
	makeRing(t, outside, "elsewhere", "9")
	makeRing(t, dir, ".hidden", "1")
	makeRing(t, dir, "with space", "1")
	if err := os.Symlink(filepath.Join(outside, "elsewhere"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	base, _ := startRings(t, dir, RingsOptions{})

	doc := getRings(t, base)
	if names := ringNames(doc); fmt.Sprint(names) != "[power sensor text]" || doc.Truncated || doc.Error != "" || doc.Dir != dir {
		t.Fatalf("rings %v, truncated %v, error %q, dir %q; want [power sensor text] of %s", names, doc.Truncated, doc.Error, doc.Dir, dir)
	}
	for _, tc := range []struct {
		i         int
		records   uint64
		value     string
		truncated bool
	}{
		{0, 3, `3`, false},
		{1, 2, `"{\"temp\":21.75}"`, false},
		{2, 1, `"` + strings.Repeat("é", 128) + `"`, true},
	} {
		r := doc.Rings[tc.i]
		if !r.Present || r.Records != tc.records || r.LastSeq != tc.records || string(r.Value) != tc.value || r.Truncated != tc.truncated ||
			!r.ProducerUp || r.ProducerPID != os.Getpid() || r.Error != "" || r.Rate <= 0 ||
			time.Since(time.Unix(0, r.LastTimeNS)) > time.Minute {
			t.Errorf("ring %s: %+v; want %d records, value %s (cut %v), producer %d, a rate", r.Name, r, tc.records, tc.value, tc.truncated, os.Getpid())
		}
	}

	code, h, page := get(t, base+"/")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Fatalf("/: %d %v", code, h)
	}
	for _, want := range []string{`<a href="power/">power</a>`, `<a href="sensor/">sensor</a>`, `<td class="num">3</td>`, "up (pid ", `&#34;{\&#34;temp\&#34;:21.75}&#34;`} {
		if !strings.Contains(page, want) {
			t.Errorf("the index page lacks %s:\n%s", want, page)
		}
	}
	if strings.Contains(page, "elsewhere") || strings.Contains(page, `href=".hidden/"`) || strings.Contains(page, `href="empty/"`) ||
		strings.Contains(page, `href="link/"`) || strings.Contains(page, `href="file/"`) {
		t.Errorf("the index page lists what is not a ring:\n%s", page)
	}

	// Each ring's endpoints, under its name.
	var recs servetest.ValuesDoc
	if code := servetest.GetJSON(t, base+"/power/records?last=2", &recs); code != 200 || len(recs.Records) != 2 || recs.LastSeq != 3 {
		t.Fatalf("/power/records: %d %+v", code, recs)
	}
	if ids := servetest.SSE(t, base+"/sensor/events?after=0", "", 2); fmt.Sprint(ids) != "[1 2]" {
		t.Fatalf("/sensor/events: %v", ids)
	}
	var hz struct {
		OK bool `json:"ok"`
	}
	if code := servetest.GetJSON(t, base+"/power/healthz", &hz); code != 200 || !hz.OK {
		t.Fatalf("/power/healthz: %d %+v", code, hz)
	}
	if code, _, page := get(t, base+"/sensor/"); code != 200 || !strings.Contains(page, `"title":"sensor"`) || !strings.Contains(page, "<canvas") {
		t.Fatalf("/sensor/: %d, want the live page titled sensor", code)
	}
	if code, h, _ := get(t, base+"/sensor?unit=V"); code != http.StatusMovedPermanently || h.Get("Location") != "sensor/?unit=V" {
		t.Errorf("/sensor: %d to %q; want a redirect to sensor/?unit=V", code, h.Get("Location"))
	}
	for _, path := range []string{"/link/records", "/empty/records", "/file/records", "/nope/records", "/.hidden/records", "/with%20space/records"} {
		if code, _, body := get(t, base+path); code != 404 {
			t.Errorf("%s: %d %s; want 404", path, code, body)
		}
	}
	var top struct {
		OK    bool `json:"ok"`
		Rings int  `json:"rings"`
		Up    int  `json:"producers_up"`
	}
	if code := servetest.GetJSON(t, base+"/healthz", &top); code != 200 || !top.OK || top.Rings != 3 || top.Up != 3 {
		t.Errorf("/healthz: %d %+v", code, top)
	}
}

// TestRings_AppearAndGo: a ring created after the start is listed and served; a ring
// removed is no longer listed, and its Server is let go of once no request uses it,
// though it is not idle long enough for that.
func TestRings_AppearAndGo(t *testing.T) {
	dir := ringsDir(t)
	base, rs := startRings(t, dir, RingsOptions{Idle: time.Hour})
	if doc := getRings(t, base); len(doc.Rings) != 0 || doc.Error != "" {
		t.Fatalf("an empty directory: %+v", doc)
	}
	if code, _, page := get(t, base+"/"); code != 200 || !strings.Contains(page, "No ring yet") {
		t.Fatalf("index of an empty directory: %d\n%s", code, page)
	}
	w := makeRing(t, dir, "late", "1", "2")
	if names := ringNames(getRings(t, base)); fmt.Sprint(names) != "[late]" {
		t.Fatalf("after a ring was created: %v", names)
	}
	// A page open on its event stream keeps the ring followed while it is removed.
	sc, done := servetest.EventStream(t, base+"/late/events?after=0", "")
	if sc == nil {
		t.FailNow()
	}
	for sc.Scan() && sc.Text() != "id: 2" {
	}
	if f := rs.Followed(); fmt.Sprint(f) != "[late]" {
		t.Fatalf("followed %v, want [late]", f)
	}
	w.Close()
	if err := os.RemoveAll(filepath.Join(dir, "late")); err != nil {
		t.Fatal(err)
	}
	if names := ringNames(getRings(t, base)); len(names) != 0 {
		t.Fatalf("after the ring was removed: %v", names)
	}
	time.Sleep(3 * rs.sweep)
	if f := rs.Followed(); fmt.Sprint(f) != "[late]" {
		t.Fatalf("followed %v while its event stream is open, want [late]", f)
	}
	done()
	waitUntil(t, "the removed ring's Server let go of", func() bool { return len(rs.Followed()) == 0 })
	if code, _, _ := get(t, base+"/late/records"); code != 404 {
		t.Errorf("/late/records of a removed ring: %d, want 404", code)
	}
}

// TestRings_Idle: the Server of a ring no request has used for Idle is let go of, and
// made again by the next request.
func TestRings_Idle(t *testing.T) {
	dir := ringsDir(t)
	makeRing(t, dir, "a", "1")
	base, rs := startRings(t, dir, RingsOptions{Idle: 100 * time.Millisecond})
	var recs servetest.ValuesDoc
	if code := servetest.GetJSON(t, base+"/a/records", &recs); code != 200 || recs.LastSeq != 1 {
		t.Fatalf("/a/records: %d %+v", code, recs)
	}
	if f := rs.Followed(); fmt.Sprint(f) != "[a]" {
		t.Fatalf("followed %v, want [a]", f)
	}
	waitUntil(t, "the idle Server let go of", func() bool { return len(rs.Followed()) == 0 })
	if code := servetest.GetJSON(t, base+"/a/records", &recs); code != 200 || recs.LastSeq != 1 {
		t.Fatalf("/a/records again: %d %+v", code, recs)
	}
}

// TestRings_Followed: with Followed rings in use, a request for another is answered
// 503; once one is unused, the Server unused the longest makes room.
func TestRings_Followed(t *testing.T) {
	dir := ringsDir(t)
	for _, name := range []string{"a", "b", "c"} {
		makeRing(t, dir, name, "1")
	}
	base, rs := startRings(t, dir, RingsOptions{Followed: 2, Idle: time.Hour})
	var streams []func()
	for _, name := range []string{"a", "b"} {
		sc, done := servetest.EventStream(t, base+"/"+name+"/events?after=0", "")
		if sc == nil {
			t.FailNow()
		}
		defer done()
		for sc.Scan() && sc.Text() != "id: 1" {
		}
		streams = append(streams, done)
	}
	servetest.WantUnavailable(t, base+"/c/records", "error", "2 rings are followed")
	streams[1]()
	waitUntil(t, "b unused", func() bool {
		rs.mu.Lock()
		defer rs.mu.Unlock()
		return rs.live["b"] != nil && rs.live["b"].active == 0
	})
	var recs servetest.ValuesDoc
	if code := servetest.GetJSON(t, base+"/c/records", &recs); code != 200 {
		t.Fatalf("/c/records once b is unused: %d", code)
	}
	if f := rs.Followed(); fmt.Sprint(f) != "[a c]" {
		t.Fatalf("followed %v, want [a c]", f)
	}
}

// TestRings_Metrics: /metrics has every family once, with a sample for each ring
// labelled with its name, and the count of rings.
func TestRings_Metrics(t *testing.T) {
	dir := ringsDir(t)
	makeRing(t, dir, "a", "1", "2")
	w := makeRing(t, dir, "b", "x")
	w.Close()
	if err := os.Mkdir(filepath.Join(dir, "c"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "c", "manifest"), []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	base, _ := startRings(t, dir, RingsOptions{})
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != metricsContentType {
		t.Fatalf("/metrics: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	lines, types := parsePromLines(t, string(body))
	got := map[string]float64{}
	for _, l := range lines {
		got[l.name+l.labels] = l.value
	}
	for key, v := range map[string]float64{
		`filering_rings`:                  3,
		`filering_ring_present{ring="a"}`: 1, `filering_ring_present{ring="b"}`: 1, `filering_ring_present{ring="c"}`: 0,
		`filering_records{ring="a"}`: 2, `filering_records{ring="b"}`: 1, `filering_records{ring="c"}`: 0,
		`filering_last_sequence{ring="a"}`: 2, `filering_producer_up{ring="a"}`: 1, `filering_producer_up{ring="b"}`: 0,
		`filering_lost_records_total{ring="a"}`: 0, `filering_clients{ring="b"}`: 0,
	} {
		if g, ok := got[key]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", key, g, ok, v)
		}
	}
	if _, ok := got[`filering_last_record_timestamp_seconds{ring="c"}`]; ok {
		t.Errorf("a record time for a ring that cannot be read")
	}
	if _, ok := got[`filering_last_record_timestamp_seconds{ring="a"}`]; !ok {
		t.Errorf("no record time for ring a")
	}
	if types["filering_lost_records_total"] != "counter" || types["filering_rings"] != "gauge" {
		t.Errorf("types %v", types)
	}
	doc := getRings(t, base)
	if r := doc.Rings[2]; r.Name != "c" || r.Present || !strings.Contains(r.Error, filepath.Join(dir, "c", "manifest")) {
		t.Errorf("a ring with a bad manifest: %+v; want its error naming the manifest", r)
	}
}

// TestRings_MaxRings: at most MaxRings rings are listed, the first in name order.
func TestRings_MaxRings(t *testing.T) {
	dir := ringsDir(t)
	for _, name := range []string{"e", "c", "a", "d", "b"} {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "manifest"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, max := range []int{1, 2, 3, 5, 6} {
		names, more, err := listRings(dir, max)
		want := []string{"a", "b", "c", "d", "e"}[:min(max, 5)]
		if err != nil || !slices.Equal(names, want) || more != (max < 5) {
			t.Errorf("listRings(%d): %v, more %v, %v; want %v", max, names, more, err, want)
		}
	}
	base, _ := startRings(t, dir, RingsOptions{MaxRings: 3})
	if doc := getRings(t, base); fmt.Sprint(ringNames(doc)) != "[a b c]" || !doc.Truncated {
		t.Errorf("MaxRings 3: %v, truncated %v", ringNames(doc), doc.Truncated)
	}
}

// TestRings_Close: Close lets go of every Server and stops their hubs; later requests
// are answered 503, and Run returns.
func TestRings_Close(t *testing.T) {
	dir := ringsDir(t)
	makeRing(t, dir, "a", "1")
	rs, err := NewRings(dir, RingsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(rs)
	defer ts.Close()
	ran := make(chan struct{})
	go func() { rs.Run(context.Background()); close(ran) }()
	var recs servetest.ValuesDoc
	if code := servetest.GetJSON(t, ts.URL+"/a/records", &recs); code != 200 {
		t.Fatalf("/a/records: %d", code)
	}
	if err := rs.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ran:
	case <-time.After(time.Minute):
		t.Fatal("Run did not return after Close")
	}
	if f := rs.Followed(); len(f) != 0 {
		t.Errorf("followed after Close: %v", f)
	}
	servetest.WantUnavailable(t, ts.URL+"/a/records", "error", ErrClosed.Error())
	rs.Close()
}

func TestRingName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"sensor", true}, {"Sensor_2", true}, {"a.b-c", true}, {"9", true}, {strings.Repeat("x", 128), true},
		{"", false}, {".", false}, {"..", false}, {"...", false}, {".hidden", false}, {"-x", false},
		{"a b", false}, {"a/b", false}, {"a%2F", false}, {"é", false}, {"a?", false}, {strings.Repeat("x", 129), false},
	} {
		if got := ringName(tc.name); got != tc.ok {
			t.Errorf("ringName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

func TestHoldsRings(t *testing.T) {
	parent := ringsDir(t)
	makeRing(t, parent, "a", "1")
	empty := ringsDir(t)
	file := filepath.Join(empty, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dir  string
		want bool
		err  string
	}{
		{parent, true, ""},
		{filepath.Join(parent, "a"), false, ""}, // a ring itself
		{empty, false, ""},
		{filepath.Join(empty, "none"), false, ""},
		{file, false, "not a directory"},
	} {
		got, err := HoldsRings(tc.dir)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("HoldsRings(%s) = %v, %v; want %v, error %q", tc.dir, got, err, tc.want, tc.err)
		}
	}
}

func TestNewRings_Errors(t *testing.T) {
	file := filepath.Join(ringsDir(t), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dir  string
		opts RingsOptions
		want string
	}{
		{file, RingsOptions{}, "not a directory"},
		{t.TempDir(), RingsOptions{MaxRings: -1}, "MaxRings"},
		{t.TempDir(), RingsOptions{Followed: -1}, "Followed"},
		{t.TempDir(), RingsOptions{Idle: -time.Second}, "Idle"},
		{t.TempDir(), RingsOptions{Ring: Options{Buffer: -1}}, "Buffer"},
	} {
		if rs, err := NewRings(tc.dir, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			if rs != nil {
				rs.Close()
			}
			t.Errorf("NewRings(%s, %+v): %v; want an error saying %q", tc.dir, tc.opts, err, tc.want)
		}
	}
}

func TestPreview(t *testing.T) {
	for _, tc := range []struct {
		data string
		n    int
		want string
		cut  bool
	}{
		{"21.5", 4, `21.5`, false},
		{"abc", 3, `"abc"`, false},
		{"abcd", 10, `"abcd"`, true},
		{"ab\xc3", 10, `"ab"`, true},          // é cut after its first byte
		{"ab\xe2\x82", 10, `"ab"`, true},      // € cut after two of its three bytes
		{"ab\xe2\x82\xac", 10, `"ab€"`, true}, // whole
		{"\xff\xfe", 2, "\"\ufffd\"", false},  // not UTF-8: one replacement
	} {
		got, cut := preview([]byte(tc.data), tc.n)
		var v any
		if err := json.Unmarshal(got, &v); err != nil || string(got) != tc.want || cut != tc.cut {
			t.Errorf("preview(%q, %d) = %s, %v (%v); want %s, %v", tc.data, tc.n, got, cut, err, tc.want, tc.cut)
		}
	}
}
