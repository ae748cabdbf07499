// Package bench is `filering bench`: it measures filering on the machine it runs on,
// side by side with the physical limit (raw: a bare ring in a shared mapping, one copy
// and one atomic store per record, see raw.go) and three other ways of moving a live
// stream of records to local readers: a pipe, a unix stream socket, and rewriting the
// whole recent buffer to a file and renaming it over the one readers open.
// docs/BENCHMARKS.md shows its output and explains each figure.
//
// The files follow the roles: config.go what a run measures; run.go the run, interleaved
// measurement by measurement; measure.go the three measurements and the producer's
// loops; transport.go what every transport provides, and ring.go, raw.go, stream.go
// (pipe and socket) and rename.go each transport's sender and reader; peer.go the
// reader process; report.go and print.go the results, as JSON and as tables.
//
// Readers in another process are the running binary, started again with their
// configuration in the environment variable PeerEnv: a binary that calls Run must call
// RunPeer first thing when that variable is set (see PeerEnv).
package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/pprof"

	"github.com/filering/filering/ramdisk"
)

// Run makes the measurements cfg asks for and returns their report, with the ratios of
// filering to each baseline filled in. It works in a new directory inside cfg.Dir,
// removed when it returns; notices (such as a directory not on tmpfs) go to notices.
//
// It runs in the calling goroutine and starts one reader process at a time. Until it
// returns, SIGINT and SIGTERM kill the reader process, remove the working directory and
// end the process with status 1: the rings would otherwise stay in memory on tmpfs.
func Run(cfg Config, notices io.Writer) (*Report, error) {
	parent := cfg.Dir
	if parent == "" {
		parent = os.TempDir()
		if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
			parent = "/dev/shm"
		}
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	dir, err := os.MkdirTemp(parent, "filering-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(dir)
	b := &bencher{Config: &cfg, dir: dir, stderr: notices}
	defer b.interruptible()()
	rep := &Report{Machine: describeMachine(), Dir: dir, Settings: Settings{
		DurationS: cfg.Duration.Seconds(), WarmupS: cfg.Warmup.Seconds(), Sizes: cfg.Sizes,
		Transports: cfg.Transports, Rate: cfg.Rate, Samples: cfg.Samples, LatencySize: cfg.LatencySize,
		Buffer: cfg.Buffer, SegmentSize: cfg.SegmentSize, Segments: cfg.Segments, Rounds: cfg.Rounds,
	}}
	if info, err := ramdisk.Check(dir); err == nil {
		rep.TmpFS = info.TmpFS
		if !info.TmpFS {
			fmt.Fprintf(b.stderr, "filering: warning: %s is on %s, not tmpfs: filering and rename figures measure that file system\n", dir, info.FSType)
		}
	}

	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}

	rep.LoadStart = loadAverage()
	if err := b.run(rep); err != nil {
		return nil, fmt.Errorf("bench: %v", err)
	}
	rep.LoadEnd = loadAverage()
	rep.ratios()
	return rep, nil
}

// WriteJSON writes the report as one indented JSON document, what `filering bench
// --json` prints.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}
