package bench

import (
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/publish"
	"github.com/filering/filering/ramdisk"
	"github.com/filering/filering/segment"
)

// TestMain runs the reader processes, which are this test binary started again (see
// PeerEnv), before the test runner.
func TestMain(m *testing.M) {
	if cfg, ok := os.LookupEnv(PeerEnv); ok {
		os.Exit(RunPeer(cfg))
	}
	os.Exit(m.Run())
}

// benchDir returns /dev/shm when it is tmpfs with room for the test's rings, and a
// temporary directory otherwise.
func benchDir(t *testing.T) string {
	if info, err := ramdisk.Check("/dev/shm"); err == nil && info.TmpFS && info.Exists && info.Free > 512<<20 {
		return "/dev/shm"
	}
	return t.TempDir()
}

func TestBench_json(t *testing.T) {
	if testing.Short() {
		t.Skip("starts reader processes")
	}
	start := time.Now()
	// 32 segments of 4 MiB hold 1.5 million 64-byte records: more than a producer sends
	// in the 60 ms of warm-up and measurement below, so no record can be overwritten
	// before the follower reads it.
	res, err := Run(Config{Sizes: []int{64}, Duration: 50 * time.Millisecond, Warmup: 10 * time.Millisecond,
		Rate: 1000, Samples: 50, LatencySize: 64, Buffer: 64 << 10, SegmentSize: 4 << 20, Segments: 32, Rounds: 1,
		Transports: AllTransports, Measures: AllMeasures, Dir: benchDir(t)}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := res.WriteJSON(&out); err != nil {
		t.Fatal(err)
	}
	var rep Report
	dec := json.NewDecoder(strings.NewReader(out.String()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("output is not the JSON report: %v\n%s", err, out.String())
	}

	m := rep.Machine
	if m.GOOS == "" || m.GOARCH == "" || m.NumCPU < 1 || m.Kernel == "" || m.CPU == "" || rep.Dir == "" {
		t.Errorf("machine or directory not described: %+v, dir %q", m, rep.Dir)
	}
	positive := func(what string, xs ...float64) {
		t.Helper()
		for _, x := range xs {
			if !(x > 0) {
				t.Errorf("%s: figure %v, want > 0", what, x)
			}
		}
	}

	in := func(measure string) []string {
		var ts []string
		for _, tr := range AllTransports {
			if takesPart(tr, measure) {
				ts = append(ts, tr)
			}
		}
		return ts
	}
	if want := in(measureAlone); len(rep.Alone) != len(want) {
		t.Fatalf("alone: %d results, want one for each of %v: %+v", len(rep.Alone), want, rep.Alone)
	}
	for i, r := range rep.Alone {
		what := "alone " + r.Transport
		if r.Transport != in(measureAlone)[i] || r.Size != 64 {
			t.Errorf("%s: size %d, want the transports in order at 64 bytes", what, r.Size)
		}
		positive(what, float64(r.Records), r.Seconds, r.RecordsPerSec, r.MBPerSec)
		if r.Transport != transFilering {
			positive(what+" ratio", r.FileringOver)
		}
		if ringTransport(r.Transport) {
			positive(what+" x raw", r.OverRaw)
		} else if r.OverRaw != 0 {
			t.Errorf("%s: x raw %v on a baseline", what, r.OverRaw)
		}
	}

	if want := in(measureFollow); len(rep.Follow) != len(want) {
		t.Fatalf("follow: %d results, want one for each of %v: %+v", len(rep.Follow), want, rep.Follow)
	}
	for _, r := range rep.Follow {
		what := "follow " + r.Transport
		positive(what, float64(r.Sent), float64(r.Received), float64(r.Warmup), r.ProducerPerSec,
			r.Seconds, r.RecordsPerSec, r.MBPerSec, r.LagMS)
		if r.Transport != transFilering {
			positive(what+" ratio", r.FileringOver)
		}
		if ringTransport(r.Transport) {
			positive(what+" x raw", r.OverRaw)
		}
		if r.Transport == transRename {
			continue // a reader of a rewritten file may miss records; they are counted as lost
		}
		if r.Transport == transRaw {
			// The raw ring holds fewer records than its producer may send in 60 ms, and
			// its reader skips what it was overtaken on (TestRaw_peer checks delivery).
			if r.Received+r.Lost < r.Sent {
				t.Errorf("%s: sent %d, received %d, lost %d: records unaccounted for", what, r.Sent, r.Received, r.Lost)
			}
			continue
		}
		if r.Received != r.Sent || r.Lost != 0 {
			t.Errorf("%s: sent %d, received %d, lost %d; want every record", what, r.Sent, r.Received, r.Lost)
		}
		if ringTransport(r.Transport) {
			held := uint64(r.Segments) * uint64((r.SegmentSize-segment.HeaderSize)/int64(segment.RecordSpan(64)))
			if r.Warmup+r.Sent > held {
				t.Logf("%s: %d records sent, more than the ring holds (%d)", what, r.Warmup+r.Sent, held)
			}
		}
	}

	if rep.Latency == nil || len(rep.Latency.Transports) != len(in(measureLatency)) {
		t.Fatalf("latency: want one result per transport, got %+v", rep.Latency)
	}
	for _, r := range rep.Latency.Transports {
		what := "latency " + r.Transport
		positive(what, r.P50, r.P90, r.P99, r.Max)
		if !(r.P50 <= r.P90 && r.P90 <= r.P99 && r.P99 <= r.Max) {
			t.Errorf("%s: p50 %v, p90 %v, p99 %v, max %v: not in order", what, r.P50, r.P90, r.P99, r.Max)
		}
		if r.Transport != transRename && (r.Received != 50 || r.Lost != 0) {
			t.Errorf("%s: received %d, lost %d; want all 50 timed records", what, r.Received, r.Lost)
		}
		if r.Transport != transFilering {
			positive(what+" ratio", r.FileringOver)
		}
	}
	t.Logf("bench took %v", time.Since(start))
}

func TestCPUModel(t *testing.T) {
	for _, tc := range []struct{ name, cpuinfo, want string }{
		{"x86", "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n", "AMD EPYC 7B13"},
		{"raspberry pi", "processor\t: 0\nBogoMIPS\t: 108.00\nCPU part\t: 0xd08\n\nHardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n", "Raspberry Pi 4 Model B Rev 1.4"},
		{"bare arm", "processor\t: 0\nHardware\t: Generic DT based system\n", "Generic DT based system"},
		{"nothing", "", "unknown"},
	} {
		if got := cpuModel(tc.cpuinfo); got != tc.want {
			t.Errorf("%s: cpuModel = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestHugeShare checks the huge pages column's source: nothing mapped is unknown, a
// mapping that cannot be on huge pages is 0, and a producer's 2 MiB segments are between
// 0 and 1 (1 where the kernel gives huge pages).
func TestHugeShare(t *testing.T) {
	dir := t.TempDir()
	if got := hugeShare(dir); got != -1 {
		t.Fatalf("nothing mapped: %v, want -1", got)
	}
	for _, size := range []int64{1 << 20, 2 << 20} {
		ring := ringtest.Dir(t)
		w, err := publish.Open(ring, publish.Options{SegmentSize: size})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Append([]byte("x")); err != nil {
			t.Fatal(err)
		}
		got := hugeShare(ring)
		w.Close()
		switch {
		case got < 0 || got > 1:
			t.Fatalf("%d-byte segments: share %v", size, got)
		case size%(2<<20) != 0 && got != 0:
			t.Fatalf("%d-byte segments cannot be on huge pages, share %v", size, got)
		}
		t.Logf("%s segments: %.0f%% on huge pages", ramdisk.FormatSize(size), 100*got)
	}
}
