package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

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

func selection(c *cli.Context) (watch.Selection, error) {
	sel := watch.Selection{Last: c.Int("last"), From: c.Uint64("from")}
	if sel.Last < 0 {
		return sel, usagef("--last %d: must not be negative", sel.Last)
	}
	if d := c.Duration("since"); d != 0 {
		if d < 0 {
			return sel, usagef("--since %v: must not be negative", d)
		}
		sel.Since = time.Now().Add(-d)
	}
	return sel, nil
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
		Usage:     "print the selected records, then follow new ones until interrupted",
		ArgsUsage: "DIR",
		Flags:     selectionFlags(),
		Action:    follow,
	}
}

// readArgs returns what cat and watch are asked for: the ring, the selection and the
// output.
func readArgs(c *cli.Context) (string, watch.Selection, *recordWriter, error) {
	dir, err := ringArg(c)
	if err != nil {
		return "", watch.Selection{}, nil, err
	}
	sel, err := selection(c)
	if err != nil {
		return "", watch.Selection{}, nil, err
	}
	out, err := newRecordWriter(c.App.Writer, c.String("format"))
	return dir, sel, out, err
}

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
	var damaged error
	for {
		for snap.Next() {
			if err := out.write(snap.Record()); err != nil {
				return err
			}
		}
		if err := snap.Err(); err != nil && snap.SkipDamaged() {
			// Report the damage, and go on with the records after it.
			if err := out.flush(); err != nil {
				return err
			}
			fmt.Fprintf(c.App.ErrWriter, "filering: %v\n", err)
			damaged = fmt.Errorf("%s: records are damaged; those before and after the damage were printed", dir)
			continue
		}
		break
	}
	if err := out.flush(); err != nil {
		return err
	}
	if err := snap.Err(); err != nil {
		return err
	}
	return damaged
}

func follow(c *cli.Context) error {
	dir, sel, out, err := readArgs(c)
	if err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	_, statErr := os.Stat(dir)
	r, err := openWhenPresent(ctx, dir)
	if err != nil {
		return quiet(ctx, err)
	}
	defer r.Close()
	if statErr != nil && sel.Last == 0 && sel.Since.IsZero() {
		// The ring did not exist when the watch began: every record it ever held is
		// one the watch should print, and any it missed is reported as lost.
		sel.From = max(sel.From, 1)
	}
	f, err := r.Follow(sel)
	if err != nil {
		return err
	}
	defer f.Close()
	var werr error
	f.OnWait(func() { werr = out.flush() })
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
		if err := out.flush(); err != nil {
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
	if err := quiet(ctx, f.Err()); err != nil || !damaged {
		return err
	}
	return fmt.Errorf("%s: records were damaged", dir)
}

// followed writes the follower's current record, with any notice that goes before it.
func followed(c *cli.Context, dir string, f *watch.Follower, out *recordWriter) error {
	if f.Restarted() {
		if err := out.flush(); err != nil {
			return err
		}
		fmt.Fprintf(c.App.ErrWriter, "filering: %s: the ring was created anew; following it from its first record\n", dir)
	}
	if l, ok := f.Loss(); ok {
		if err := out.flush(); err != nil {
			return err
		}
		fmt.Fprintf(c.App.ErrWriter, "filering: %s: %v\n", dir, l)
	}
	return out.write(f.Record())
}

// quiet turns the error of an interrupted wait into success.
func quiet(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
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
