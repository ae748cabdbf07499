package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/filering/filering/internal/cmdline"
	"github.com/filering/filering/publish"
	"github.com/filering/filering/watch"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run a live demo: a sample sensor producer and a follower of its ring",
		Description: "Produces simulated temperature readings into a ring on tmpfs and follows them,\n" +
			"printing each as it arrives. While it runs, try in another shell:\n" +
			"  filering cat --last 5 DIR; filering stat DIR; filering watch --format json DIR",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Usage: "ring `DIR`ectory", DefaultText: "$XDG_RUNTIME_DIR/filering-demo, or else a new private directory on /dev/shm, removed at the end"},
			&cli.Float64Flag{Name: "rate", Value: 10, Usage: "`N` readings per second"},
			&cli.DurationFlag{Name: "duration", Usage: "stop after this `DURATION`, e.g. 30s", DefaultText: "until interrupted"},
		},
		Action: demo,
	}
}

func demo(c *cli.Context) error {
	dir, rate := c.String("dir"), c.Float64("rate")
	if rate <= 0 || rate > 1e6 {
		return cmdline.Usagef("--rate %v: want more than 0 and at most 1000000", rate)
	}
	if dir == "" {
		var cleanup func()
		var err error
		if dir, cleanup, err = demoDir(); err != nil {
			return err
		}
		defer cleanup()
	}
	ctx, cancel := cmdline.SignalContext()
	defer cancel()
	if d := c.Duration("duration"); d > 0 {
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	w, err := publish.Open(dir, publish.Options{SegmentSize: 64 << 10, Segments: 8})
	if err != nil {
		return err
	}
	out := c.App.Writer
	fmt.Fprintf(out, "filering demo: producing %.0f readings/s into %s (Ctrl-C to stop)\n", rate, dir)
	fmt.Fprintf(out, "in another shell: filering watch %s   or   filering stat %s\n\n", dir, dir)

	done := make(chan error, 1)
	go func() { done <- sensor(ctx, w, rate) }()

	r, err := watch.Open(dir)
	if err != nil {
		cancel()
		<-done
		w.Close()
		return err
	}
	defer r.Close()
	f, err := r.Follow(watch.Selection{From: w.NextSeq()})
	if err != nil {
		cancel()
		<-done
		w.Close()
		return err
	}
	defer f.Close()
	for f.Next(ctx) {
		rec := f.Record()
		fmt.Fprintf(out, "#%-6d %s  %s °C\n", rec.Seq, time.Unix(0, rec.Time).Format("15:04:05.000"), rec.Data)
	}
	cancel()
	perr := <-done
	if err := w.Close(); perr == nil {
		perr = err
	}
	if perr != nil {
		return perr
	}
	return quiet(ctx, f.Err())
}

// sensor appends simulated temperature readings at rate per second until ctx is done.
func sensor(ctx context.Context, w *publish.Writer, rate float64) error {
	t := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer t.Stop()
	start := time.Now()
	buf := make([]byte, 0, 16)
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			s := now.Sub(start).Seconds()
			v := 21.5 + 3*math.Sin(s/5) + 0.3*math.Sin(float64(i)*1.7)
			if _, err := w.Append(strconv.AppendFloat(buf[:0], v, 'f', 2, 64)); err != nil {
				return err
			}
		}
	}
}

// demoDir picks the demo's ring directory where no other user can have created it
// first: in $XDG_RUNTIME_DIR, which only its user may write, or else in a new directory
// with a random name on tmpfs, which cleanup removes.
func demoDir() (dir string, cleanup func(), err error) {
	if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" {
		if fi, err := os.Stat(rt); err == nil && fi.IsDir() && fi.Mode().Perm()&0o022 == 0 {
			return filepath.Join(rt, "filering-demo"), func() {}, nil
		}
	}
	base := os.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm"
	}
	parent, err := os.MkdirTemp(base, "filering-demo-")
	if err != nil {
		return "", nil, fmt.Errorf("demo: %w", err)
	}
	return filepath.Join(parent, "ring"), func() { os.RemoveAll(parent) }, nil
}
