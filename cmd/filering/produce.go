package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/filering/filering/publish"
	"github.com/filering/filering/ramdisk"
	"github.com/filering/filering/segment"
)

func produceCommand() *cli.Command {
	return &cli.Command{
		Name:      "produce",
		Usage:     "append records read from standard input to a ring, creating it if absent",
		ArgsUsage: "DIR",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "input", Value: "lines", Usage: "`FORMAT` of standard input: lines (one record per line) or frames (4-byte little-endian length, then payload)"},
			&cli.StringFlag{Name: "segment-size", Usage: "`SIZE` of each segment of a new ring (4KiB to 1GiB, a multiple of 4KiB; default 2MiB)"},
			&cli.IntFlag{Name: "segments", Usage: fmt.Sprintf("how many segments the ring retains, %d to %d (a new ring: %d; an existing ring keeps its own unless this is given)", segment.MinSegments, segment.MaxSegments, publish.DefaultSegments)},
			&cli.DurationFlag{Name: "seal-after", Usage: "seal the hot segment once it is this old, so takers get data at low rates"},
			&cli.BoolFlag{Name: "require-tmpfs", Usage: "refuse to run when DIR is not on tmpfs"},
			&cli.StringFlag{Name: "mode", Value: "0640", Usage: "permissions of the ring's files (octal); the directory gets the same plus search (x) where read is allowed, 0750 for 0640"},
			&cli.StringFlag{Name: "group", Usage: "`GROUP` (name or number) given to the ring directory and its files, e.g. the web server's"},
		},
		Action: produce,
	}
}

func produce(c *cli.Context) error {
	dir, err := ringArg(c)
	if err != nil {
		return err
	}
	var opts publish.Options
	if s := c.String("segment-size"); s != "" {
		if opts.SegmentSize, err = ramdisk.ParseSize(s); err != nil {
			return usagef("--segment-size: %v", err)
		}
		if !segment.ValidSize(opts.SegmentSize) {
			return usagef("--segment-size %s: want a multiple of 4KiB from 4KiB to 1GiB", s)
		}
	}
	opts.Segments = c.Int("segments")
	if c.IsSet("segments") && (opts.Segments < segment.MinSegments || opts.Segments > segment.MaxSegments) {
		return usagef("--segments %d: want %d to %d", opts.Segments, segment.MinSegments, segment.MaxSegments)
	}
	opts.SealAfter = c.Duration("seal-after")
	if opts.SealAfter < 0 {
		return usagef("--seal-after %v: must not be negative", opts.SealAfter)
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
		return usagef("--input %q: want lines or frames", input)
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

	sk := &sink{w: w, logf: opts.Logf}
	if input == "lines" {
		err = readLines(c.App.Reader, sk)
	} else {
		err = readFrames(bufio.NewReaderSize(c.App.Reader, 256<<10), sk, segment.MaxPayload(w.SegmentSize()))
	}
	if sk.dropped > 0 {
		opts.Logf("%s: %d records read at the end were dropped for want of room", dir, sk.dropped)
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

// readLines appends one record per line, without its newline. A last line without a
// newline is a record too. It reads large chunks and appends the complete lines of each
// with one AppendBatch, so a burst of lines costs no system call per line.
func readLines(in io.Reader, w *sink) error {
	buf := make([]byte, 256<<10)
	var lines [][]byte
	have := 0
	for {
		n, err := in.Read(buf[have:])
		have += n
		lines = lines[:0]
		start := 0
		for {
			i := bytes.IndexByte(buf[start:have], '\n')
			if i < 0 {
				break
			}
			lines = append(lines, buf[start:start+i])
			start += i + 1
		}
		if len(lines) > 0 {
			if aerr := w.appendBatch(lines); aerr != nil {
				return aerr
			}
		}
		have = copy(buf, buf[start:have])
		if have == len(buf) {
			// One line longer than the buffer: make room for the rest of it.
			buf = append(buf, make([]byte, len(buf))...)
		}
		switch {
		case errors.Is(err, io.EOF):
			if have > 0 {
				return w.appendBatch([][]byte{buf[:have]})
			}
			return nil
		case err != nil:
			return fmt.Errorf("read standard input: %w", err)
		}
	}
}

// readFrames appends one record per frame of in.
func readFrames(in *bufio.Reader, w *sink, limit int) error {
	fr := frameReader{in: in, limit: limit}
	for {
		p, err := fr.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := w.appendBatch([][]byte{p}); err != nil {
			return err
		}
	}
}

// sink appends records to a Writer. When the file system has no room for a new segment
// even after every older segment was dropped, it drops the incoming records instead of
// ending the producer, says so once, and, when room frees and records are appended
// again, says exactly how many were dropped. A producer that feeds a live ring keeps
// running through a full file system.
type sink struct {
	w       *publish.Writer
	logf    func(string, ...any)
	dropped uint64 // records dropped since the file system filled up
}

func (s *sink) appendBatch(ps [][]byte) error {
	_, n, err := s.w.AppendBatch(ps)
	if n > 0 && s.dropped > 0 {
		s.logf("%s: room again: appending from sequence %d on; %d records read meanwhile were dropped (never appended, so never numbered)",
			s.w.Dir(), s.w.NextSeq()-uint64(n), s.dropped)
		s.dropped = 0
	}
	if !errors.Is(err, publish.ErrNoSpace) {
		return err
	}
	if s.dropped == 0 {
		s.logf("%s: %v; dropping records read until there is room", s.w.Dir(), err)
	}
	s.dropped += uint64(len(ps) - n)
	return nil
}

// frameReader decodes the frames format: a 4-byte little-endian length, then that many
// bytes. A length beyond limit is an error naming the byte offset of the frame, so that
// the records before it are kept and the user knows where the input went wrong.
type frameReader struct {
	in    *bufio.Reader
	limit int
	off   int64
	buf   []byte
}

// next returns the next frame's payload, valid until the next call; io.EOF at a clean
// end of input.
func (fr *frameReader) next() ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(fr.in, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("standard input: truncated frame header at byte offset %d", fr.off)
	}
	n := binary.LittleEndian.Uint32(hdr[:])
	if uint64(n) > uint64(fr.limit) {
		return nil, fmt.Errorf("standard input: frame at byte offset %d has length %d, more than the %d bytes a segment holds", fr.off, n, fr.limit)
	}
	if cap(fr.buf) < int(n) {
		fr.buf = make([]byte, n)
	}
	p := fr.buf[:n]
	if _, err := io.ReadFull(fr.in, p); err != nil {
		return nil, fmt.Errorf("standard input: truncated frame at byte offset %d: want %d bytes", fr.off, n)
	}
	fr.off += 4 + int64(n)
	return p, nil
}

// signalContext returns a context cancelled by SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

// parseMode parses an octal file mode and derives the directory mode from it: search
// permission wherever read permission is given.
func parseMode(s string) (file, dir os.FileMode, err error) {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o777 || n&0o600 != 0o600 || n&0o022 != 0 {
		return 0, 0, usagef("--mode %q: want an octal mode such as 0640 that lets the owner read and write, and nobody else write", s)
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
		return 0, usagef("--group %q: %v", g, err)
	}
	return strconv.Atoi(grp.Gid)
}
