package cmdline

import (
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"
)

// manSection is the manual section of filering(1): user commands.
const manSection = 1

// manExit is appended to every manual page, for what the commands' own texts do not say.
const manExit = `.SH EXIT STATUS
.TP
.B 0
Success, including when the reader of standard output goes away, as in
.BR "filering watch DIR | head" .
.TP
.B 1
A runtime error. The message on standard error names the file and the problem.
.TP
.B 2
A usage error: an unknown command or flag, or a missing or extra argument.
.PP
A command that uses other statuses says so in its description above.
`

// ManCommand is the hidden `filering man`: it prints the manual page of the program
// named title (filering, filering-serve) to standard output, in roff, ending with the
// SEE ALSO section seeAlso. Install it with `filering man >
// /usr/local/share/man/man1/filering.1`.
func ManCommand(title, seeAlso string) *cli.Command {
	return &cli.Command{
		Name:   "man",
		Usage:  "print the manual page (roff) to standard output",
		Hidden: true,
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return Usagef("man: want no arguments, got %d", c.NArg())
			}
			_, err := io.WriteString(c.App.Writer, ManPage(c.App, title, seeAlso))
			return err
		},
	}
}

// ManPage renders the manual page of app, the program named title, in roff: the title,
// NAME, SYNOPSIS (every command), DESCRIPTION, GLOBAL OPTIONS, COMMANDS (each visible
// command and subcommand with its synopsis, description and flags), EXIT STATUS, then
// seeAlso, the roff of SEE ALSO. It is written here rather than with urfave/cli's
// renderer, whose Markdown library costs every filering command a tenth of its start;
// builds leave that out with the tag urfave_cli_no_docs.
func ManPage(app *cli.App, title, seeAlso string) string {
	var b strings.Builder
	fmt.Fprintf(&b, ".nh\n.TH %s %d \"\" \"filering %s\" \"User Commands\"\n", title, manSection, roffQuote(ReadBuildInfo().Version))
	fmt.Fprintf(&b, ".SH NAME\n%s \\- %s\n", title, roffText(app.Usage))
	b.WriteString(manSynopsis(app))
	fmt.Fprintf(&b, ".SH DESCRIPTION\n%s\n", roffText(strings.Trim(app.Description, "\n")))
	ph := placeholders(app)
	b.WriteString(".SH GLOBAL OPTIONS\n")
	manFlags(&b, app.VisibleFlags(), ph)
	b.WriteString(".SH COMMANDS\n")
	walkVisible(app.Commands, app.Name, func(c *cli.Command, path string) bool {
		fmt.Fprintf(&b, ".SS %s\n%s\n", c.Name, roffText(c.Usage))
		if runsItself(c) {
			synopsis := path
			if len(c.VisibleFlags()) > 0 {
				synopsis += " [OPTIONS]"
			}
			if c.ArgsUsage != "" {
				synopsis += " " + c.ArgsUsage
			}
			fmt.Fprintf(&b, ".PP\n.RS\n%s\n.RE\n", roffText(synopsis))
		}
		if d := strings.Trim(c.Description, "\n"); d != "" {
			fmt.Fprintf(&b, ".PP\n.nf\n%s\n.fi\n", roffText(d))
		}
		manFlags(&b, c.VisibleFlags(), ph)
		return true
	})
	return b.String() + manExit + ".SH SEE ALSO\n" + seeAlso
}

// manFlags writes one tagged paragraph for each flag: its names, the placeholder of its
// value, its usage and its default.
func manFlags(b *strings.Builder, flags []cli.Flag, ph map[string]string) {
	for _, f := range flags {
		df, ok := f.(cli.DocGenerationFlag)
		if !ok {
			continue
		}
		var names []string
		for _, n := range f.Names() {
			if len(n) > 1 {
				names = append(names, `\-\-`+roffText(n))
			} else {
				names = append(names, `\-`+roffText(n))
			}
		}
		head := `\fB` + strings.Join(names, ", ") + `\fP`
		usage := roffText(df.GetUsage())
		if df.TakesValue() {
			head += `=\fI` + ph[f.Names()[0]] + `\fP`
			def := df.GetDefaultText()
			if def == "" {
				def = df.GetValue()
			}
			if def != "" {
				usage += " (default: " + roffText(def) + ")"
			}
		}
		// A name in backquotes in the usage is the value's placeholder: italic, as in the
		// head.
		for strings.Count(usage, "`") >= 2 {
			usage = strings.Replace(strings.Replace(usage, "`", `\fI`, 1), "`", `\fP`, 1)
		}
		fmt.Fprintf(b, ".TP\n%s\n%s\n", head, usage)
	}
}

// roffText escapes s for roff: backslashes, and a dot or a quote at the start of a line,
// which roff would take for a request.
func roffText(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			lines[i] = `\&` + l
		}
	}
	return strings.Join(lines, "\n")
}

func roffQuote(s string) string { return strings.ReplaceAll(s, `"`, `'`) }

// walkVisible calls fn for each visible command of cmds, depth first, with its command
// line from prefix on; fn reports whether to go on into the command's subcommands.
func walkVisible(cmds []*cli.Command, prefix string, fn func(c *cli.Command, path string) bool) {
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		path := prefix + " " + c.Name
		if fn(c, path) {
			walkVisible(c.Subcommands, path, fn)
		}
	}
}

// runsItself reports whether c is run itself, rather than only through its subcommands.
func runsItself(c *cli.Command) bool { return len(c.Subcommands) == 0 || c.ArgsUsage != "" }

// manSynopsis returns the SYNOPSIS section: one line for each visible command (each
// subcommand of a command that has them), then --version and --help.
func manSynopsis(app *cli.App) string {
	var b strings.Builder
	b.WriteString(".SH SYNOPSIS\n.nf\n")
	walkVisible(app.Commands, app.Name, func(c *cli.Command, path string) bool {
		if !runsItself(c) {
			return true // its subcommands stand for it
		}
		fmt.Fprintf(&b, `\fB%s\fP`, path)
		if len(c.VisibleFlags()) > 1 || (len(c.VisibleFlags()) == 1 && c.VisibleFlags()[0] != cli.HelpFlag) {
			b.WriteString(` [\fIOPTIONS\fP]`)
		}
		if c.ArgsUsage != "" {
			fmt.Fprintf(&b, ` \fI%s\fP`, c.ArgsUsage)
		}
		b.WriteString("\n")
		return false
	})
	fmt.Fprintf(&b, "\\fB%s \\-\\-version\\fP\n", app.Name)
	fmt.Fprintf(&b, "\\fB%s\\fP [\\fICOMMAND\\fP] \\fB\\-\\-help\\fP\n", app.Name)
	b.WriteString(".fi\n")
	return b.String()
}

// placeholders maps the name of each flag of app's commands that takes a value to the
// name of its value in the usage text (`DIR`), or else to one for its type.
func placeholders(app *cli.App) map[string]string {
	m := map[string]string{}
	var walk func(cmds []*cli.Command)
	add := func(flags []cli.Flag) {
		for _, f := range flags {
			df, ok := f.(cli.DocGenerationFlag)
			if !ok || !df.TakesValue() {
				continue
			}
			p := typePlaceholder(f)
			if i := strings.Index(df.GetUsage(), "`"); i >= 0 {
				if j := strings.Index(df.GetUsage()[i+1:], "`"); j >= 0 {
					p = df.GetUsage()[i+1 : i+1+j]
				}
			}
			for _, n := range f.Names() {
				if old, ok := m[n]; ok && old != p {
					p = typePlaceholder(f)
				}
				m[n] = p
			}
		}
	}
	walk = func(cmds []*cli.Command) {
		for _, c := range cmds {
			add(c.Flags)
			walk(c.Subcommands)
		}
	}
	add(app.Flags)
	walk(app.Commands)
	return m
}

func typePlaceholder(f cli.Flag) string {
	switch f.(type) {
	case *cli.DurationFlag:
		return "DURATION"
	case *cli.IntFlag, *cli.Int64Flag, *cli.UintFlag, *cli.Uint64Flag, *cli.Float64Flag:
		return "N"
	}
	return "VALUE"
}
