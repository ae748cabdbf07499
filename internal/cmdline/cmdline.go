// Package cmdline holds what filering's programs share on their command lines: the exit
// statuses and usage errors, flags after arguments, the version, the manual page, and
// running the commands that are programs of their own (Exec).
//
// filering is three programs. `filering` has the commands that read and write rings;
// `filering serve` and `filering forward`, which link an HTTP server and a NATS client,
// are the programs filering-serve and filering-forward, which `filering` runs in its
// place, as git runs its subcommands. What they leave out of `filering` is most of its
// size and of its start: a `filering cat` starts in about three quarters of the time
// (docs/BENCHMARKS.md, "The command line").
package cmdline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/filering/filering/watch"
)

// UsageError marks an error in how a command was called: exit status 2.
type UsageError struct{ error }

func (e UsageError) Unwrap() error { return e.error }

// Usagef returns a UsageError with the message format gives.
func Usagef(format string, args ...any) error { return UsageError{fmt.Errorf(format, args...)} }

// NewApp returns the app of a filering program, whose command line is "filering",
// reading stdin and writing stdout and stderr; errors in flags and arguments of it and of
// its commands are usage errors.
func NewApp(cmds []*cli.Command, stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:                 "filering",
		Version:              ReadBuildInfo().Version,
		Usage:                "a live stream of records through files on tmpfs",
		Description:          "One producer appends records to fixed-size ring segments in a directory on tmpfs;\nany number of readers read them with no locks, from any language.\nThe format is in docs/FORMAT.md.",
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		HideHelpCommand:      true,
		ExitErrHandler:       func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return UsageError{err}
		},
		Commands: cmds,
	}
	for _, c := range app.Commands {
		SetUsageErrors(c)
	}
	return app
}

// SetUsageErrors makes errors in the flags of c and its subcommands usage errors, and
// hides their `help` subcommand: `filering watch --help` shows the help, and completion
// does not offer "help h" after a command.
func SetUsageErrors(c *cli.Command) {
	c.HideHelpCommand = true
	c.OnUsageError = func(_ *cli.Context, err error, _ bool) error { return UsageError{err} }
	for _, s := range c.Subcommands {
		SetUsageErrors(s)
	}
}

// Run runs app with the command line args, flags after arguments allowed (Interspersed),
// and returns the exit status: 0; 1 for runtime errors, 2 for usage errors, or the
// status of a cli.ExitCoder. Errors are written to stderr.
func Run(app *cli.App, args []string, stderr io.Writer) int {
	var unknown string
	app.CommandNotFound = func(_ *cli.Context, name string) { unknown = name }
	err := app.Run(Interspersed(app, args))
	switch {
	case unknown != "":
		fmt.Fprintf(stderr, "filering: unknown command %q; see filering --help\n", unknown)
		return 2
	case err == nil:
		return 0
	case errors.Is(err, syscall.EPIPE):
		return 0 // the reader went away, as in `filering watch DIR | head`
	case errors.As(err, new(UsageError)):
		fmt.Fprintf(stderr, "filering: %v\n", err)
		return 2
	default:
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			if msg := ec.Error(); msg != "" {
				fmt.Fprintln(stderr, msg)
			}
			return ec.ExitCode()
		}
		fmt.Fprintf(stderr, "filering: %v\n", err)
		return 1
	}
}

// RingArg returns the single DIR argument of c.
func RingArg(c *cli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", Usagef("%s: want exactly one ring directory, got %d arguments", c.Command.Name, c.NArg())
	}
	return c.Args().First(), nil
}

// Selection returns the records --last, --from and --since select (the flags of cat,
// watch, take and forward).
func Selection(c *cli.Context) (watch.Selection, error) {
	sel := watch.Selection{Last: c.Int("last"), From: c.Uint64("from")}
	if sel.Last < 0 {
		return sel, Usagef("--last %d: must not be negative", sel.Last)
	}
	if d := c.Duration("since"); d != 0 {
		if d < 0 {
			return sel, Usagef("--since %v: must not be negative", d)
		}
		sel.Since = time.Now().Add(-d)
	}
	return sel, nil
}

// SignalContext returns a context cancelled by SIGINT or SIGTERM.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}
