package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/filering/filering/internal/cmdline"
	"github.com/urfave/cli/v2"
)

// exitTimeout is the exit status of `filering wait` when its timeout passes first.
const exitTimeout = 3

func waitCommand() *cli.Command {
	return &cli.Command{
		Name:      "wait",
		Usage:     "wait for a record newer than --after, print the newest sequence number",
		ArgsUsage: "DIR",
		Description: fmt.Sprintf("Blocks until the ring holds a record with a sequence number greater than --after,\n"+
			"prints the newest sequence number and exits 0. When --timeout passes first it\n"+
			"prints nothing and exits %d. For shell loops and long-polling CGI scripts:\n"+
			"  seq=0; while seq=$(filering wait --after $seq DIR); do filering cat --from ... ; done", exitTimeout),
		Flags: []cli.Flag{
			&cli.Uint64Flag{Name: "after", Usage: "wait for a record newer than sequence number `SEQ` (0: any record)"},
			&cli.DurationFlag{Name: "timeout", Usage: "give up after this long (0: wait forever)"},
		},
		Action: wait,
	}
}

func wait(c *cli.Context) error {
	dir, err := cmdline.RingArg(c)
	if err != nil {
		return err
	}
	ctx, cancel := cmdline.SignalContext()
	defer cancel()
	timeout := c.Duration("timeout")
	if timeout < 0 {
		return cmdline.Usagef("--timeout %v: must not be negative", timeout)
	}
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	r, err := openWhenPresent(ctx, dir)
	if err == nil {
		defer r.Close()
		var newest uint64
		newest, err = r.WaitAfter(ctx, c.Uint64("after"), func(err error) {
			fmt.Fprintf(c.App.ErrWriter, "filering: %v\n", err)
		})
		if err == nil {
			_, err = fmt.Fprintln(c.App.Writer, newest)
			return err
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return cli.Exit("", exitTimeout)
	}
	return quiet(ctx, err)
}
