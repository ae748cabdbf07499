package main

import (
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/filering/filering/internal/bench"
	"github.com/filering/filering/internal/cmdline"
	"github.com/filering/filering/ramdisk"
	"github.com/filering/filering/segment"
)

// init turns the process into a reader of `filering bench` when the benchmark started
// it as one (see bench.PeerEnv). It must run before main: a test binary started again has
// no `bench-reader` command to run.
func init() {
	if cfg, ok := os.LookupEnv(bench.PeerEnv); ok {
		os.Exit(bench.RunPeer(cfg))
	}
}

// benchCommand returns the `filering bench` command.
func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure filering against a raw mmap ring, a pipe, a unix socket and rewrite-and-rename, on this machine",
		Description: "Measures, for each record size and transport, interleaved so that machine noise hits all alike:\n" +
			"  alone:   the producer alone, records/s and MB/s of payload (pipe and socket drained by a goroutine);\n" +
			"  follow:  the producer and a reader in another process: records delivered per second, and records lost;\n" +
			"  latency: at a low rate, the time from send to receipt in the reader process (µs).\n" +
			"filering appends each record with Append, batch gathers 64 and appends them with AppendBatch (not in\n" +
			"latency), spin is filering read by a follower that spins on the ring (watch --spin; not measured alone);\n" +
			"\"x raw\" is a ring's records/s as a share of the raw baseline's.\n" +
			"The raw baseline is the physical limit: a ring of fixed slots in one mapped tmpfs file, one copy and one\n" +
			"atomic store per record, no checksum, clock or manifest; its reader spins, so latency leaves it out.\n" +
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
			&cli.StringFlag{Name: "transports", Value: strings.Join(bench.AllTransports, ","), Usage: "`LIST` of transports to measure, from " + strings.Join(bench.AllTransports, ",")},
			&cli.StringFlag{Name: "measure", Value: strings.Join(bench.AllMeasures, ","), Usage: "`LIST` of measurements to make, from " + strings.Join(bench.AllMeasures, ",")},
			&cli.StringFlag{Name: "dir", Usage: "`DIR`ectory for the rings and files, ideally on tmpfs; the benchmark works in a new directory inside it and removes that (default: /dev/shm)"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON document instead of tables"},
			&cli.StringFlag{Name: "cpuprofile", Hidden: true, Usage: "write the producer's CPU profile to `FILE`, and each reader's to FILE.TRANSPORT-SIZE-MEASUREMENT"},
		},
		Action: benchmark,
	}
}

// parseBenchFlags returns the configuration the flags ask for, or a usage error.
func parseBenchFlags(c *cli.Context) (bench.Config, error) {
	cfg := bench.Config{
		Duration:   c.Duration("duration"),
		Rate:       c.Float64("rate"),
		Samples:    c.Int("samples"),
		Segments:   c.Int("segments"),
		Rounds:     c.Int("rounds"),
		CPUProfile: c.String("cpuprofile"),
		Dir:        c.String("dir"),
	}
	for _, s := range strings.Split(c.String("sizes"), ",") {
		n, err := benchSize("--sizes", s)
		if err != nil {
			return cfg, err
		}
		cfg.Sizes = append(cfg.Sizes, n)
	}
	var err error
	if cfg.LatencySize, err = benchSize("--latency-size", c.String("latency-size")); err != nil {
		return cfg, err
	}
	b, err := ramdisk.ParseSize(c.String("buffer"))
	if err != nil || b < 1 || b > 1<<30 {
		return cfg, cmdline.Usagef("--buffer %q: want a size from 1 byte to 1GiB", c.String("buffer"))
	}
	cfg.Buffer = int(b)
	if cfg.SegmentSize, err = ramdisk.ParseSize(c.String("segment-size")); err != nil || !segment.ValidSize(cfg.SegmentSize) {
		return cfg, cmdline.Usagef("--segment-size %q: want a multiple of 4KiB from 4KiB to 1GiB", c.String("segment-size"))
	}
	if cfg.Segments < segment.MinSegments || cfg.Segments > segment.MaxSegments {
		return cfg, cmdline.Usagef("--segments %d: want %d to %d", cfg.Segments, segment.MinSegments, segment.MaxSegments)
	}
	if cfg.Rounds < 1 || cfg.Rounds > 100 {
		return cfg, cmdline.Usagef("--rounds %d: want 1 to 100", cfg.Rounds)
	}
	if cfg.Duration <= 0 {
		return cfg, cmdline.Usagef("--duration %v: want more than 0", cfg.Duration)
	}
	cfg.Warmup = min(max(cfg.Duration/10, 10*time.Millisecond), time.Second)
	if cfg.Rate <= 0 || cfg.Rate > 1e6 {
		return cfg, cmdline.Usagef("--rate %v: want more than 0 and at most 1000000", cfg.Rate)
	}
	if cfg.Samples < 1 {
		return cfg, cmdline.Usagef("--samples %d: want at least 1", cfg.Samples)
	}
	if cfg.Transports, err = benchList("--transports", c.String("transports"), bench.AllTransports); err != nil {
		return cfg, err
	}
	if cfg.Measures, err = benchList("--measure", c.String("measure"), bench.AllMeasures); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// benchSize reads one record size.
func benchSize(flag, s string) (int, error) {
	n, err := ramdisk.ParseSize(s)
	if err != nil {
		return 0, cmdline.Usagef("%s: %v", flag, err)
	}
	if n < bench.MinSize || n > bench.MaxSize {
		return 0, cmdline.Usagef("%s %q: want %d bytes to %s", flag, s, bench.MinSize, ramdisk.FormatSize(bench.MaxSize))
	}
	return int(n), nil
}

// benchList reads a comma-separated subset of known, and returns it in known's order.
func benchList(flag, s string, known []string) ([]string, error) {
	want := map[string]bool{}
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(known, name) {
			return nil, cmdline.Usagef("%s: unknown %q, want some of %s", flag, name, strings.Join(known, ","))
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

// benchmark is `filering bench`: the measurements, then the report as tables or JSON.
func benchmark(c *cli.Context) error {
	cfg, err := parseBenchFlags(c)
	if err != nil {
		return err
	}
	rep, err := bench.Run(cfg, c.App.ErrWriter)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return rep.WriteJSON(c.App.Writer)
	}
	return rep.Print(c.App.Writer)
}
