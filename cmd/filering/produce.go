package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/filering/filering/internal/cmdline"
	"github.com/filering/filering/publish"
	"github.com/filering/filering/ramdisk"
	"github.com/filering/filering/recordio"
	"github.com/filering/filering/segment"
)

func produceCommand() *cli.Command {
	return &cli.Command{
		Name:      "produce",
		Usage:     "append records read from standard input to a ring, creating it if absent",
		ArgsUsage: "DIR",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "input", Value: "lines", Usage: "`FORMAT` of standard input: lines (one record per line) or frames (4-byte little-endian length, then payload)"},
			&cli.StringFlag{Name: "segment-size", Usage: "`SIZE` of each segment of a new ring (4KiB to 1GiB, a multiple of 4KiB)", DefaultText: "2MiB"},
			&cli.IntFlag{Name: "segments", Usage: fmt.Sprintf("the ring retains `N` segments, %d to %d; an existing ring keeps its own unless this is given", segment.MinSegments, segment.MaxSegments), DefaultText: fmt.Sprintf("%d for a new ring", publish.DefaultSegments)},
			&cli.DurationFlag{Name: "seal-after", Usage: "seal the hot segment once it is this `DURATION` old (e.g. 2s), so takers get data at low rates; 0 means never", DefaultText: "0"},
			&cli.BoolFlag{Name: "require-tmpfs", Usage: "refuse to run when DIR is not on tmpfs"},
			&cli.StringFlag{Name: "mode", Value: "0640", Usage: "permissions of the ring's files (octal); the directory gets the same plus search (x) where read is allowed, 0750 for 0640"},
			&cli.StringFlag{Name: "group", Usage: "`GROUP` (name or number) given to the ring directory and its files, e.g. the web server's"},
		},
		Action: produce,
	}
}

func produce(c *cli.Context) error {
	dir, err := cmdline.RingArg(c)
	if err != nil {
		return err
	}
	var opts publish.Options
	if s := c.String("segment-size"); s != "" {
		if opts.SegmentSize, err = ramdisk.ParseSize(s); err != nil {
			return cmdline.Usagef("--segment-size: %v", err)
		}
		if !segment.ValidSize(opts.SegmentSize) {
			return cmdline.Usagef("--segment-size %s: want a multiple of 4KiB from 4KiB to 1GiB", s)
		}
	}
	opts.Segments = c.Int("segments")
	if c.IsSet("segments") && (opts.Segments < segment.MinSegments || opts.Segments > segment.MaxSegments) {
		return cmdline.Usagef("--segments %d: want %d to %d", opts.Segments, segment.MinSegments, segment.MaxSegments)
	}
	opts.SealAfter = c.Duration("seal-after")
	if opts.SealAfter < 0 {
		return cmdline.Usagef("--seal-after %v: must not be negative", opts.SealAfter)
	}
	if opts.FileMode, opts.DirMode, err = parseMode(c.String("mode")); err != nil {
		return err
	}
	if g := c.String("group"); g != "" {
		if opts.GID, err = lookupGroup(g); err != nil {
			return err
		}
	}
	input := c.String("input")
	if input != "lines" && input != "frames" {
		return cmdline.Usagef("--input %q: want lines or frames", input)
	}
	stderr := c.App.ErrWriter
	opts.Logf = func(format string, args ...any) { fmt.Fprintf(stderr, "filering: "+format+"\n", args...) }
	if err := checkTmpfs(dir, opts, c.Bool("require-tmpfs"), opts.Logf); err != nil {
		return err
	}

	w, err := publish.Open(dir, opts)
	if err != nil {
		return err
	}
	// SIGINT and SIGTERM seal the hot segment and end the producer with status 0, even
	// while it waits for input.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	stopped := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			w.Close()
			os.Exit(0)
		case <-stopped:
		}
	}()
	defer close(stopped)

	sk := publish.NewSink(w, opts.Logf)
	if input == "lines" {
		err = recordio.ReadLines(c.App.Reader, "standard input", sk.AppendBatch)
	} else {
		err = recordio.ReadFrames(c.App.Reader, "standard input", segment.MaxPayload(w.SegmentSize()), sk.AppendBatch)
	}
	if n := sk.Dropped(); n > 0 {
		opts.Logf("%s: %d records read at the end were dropped for want of room", dir, n)
	}
	if errors.Is(err, publish.ErrClosed) {
		select {} // a signal closed the writer; its handler ends the process with status 0
	}
	if cerr := w.Close(); err == nil && !errors.Is(cerr, publish.ErrClosed) {
		err = cerr
	}
	return err
}

// checkTmpfs warns (or, with require, refuses) when dir is not on tmpfs or the ring
// will not fit in the room left there.
func checkTmpfs(dir string, opts publish.Options, require bool, logf func(string, ...any)) error {
	info, err := ramdisk.Check(dir)
	if err != nil {
		if require {
			return fmt.Errorf("%s: cannot tell whether it is on tmpfs: %w", dir, err)
		}
		return nil
	}
	if !info.TmpFS {
		if require {
			return fmt.Errorf("%s: not on tmpfs (file system %s); mount one with `filering ramdisk mount`", dir, info.FSType)
		}
		logf("warning: %s is on %s, not tmpfs: every record is written to that file system", dir, info.FSType)
	}
	if !info.Exists {
		size := opts.SegmentSize
		if size == 0 {
			size = publish.DefaultSegmentSize
		}
		n := opts.Segments
		if n == 0 {
			n = publish.DefaultSegments
		}
		if err := info.Fits(size, n); err != nil {
			logf("warning: %v", err)
		}
	}
	return nil
}

// parseMode parses an octal file mode and derives the directory mode from it: search
// permission wherever read permission is given.
func parseMode(s string) (file, dir os.FileMode, err error) {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o777 || n&0o600 != 0o600 || n&0o022 != 0 {
		return 0, 0, cmdline.Usagef("--mode %q: want an octal mode such as 0640 that lets the owner read and write, and nobody else write", s)
	}
	file = os.FileMode(n)
	dir = file | 0o700
	if file&0o040 != 0 {
		dir |= 0o010
	}
	if file&0o004 != 0 {
		dir |= 0o001
	}
	return file, dir, nil
}

// lookupGroup resolves a group name or number.
func lookupGroup(g string) (int, error) {
	if n, err := strconv.Atoi(g); err == nil && n >= 0 {
		return n, nil
	}
	grp, err := user.LookupGroup(g)
	if err != nil {
		return 0, cmdline.Usagef("--group %q: %v", g, err)
	}
	return strconv.Atoi(grp.Gid)
}
