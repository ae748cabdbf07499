// Command filering moves a live stream of records from one producer to any number of
// local readers through files on tmpfs. See README.md and docs/FORMAT.md.
package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/filering/filering/internal/cmdline"
)

func main() {
	if len(os.Args) > 1 && isPart(os.Args[1]) {
		// Before urfave/cli sees the command line: the flags, help and completion of
		// `filering serve` are filering-serve's.
		err := cmdline.Exec(os.Args[1], os.Args[2:])
		fmt.Fprintf(os.Stderr, "filering: %v\n", err)
		os.Exit(1)
	}
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
	return cmdline.Run(app, args, stderr)
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	return cmdline.NewApp([]*cli.Command{
		produceCommand(),
		catCommand(),
		watchCommand(),
		takeCommand(),
		statCommand(),
		waitCommand(),
		partCommand("serve", "serve a ring, or a directory of rings, over HTTP: JSON, Server-Sent Events and a live graph page"),
		partCommand("forward", "forward a ring's records to a NATS JetStream stream, each stored exactly once"),
		demoCommand(),
		ramdiskCommand(),
		benchCommand(),
		completionCommand(),
		cmdline.ManCommand("filering", seeAlso),
	}, stdin, stdout, stderr)
}

// seeAlso is the SEE ALSO section of filering(1).
const seeAlso = `.BR filering\-serve (1),
.BR filering\-forward (1),
.BR mount (8),
.BR tmpfs (5),
.BR systemd.mount (5).
The ring format is specified in docs/FORMAT.md in the filering source tree.
`

// parts are the commands that are programs of their own, filering-NAME: they link an
// HTTP server and a NATS client, which would cost every other command its start
// (package cmdline).
var parts = []string{"serve", "forward"}

func isPart(name string) bool { return slices.Contains(parts, name) }

// partCommand is the entry of a part in `filering --help` and filering(1). main runs the
// part's program before urfave/cli gets the command line; the action does the same when
// it gets here all the same.
func partCommand(name, usage string) *cli.Command {
	return &cli.Command{
		Name:            name,
		Usage:           usage + " (the program filering-" + name + "; see its --help)",
		ArgsUsage:       "DIR",
		SkipFlagParsing: true,
		Action: func(c *cli.Context) error {
			return cmdline.Exec(name, c.Args().Slice())
		},
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
		c := cmdline.Find(cmds, a)
		if c == nil {
			break
		}
		path = append(path, c.Name)
		cmds = c.Subcommands
	}
	values, ok := flagValues[strings.Join(path, " ")+" "+args[n-2]]
	return values, ok
}
