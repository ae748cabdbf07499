package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// promSamples parses the Prometheus text format strictly enough for the test: every
// sample has HELP and TYPE lines before it and the ring label, and is returned by name.
func promSamples(t *testing.T, out []byte, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	described := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			described[strings.Fields(rest)[0]] = true
			continue
		}
		if strings.HasPrefix(line, "# HELP ") {
			continue
		}
		name, rest, ok := strings.Cut(line, "{")
		label, value, ok2 := strings.Cut(rest, "} ")
		if !ok || !ok2 || label != fmt.Sprintf("ring=%q", dir) || !described[name] {
			t.Fatalf("sample line %q: want NAME{ring=%q} VALUE after its TYPE line", line, dir)
		}
		got[name] = value
	}
	return got
}

// TestStat_Prometheus: stat --format prometheus writes what node_exporter's textfile
// collector reads, for a ring with and without its producer, and for no ring at all.
func TestStat_Prometheus(t *testing.T) {
	dir := ring(t)
	missing := promSamples(t, mustRun(t, nil, "stat", "--format", "prometheus", dir), dir)
	if len(missing) != 1 || missing["filering_ring_present"] != "0" {
		t.Fatalf("no ring: %v", missing)
	}
	mustRun(t, lines(250), "produce", "--segment-size", "4KiB", dir)
	got := promSamples(t, mustRun(t, nil, "stat", "--format", "prometheus", dir), dir)
	for name, want := range map[string]string{"filering_ring_present": "1", "filering_records": "250",
		"filering_first_sequence": "1", "filering_last_sequence": "250", "filering_producer_up": "0",
		"filering_segment_size_bytes": "4096", "filering_segments_max": "8", "filering_damaged_segments": "0"} {
		if got[name] != want {
			t.Errorf("%s = %q, want %s", name, got[name], want)
		}
	}
	p := startProducer(t, dir)
	waitFor(t, 10*time.Second, "the producer's lock", func() bool {
		r, err := execute(nil, "stat", "--format", "prometheus", dir)
		return err == nil && bytes.Contains(r.stdout, []byte("filering_producer_up{ring=\""+dir+"\"} 1"))
	})
	p.stdin.Close()
	p.wait()
	if r := run(t, nil, "stat", "--format", "yaml", filepath.Dir(dir)); r.code != 2 {
		t.Fatalf("stat --format yaml: %v", r)
	}
}
