package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"
)

// manSection is the manual section of filering(1): user commands.
const manSection = 1

// manExtra is appended to the manual page that urfave/cli renders from the commands, for
// what the commands' own texts do not say.
const manExtra = `.SH EXIT STATUS
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
.SH SEE ALSO
.BR mount (8),
.BR tmpfs (5),
.BR systemd.mount (5).
The ring format is specified in docs/FORMAT.md in the filering source tree.
`

// manCommand is the hidden `filering man`: it prints the manual page, in roff, to
// standard output. Install it with `filering man > /usr/local/share/man/man1/filering.1`.
func manCommand() *cli.Command {
	return &cli.Command{
		Name:   "man",
		Usage:  "print the manual page (roff) to standard output",
		Hidden: true,
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usagef("man: want no arguments, got %d", c.NArg())
			}
			page, err := manPage(c.App)
			if err != nil {
				return err
			}
			_, err = io.WriteString(c.App.Writer, page)
			return err
		},
	}
}

// manPage renders the manual page of app in roff: the title, NAME, SYNOPSIS (every
// command), DESCRIPTION, GLOBAL OPTIONS, COMMANDS (each visible command and subcommand
// with its synopsis, description and flags), then manExtra. It is written here rather
// than with urfave/cli's renderer, whose Markdown library costs every filering command
// a tenth of its start; builds leave that out with the tag urfave_cli_no_docs.
func manPage(app *cli.App) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, ".nh\n.TH filering %d \"\" \"filering %s\" \"User Commands\"\n", manSection, roffQuote(readBuildInfo().Version))
	fmt.Fprintf(&b, ".SH NAME\n%s \\- %s\n", app.Name, roffText(app.Usage))
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
	return b.String() + manExtra, nil
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

// completionCommand is `filering completion bash|zsh`: it prints a script that makes the
// shell complete filering's commands and flags by asking filering itself, through the
// --generate-bash-completion flag that urfave/cli adds when EnableBashCompletion is set.
func completionCommand() *cli.Command {
	script := func(shell, usage, text string) *cli.Command {
		return &cli.Command{
			Name:  shell,
			Usage: usage,
			Action: func(c *cli.Context) error {
				if c.NArg() != 0 {
					return usagef("completion %s: want no arguments, got %d", shell, c.NArg())
				}
				_, err := io.WriteString(c.App.Writer, text)
				return err
			},
		}
	}
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script for bash or zsh",
		ArgsUsage: "bash|zsh",
		Description: "For bash, install the script as /usr/local/share/bash-completion/completions/filering\n" +
			"(with the bash-completion package), or source it from ~/.bashrc:\n" +
			"  filering completion bash > /usr/local/share/bash-completion/completions/filering\n" +
			"For zsh, install it as _filering in a directory on $fpath:\n" +
			"  filering completion zsh > /usr/local/share/zsh/site-functions/_filering",
		HideHelpCommand: true,
		Subcommands: []*cli.Command{
			script("bash", "print the bash completion script", bashCompletion),
			script("zsh", "print the zsh completion script", zshCompletion),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usagef("completion: want a shell: bash or zsh")
			}
			return usagef("completion: no script for shell %q: want bash or zsh", c.Args().First())
		},
	}
}

// bashCompletion completes the words before the cursor by running them, unexpanded but
// for a leading ~/ in the command's name, with --generate-bash-completion appended. When
// filering suggests nothing (a ring directory is expected, say), bash completes file
// names.
const bashCompletion = `# bash completion for filering.
# Install as /usr/local/share/bash-completion/completions/filering (read by the
# bash-completion package), or source it from ~/.bashrc.

_filering() {
    local cur=${COMP_WORDS[COMP_CWORD]}
    local -a words=("${COMP_WORDS[@]:0:COMP_CWORD}")
    if [[ ${words[0]} == "~/"* ]]; then
        words[0]=$HOME/${words[0]#"~/"}
    fi
    if [[ $cur == -- ]]; then
        words+=(-) # "--" would end the flags; "-" asks for all of them
    elif [[ $cur == -* ]]; then
        words+=("$cur")
    fi
    local IFS=$'\n'
    COMPREPLY=($(compgen -W "$("${words[@]}" --generate-bash-completion 2>/dev/null)" -- "$cur"))
}

complete -o bashdefault -o default -F _filering filering
`

// zshCompletion does the same for zsh. filering prints "name:usage" lines for commands
// when the environment variable 0 ends in zsh, which _describe shows as descriptions.
const zshCompletion = `#compdef filering
# zsh completion for filering.
# Install as _filering in a directory on $fpath, such as /usr/local/share/zsh/site-functions.

_filering() {
  local -a opts words_before
  local cur=${words[CURRENT]}
  words_before=("${(@)words[1,CURRENT-1]}")
  if [[ ${words_before[1]} == '~/'* ]]; then
    words_before[1]=$HOME/${words_before[1]#\~/}
  fi
  if [[ $cur == -- ]]; then
    words_before+=(-) # "--" would end the flags; "-" asks for all of them
  elif [[ $cur == -* ]]; then
    words_before+=("$cur")
  fi
  opts=("${(@f)$(env 0=zsh "${(@)words_before}" --generate-bash-completion 2>/dev/null)}")
  if [[ -n ${opts[1]} ]]; then
    _describe 'filering' opts
  else
    _files
  fi
}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
  _filering "$@"
else
  compdef _filering filering
fi
`
