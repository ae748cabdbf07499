package serve

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// promSample is one sample of the text exposition format.
type promSample struct {
	labels string
	value  float64
}

// promLine is a sample line: the metric's name, its labels ({...}, or "") and value.
type promLine struct {
	name, labels string
	value        float64
}

// parseProm parses the Prometheus text exposition format of one ring (see
// parsePromLines): it also checks that no metric appears twice, and returns the samples
// and the types by name.
func parseProm(t *testing.T, text string) (map[string]promSample, map[string]string) {
	t.Helper()
	lines, types := parsePromLines(t, text)
	samples := map[string]promSample{}
	for _, l := range lines {
		if _, dup := samples[l.name]; dup {
			t.Errorf("metric %s twice", l.name)
		}
		samples[l.name] = promSample{l.labels, l.value}
	}
	return samples, types
}

// parsePromLines parses the Prometheus text exposition format strictly enough for a
// test: every sample's metric has a # HELP and a # TYPE before it, the samples of a
// metric follow each other, values parse as floats, and no metric has the same labels
// twice. It returns the samples in order and the types by name.
func parsePromLines(t *testing.T, text string) ([]promLine, map[string]string) {
	t.Helper()
	var lines []promLine
	types, helps, seen, done := map[string]string{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			t.Errorf("empty line in metrics")
		case strings.HasPrefix(line, "# HELP "):
			f := strings.SplitN(line[len("# HELP "):], " ", 2)
			if len(f) != 2 || f[1] == "" {
				t.Errorf("bad HELP line %q", line)
			}
			helps[f[0]] = true
		case strings.HasPrefix(line, "# TYPE "):
			f := strings.Fields(line[len("# TYPE "):])
			if len(f) != 2 || (f[1] != "gauge" && f[1] != "counter") {
				t.Errorf("bad TYPE line %q", line)
				continue
			}
			types[f[0]] = f[1]
		case strings.HasPrefix(line, "#"):
		default:
			sp := strings.LastIndexByte(line, ' ')
			if sp < 0 {
				t.Errorf("bad sample %q", line)
				continue
			}
			name, labels := line[:sp], ""
			if i := strings.IndexByte(name, '{'); i >= 0 {
				if !strings.HasSuffix(name, "}") {
					t.Errorf("bad labels in %q", line)
				}
				name, labels = name[:i], name[i:]
			}
			v, err := strconv.ParseFloat(line[sp+1:], 64)
			if err != nil {
				t.Errorf("sample %q: %v", line, err)
			}
			if types[name] == "" || !helps[name] {
				t.Errorf("sample %q before its HELP and TYPE", line)
			}
			if seen[name+labels] {
				t.Errorf("sample %s%s twice", name, labels)
			}
			if done[name] {
				t.Errorf("sample %q apart from the other samples of %s", line, name)
			}
			if n := len(lines); n > 0 && lines[n-1].name != name {
				done[lines[n-1].name] = true
			}
			seen[name+labels] = true
			lines = append(lines, promLine{name, labels, v})
		}
	}
	return lines, types
}

func getMetrics(t *testing.T, base string) (map[string]promSample, map[string]string) {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != metricsContentType {
		t.Fatalf("/metrics: %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	return parseProm(t, string(body))
}

func TestServe_Metrics(t *testing.T) {
	before := time.Now()
	base, w := startServe(t, 5)
	want := map[string]float64{
		"filering_ring_present":       1,
		"filering_records":            5,
		"filering_last_sequence":      5,
		"filering_producer_up":        1,
		"filering_lost_records_total": 0,
		"filering_clients":            0,
	}
	m, types := getMetrics(t, base)
	for name, v := range want {
		if got, ok := m[name]; !ok || got.value != v {
			t.Errorf("%s = %+v, want %v", name, got, v)
		}
	}
	if types["filering_lost_records_total"] != "counter" || types["filering_records"] != "gauge" {
		t.Errorf("types: %v", types)
	}
	ts := m["filering_last_record_timestamp_seconds"].value
	if d := ts - float64(before.UnixNano())/1e9; d < -1 || d > 60 {
		t.Errorf("filering_last_record_timestamp_seconds = %v, test started at %v", ts, before.Unix())
	}
	if l := m["filering_records"].labels; !strings.HasPrefix(l, `{ring="`) {
		t.Errorf("labels %q, want ring=", l)
	}

	// A client on the event stream, and the producer gone.
	resp, err := http.Get(base + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	w.Append([]byte("6"))
	w.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, _ = getMetrics(t, base)
		if m["filering_clients"].value == 1 && m["filering_producer_up"].value == 0 && m["filering_last_sequence"].value == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the producer closed, with a client: %v", m)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServe_MetricsNoRing(t *testing.T) {
	base, _ := startServer(t, t.TempDir()+"/none", nil)
	m, _ := getMetrics(t, base)
	for _, name := range []string{"filering_ring_present", "filering_records", "filering_producer_up"} {
		if m[name].value != 0 {
			t.Errorf("%s = %v with no ring", name, m[name].value)
		}
	}
	if _, ok := m["filering_last_record_timestamp_seconds"]; ok {
		t.Errorf("a record time with no ring")
	}
}

func TestPromEscape(t *testing.T) {
	if got := promEscape("a\\b\"c\nd"); got != `a\\b\"c\nd` {
		t.Errorf("promEscape: %q", got)
	}
}
