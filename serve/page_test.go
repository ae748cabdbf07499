package serve

import (
	"encoding/json"
	"maps"
	"strings"
	"testing"
)

func TestParseUnits(t *testing.T) {
	for _, tc := range []struct {
		spec  string
		unit  string
		units map[string]string
		err   string
	}{
		{"", "", nil, ""},
		{"°C", "°C", nil, ""},
		{"m/s, km", "m/s, km", nil, ""}, // no ':': one unit, as it is
		{"temp:°C,hum:%", "", map[string]string{"temp": "°C", "hum": "%"}, ""},
		{"°C, hum : % ", "°C", map[string]string{"hum": "%"}, ""},
		{"hum:%,°C", "°C", map[string]string{"hum": "%"}, ""},
		{"#1:V,#2:A,,", "", map[string]string{"#1": "V", "#2": "A"}, ""},
		{"a.b:ms,x:", "", map[string]string{"a.b": "ms", "x": ""}, ""},
		{"t:h:m", "", map[string]string{"t": "h:m"}, ""},
		{":°C", "", nil, `entry ":°C" names no series`},
		{"°C,K,a:b", "", nil, "two units for the series not named"},
		{"a:x,a:y", "", nil, `series "a" twice`},
		{strings.Repeat("u", 33), "", nil, "at most 32 bytes"},
		{"a:" + strings.Repeat("u", 33), "", nil, "at most 32 bytes"},
		{"\xff", "", nil, "UTF-8"},
		{strings.Repeat("a", 129) + ":V", "", nil, "series name"},
	} {
		unit, units, err := ParseUnits(tc.spec)
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("ParseUnits(%q): error %v, want %q", tc.spec, err, tc.err)
			continue
		}
		if err == nil && (unit != tc.unit || !maps.Equal(units, tc.units)) {
			t.Errorf("ParseUnits(%q) = %q, %v; want %q, %v", tc.spec, unit, units, tc.unit, tc.units)
		}
		if err == nil {
			if err := (Page{Unit: unit, Units: units}).check(); err != nil {
				t.Errorf("ParseUnits(%q) gave a page that check refuses: %v", tc.spec, err)
			}
		}
	}
	many := make([]string, MaxUnits+1)
	for i := range many {
		many[i] = strings.Repeat("s", i+1) + ":V"
	}
	if _, _, err := ParseUnits(strings.Join(many, ",")); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("ParseUnits with %d series: %v", len(many), err)
	}
}

// TestPage_Script: the page's defaults reach window.FILERING_PAGE as the page reads
// them, and a page out of range is refused.
func TestPage_Script(t *testing.T) {
	lo := -5.0
	p := Page{Title: "sensor <b>", Unit: "°C", Units: map[string]string{"hum": "%"}, Min: &lo}
	script := string(p.script())
	js, ok := strings.CutPrefix(script, "<script>window.FILERING_PAGE = ")
	js, ok2 := strings.CutSuffix(js, ";</script>\n")
	if !ok || !ok2 || strings.Contains(js, "<b>") {
		t.Fatalf("script %q", script)
	}
	var cfg struct {
		Title string            `json:"title"`
		Unit  string            `json:"unit"`
		Units map[string]string `json:"units"`
		Min   float64           `json:"min"`
	}
	if err := json.Unmarshal([]byte(js), &cfg); err != nil || cfg.Title != p.Title || cfg.Unit != "°C" || cfg.Units["hum"] != "%" || cfg.Min != -5 {
		t.Fatalf("FILERING_PAGE %s: %+v, %v", js, cfg, err)
	}
	if s := (Page{}).script(); s != nil {
		t.Errorf("the zero Page gives a script: %q", s)
	}
	for _, bad := range []Page{
		{Title: strings.Repeat("t", 129)},
		{Units: map[string]string{"a,b": "V"}},
		{Units: map[string]string{"a": "V,A"}},
		{Units: map[string]string{"": "V"}},
	} {
		if err := bad.check(); err == nil {
			t.Errorf("check(%+v) accepted it", bad)
		}
	}
}
