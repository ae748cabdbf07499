package bench

import (
	"cmp"
	"os"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Report is everything one run measured; WriteJSON writes it as it is (`filering bench
// --json`).
type Report struct {
	Machine Machine `json:"machine"`
	// LoadStart and LoadEnd are the load averages (/proc/loadavg) before and after.
	LoadStart string         `json:"loadavg_start"`
	LoadEnd   string         `json:"loadavg_end"`
	Dir       string         `json:"dir"`
	TmpFS     bool           `json:"tmpfs"`
	Settings  Settings       `json:"settings"`
	Alone     []AloneResult  `json:"alone"`
	Follow    []FollowResult `json:"follow"`
	Latency   *LatencyResult `json:"latency,omitempty"`
}

// Machine describes what the benchmark ran on.
type Machine struct {
	GOOS      string `json:"goos"`
	GOARCH    string `json:"goarch"`
	NumCPU    int    `json:"num_cpu"`
	Kernel    string `json:"kernel"`
	CPU       string `json:"cpu"`
	GoVersion string `json:"go_version"`
}

// Settings are the Config the run measured with.
type Settings struct {
	DurationS   float64  `json:"duration_s"`
	WarmupS     float64  `json:"warmup_s"`
	Sizes       []int    `json:"sizes"`
	Transports  []string `json:"transports"`
	Rate        float64  `json:"rate"`
	Samples     int      `json:"samples"`
	LatencySize int      `json:"latency_size"`
	Buffer      int      `json:"rename_buffer"`
	SegmentSize int64    `json:"segment_size"`
	Segments    int      `json:"segments"`
	Rounds      int      `json:"rounds"`
}

// AloneResult is the producer alone: how fast it sends with nothing else going on but a
// goroutine draining the pipe or socket.
type AloneResult struct {
	Size          int     `json:"size"`
	Transport     string  `json:"transport"`
	Records       uint64  `json:"records"`
	Seconds       float64 `json:"seconds"`
	RecordsPerSec float64 `json:"records_per_s"`
	MBPerSec      float64 `json:"mb_per_s"`
	// FileringOver is filering's records/s divided by this transport's; baselines only.
	// On the raw row it is filering's figure as a share of the physical limit ("x raw").
	FileringOver float64 `json:"filering_over,omitempty"`
	// OverRaw, for the rings (filering, batch), is records/s as a share of raw's at the
	// same size: "x raw".
	OverRaw float64 `json:"over_raw,omitempty"`
	// HugeShare, for filering, batch and raw, is the share of the producer's segment (or raw
	// ring) mappings that the kernel mapped with huge pages at the end of the run (a
	// segment being prepared left out), from 0 to 1; -1 when unknown.
	HugeShare *float64 `json:"huge_page_share,omitempty"`
}

// FollowResult is the producer sending as fast as it can to a reader in another process.
type FollowResult struct {
	Size      int    `json:"size"`
	Transport string `json:"transport"`
	// SegmentSize and Segments describe the ring; filering only.
	SegmentSize int64 `json:"segment_size,omitempty"`
	Segments    int   `json:"segments,omitempty"`
	// Sent and Received count the measured records (not warm-up). Lost counts every
	// record of the stream, warm-up included, that the reader never received: for
	// filering what the follower reported with Loss, for rename what was replaced before
	// the reader looked.
	Sent     uint64 `json:"sent"`
	Received uint64 `json:"received"`
	Lost     uint64 `json:"lost"`
	// Warmup counts the warm-up records sent before the measured ones.
	Warmup uint64 `json:"warmup_records"`
	// ProducerPerSec is the rate at which the producer sent; RecordsPerSec and MBPerSec
	// the rate of delivery: measured records received, over the time from the first
	// measured send to the receipt of the last.
	ProducerPerSec float64 `json:"producer_records_per_s"`
	Seconds        float64 `json:"seconds"`
	RecordsPerSec  float64 `json:"records_per_s"`
	MBPerSec       float64 `json:"mb_per_s"`
	// LagMS is how long after the producer's last send the reader received the end.
	LagMS float64 `json:"lag_ms"`
	// FileringOver is filering's delivered records/s divided by this transport's;
	// baselines only. On the raw row it is filering's figure as a share of the physical
	// limit ("x raw"); Lost on both rows says whether it came with no loss.
	FileringOver float64 `json:"filering_over,omitempty"`
	// OverRaw, for the rings (filering, batch, spin), is delivered records/s as a share
	// of raw's at the same size: "x raw".
	OverRaw float64 `json:"over_raw,omitempty"`
}

// LatencyResult is the time from send to receipt at a low rate.
type LatencyResult struct {
	Size       int          `json:"size"`
	Rate       float64      `json:"rate"`
	Samples    int          `json:"samples"`
	Transports []LatencyRow `json:"transports"`
}

// LatencyRow is one transport's latencies, in µs.
type LatencyRow struct {
	Transport string  `json:"transport"`
	Received  int     `json:"received"`
	Lost      uint64  `json:"lost"`
	P50       float64 `json:"p50_us"`
	P90       float64 `json:"p90_us"`
	P99       float64 `json:"p99_us"`
	Max       float64 `json:"max_us"`
	// FileringOver is filering's p50 divided by this transport's; baselines only.
	FileringOver float64 `json:"filering_over,omitempty"`
}

// ratios fills in the FileringOver and OverRaw columns.
func (rep *Report) ratios() {
	var rows []rateRow
	for i := range rep.Alone {
		r := &rep.Alone[i]
		rows = append(rows, rateRow{r.Transport, r.Size, r.RecordsPerSec, &r.FileringOver, &r.OverRaw})
	}
	throughputRatios(rows)
	rows = rows[:0]
	for i := range rep.Follow {
		r := &rep.Follow[i]
		rows = append(rows, rateRow{r.Transport, r.Size, r.RecordsPerSec, &r.FileringOver, &r.OverRaw})
	}
	throughputRatios(rows)
	if rep.Latency == nil {
		return
	}
	var f float64
	for _, r := range rep.Latency.Transports {
		if r.Transport == transFilering {
			f = r.P50
		}
	}
	for i := range rep.Latency.Transports {
		r := &rep.Latency.Transports[i]
		if f > 0 && r.Transport != transFilering && r.P50 > 0 {
			r.FileringOver = f / r.P50
		}
	}
}

// rateRow is a throughput result as throughputRatios sees it: where its two ratios go.
type rateRow struct {
	transport    string
	size         int
	rate         float64
	fileringOver *float64
	overRaw      *float64
}

// throughputRatios sets, for the rows of one measurement, each baseline's FileringOver
// (filering's rate over the row's, at the same size) and each ring's OverRaw (the row's
// rate over raw's).
func throughputRatios(rows []rateRow) {
	filering, raw := map[int]float64{}, map[int]float64{}
	for _, r := range rows {
		switch r.transport {
		case transFilering:
			filering[r.size] = r.rate
		case transRaw:
			raw[r.size] = r.rate
		}
	}
	for _, r := range rows {
		if f, ok := filering[r.size]; ok && r.transport != transFilering && r.rate > 0 {
			*r.fileringOver = f / r.rate
		}
		if x := raw[r.size]; x > 0 && ringTransport(r.transport) {
			*r.overRaw = r.rate / x
		}
	}
}

// medianRound returns the round whose key is the median (the lower one of two).
func medianRound[T any](rounds []T, key func(T) float64) T {
	s := slices.Clone(rounds)
	slices.SortStableFunc(s, func(a, b T) int { return cmp.Compare(key(a), key(b)) })
	return s[(len(s)-1)/2]
}

// loadAverage returns the first three fields of /proc/loadavg, or "unknown".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// describeMachine says what the benchmark runs on.
func describeMachine() Machine {
	m := Machine{GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, NumCPU: runtime.NumCPU(),
		GoVersion: runtime.Version(), CPU: "unknown", Kernel: "unknown"}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPU = cpuModel(string(b))
	}
	return m
}

// cpuModel finds the processor's name in /proc/cpuinfo: "model name" on x86, "Model" or
// "Hardware" on many ARM boards, "cpu model" or "uarch" on others.
func cpuModel(cpuinfo string) string {
	fields := map[string]string{}
	for _, line := range strings.Split(cpuinfo, "\n") {
		k, v, ok := strings.Cut(line, ":")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if ok && v != "" && fields[k] == "" {
			fields[k] = v
		}
	}
	for _, k := range []string{"model name", "Model", "Hardware", "cpu model", "uarch", "Processor", "cpu"} {
		if v := fields[k]; v != "" {
			return v
		}
	}
	return "unknown"
}
