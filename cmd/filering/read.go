package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/filering/filering/internal/cmdline"
	"github.com/filering/filering/recordio"
	"github.com/filering/filering/watch"
)

func selectionFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "last", Usage: "only the last `N` records"},
		&cli.Uint64Flag{Name: "from", Usage: "only records from sequence number `SEQ` on"},
		&cli.DurationFlag{Name: "since", Usage: "only records appended in the last `DURATION` (e.g. 30s, 5m)"},
		&cli.StringFlag{Name: "format", Value: "lines", Usage: "output `FORMAT`: lines, json (JSON Lines) or raw (length-prefixed frames)"},
	}
}

func catCommand() *cli.Command {
	return &cli.Command{
		Name:      "cat",
		Usage:     "print the retained records of a ring and exit",
		ArgsUsage: "DIR",
		Flags:     selectionFlags(),
		Action:    cat,
	}
}

func watchCommand() *cli.Command {
	return &cli.Command{
		Name:      "watch",
		Usage:     "print the last 10 records, then follow new ones until interrupted",
		ArgsUsage: "DIR",
		Description: "Like tail -f: prints the last 10 records of the ring, then each new record as it\n" +
			"is appended. --last N prints the last N instead (--last 0: only new records),\n" +
			"--from SEQ those from sequence number SEQ on, --since DURATION those appended in\n" +
			"that time, --all every retained record. A watch started before the ring exists\n" +
			"prints every record from the first. Records the ring overwrote before the watch\n" +
			"read them are reported on standard error: lost N records (FIRST to LAST).",
		Flags: append(selectionFlags(),
			&cli.BoolFlag{Name: "all", Usage: "print every retained record before following, not only the last 10"},
			&cli.StringFlag{Name: "cursor-file", Usage: "resume after the record saved in `FILE` and save the position there (journalctl's convention); without a saved position, start as the other flags say"},
			&cli.DurationFlag{Name: "spin", Usage: "low latency for a reader with a core to spare: after each record, watch the ring's memory for the next one for up to `DURATION` (e.g. 10ms), busily, before sleeping until inotify wakes it; a record then shows within microseconds, and the core stays busy while records come more often than DURATION apart (0: never spin)"}),
		Action: follow,
	}
}

// readArgs returns what cat and watch are asked for: the ring, the selection and the
// output.
func readArgs(c *cli.Context) (string, watch.Selection, *recordio.Writer, error) {
	dir, err := cmdline.RingArg(c)
	if err != nil {
		return "", watch.Selection{}, nil, err
	}
	sel, err := cmdline.Selection(c)
	if err != nil {
		return "", watch.Selection{}, nil, err
	}
	out, err := newRecordWriter(c.App.Writer, c.String("format"))
	return dir, sel, out, err
}

// errDamaged is the exit of a reader that reported damage on standard error and printed
// everything else: status 1, with nothing more to say.
var errDamaged = cli.Exit("", 1)

func cat(c *cli.Context) error {
	dir, sel, out, err := readArgs(c)
	if err != nil {
		return err
	}
	r, err := watch.Open(dir)
	if err != nil {
		return err
	}
	defer r.Close()
	snap, err := r.Snapshot(sel)
	if err != nil {
		return err
	}
	defer snap.Close()
	damaged := false
	for {
		for snap.Next() {
			if err := out.WriteRecord(snap.Record()); err != nil {
				return err
			}
		}
		err := snap.Err()
		if err == nil || !snap.SkipDamaged() {
			break
		}
		// Report the damage, and go on with the records after it.
		if err := out.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(c.App.ErrWriter, "filering: %v\n", err)
		damaged = true
	}
	if err := out.Flush(); err != nil {
		return err
	}
	if err := snap.Err(); err != nil {
		return err
	}
	if damaged {
		return errDamaged
	}
	return nil
}

// defaultWatchLast is how many of the retained records watch prints before following
// when no selection is given, as tail -f does.
const defaultWatchLast = 10

// watchSelection settles what watch prints before following: every record of a ring
// that did not exist when the watch began (absent), only new records for --last 0, the
// last 10 when nothing is selected. r is the ring, or nil when its directory is not
// there.
func watchSelection(c *cli.Context, sel watch.Selection, r *watch.Ring, absent bool) (watch.Selection, error) {
	lastSet := c.IsSet("last")
	switch {
	case absent && (!lastSet || sel.Last == 0) && sel.Since.IsZero():
		// Every record the ring will ever hold is one the watch should print, and any
		// it missed is reported as lost.
		sel.From = max(sel.From, 1)
	case lastSet && sel.Last == 0:
		// --last 0: only the records appended from now on.
		st, err := watch.Stat{}, watch.ErrNoRing
		if r != nil {
			st, err = r.Stat()
		}
		switch {
		case errors.Is(err, watch.ErrNoRing):
			sel.From = max(sel.From, 1)
		case err != nil:
			return sel, err
		default:
			sel.From = max(sel.From, st.LastSeq+1)
		}
	case !lastSet && !c.IsSet("from") && !c.IsSet("since") && !c.Bool("all"):
		sel.Last = defaultWatchLast
	}
	return sel, nil
}

func follow(c *cli.Context) error {
	dir, sel, out, err := readArgs(c)
	if err != nil {
		return err
	}
	if c.Bool("all") && (c.IsSet("last") || c.IsSet("from") || c.IsSet("since")) {
		return cmdline.Usagef("watch: --all selects every record: not with --last, --from or --since")
	}
	ctx, cancel := cmdline.SignalContext()
	defer cancel()
	_, statErr := os.Stat(dir)
	absent := errors.Is(statErr, os.ErrNotExist)
	if path := c.String("cursor-file"); path != "" {
		// The cursor's follower waits for a ring that is not there yet, and says so;
		// the ring is needed here only to learn where --last 0 starts.
		var r *watch.Ring
		if !absent && c.IsSet("last") && sel.Last == 0 {
			if r, err = watch.Open(dir); err != nil {
				return err
			}
			defer r.Close()
		}
		if sel, err = watchSelection(c, sel, r, statErr != nil); err != nil {
			return err
		}
		return followCursor(ctx, c, dir, sel, out, path)
	}
	if absent {
		noRingYet(c, dir)
	}
	r, err := openWhenPresent(ctx, dir)
	if err != nil {
		return quiet(ctx, err)
	}
	defer r.Close()
	if sel, err = watchSelection(c, sel, r, statErr != nil); err != nil {
		return err
	}
	if _, err := r.Manifest(); errors.Is(err, watch.ErrNoRing) && !absent {
		noRingYet(c, dir)
	}
	f, err := r.Follow(sel)
	if err != nil {
		return err
	}
	defer f.Close()
	f.Spin(c.Duration("spin"))
	var werr error
	f.OnWait(func() {
		if werr == nil {
			werr = out.Flush()
		}
	})
	f.OnLoss(func(l watch.Loss) {
		// Reported as soon as the follower knows, before any record after it.
		if werr == nil {
			werr = out.Flush()
		}
		fmt.Fprintf(c.App.ErrWriter, "filering: %s: %v\n", dir, l)
	})
	damaged := false
	for {
		for f.Next(ctx) {
			if err := followed(c, dir, f, out); err != nil {
				return err
			}
			if werr != nil {
				return werr
			}
		}
		if werr != nil {
			return werr
		}
		if err := out.Flush(); err != nil {
			return err
		}
		err := f.Err()
		if err == nil || !f.SkipDamaged() {
			break
		}
		// Report the damage and follow on; the records skipped are reported as lost.
		fmt.Fprintf(c.App.ErrWriter, "filering: %v\n", err)
		damaged = true
	}
	if err := quiet(ctx, f.Err()); err != nil {
		return err
	}
	if damaged {
		return errDamaged
	}
	return nil
}

// followed writes the follower's current record, with any notice that goes before it.
func followed(c *cli.Context, dir string, f *watch.Follower, out *recordio.Writer) error {
	if f.Restarted() {
		if err := out.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(c.App.ErrWriter, "filering: %s: the ring was created anew; following it from its first record\n", dir)
	}
	return out.WriteRecord(f.Record())
}

// quiet turns the error of an interrupted wait into success.
func quiet(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}

// noRingYet says that the reader waits for the ring at dir to be created.
func noRingYet(c *cli.Context, dir string) {
	fmt.Fprintf(c.App.ErrWriter, "filering: %s: no ring yet; waiting for it to be created\n", dir)
}

// openWhenPresent opens the ring directory, waiting for it to be created.
func openWhenPresent(ctx context.Context, dir string) (*watch.Ring, error) {
	for {
		r, err := watch.Open(dir)
		if !errors.Is(err, os.ErrNotExist) {
			return r, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(watch.FastPollInterval):
		}
	}
}
