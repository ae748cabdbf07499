// Command filering moves a live stream of records from one producer to any number of
// local readers through files on tmpfs. See README.md and docs/FORMAT.md.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
)

// usageError marks an error in how filering was called: exit status 2.
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func main() {
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr))
}

// run runs the command line args and returns the exit status: 0, 1 for runtime errors,
// 2 for usage errors.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(stdin, stdout, stderr)
	if values, ok := completeFlagValue(app, args); ok {
		for _, v := range values {
			fmt.Fprintln(stdout, v)
		}
		return 0
	}
	var unknown string
	app.CommandNotFound = func(_ *cli.Context, name string) { unknown = name }
	err := app.Run(interspersed(app, args))
	switch {
	case unknown != "":
		fmt.Fprintf(stderr, "filering: unknown command %q; see filering --help\n", unknown)
		return 2
	case err == nil:
		return 0
	case errors.Is(err, syscall.EPIPE):
		return 0 // the reader went away, as in `filering watch DIR | head`
	case errors.As(err, new(usageError)):
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

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:                 "filering",
		Version:              readBuildInfo().Version,
		Usage:                "a live stream of records through files on tmpfs",
		Description:          "One producer appends records to fixed-size ring segments in a directory on tmpfs;\nany number of readers read them with no locks, from any language.\nThe format is in docs/FORMAT.md.",
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		HideHelpCommand:      true,
		ExitErrHandler:       func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err}
		},
		Commands: []*cli.Command{
			produceCommand(),
			catCommand(),
			watchCommand(),
			takeCommand(),
			statCommand(),
			waitCommand(),
			serveCommand(),
			forwardCommand(),
			demoCommand(),
			ramdiskCommand(),
			benchCommand(),
			completionCommand(),
			manCommand(),
		},
	}
	for _, c := range app.Commands {
		setUsageErrors(c)
	}
	return app
}

func setUsageErrors(c *cli.Command) {
	// No `help` subcommand: `filering watch --help` shows the help, and completion does
	// not offer "help h" after a command.
	c.HideHelpCommand = true
	c.OnUsageError = func(_ *cli.Context, err error, _ bool) error { return usageError{err} }
	for _, s := range c.Subcommands {
		setUsageErrors(s)
	}
}

// flagValues lists the values that shell completion offers for a flag, by the command's
// path (without "filering") and the flag's name.
var flagValues = map[string][]string{
	"cat --format":    {"lines", "json", "raw"},
	"watch --format":  {"lines", "json", "raw"},
	"take --format":   {"lines", "json", "raw"},
	"produce --input": {"lines", "frames"},
}

// completeFlagValue answers a completion request, args ending in
// --generate-bash-completion, whose word before the cursor is a flag with values in
// flagValues: it returns those values.
func completeFlagValue(app *cli.App, args []string) ([]string, bool) {
	n := len(args)
	if n < 3 || args[n-1] != "--generate-bash-completion" || !strings.HasPrefix(args[n-2], "--") {
		return nil, false
	}
	var path []string
	cmds := app.Commands
	for _, a := range args[1 : n-2] {
		if strings.HasPrefix(a, "-") {
			continue
		}
		c := find(cmds, a)
		if c == nil {
			break
		}
		path = append(path, c.Name)
		cmds = c.Subcommands
	}
	values, ok := flagValues[strings.Join(path, " ")+" "+args[n-2]]
	return values, ok
}

// ringArg returns the single DIR argument.
func ringArg(c *cli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", usagef("%s: want exactly one ring directory, got %d arguments", c.Command.Name, c.NArg())
	}
	return c.Args().First(), nil
}
