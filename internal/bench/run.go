package bench

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"

	"github.com/filering/filering/ramdisk"
)

// bencher runs the measurements of one invocation.
type bencher struct {
	*Config
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

// run makes the measurements and adds them to rep. It runs them interleaved: every
// transport for one size and measurement, then the next, and every round in turn, so
// that a noisy spell on the machine hits them alike.
func (b *bencher) run(rep *Report) error {
	cfg := b.Config
	var alone [][]AloneResult   // per cell, one per round
	var follow [][]FollowResult // per cell, one per round
	var lat [][]LatencyRow      // per transport, one per round
	for round := range cfg.Rounds {
		var cell, fcell int
		for _, size := range cfg.Sizes {
			if slices.Contains(cfg.Measures, measureAlone) {
				for _, t := range cfg.Transports {
					if !takesPart(t, measureAlone) {
						continue
					}
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
			if slices.Contains(cfg.Measures, measureFollow) {
				for _, t := range cfg.Transports {
					if !takesPart(t, measureFollow) {
						continue
					}
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
		if slices.Contains(cfg.Measures, measureLatency) {
			var i int
			for _, t := range cfg.Transports {
				if !takesPart(t, measureLatency) {
					continue
				}
				r, err := b.latency(t, cfg.LatencySize)
				if err != nil {
					return fmt.Errorf("%s latency: %v", t, err)
				}
				if round == 0 {
					lat = append(lat, nil)
				}
				lat[i] = append(lat[i], r)
				i++
			}
		}
	}
	for _, rs := range alone {
		rep.Alone = append(rep.Alone, medianRound(rs, func(r AloneResult) float64 { return r.RecordsPerSec }))
	}
	for _, rs := range follow {
		rep.Follow = append(rep.Follow, medianRound(rs, func(r FollowResult) float64 { return r.RecordsPerSec }))
	}
	if len(lat) > 0 {
		rep.Latency = &LatencyResult{Size: cfg.LatencySize, Rate: cfg.Rate, Samples: cfg.Samples}
		for _, rs := range lat {
			rep.Latency.Transports = append(rep.Latency.Transports, medianRound(rs, func(r LatencyRow) float64 { return r.P50 }))
		}
	}
	return nil
}
