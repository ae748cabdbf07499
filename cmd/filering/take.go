package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/filering/filering/internal/cmdline"
	"github.com/filering/filering/watch"
)

func takeCommand() *cli.Command {
	return &cli.Command{
		Name:      "take",
		Usage:     "single-consumer mode: take each sealed segment, print its records, delete it",
		ArgsUsage: "DIR",
		Description: "Competing takers share the sealed segments between them: each is printed by exactly one.\n" +
			"A taker killed while printing a segment leaves it claimed; the next taker prints it again.\n" +
			"With --follow, a taker started before the ring exists waits for it.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep waiting for newly sealed segments"},
			&cli.StringFlag{Name: "format", Value: "lines", Usage: "output `FORMAT`: lines, json or raw"},
		},
		Action: take,
	}
}

func take(c *cli.Context) error {
	dir, err := cmdline.RingArg(c)
	if err != nil {
		return err
	}
	out, err := newRecordWriter(c.App.Writer, c.String("format"))
	if err != nil {
		return err
	}
	ctx, cancel := cmdline.SignalContext()
	defer cancel()
	r, err := watch.Open(dir)
	if errors.Is(err, os.ErrNotExist) && c.Bool("follow") {
		// As watch does: a taker started before its producer waits for the ring.
		noRingYet(c, dir)
		r, err = openWhenPresent(ctx, dir)
		if err != nil {
			return quiet(ctx, err)
		}
	}
	if err != nil {
		return err
	}
	defer r.Close()
	t := r.Taker()
	defer t.Close()
	damaged := false
	done := func() error {
		if damaged {
			return errDamaged
		}
		return nil
	}
	for {
		tk, err := t.Take()
		if errors.Is(err, watch.ErrNothingToTake) {
			if !c.Bool("follow") {
				return done()
			}
			if err := t.Wait(ctx); err != nil {
				if err := quiet(ctx, err); err != nil {
					return err
				}
				return done()
			}
			continue
		}
		if err != nil {
			return err
		}
		if tk.Redeliver {
			fmt.Fprintf(c.App.ErrWriter, "filering: %s: segment %d was claimed by a taker that died; delivering it again\n", dir, tk.Number())
		}
		for tk.Next() {
			if err := out.WriteRecord(tk.Record()); err != nil {
				tk.Close()
				return err
			}
		}
		// Records reach the output before the segment is deleted: at least once.
		if err := out.Flush(); err != nil {
			tk.Close()
			return err
		}
		if err := tk.Err(); err != nil {
			// What precedes the damage is delivered; set it aside so it blocks no
			// other segment.
			path, serr := tk.SetAside()
			if serr != nil {
				return fmt.Errorf("%w; setting it aside failed: %v", err, serr)
			}
			fmt.Fprintf(c.App.ErrWriter, "filering: %v\n", err)
			fmt.Fprintf(c.App.ErrWriter, "filering: %s: set aside as %s\n", dir, path)
			damaged = true
			continue
		}
		if err := tk.Done(); err != nil {
			return err
		}
	}
}
