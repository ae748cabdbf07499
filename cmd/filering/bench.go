package main

// `filering bench` measures filering on the machine it runs on, side by side with three
// other ways of moving a live stream of records to local readers: a pipe, a unix stream
// socket, and rewriting the whole recent buffer to a file and renaming it over the one
// readers open. docs/BENCHMARKS.md shows its output and explains each figure.
//
// Readers in another process are this same binary, started again with its configuration
// in the environment variable benchPeerEnv; init runs them before main (and before the
// test runner, in a test binary), so the benchmark works the same under `go test`.

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/filering/filering/internal/ringdir"
	"github.com/filering/filering/publish"
	"github.com/filering/filering/ramdisk"
	"github.com/filering/filering/segment"
	"github.com/filering/filering/watch"
)

// The transports the benchmark compares, in the order it runs them.
const (
	transFilering = "filering"
	transPipe     = "pipe"
	transSocket   = "socket"
	transRename   = "rename"
)

var allTransports = []string{transFilering, transPipe, transSocket, transRename}

// The measurements, in the order they run.
const (
	measureAlone   = "alone"
	measureFollow  = "follow"
	measureLatency = "latency"
)

var allMeasures = []string{measureAlone, measureFollow, measureLatency}

// Every benchmark payload starts with three little-endian words, and the rest is the same
// fixed pattern for every record and every transport. Pipe, socket and rename frames put a
// 4-byte little-endian length before the payload; a ring stores the payload as it is.
const (
	payloadSeq   = 0  // u64: the record's number in the stream, from 1
	payloadSent  = 8  // i64: ns since the Unix epoch when it was sent; latency runs only
	payloadPhase = 16 // u64: phaseWarm, phaseMeasured or phaseEnd
	minBenchSize = 24 // the three words
	maxBenchSize = 16 << 20
	frameHeader  = 4
)

// Phases of a stream: warm-up records are not counted, the end record says that no more
// will come.
const (
	phaseWarm     = 1
	phaseMeasured = 2
	phaseEnd      = 3
)

// timeCheckEvery is how many records a throughput run sends between two readings of the
// clock. On a virtual machine a clock reading can cost a quarter of a small append.
const timeCheckEvery = 64

// benchPeerEnv carries a peer's configuration, as JSON, to the re-executed binary.
const benchPeerEnv = "FILERING_BENCH_PEER"

// Names of the rename baseline's files inside its directory.
const (
	renameTarget = "buffer"
	renameTemp   = ".buffer.tmp"
)

// init turns the process into a bench reader when it was started as one. It must run
// before main: a test binary started again has no `bench-reader` command to run.
func init() {
	if cfg, ok := os.LookupEnv(benchPeerEnv); ok {
		os.Exit(runBenchPeer(cfg))
	}
}

// benchCommand returns the `filering bench` command.
func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure filering against a pipe, a unix socket and rewrite-and-rename, on this machine",
		Description: "Measures, for each record size and transport, interleaved so that machine noise hits all alike:\n" +
			"  alone:   the producer alone, records/s and MB/s of payload (pipe and socket drained by a goroutine);\n" +
			"  follow:  the producer and a reader in another process: records delivered per second, and records lost;\n" +
			"  latency: at a low rate, the time from send to receipt in the reader process (µs).\n" +
			"The rename baseline writes the last --buffer bytes of records to a temporary file and renames it over\n" +
			"the file its reader opens, on every record. Readers of filering and rename wake on inotify.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "sizes", Value: "64,1KiB,64KiB", Usage: "record (payload) `SIZES`, comma-separated, at least 24 bytes each"},
			&cli.DurationFlag{Name: "duration", Value: time.Second, Usage: "how long each throughput measurement runs, after a warm-up of a tenth of it"},
			&cli.Float64Flag{Name: "rate", Value: 1000, Usage: "records per second in the latency measurement"},
			&cli.IntFlag{Name: "samples", Value: 2000, Usage: "records timed in the latency measurement, after a tenth as many for warm-up"},
			&cli.StringFlag{Name: "latency-size", Value: "64", Usage: "record `SIZE` in the latency measurement"},
			&cli.StringFlag{Name: "buffer", Value: "64KiB", Usage: "`SIZE` of the buffer the rename baseline rewrites on every record (at least one record)"},
			&cli.StringFlag{Name: "segment-size", Value: "4MiB", Usage: "segment `SIZE` of the rings (raised to hold at least 16 records)"},
			&cli.IntFlag{Name: "segments", Value: 16, Usage: "segments each ring retains"},
			&cli.IntFlag{Name: "rounds", Value: 1, Usage: "repeat every measurement this many times, interleaved, and report each one's median round"},
			&cli.StringFlag{Name: "transports", Value: strings.Join(allTransports, ","), Usage: "`LIST` of transports to measure, from " + strings.Join(allTransports, ",")},
			&cli.StringFlag{Name: "measure", Value: strings.Join(allMeasures, ","), Usage: "`LIST` of measurements to make, from " + strings.Join(allMeasures, ",")},
			&cli.StringFlag{Name: "dir", Usage: "`DIR`ectory for the rings and files, ideally on tmpfs; the benchmark works in a new directory inside it and removes that (default: /dev/shm)"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON document instead of tables"},
			&cli.StringFlag{Name: "cpuprofile", Hidden: true, Usage: "write the producer's CPU profile to `FILE`, and each reader's to FILE.TRANSPORT-SIZE-MEASUREMENT"},
		},
		Action: bench,
	}
}

// benchConfig is what the flags ask for.
type benchConfig struct {
	sizes       []int
	duration    time.Duration
	warmup      time.Duration
	rate        float64
	samples     int
	latencySize int
	buffer      int
	segmentSize int64
	segments    int
	rounds      int
	transports  []string
	measures    []string
	cpuprofile  string
}

func parseBenchFlags(c *cli.Context) (*benchConfig, error) {
	cfg := &benchConfig{
		duration:   c.Duration("duration"),
		rate:       c.Float64("rate"),
		samples:    c.Int("samples"),
		segments:   c.Int("segments"),
		rounds:     c.Int("rounds"),
		cpuprofile: c.String("cpuprofile"),
	}
	for _, s := range strings.Split(c.String("sizes"), ",") {
		n, err := benchSize("--sizes", s)
		if err != nil {
			return nil, err
		}
		cfg.sizes = append(cfg.sizes, n)
	}
	var err error
	if cfg.latencySize, err = benchSize("--latency-size", c.String("latency-size")); err != nil {
		return nil, err
	}
	b, err := ramdisk.ParseSize(c.String("buffer"))
	if err != nil || b < 1 || b > 1<<30 {
		return nil, usagef("--buffer %q: want a size from 1 byte to 1GiB", c.String("buffer"))
	}
	cfg.buffer = int(b)
	if cfg.segmentSize, err = ramdisk.ParseSize(c.String("segment-size")); err != nil || !segment.ValidSize(cfg.segmentSize) {
		return nil, usagef("--segment-size %q: want a multiple of 4KiB from 4KiB to 1GiB", c.String("segment-size"))
	}
	if cfg.segments < segment.MinSegments || cfg.segments > segment.MaxSegments {
		return nil, usagef("--segments %d: want %d to %d", cfg.segments, segment.MinSegments, segment.MaxSegments)
	}
	if cfg.rounds < 1 || cfg.rounds > 100 {
		return nil, usagef("--rounds %d: want 1 to 100", cfg.rounds)
	}
	if cfg.duration <= 0 {
		return nil, usagef("--duration %v: want more than 0", cfg.duration)
	}
	cfg.warmup = min(max(cfg.duration/10, 10*time.Millisecond), time.Second)
	if cfg.rate <= 0 || cfg.rate > 1e6 {
		return nil, usagef("--rate %v: want more than 0 and at most 1000000", cfg.rate)
	}
	if cfg.samples < 1 {
		return nil, usagef("--samples %d: want at least 1", cfg.samples)
	}
	if cfg.transports, err = benchList("--transports", c.String("transports"), allTransports); err != nil {
		return nil, err
	}
	if cfg.measures, err = benchList("--measure", c.String("measure"), allMeasures); err != nil {
		return nil, err
	}
	return cfg, nil
}

// benchSize reads one record size.
func benchSize(flag, s string) (int, error) {
	n, err := ramdisk.ParseSize(s)
	if err != nil {
		return 0, usagef("%s: %v", flag, err)
	}
	if n < minBenchSize || n > maxBenchSize {
		return 0, usagef("%s %q: want %d bytes to %s", flag, s, minBenchSize, ramdisk.FormatSize(maxBenchSize))
	}
	return int(n), nil
}

// benchList reads a comma-separated subset of known, and returns it in known's order.
func benchList(flag, s string, known []string) ([]string, error) {
	want := map[string]bool{}
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(known, name) {
			return nil, usagef("%s: unknown %q, want some of %s", flag, name, strings.Join(known, ","))
		}
		want[name] = true
	}
	var out []string
	for _, name := range known {
		if want[name] {
			out = append(out, name)
		}
	}
	return out, nil
}

// benchReport is everything one run measured; --json prints it as it is.
type benchReport struct {
	Machine benchMachine `json:"machine"`
	// LoadStart and LoadEnd are the load averages (/proc/loadavg) before and after.
	LoadStart string         `json:"loadavg_start"`
	LoadEnd   string         `json:"loadavg_end"`
	Dir       string         `json:"dir"`
	TmpFS     bool           `json:"tmpfs"`
	Settings  benchSettings  `json:"settings"`
	Alone     []aloneResult  `json:"alone"`
	Follow    []followResult `json:"follow"`
	Latency   *latencyResult `json:"latency,omitempty"`
}

type benchMachine struct {
	GOOS      string `json:"goos"`
	GOARCH    string `json:"goarch"`
	NumCPU    int    `json:"num_cpu"`
	Kernel    string `json:"kernel"`
	CPU       string `json:"cpu"`
	GoVersion string `json:"go_version"`
}

type benchSettings struct {
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

// aloneResult is the producer alone: how fast it sends with nothing else going on but a
// goroutine draining the pipe or socket.
type aloneResult struct {
	Size          int     `json:"size"`
	Transport     string  `json:"transport"`
	Records       uint64  `json:"records"`
	Seconds       float64 `json:"seconds"`
	RecordsPerSec float64 `json:"records_per_s"`
	MBPerSec      float64 `json:"mb_per_s"`
	// FileringOver is filering's records/s divided by this transport's; baselines only.
	FileringOver float64 `json:"filering_over,omitempty"`
	// HugeShare, for filering, is the share of the producer's segment mappings that the
	// kernel mapped with huge pages at the end of the run (a segment being prepared left
	// out), from 0 to 1; -1 when unknown.
	HugeShare *float64 `json:"huge_page_share,omitempty"`
}

// followResult is the producer sending as fast as it can to a reader in another process.
type followResult struct {
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
	LagMS        float64 `json:"lag_ms"`
	FileringOver float64 `json:"filering_over,omitempty"`
}

// latencyResult is the time from send to receipt at a low rate.
type latencyResult struct {
	Size       int          `json:"size"`
	Rate       float64      `json:"rate"`
	Samples    int          `json:"samples"`
	Transports []latencyRow `json:"transports"`
}

type latencyRow struct {
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

// bencher runs the measurements of one invocation.
type bencher struct {
	*benchConfig
	dir    string    // working directory, removed at the end
	stderr io.Writer // for notices

	mu      sync.Mutex
	peer    *peer // the reader process running, if any
	stopped bool  // interrupted: start no more readers
}

// interruptible makes SIGINT and SIGTERM stop the reader process, remove the working
// directory and end the process: the rings would otherwise stay in memory on tmpfs.
// Call the function it returns when done.
func (b *bencher) interruptible() (done func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	stop := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			b.mu.Lock()
			b.stopped = true
			if b.peer != nil {
				b.peer.cmd.Process.Kill()
			}
			b.mu.Unlock()
			os.RemoveAll(b.dir)
			fmt.Fprintf(b.stderr, "filering: bench: %v: stopped, %s removed\n", sig, b.dir)
			os.Exit(1)
		case <-stop:
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(stop)
	}
}

func bench(c *cli.Context) error {
	cfg, err := parseBenchFlags(c)
	if err != nil {
		return err
	}
	parent := c.String("dir")
	if parent == "" {
		parent = os.TempDir()
		if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
			parent = "/dev/shm"
		}
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	dir, err := os.MkdirTemp(parent, "filering-bench-")
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(dir)
	b := &bencher{benchConfig: cfg, dir: dir, stderr: c.App.ErrWriter}
	defer b.interruptible()()
	rep := &benchReport{Machine: describeMachine(), Dir: dir, Settings: benchSettings{
		DurationS: cfg.duration.Seconds(), WarmupS: cfg.warmup.Seconds(), Sizes: cfg.sizes,
		Transports: cfg.transports, Rate: cfg.rate, Samples: cfg.samples, LatencySize: cfg.latencySize,
		Buffer: cfg.buffer, SegmentSize: cfg.segmentSize, Segments: cfg.segments, Rounds: cfg.rounds,
	}}
	if info, err := ramdisk.Check(dir); err == nil {
		rep.TmpFS = info.TmpFS
		if !info.TmpFS {
			fmt.Fprintf(b.stderr, "filering: warning: %s is on %s, not tmpfs: filering and rename figures measure that file system\n", dir, info.FSType)
		}
	}

	if cfg.cpuprofile != "" {
		f, err := os.Create(cfg.cpuprofile)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return fmt.Errorf("bench: %w", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}

	rep.LoadStart = loadAverage()
	if err := b.run(rep); err != nil {
		return fmt.Errorf("bench: %v", err)
	}
	rep.LoadEnd = loadAverage()
	rep.ratios()

	out := c.App.Writer
	if c.Bool("json") {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.print(out)
}

// run makes the measurements and adds them to rep. It runs them interleaved: every
// transport for one size and measurement, then the next, and every round in turn, so
// that a noisy spell on the machine hits them alike.
func (b *bencher) run(rep *benchReport) error {
	cfg := b.benchConfig
	var alone [][]aloneResult   // per cell, one per round
	var follow [][]followResult // per cell, one per round
	var lat [][]latencyRow      // per transport, one per round
	for round := range cfg.rounds {
		var cell, fcell int
		for _, size := range cfg.sizes {
			if slices.Contains(cfg.measures, measureAlone) {
				for _, t := range cfg.transports {
					r, err := b.alone(t, size)
					if err != nil {
						return fmt.Errorf("%s, %s alone: %v", t, ramdisk.FormatSize(int64(size)), err)
					}
					if round == 0 {
						alone = append(alone, nil)
					}
					alone[cell] = append(alone[cell], r)
					cell++
				}
			}
			if slices.Contains(cfg.measures, measureFollow) {
				for _, t := range cfg.transports {
					r, err := b.follow(t, size)
					if err != nil {
						return fmt.Errorf("%s, %s to a reader process: %v", t, ramdisk.FormatSize(int64(size)), err)
					}
					if round == 0 {
						follow = append(follow, nil)
					}
					follow[fcell] = append(follow[fcell], r)
					fcell++
				}
			}
		}
		if slices.Contains(cfg.measures, measureLatency) {
			for i, t := range cfg.transports {
				r, err := b.latency(t, cfg.latencySize)
				if err != nil {
					return fmt.Errorf("%s latency: %v", t, err)
				}
				if round == 0 {
					lat = append(lat, nil)
				}
				lat[i] = append(lat[i], r)
			}
		}
	}
	for _, rs := range alone {
		rep.Alone = append(rep.Alone, medianRound(rs, func(r aloneResult) float64 { return r.RecordsPerSec }))
	}
	for _, rs := range follow {
		rep.Follow = append(rep.Follow, medianRound(rs, func(r followResult) float64 { return r.RecordsPerSec }))
	}
	if len(lat) > 0 {
		rep.Latency = &latencyResult{Size: cfg.latencySize, Rate: cfg.rate, Samples: cfg.samples}
		for _, rs := range lat {
			rep.Latency.Transports = append(rep.Latency.Transports, medianRound(rs, func(r latencyRow) float64 { return r.P50 }))
		}
	}
	return nil
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

// ratios fills in the FileringOver columns.
func (rep *benchReport) ratios() {
	fileringAlone := map[int]float64{}
	for _, r := range rep.Alone {
		if r.Transport == transFilering {
			fileringAlone[r.Size] = r.RecordsPerSec
		}
	}
	for i := range rep.Alone {
		r := &rep.Alone[i]
		if f, ok := fileringAlone[r.Size]; ok && r.Transport != transFilering && r.RecordsPerSec > 0 {
			r.FileringOver = f / r.RecordsPerSec
		}
	}
	fileringFollow := map[int]float64{}
	for _, r := range rep.Follow {
		if r.Transport == transFilering {
			fileringFollow[r.Size] = r.RecordsPerSec
		}
	}
	for i := range rep.Follow {
		r := &rep.Follow[i]
		if f, ok := fileringFollow[r.Size]; ok && r.Transport != transFilering && r.RecordsPerSec > 0 {
			r.FileringOver = f / r.RecordsPerSec
		}
	}
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

// alone measures the producer with no reader process.
func (b *bencher) alone(transport string, size int) (aloneResult, error) {
	l, err := b.open(transport, size)
	if err != nil {
		return aloneResult{}, err
	}
	defer l.cleanup()
	drained := l.drain()
	res, err := pump(l.sender, newFrame(size), b.warmup, b.duration, false)
	var huge *float64
	if transport == transFilering {
		share := hugeShare(l.path)
		huge = &share
	}
	if cerr := l.close(); err == nil {
		err = cerr
	}
	<-drained
	if err != nil {
		return aloneResult{}, err
	}
	secs := res.elapsed.Seconds()
	return aloneResult{
		Size: size, Transport: transport, Records: res.sent, Seconds: secs,
		RecordsPerSec: float64(res.sent) / secs,
		MBPerSec:      float64(res.sent) * float64(size) / secs / 1e6,
		HugeShare:     huge,
	}, nil
}

// hugeShare returns the share of this process's mappings of segments in dir that the
// kernel mapped with huge pages, or -1 when it cannot tell or nothing in dir is mapped.
// A segment being prepared, still under its temporary name, is left out.
func hugeShare(dir string) float64 {
	size, huge, err := ringdir.HugeMapped(dir)
	if err != nil || size == 0 {
		return -1
	}
	return float64(huge) / float64(size)
}

// follow measures the producer sending to a reader in another process.
func (b *bencher) follow(transport string, size int) (followResult, error) {
	l, err := b.open(transport, size)
	if err != nil {
		return followResult{}, err
	}
	defer l.cleanup()
	p, err := b.startPeer(peerConfig{Transport: transport, Path: l.path, Size: size,
		Timeout: b.warmup + b.duration + time.Minute, CPUProfile: b.peerProfile(transport, size, measureFollow)}, l.reader)
	if err != nil {
		l.close()
		return followResult{}, err
	}
	res, err := pump(l.sender, newFrame(size), b.warmup, b.duration, true)
	if cerr := l.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return followResult{}, p.abandon(err)
	}
	rep, err := p.wait()
	if err != nil {
		return followResult{}, err
	}
	r := followResult{Size: size, Transport: transport, Sent: res.sent, Received: rep.Received, Lost: rep.Lost, Warmup: res.warm,
		ProducerPerSec: float64(res.sent) / res.elapsed.Seconds()}
	if transport == transFilering {
		r.SegmentSize, r.Segments = b.ringSegmentSize(size), b.segments
	}
	if rep.Received > res.sent {
		return r, fmt.Errorf("the reader received %d measured records, %d were sent", rep.Received, res.sent)
	}
	end := time.Unix(0, rep.End)
	span := end.Sub(res.start) // wall clock: the reader's stamps come from another process
	r.Seconds = span.Seconds()
	r.LagMS = float64(end.Sub(res.start.Add(res.elapsed))) / 1e6
	if span > 0 {
		r.RecordsPerSec = float64(rep.Received) / span.Seconds()
		r.MBPerSec = r.RecordsPerSec * float64(size) / 1e6
	}
	return r, nil
}

// latency measures the time from send to receipt at a low rate.
func (b *bencher) latency(transport string, size int) (latencyRow, error) {
	l, err := b.open(transport, size)
	if err != nil {
		return latencyRow{}, err
	}
	defer l.cleanup()
	warm := max(b.samples/10, 1)
	expect := time.Duration(float64(warm+b.samples) / b.rate * float64(time.Second))
	p, err := b.startPeer(peerConfig{Transport: transport, Path: l.path, Size: size, Latency: true,
		Timeout: expect + time.Minute, CPUProfile: b.peerProfile(transport, size, measureLatency)}, l.reader)
	if err != nil {
		l.close()
		return latencyRow{}, err
	}
	err = pace(l.sender, newFrame(size), warm, b.samples, b.rate)
	if cerr := l.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return latencyRow{}, p.abandon(err)
	}
	rep, err := p.wait()
	if err != nil {
		return latencyRow{}, err
	}
	if len(rep.Latencies) == 0 {
		return latencyRow{}, fmt.Errorf("the reader received none of the %d timed records", b.samples)
	}
	lat := slices.Clone(rep.Latencies)
	slices.Sort(lat)
	us := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(lat)))) - 1
		return float64(lat[min(max(i, 0), len(lat)-1)]) / 1e3
	}
	return latencyRow{Transport: transport, Received: len(lat), Lost: rep.Lost,
		P50: us(0.50), P90: us(0.90), P99: us(0.99), Max: us(1)}, nil
}

func (b *bencher) peerProfile(transport string, size int, measure string) string {
	if b.cpuprofile == "" {
		return ""
	}
	return fmt.Sprintf("%s.%s-%s-%s", b.cpuprofile, transport, ramdisk.FormatSize(int64(size)), measure)
}

// ringSegmentSize is the segment size of the rings for records of size bytes: the
// configured one, or more so that a segment holds at least 16 records.
func (b *bencher) ringSegmentSize(size int) int64 {
	need := int64(segment.HeaderSize + 16*segment.RecordSpan(size))
	need = (need + segment.PageSize - 1) / segment.PageSize * segment.PageSize
	return min(max(b.segmentSize, need), segment.MaxSegmentSize)
}

// frame is one benchmark record: a 4-byte little-endian length, then the payload.
type frame []byte

func newFrame(size int) frame {
	f := make(frame, frameHeader+size)
	binary.LittleEndian.PutUint32(f, uint32(size))
	for i := frameHeader + minBenchSize; i < len(f); i++ {
		f[i] = byte(i*131 + 7)
	}
	return f
}

// set writes the words at the start of the payload.
func (f frame) set(seq uint64, sent int64, phase uint64) {
	p := f[frameHeader:]
	binary.LittleEndian.PutUint64(p[payloadSeq:], seq)
	binary.LittleEndian.PutUint64(p[payloadSent:], uint64(sent))
	binary.LittleEndian.PutUint64(p[payloadPhase:], phase)
}

// sender is the producer's end of a transport.
type sender interface {
	// send delivers one record, f: for filering its payload, for the others the whole frame.
	send(f frame) error
	// close ends the stream: readers see the end of the data.
	close() error
}

// link is a transport set up for one measurement.
type link struct {
	sender
	path   string   // the ring directory, or the rename baseline's directory
	reader *os.File // the read end of a pipe or socket, for a reader
	remove string   // a directory to remove at cleanup
}

// drain starts a goroutine that reads and discards what the reader end receives, for the
// pipe and socket when no reader process runs. The channel is closed when it stops, at
// the end of the stream.
func (l *link) drain() <-chan struct{} {
	done := make(chan struct{})
	if l.reader == nil {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		buf := make([]byte, 1<<20)
		fd := int(l.reader.Fd())
		for {
			n, err := unix.Read(fd, buf)
			if err == unix.EINTR {
				continue
			}
			if n <= 0 {
				return
			}
		}
	}()
	return done
}

// cleanup releases what open made and the producer has not closed.
func (l *link) cleanup() {
	if l.reader != nil {
		l.reader.Close()
	}
	if l.remove != "" {
		os.RemoveAll(l.remove)
	}
}

// open sets up transport for records of size bytes.
func (b *bencher) open(transport string, size int) (*link, error) {
	switch transport {
	case transFilering:
		dir, err := os.MkdirTemp(b.dir, "ring-")
		if err != nil {
			return nil, err
		}
		w, err := publish.Open(dir, publish.Options{SegmentSize: b.ringSegmentSize(size), Segments: b.segments})
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		return &link{sender: ringSender{w}, path: dir, remove: dir}, nil
	case transPipe:
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return nil, fmt.Errorf("pipe: %v", err)
		}
		return &link{sender: &fdSender{fd: p[1], name: "pipe"}, reader: os.NewFile(uintptr(p[0]), "pipe")}, nil
	case transSocket:
		p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("socketpair: %v", err)
		}
		return &link{sender: &fdSender{fd: p[1], name: "socket"}, reader: os.NewFile(uintptr(p[0]), "socket")}, nil
	case transRename:
		dir, err := os.MkdirTemp(b.dir, "rename-")
		if err != nil {
			return nil, err
		}
		s, err := newRenameSender(dir, frameHeader+size, b.buffer)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		return &link{sender: s, path: dir, remove: dir}, nil
	}
	return nil, fmt.Errorf("unknown transport %q", transport)
}

// ringSender appends each record to a ring.
type ringSender struct{ w *publish.Writer }

func (s ringSender) send(f frame) error {
	_, err := s.w.Append(f[frameHeader:])
	return err
}

func (s ringSender) close() error { return s.w.Close() }

// fdSender writes each frame to a blocking pipe or socket with one write(2), so that the
// record is with the reader's kernel buffer when send returns, as an appended record is
// in the ring.
type fdSender struct {
	fd   int
	name string
}

func (s *fdSender) send(f frame) error {
	b := []byte(f)
	for len(b) > 0 {
		n, err := unix.Write(s.fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			// %v, not %w: a closed reader (EPIPE) is a failure here, not the quiet end
			// of a pipeline that run treats it as.
			return fmt.Errorf("write %s: %v", s.name, err)
		}
		b = b[n:]
	}
	return nil
}

func (s *fdSender) close() error {
	if s.fd < 0 {
		return nil
	}
	err := unix.Close(s.fd)
	s.fd = -1
	if err != nil {
		return fmt.Errorf("close %s: %v", s.name, err)
	}
	return nil
}

// renameSender is the rewrite-and-rename baseline: it keeps the last records that fit in
// its buffer (at least one), and on every record writes them all, oldest first, to a
// temporary file in the same directory and renames that over the target.
type renameSender struct {
	dirfd    int
	frameLen int
	slots    int
	win      []byte // slots frames, used as a ring
	count    int    // frames sent
}

func newRenameSender(dir string, frameLen, buffer int) (*renameSender, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	slots := max(buffer/frameLen, 1)
	s := &renameSender{dirfd: fd, frameLen: frameLen, slots: slots, win: make([]byte, slots*frameLen)}
	// The reader's file exists, empty, before the first record.
	if err := s.write(nil); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return s, nil
}

func (s *renameSender) send(f frame) error {
	i := s.count % s.slots
	copy(s.win[i*s.frameLen:], f)
	s.count++
	if s.count <= s.slots {
		return s.write([][]byte{s.win[:s.count*s.frameLen]})
	}
	oldest := (s.count % s.slots) * s.frameLen
	return s.write([][]byte{s.win[oldest:], s.win[:oldest]})
}

// write replaces the target with a file holding parts.
func (s *renameSender) write(parts [][]byte) error {
	fd, err := unix.Openat(s.dirfd, renameTemp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %v", renameTemp, err)
	}
	want := 0
	for _, p := range parts {
		want += len(p)
	}
	if want > 0 {
		n, err := unix.Writev(fd, parts)
		if err == nil && n != want {
			err = io.ErrShortWrite
		}
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("write %s: %v", renameTemp, err)
		}
	}
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("close %s: %v", renameTemp, err)
	}
	if err := unix.Renameat(s.dirfd, renameTemp, s.dirfd, renameTarget); err != nil {
		return fmt.Errorf("rename %s: %v", renameTemp, err)
	}
	return nil
}

func (s *renameSender) close() error {
	if s.dirfd < 0 {
		return nil
	}
	err := unix.Close(s.dirfd)
	s.dirfd = -1
	return err
}

// pumpResult describes a throughput run's measured part.
type pumpResult struct {
	warm    uint64        // warm-up records sent
	sent    uint64        // measured records sent
	start   time.Time     // just before the first measured record was sent
	elapsed time.Duration // from start to just after the last measured record was sent
}

// pump sends records as fast as s takes them: warm-up records for warm, then measured
// ones for d, then, when end is set, the end record.
func pump(s sender, f frame, warm, d time.Duration, end bool) (pumpResult, error) {
	var seq uint64
	run := func(phase uint64, d time.Duration) (pumpResult, error) {
		start := time.Now()
		deadline := start.Add(d)
		var n uint64
		for {
			for range timeCheckEvery {
				seq++
				f.set(seq, 0, phase)
				if err := s.send(f); err != nil {
					return pumpResult{}, err
				}
			}
			n += timeCheckEvery
			if now := time.Now(); !now.Before(deadline) {
				return pumpResult{sent: n, start: start, elapsed: now.Sub(start)}, nil
			}
		}
	}
	w, err := run(phaseWarm, warm)
	if err != nil {
		return pumpResult{}, err
	}
	res, err := run(phaseMeasured, d)
	res.warm = w.sent
	if err != nil || !end {
		return res, err
	}
	f.set(seq+1, 0, phaseEnd)
	return res, s.send(f)
}

// pace sends warm and then samples records at rate per second, each stamped with the
// time it is sent, and then the end record. A send that is late does not make the next
// ones closer together.
func pace(s sender, f frame, warm, samples int, rate float64) error {
	interval := time.Duration(float64(time.Second) / rate)
	next := time.Now()
	var seq uint64
	for i := range warm + samples {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		phase := uint64(phaseMeasured)
		if i < warm {
			phase = phaseWarm
		}
		seq++
		now := time.Now()
		f.set(seq, now.UnixNano(), phase)
		if err := s.send(f); err != nil {
			return err
		}
		next = next.Add(interval)
		if next.Before(now) {
			next = now.Add(interval)
		}
	}
	f.set(seq+1, time.Now().UnixNano(), phaseEnd)
	return s.send(f)
}

// peerConfig tells a reader process what to read.
type peerConfig struct {
	Transport string `json:"transport"`
	// Path is the ring directory, or the rename baseline's directory. A pipe or socket
	// is the reader's descriptor 4.
	Path       string        `json:"path,omitempty"`
	Size       int           `json:"size"`
	Latency    bool          `json:"latency,omitempty"` // record the latency of every measured record
	Timeout    time.Duration `json:"timeout"`
	CPUProfile string        `json:"cpuprofile,omitempty"`
}

// peerReport is what a reader process received, written as one JSON line to its
// descriptor 3 after the line "ready".
type peerReport struct {
	Received  uint64  `json:"received"`            // measured records received
	Lost      uint64  `json:"lost"`                // records of the stream never received
	End       int64   `json:"end"`                 // ns since the epoch when the end record arrived
	Latencies []int64 `json:"latencies,omitempty"` // ns from send to receipt, measured records
}

// peer is a running reader process.
type peer struct {
	cmd    *exec.Cmd
	ctl    *os.File
	rd     *bufio.Reader
	stderr bytes.Buffer
	cancel context.CancelFunc
	forget func() // tells the bencher it has ended
}

// startPeer starts a reader process and waits until it is ready to receive. data is the
// read end of a pipe or socket, or nil.
func (b *bencher) startPeer(cfg peerConfig, data *os.File) (*peer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start reader process: %w", err)
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	p := &peer{ctl: ctlR, rd: bufio.NewReader(ctlR), cancel: cancel}
	p.cmd = exec.CommandContext(ctx, exe, "bench-reader", cfg.Transport)
	p.cmd.Env = append(os.Environ(), benchPeerEnv+"="+string(js))
	p.cmd.Stderr = &p.stderr
	p.cmd.ExtraFiles = []*os.File{ctlW}
	if data != nil {
		p.cmd.ExtraFiles = append(p.cmd.ExtraFiles, data)
	}
	b.mu.Lock()
	if b.stopped {
		err = errors.New("interrupted")
	} else if err = p.cmd.Start(); err == nil {
		b.peer = p
		p.forget = func() {
			b.mu.Lock()
			b.peer = nil
			b.mu.Unlock()
		}
	}
	b.mu.Unlock()
	ctlW.Close()
	if data != nil {
		data.Close() // the reader process holds it now; the stream ends when it closes it
	}
	if err != nil {
		cancel()
		ctlR.Close()
		return nil, fmt.Errorf("start reader process: %w", err)
	}
	line, err := p.rd.ReadString('\n')
	if err != nil || line != "ready\n" {
		p.wait()
		return nil, fmt.Errorf("reader process did not start: %s", p.failure(err))
	}
	return p, nil
}

// wait waits for the reader's report and for it to exit.
func (p *peer) wait() (peerReport, error) {
	defer p.cancel()
	defer p.ctl.Close()
	if p.forget != nil {
		defer p.forget()
	}
	var rep peerReport
	derr := json.NewDecoder(p.rd).Decode(&rep)
	werr := p.cmd.Wait()
	if werr != nil {
		return rep, fmt.Errorf("reader process: %s", p.failure(werr))
	}
	if derr != nil {
		return rep, fmt.Errorf("reader process: report: %v", derr)
	}
	return rep, nil
}

// abandon stops the reader after the producer failed with err, which it returns, unless
// the reader had failed first and said why: that explains the producer's failure.
func (p *peer) abandon(err error) error {
	p.cancel()
	p.wait()
	if msg := strings.TrimSpace(p.stderr.String()); msg != "" {
		return fmt.Errorf("reader process: %s", msg)
	}
	return err
}

// failure describes why the reader failed: what it printed, or err.
func (p *peer) failure(err error) string {
	if msg := strings.TrimSpace(p.stderr.String()); msg != "" {
		return msg
	}
	if err == nil {
		err = errors.New("no report")
	}
	return err.Error()
}

// runBenchPeer is the reader process: it reads the stream cfg describes and reports
// what it received. It returns the exit status.
func runBenchPeer(js string) int {
	var cfg peerConfig
	if err := json.Unmarshal([]byte(js), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "filering bench reader: %s: %v\n", benchPeerEnv, err)
		return 2
	}
	ctl := os.NewFile(3, "control")
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "filering bench reader: %v\n", err)
			return 1
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	t := &tally{size: cfg.Size, latency: cfg.Latency, next: 1}
	ready := func() error {
		_, err := io.WriteString(ctl, "ready\n")
		return err
	}
	var err error
	switch cfg.Transport {
	case transFilering:
		err = readRing(ctx, cfg.Path, t, ready)
	case transPipe, transSocket:
		err = readStream(os.NewFile(4, cfg.Transport), t, ready)
	case transRename:
		err = readRenamed(ctx, cfg.Path, t, ready)
	default:
		err = fmt.Errorf("unknown transport %q", cfg.Transport)
	}
	if err == nil {
		err = json.NewEncoder(ctl).Encode(t.rep)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "filering bench reader: %s: %v\n", cfg.Transport, err)
		return 1
	}
	return 0
}

// tally counts what a reader receives.
type tally struct {
	size    int
	latency bool
	next    uint64 // the sequence number expected next
	done    bool   // the end record arrived
	rep     peerReport
}

// take accounts for the payload p of the next record received.
func (t *tally) take(p []byte) error {
	if len(p) != t.size {
		return fmt.Errorf("record %d has %d bytes, want %d", t.next, len(p), t.size)
	}
	seq := binary.LittleEndian.Uint64(p[payloadSeq:])
	if seq < t.next {
		return fmt.Errorf("record %d after %d", seq, t.next-1)
	}
	t.rep.Lost += seq - t.next
	t.next = seq + 1
	switch binary.LittleEndian.Uint64(p[payloadPhase:]) {
	case phaseMeasured:
		t.rep.Received++
		if t.latency {
			sent := int64(binary.LittleEndian.Uint64(p[payloadSent:]))
			t.rep.Latencies = append(t.rep.Latencies, time.Now().UnixNano()-sent)
		}
	case phaseEnd:
		t.done = true
		t.rep.End = time.Now().UnixNano()
	}
	return nil
}

// readRing follows the ring in dir with a watch.Follower.
func readRing(ctx context.Context, dir string, t *tally, ready func() error) error {
	r, err := watch.Open(dir)
	if err != nil {
		return err
	}
	defer r.Close()
	f, err := r.Follow(watch.Selection{})
	if err != nil {
		return err
	}
	defer f.Close()
	if err := ready(); err != nil {
		return err
	}
	var lost uint64
	for !t.done && f.Next(ctx) {
		if l, ok := f.Loss(); ok {
			lost += l.Count()
		}
		rec := f.Record()
		if err := t.take(rec.Data); err != nil {
			return err
		}
		if seq := t.next - 1; rec.Seq != seq {
			return fmt.Errorf("ring record %d carries record %d", rec.Seq, seq)
		}
	}
	if !t.done {
		return fmt.Errorf("follow: %v", f.Err())
	}
	if lost != t.rep.Lost {
		return fmt.Errorf("the follower reported %d records lost, but %d are missing", lost, t.rep.Lost)
	}
	return nil
}

// readStream reads length-prefixed frames from a pipe or socket until the end record.
func readStream(in *os.File, t *tally, ready func() error) error {
	defer in.Close()
	if err := ready(); err != nil {
		return err
	}
	br := bufio.NewReaderSize(in, 64<<10)
	var hdr [frameHeader]byte
	buf := make([]byte, t.size)
	for !t.done {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return fmt.Errorf("read %s: %v", in.Name(), err)
		}
		if n := binary.LittleEndian.Uint32(hdr[:]); n != uint32(t.size) {
			return fmt.Errorf("read %s: frame of %d bytes, want %d", in.Name(), n, t.size)
		}
		if _, err := io.ReadFull(br, buf); err != nil {
			return fmt.Errorf("read %s: %v", in.Name(), err)
		}
		if err := t.take(buf); err != nil {
			return err
		}
	}
	return nil
}

// readRenamed is the rename baseline's reader: on every inotify event naming the target
// (or every 10 ms, should events be missed) it reads the whole file and takes the records
// it has not seen yet.
func readRenamed(ctx context.Context, dir string, t *tally, ready func() error) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		return err
	}
	if err := ready(); err != nil {
		return err
	}
	target := filepath.Join(dir, renameTarget)
	poll := time.NewTimer(time.Hour)
	var buf []byte
	for {
		buf, err = readWhole(target, buf)
		if err != nil {
			return err
		}
		for b := buf; len(b) >= frameHeader; {
			n := int(binary.LittleEndian.Uint32(b))
			if n > len(b)-frameHeader || n < minBenchSize {
				return fmt.Errorf("%s: bad frame of %d bytes", target, n)
			}
			p := b[frameHeader : frameHeader+n]
			b = b[frameHeader+n:]
			if binary.LittleEndian.Uint64(p[payloadSeq:]) < t.next {
				continue // seen in an earlier read
			}
			if err := t.take(p); err != nil {
				return err
			}
		}
		if t.done {
			return nil
		}
		poll.Reset(10 * time.Millisecond)
	wait:
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-poll.C:
				break wait
			case <-w.Errors:
				break wait // an overflow: read now
			case ev := <-w.Events:
				if ev.Name == target {
					break wait
				}
			}
		}
		// Coalesce what else is queued: one read sees all of it.
		for drained := false; !drained; {
			select {
			case <-w.Events:
			default:
				drained = true
			}
		}
	}
}

// readWhole reads the file at path into buf, reusing it.
func readWhole(path string, buf []byte) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return buf[:0], &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, max(64<<10, cap(buf)))
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return buf, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

// describeMachine says what the benchmark runs on.
func describeMachine() benchMachine {
	m := benchMachine{GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, NumCPU: runtime.NumCPU(),
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

// print writes the report as tables.
func (rep *benchReport) print(out io.Writer) error {
	m, s := rep.Machine, rep.Settings
	fs := "tmpfs"
	if !rep.TmpFS {
		fs = "not tmpfs"
	}
	bw := bufio.NewWriter(out)
	fmt.Fprintf(bw, "machine:   %s/%s, %d CPUs, %s, %s, %s\n", m.GOOS, m.GOARCH, m.NumCPU, m.Kernel, m.CPU, m.GoVersion)
	fmt.Fprintf(bw, "load:      %s before, %s after (1, 5, 15 min load averages)\n", rep.LoadStart, rep.LoadEnd)
	fmt.Fprintf(bw, "directory: %s (%s, removed after)\n", rep.Dir, fs)
	fmt.Fprintf(bw, "settings:  %v per throughput run after %v of warm-up; rings of %d segments of %s (more for large records);\n"+
		"           rename rewrites the last %s of records; MB/s counts payload bytes, 1 MB = 10^6 bytes\n%s",
		time.Duration(s.DurationS*1e9), time.Duration(s.WarmupS*1e9), s.Segments, ramdisk.FormatSize(s.SegmentSize),
		ramdisk.FormatSize(int64(s.Buffer)), roundsNote(s.Rounds))

	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', tabwriter.AlignRight)
	if len(rep.Alone) > 0 {
		fmt.Fprintf(bw, "\n1. Producer alone (pipe and socket drained by a goroutine in the producer's process)\n\n")
		fmt.Fprintln(tw, "size\ttransport\trecords\trecords/s\tMB/s\tfilering ÷ this\thuge pages\t")
		for _, r := range rep.Alone {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%.1f\t%s\t%s\t\n", ramdisk.FormatSize(int64(r.Size)), r.Transport,
				r.Records, siRate(r.RecordsPerSec), r.MBPerSec, ratio(r.FileringOver), hugeColumn(r.HugeShare))
		}
		tw.Flush()
	}
	if len(rep.Follow) > 0 {
		fmt.Fprintf(bw, "\n2. Producer to a reader in another process (as fast as the producer goes; delivered = received ÷ time\n"+
			"   from first send to last receipt; lost counts the whole stream, warm-up included)\n\n")
		fmt.Fprintln(tw, "size\ttransport\tsent\treceived\tlost\tproducer rec/s\tdelivered rec/s\tMB/s\tlag ms\tfilering ÷ this\t")
		for _, r := range rep.Follow {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\t%.1f\t%.1f\t%s\t\n", ramdisk.FormatSize(int64(r.Size)), r.Transport,
				r.Sent, r.Received, r.Lost, siRate(r.ProducerPerSec), siRate(r.RecordsPerSec), r.MBPerSec, r.LagMS, ratio(r.FileringOver))
		}
		tw.Flush()
	}
	if l := rep.Latency; l != nil {
		fmt.Fprintf(bw, "\n3. Wake latency: %s records at %g/s, %d timed after %d of warm-up; send to receipt in the reader process, µs\n\n",
			ramdisk.FormatSize(int64(l.Size)), l.Rate, l.Samples, max(l.Samples/10, 1))
		fmt.Fprintln(tw, "transport\treceived\tlost\tp50\tp90\tp99\tmax\tfilering p50 ÷ this\t")
		for _, r := range l.Transports {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t\n", r.Transport, r.Received, r.Lost,
				r.P50, r.P90, r.P99, r.Max, ratio(r.FileringOver))
		}
		tw.Flush()
	}
	return bw.Flush()
}

// hugeColumn formats an aloneResult's HugeShare: a percentage, "?" when unknown, "-"
// for the baselines.
func hugeColumn(share *float64) string {
	switch {
	case share == nil:
		return "-"
	case *share < 0:
		return "?"
	}
	return fmt.Sprintf("%.0f%%", 100**share)
}

func roundsNote(n int) string {
	if n == 1 {
		return ""
	}
	return fmt.Sprintf("           %d interleaved rounds; each row is its median round (by records/s, or p50)\n", n)
}

// siRate prints a rate with an SI prefix: 950, 84.3k, 21.4M.
func siRate(x float64) string {
	switch {
	case x >= 1e9:
		return fmt.Sprintf("%.2fG", x/1e9)
	case x >= 1e6:
		return fmt.Sprintf("%.2fM", x/1e6)
	case x >= 1e3:
		return fmt.Sprintf("%.1fk", x/1e3)
	}
	return fmt.Sprintf("%.0f", x)
}

func ratio(x float64) string {
	switch {
	case x == 0:
		return "-"
	case x >= 100:
		return fmt.Sprintf("%.0fx", x)
	case x >= 10:
		return fmt.Sprintf("%.1fx", x)
	}
	return fmt.Sprintf("%.2fx", x)
}
