//go:build linux

package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/publish"
)

// pageModel is window.fileringPage: what the page draws.
type pageModel struct {
	Series []struct {
		Key    string    `json:"key"`
		Label  string    `json:"label"`
		Unit   string    `json:"unit"`
		Points int       `json:"points"`
		Last   float64   `json:"last"`
		Values []float64 `json:"values"`
	} `json:"series"`
	Unit          string   `json:"unit"`
	YMin          *float64 `json:"yMin"`
	YMax          *float64 `json:"yMax"`
	FixedMin      bool     `json:"fixedMin"`
	FixedMax      bool     `json:"fixedMax"`
	WindowSeconds float64  `json:"windowSeconds"`
	XMin          *float64 `json:"xMin"`
	XMax          *float64 `json:"xMax"`
	TimeAxis      string   `json:"timeAxis"`
	XTicks        []string `json:"xTicks"`
	Legend        []string `json:"legend"`
	Paused        bool     `json:"paused"`
	State         string   `json:"state"`
	LastSeq       uint64   `json:"lastSeq"`
	Points        int      `json:"points"`
	NonNumeric    struct {
		Count  int `json:"count"`
		Recent []struct {
			Seq  uint64 `json:"seq"`
			Text string `json:"text"`
		} `json:"recent"`
	} `json:"nonNumeric"`
}

// eval evaluates expr in the page and decodes its value, a JSON string, into v.
func (b *chromium) eval(ctx context.Context, t *testing.T, session, expr string, v any) error {
	t.Helper()
	var res struct {
		Result struct {
			Value *string `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := b.call(ctx, session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &res); err != nil {
		return err
	}
	if res.ExceptionDetails != nil {
		return fmt.Errorf("%s: %s", expr, res.ExceptionDetails.Text)
	}
	if res.Result.Value == nil {
		return fmt.Errorf("%s: no value", expr)
	}
	return json.Unmarshal([]byte(*res.Result.Value), v)
}

// waitModel polls window.fileringPage until ok accepts it.
func (b *chromium) waitModel(ctx context.Context, t *testing.T, session, what string, ok func(*pageModel) bool) *pageModel {
	t.Helper()
	var m *pageModel
	waitFor(ctx, t, what, func() (bool, string) {
		m = nil
		if err := b.eval(ctx, t, session, `JSON.stringify(window.fileringPage || null)`, &m); err != nil || m == nil {
			return false, fmt.Sprint("no page state: ", err)
		}
		brief := *m
		brief.Series = nil
		return ok(m), fmt.Sprintf("%+v, %d series", brief, len(m.Series))
	})
	return m
}

func (b *chromium) navigate(ctx context.Context, t *testing.T, session, url string) {
	t.Helper()
	var nav struct {
		ErrorText string `json:"errorText"`
	}
	b.mustCall(ctx, t, session, "Page.navigate", map[string]any{"url": url}, &nav)
	if nav.ErrorText != "" {
		t.Fatalf("navigate to %s: %s", url, nav.ErrorText)
	}
}

// seriesRing makes a ring and its Server, with page defaults, and returns the base URL
// and the ring's writer.
func seriesRing(t *testing.T, page Page) (string, *publish.Writer) {
	t.Helper()
	dir := ringtest.Dir(t)
	w, err := publish.Open(dir, publish.Options{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	base, _ := startServer(t, dir, func(s *Server, _ *httptest.Server) { s.setPage(page) })
	return base, w
}

// TestServe_BrowserSeries draws three series from JSON objects with a unit and a fixed
// y-range from the server's options and a time window (4 s) from the URL, lists the payloads
// that are not numeric, pauses and resumes; then draws positional series with the unit,
// range and labels from the URL. It checks the series, legend, units, axes and drawn
// values through window.fileringPage.
func TestServe_BrowserSeries(t *testing.T) {
	bin := chromiumPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lo, hi := 0.0, 50.0
	base, w := seriesRing(t, Page{Unit: "°C", Min: &lo, Max: &hi})
	// Servers before the browser: cleanups run the other way round, and a server's
	// close waits for the browser's event stream.
	base2, w2 := seriesRing(t, Page{Unit: "°C"})

	b := startChromium(t, bin)
	session := b.openPage(ctx, t)
	b.mustCall(ctx, t, session, "Runtime.enable", nil, nil)
	b.mustCall(ctx, t, session, "Page.enable", nil, nil)
	b.mustCall(ctx, t, session, "Emulation.setDeviceMetricsOverride", map[string]any{
		"width": viewWidth, "height": viewHeight, "deviceScaleFactor": 1, "mobile": false,
	}, nil)
	b.navigate(ctx, t, session, base+"/?window=4s")
	b.waitModel(ctx, t, session, "the page to connect", func(m *pageModel) bool { return m.State == "live" })

	// Three temperatures a record, 100 records a second for 3 seconds, and two
	// payloads that are not numbers.
	want := map[string][]float64{}
	var newest uint64
	var others []string
	tick := time.NewTicker(10 * time.Millisecond)
	for i := 0; i < 300; i++ {
		<-tick.C
		payload := ""
		switch i {
		case 100:
			payload = "sensor: recalibrating"
		case 200:
			payload = `{"status":"ok"}`
		default:
			x := float64(i)
			v := map[string]float64{
				"inside":   math.Round((22+3*math.Sin(x/40))*100) / 100,
				"outside":  math.Round((12+6*math.Sin(x/90+1))*100) / 100,
				"setpoint": 21 + 2*float64(i/150),
			}
			for k, f := range v {
				want[k] = append(want[k], f)
			}
			payload = fmt.Sprintf(`{"inside":%v,"outside":%v,"setpoint":%v}`, v["inside"], v["outside"], v["setpoint"])
		}
		if strings.HasPrefix(payload, "sensor") || strings.HasPrefix(payload, `{"status`) {
			others = append(others, payload)
		}
		seq, err := w.Append([]byte(payload))
		if err != nil {
			t.Fatal(err)
		}
		newest = seq
	}
	tick.Stop()

	m := b.waitModel(ctx, t, session, "every record drawn", func(m *pageModel) bool {
		return m.LastSeq == newest && m.Points == 298
	})
	png := b.screenshot(ctx, t, session)
	if len(m.Series) != 3 {
		t.Fatalf("%d series, want 3: %+v", len(m.Series), m.Series)
	}
	for i, name := range []string{"inside", "outside", "setpoint"} {
		s := m.Series[i]
		if s.Label != name || s.Points != 298 || !equalFloats(s.Values, want[name]) {
			t.Errorf("series %d: %s, %d points, values %v...; want %s, 298 points, %v...", i, s.Label, s.Points, head(s.Values), name, head(want[name]))
		}
		if !strings.Contains(m.Legend[i], name) || !strings.HasSuffix(m.Legend[i], fmt.Sprintf("%v °C", want[name][297])) {
			t.Errorf("legend %d: %q, want %s and its newest value %v °C", i, m.Legend[i], name, want[name][297])
		}
	}
	if m.Unit != "°C" || !m.FixedMin || !m.FixedMax || m.YMin == nil || *m.YMin != 0 || *m.YMax != 50 {
		t.Errorf("unit %q, y-range fixed %v %v: %v to %v; want °C, 0 to 50 fixed", m.Unit, m.FixedMin, m.FixedMax, m.YMin, m.YMax)
	}
	if m.WindowSeconds != 4 || m.XMin == nil || *m.XMax-*m.XMin != 4000 {
		t.Errorf("window %v s, x from %v to %v; want 4 s", m.WindowSeconds, m.XMin, m.XMax)
	}
	clock := regexp.MustCompile(`^\d\d:\d\d(:\d\d(\.\d)?)?$`)
	if m.TimeAxis != "wall-clock" || len(m.XTicks) < 2 {
		t.Errorf("time axis %q, ticks %q", m.TimeAxis, m.XTicks)
	}
	for _, tk := range m.XTicks {
		if !clock.MatchString(tk) {
			t.Errorf("time tick %q: want HH:MM[:SS[.d]]", tk)
		}
	}
	if m.NonNumeric.Count != 2 || len(m.NonNumeric.Recent) != 2 ||
		m.NonNumeric.Recent[0].Text != others[0] || m.NonNumeric.Recent[1].Text != others[1] {
		t.Errorf("non-numeric: %+v, want %q", m.NonNumeric, others)
	}
	var listed string
	if err := b.eval(ctx, t, session, `JSON.stringify(document.getElementById("others").textContent)`, &listed); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(listed, "2 payloads are not numeric") || !strings.Contains(listed, "recalibrating") {
		t.Errorf("the list under the graph says %q", listed)
	}

	// Paused, the graph stays as it is while records arrive; resumed, it catches up.
	var ignore bool
	if err := b.eval(ctx, t, session, `document.getElementById("pause").click(), "true"`, &ignore); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		newest, _ = w.Append([]byte(`{"inside":30,"outside":40,"setpoint":25}`))
	}
	p := b.waitModel(ctx, t, session, "paused, every record received", func(m *pageModel) bool {
		return m.Paused && m.LastSeq == newest && m.State == "paused"
	})
	if p.Points != 298 || p.Series[0].Last != want["inside"][297] {
		t.Errorf("paused page drew new records: %d points, inside %v", p.Points, p.Series[0].Last)
	}
	if err := b.eval(ctx, t, session, `document.getElementById("pause").click(), "true"`, &ignore); err != nil {
		t.Fatal(err)
	}
	b.waitModel(ctx, t, session, "resumed with the new records", func(m *pageModel) bool {
		return !m.Paused && m.Points == 318 && m.Series[0].Last == 30 && m.State == "live"
	})

	// Positional series: unit, range and labels from the URL.
	for i := 0; i < 10; i++ {
		newest, _ = w2.Append(fmt.Appendf(nil, "%d, %v; %v", i, float64(i)/2, -1.5))
	}
	b.navigate(ctx, t, session, base2+"/?unit=V&min=-5&max=5&labels=a,b")
	m = b.waitModel(ctx, t, session, "positional series", func(m *pageModel) bool { return m.LastSeq == newest && m.Points == 10 })
	if len(m.Series) != 3 || m.Series[0].Label != "a" || m.Series[1].Label != "b" || m.Series[2].Label != "#3" ||
		m.Series[1].Last != 4.5 || m.Series[2].Last != -1.5 {
		t.Errorf("positional series: %+v", m.Series)
	}
	if m.Unit != "V" || *m.YMin != -5 || *m.YMax != 5 || m.WindowSeconds != 0 || !strings.HasSuffix(m.Legend[0], "9 V") {
		t.Errorf("unit %q, y %v to %v, window %v, legend %q", m.Unit, *m.YMin, *m.YMax, m.WindowSeconds, m.Legend)
	}
	if ex := b.exceptions(); len(ex) > 0 {
		t.Errorf("the page threw:\n%s", strings.Join(ex, "\n"))
	}
	if os.Getenv("FILERING_UPDATE_SCREENSHOT") == "1" {
		if err := os.WriteFile(screenshotPath, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", screenshotPath)
	}
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func head(v []float64) []float64 { return v[:min(len(v), 5)] }

// TestServe_BrowserUnits gives series units of their own, from the server's options and
// from the URL, and checks each series' unit, its legend entry and the axis's unit
// (only when every series has the same one) through window.fileringPage. Then it serves
// a directory of rings and checks that the index page shows a ring created after it
// was loaded, and that the ring's page is titled with its name.
func TestServe_BrowserUnits(t *testing.T) {
	bin := chromiumPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base, w := seriesRing(t, Page{Unit: "hPa", Units: map[string]string{"temp": "°C", "hum": "%"}})
	base2, w2 := seriesRing(t, Page{})
	dir := ringsDir(t)
	makeRing(t, dir, "first", "1")
	rbase, _ := startRings(t, dir, RingsOptions{})

	b := startChromium(t, bin)
	session := b.openPage(ctx, t)
	b.mustCall(ctx, t, session, "Runtime.enable", nil, nil)
	b.mustCall(ctx, t, session, "Page.enable", nil, nil)
	var newest uint64
	for i := 0; i < 20; i++ {
		newest, _ = w.Append(fmt.Appendf(nil, `{"temp":%d.5,"hum":%d,"pres":1013}`, 20+i%3, 40+i))
	}
	type want struct {
		label, unit, legend string
	}
	check := func(m *pageModel, axis string, series ...want) {
		t.Helper()
		if m.Unit != axis {
			t.Errorf("axis unit %q, want %q", m.Unit, axis)
		}
		if len(m.Series) != len(series) || len(m.Legend) != len(series) {
			t.Fatalf("%d series, legend %q; want %d", len(m.Series), m.Legend, len(series))
		}
		for i, s := range series {
			if m.Series[i].Label != s.label || m.Series[i].Unit != s.unit || m.Legend[i] != s.legend {
				t.Errorf("series %d: %s in %q, legend %q; want %s in %q, legend %q", i, m.Series[i].Label, m.Series[i].Unit, m.Legend[i], s.label, s.unit, s.legend)
			}
		}
	}

	// The server's units: temp and hum their own, pres the unit of the others.
	b.navigate(ctx, t, session, base+"/")
	m := b.waitModel(ctx, t, session, "every record drawn", func(m *pageModel) bool { return m.LastSeq == newest && m.Points == 20 })
	check(m, "", want{"temp", "°C", "temp21.5 °C"}, want{"hum", "%", "hum59 %"}, want{"pres", "hPa", "pres1013 hPa"})

	// unit= overrides them all: one unit for every series, on the axis too.
	b.navigate(ctx, t, session, base+"/?unit=K")
	m = b.waitModel(ctx, t, session, "every record drawn", func(m *pageModel) bool { return m.LastSeq == newest && m.Points == 20 })
	check(m, "K", want{"temp", "K", "temp21.5 K"}, want{"hum", "K", "hum59 K"}, want{"pres", "K", "pres1013 K"})

	// Per series in the URL, the same unit for every series drawn: on the axis.
	b.navigate(ctx, t, session, base+"/?unit="+url.QueryEscape("temp:°C, hum:°C, pres:°C"))
	m = b.waitModel(ctx, t, session, "every record drawn", func(m *pageModel) bool { return m.LastSeq == newest && m.Points == 20 })
	check(m, "°C", want{"temp", "°C", "temp21.5 °C"}, want{"hum", "°C", "hum59 °C"}, want{"pres", "°C", "pres1013 °C"})

	// Positional series: by their names from labels=, by #N, and the rest.
	for i := 0; i < 5; i++ {
		newest, _ = w2.Append(fmt.Appendf(nil, "%d %d %d", i, 10*i, 100*i))
	}
	b.navigate(ctx, t, session, base2+"/?labels=volt&unit="+url.QueryEscape("volt:V,#2:A,W"))
	m = b.waitModel(ctx, t, session, "positional series", func(m *pageModel) bool { return m.LastSeq == newest && m.Points == 5 })
	check(m, "", want{"volt", "V", "volt4 V"}, want{"#2", "A", "#240 A"}, want{"#3", "W", "#3400 W"})

	// A single series, named "value": its unit is on the axis and in the header.
	b.navigate(ctx, t, session, rbase+"/first/?unit=value:mm")
	m = b.waitModel(ctx, t, session, "the ring's page", func(m *pageModel) bool { return m.LastSeq == 1 && m.Points == 1 })
	check(m, "mm", want{"value", "mm", "value1 mm"})
	var title string
	if err := b.eval(ctx, t, session, `JSON.stringify(document.title + "|" + document.getElementById("value").textContent)`, &title); err != nil {
		t.Fatal(err)
	}
	if title != "first · filering|1 mm" {
		t.Errorf("title and newest value %q, want the ring's name and 1 mm", title)
	}

	// The index shows a ring created after it was loaded, within its refresh.
	b.navigate(ctx, t, session, rbase+"/")
	rows := func() []string {
		var names []string
		b.eval(ctx, t, session, `JSON.stringify(Array.from(document.querySelectorAll("tr[data-ring]"), r => r.dataset.ring))`, &names)
		return names
	}
	waitFor(ctx, t, "the index with one ring", func() (bool, string) { r := rows(); return fmt.Sprint(r) == "[first]", fmt.Sprint(r) })
	makeRing(t, dir, "second", "2")
	waitFor(ctx, t, "the index with the new ring", func() (bool, string) { r := rows(); return fmt.Sprint(r) == "[first second]", fmt.Sprint(r) })
	if ex := b.exceptions(); len(ex) > 0 {
		t.Errorf("the pages threw:\n%s", strings.Join(ex, "\n"))
	}
}
