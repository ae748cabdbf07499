//go:build linux

package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http/httptest"
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
