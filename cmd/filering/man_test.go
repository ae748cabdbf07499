package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/filering/filering/internal/cmdline"
)

// docApp returns filering's app.
func docApp(stdout io.Writer) *cli.App { return newApp(strings.NewReader(""), stdout, io.Discard) }

// runDoc runs docApp with args after the program name and returns what it printed.
func runDoc(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := docApp(&out).Run(append([]string{"filering"}, args...))
	return out.String(), err
}

// visibleCommands returns the names of the commands `filering --help` lists, with the
// names of subcommands as "parent sub".
func visibleCommands(cmds []*cli.Command, prefix string) []string {
	var names []string
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		names = append(names, prefix+c.Name)
		names = append(names, visibleCommands(c.Subcommands, prefix+c.Name+" ")...)
	}
	return names
}

func TestMan(t *testing.T) {
	page, err := runDoc(t, "man")
	if err != nil {
		t.Fatalf("filering man: %v", err)
	}
	for _, want := range []string{
		".TH filering 1", ".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION", ".SH COMMANDS",
		".SH EXIT STATUS", ".SH SEE ALSO",
	} {
		if !strings.Contains(page, want+"\n") && !strings.Contains(page, want+" ") {
			t.Errorf("manual page lacks %q", want)
		}
	}
	headings := map[string]bool{}
	for _, line := range strings.Split(page, "\n") {
		if h, ok := strings.CutPrefix(line, ".SH "); ok {
			headings[h] = true
		}
		if h, ok := strings.CutPrefix(line, ".SS "); ok {
			headings[h] = true
		}
	}
	names := visibleCommands(docApp(io.Discard).Commands, "")
	if len(names) < 8 {
		t.Fatalf("only %d visible commands: %v", len(names), names)
	}
	for _, name := range names {
		last := name[strings.LastIndex(name, " ")+1:]
		if !headings[last] {
			t.Errorf("manual page has no heading for command %q; headings: %v", name, headings)
		}
	}
	if headings["man"] {
		t.Errorf("manual page lists the hidden command man")
	}
	if groff, err := exec.LookPath("groff"); err == nil {
		cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z")
		cmd.Stdin = strings.NewReader(page)
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("groff -man -ww: %v\n%s", err, out)
		}
	}
}

func TestMan_UsageError(t *testing.T) {
	_, err := runDoc(t, "man", "extra")
	if !errors.As(err, new(cmdline.UsageError)) {
		t.Fatalf("filering man extra: got %v, want a usage error", err)
	}
}

func TestCompletion(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // in the script
	}{
		{"bash", []string{"completion", "bash"}, "complete -o bashdefault -o default -F _filering filering\n"},
		{"zsh", []string{"completion", "zsh"}, "#compdef filering\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runDoc(t, tc.args...)
			if err != nil {
				t.Fatalf("filering %s: %v", strings.Join(tc.args, " "), err)
			}
			if !strings.Contains(out, tc.want) || !strings.Contains(out, "--generate-bash-completion") {
				t.Errorf("filering %s printed:\n%s", strings.Join(tc.args, " "), out)
			}
			shell, err := exec.LookPath(tc.name)
			if err != nil {
				if tc.name == "bash" {
					t.Fatal(err)
				}
				t.Logf("no %s to check the script's syntax", tc.name)
				return
			}
			cmd := exec.Command(shell, "-n")
			cmd.Stdin = strings.NewReader(out)
			if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
				t.Errorf("%s -n: %v\n%s", tc.name, err, out)
			}
		})
	}
}

func TestCompletion_UsageError(t *testing.T) {
	for _, args := range [][]string{{"completion"}, {"completion", "fish"}, {"completion", "bash", "extra"}} {
		if _, err := runDoc(t, args...); !errors.As(err, new(cmdline.UsageError)) {
			t.Errorf("filering %s: got %v, want a usage error", strings.Join(args, " "), err)
		}
	}
}

// setArgs sets os.Args for the test: urfave/cli's default completion reads os.Args
// rather than the arguments given to Run.
func setArgs(t *testing.T, args []string) {
	saved := os.Args
	os.Args = args
	t.Cleanup(func() { os.Args = saved })
}

// TestGenerateBashCompletion runs the request the completion scripts make:
// `filering --generate-bash-completion` lists the commands that are not hidden.
func TestGenerateBashCompletion(t *testing.T) {
	args := []string{"filering", "--generate-bash-completion"}
	setArgs(t, args)
	t.Setenv("0", "") // urfave/cli prints descriptions too when $0 ends in zsh
	var out, errOut bytes.Buffer
	if code := run(args, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("%s: exit status %d: %s", strings.Join(args, " "), code, errOut.String())
	}
	got := strings.Fields(out.String())
	var want []string
	for _, c := range newApp(nil, nil, nil).Commands {
		if !c.Hidden {
			want = append(want, c.Name)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s printed %q, want %q", strings.Join(args, " "), got, want)
	}
}

func TestGenerateBashCompletion_Zsh(t *testing.T) {
	args := []string{"filering", "--generate-bash-completion"}
	setArgs(t, args)
	t.Setenv("0", "zsh")
	var out bytes.Buffer
	if code := run(args, strings.NewReader(""), &out, io.Discard); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	if !strings.Contains(out.String(), "\ncat:print ") && !strings.HasPrefix(out.String(), "cat:print ") {
		t.Errorf("with $0=zsh, %s printed no name:usage line for cat:\n%s", strings.Join(args, " "), out.String())
	}
}

// TestHelperFilering is not a test: run as a child process of TestBashCompletion, with
// FILERING_TEST_HELPER=1, it is filering, with the arguments after "--".
func TestHelperFilering(t *testing.T) {
	if os.Getenv("FILERING_TEST_HELPER") != "1" {
		return
	}
	i := slices.Index(os.Args, "--")
	args := append([]string{"filering"}, os.Args[i+1:]...)
	os.Args = args
	os.Exit(run(args, os.Stdin, os.Stdout, os.Stderr))
}

// TestBashCompletion loads the bash completion script into bash, with `filering` a
// function that runs this test binary as filering, and completes command lines.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal(err)
	}
	script, err := runDoc(t, "completion", "bash")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	scriptPath := filepath.Join(dir, "filering.bash")
	if err := os.WriteFile(scriptPath, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		words []string // the words on the command line, the last one at the cursor
		want  []string // in COMPREPLY
		not   []string // not in COMPREPLY
	}{
		{"commands", []string{"filering", ""}, []string{"produce", "cat", "watch", "take", "stat", "demo", "ramdisk"}, []string{"man", "help"}},
		{"prefix", []string{"filering", "st"}, []string{"stat"}, []string{"cat", "take"}},
		{"subcommands", []string{"filering", "ramdisk", ""}, []string{"check", "mount", "unit"}, []string{"cat"}},
		{"flags", []string{"filering", "cat", "--l"}, []string{"--last"}, []string{"--from"}},
		{"all flags", []string{"filering", "cat", "--"}, []string{"--last", "--format"}, nil},
		{"flags after DIR", []string{"filering", "cat", "/x", "--l"}, []string{"--last"}, nil},
		{"no help after a command", []string{"filering", "watch", ""}, nil, []string{"help", "h"}},
		{"no help after a subcommand", []string{"filering", "ramdisk", "check", ""}, nil, []string{"help", "h"}},
		{"format values", []string{"filering", "watch", "--format", ""}, []string{"lines", "json", "raw"}, []string{"--last"}},
		{"format values after DIR", []string{"filering", "take", "/x", "--format", "j"}, []string{"json"}, []string{"lines", "raw"}},
		{"input values", []string{"filering", "produce", "--input", ""}, []string{"lines", "frames"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var words strings.Builder
			for _, w := range tc.words {
				words.WriteString(" '" + w + "'")
			}
			prog := "filering() { \"$FILERING_TEST_BIN\" -test.run='^TestHelperFilering$' -- \"$@\"; }\n" +
				"source \"$FILERING_TEST_SCRIPT\"\n" +
				"COMP_WORDS=(" + words.String() + ")\n" +
				"COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n" +
				"_filering\n" +
				"printf '%s\\n' \"${COMPREPLY[@]}\"\n"
			cmd := exec.Command(bash, "--norc", "--noprofile", "-c", prog)
			cmd.Env = append(os.Environ(), "FILERING_TEST_HELPER=1", "FILERING_TEST_BIN="+self,
				"FILERING_TEST_SCRIPT="+scriptPath, "0=")
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("bash: %v", err)
			}
			got := strings.Fields(string(out))
			for _, w := range tc.want {
				if !slices.Contains(got, w) {
					t.Errorf("completing %q: got %q, want %q among them", tc.words, got, w)
				}
			}
			for _, w := range tc.not {
				if slices.Contains(got, w) {
					t.Errorf("completing %q: got %q, which has %q", tc.words, got, w)
				}
			}
		})
	}
}

// TestFlagValues checks that every flag that completion offers values for exists, on
// that command, and that its usage names each value.
func TestFlagValues(t *testing.T) {
	app := docApp(io.Discard)
	for key, values := range flagValues {
		path, flag, _ := strings.Cut(key, " --")
		var c *cli.Command
		cmds := app.Commands
		for _, name := range strings.Fields(path) {
			if c = cmdline.Find(cmds, name); c == nil {
				t.Fatalf("flagValues[%q]: no command %q", key, name)
			}
			cmds = c.Subcommands
		}
		var found cli.Flag
		for _, f := range c.Flags {
			if slices.Contains(f.Names(), flag) {
				found = f
			}
		}
		if found == nil {
			t.Errorf("flagValues[%q]: %s has no flag --%s", key, path, flag)
			continue
		}
		usage := found.(cli.DocGenerationFlag).GetUsage()
		for _, v := range values {
			if !strings.Contains(usage, v) {
				t.Errorf("flagValues[%q]: value %q not in the usage %q", key, v, usage)
			}
		}
	}
}

// TestHelp_Defaults checks the help text of every flag of every command: a default is
// shown at most once, and as the flag's one default; and the flags issue 15 named.
func TestHelp_Defaults(t *testing.T) {
	var walk func(cmds []*cli.Command, prefix string)
	lines := map[string]string{}
	walk = func(cmds []*cli.Command, prefix string) {
		for _, c := range cmds {
			for _, f := range c.Flags {
				s := f.String()
				lines[prefix+c.Name+" --"+f.Names()[0]] = s
				if n := strings.Count(s, "default"); n > 1 {
					t.Errorf("%s%s: the help of --%s gives a default %d times: %q", prefix, c.Name, f.Names()[0], n, s)
				}
			}
			walk(c.Subcommands, prefix+c.Name+" ")
		}
	}
	walk(docApp(io.Discard).Commands, "")
	for key, want := range map[string]string{
		"demo --dir":           "(default: $XDG_RUNTIME_DIR/filering-demo, or else a new private directory on /dev/shm, removed at the end)",
		"demo --duration":      "(default: until interrupted)",
		"produce --seal-after": "0 means never",
		"produce --segments":   "(default: 8 for a new ring)",
		"watch --all":          "every retained record",
	} {
		if !strings.Contains(lines[key], want) {
			t.Errorf("%s: help %q, want it to contain %q", key, lines[key], want)
		}
	}
	page, err := runDoc(t, "man")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(page, `=""`) {
		t.Errorf(`manual page shows a flag's value as "", which reads as an empty default`)
	}
	for _, want := range []string{"\\fB\\-\\-dir\\fP=\\fIDIR\\fP\nring", "\\fB\\-\\-duration\\fP=\\fIDURATION\\fP\nstop after"} {
		if !strings.Contains(page, want) {
			t.Errorf("manual page lacks %q", want)
		}
	}
}

// TestMan_Synopsis checks that the synopsis lists every visible command, subcommands by
// their path, and --version and --help.
func TestMan_Synopsis(t *testing.T) {
	page, err := runDoc(t, "man")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(page, ".SH SYNOPSIS\n")
	synopsis, _, _ := strings.Cut(rest, "\n.SH ")
	app := docApp(io.Discard)
	for _, name := range visibleCommands(app.Commands, "") {
		c := app.Command(strings.Fields(name)[0])
		switch {
		case len(c.Subcommands) > 0 && c.ArgsUsage == "" && !strings.Contains(name, " "):
			continue // listed by its subcommands
		case c.ArgsUsage != "" && strings.Contains(name, " "):
			continue // listed as the command with its argument, like completion bash|zsh
		}
		if !strings.Contains(synopsis, `\fBfilering `+name+`\fP`) {
			t.Errorf("synopsis lacks %q:\n%s", name, synopsis)
		}
	}
	for _, want := range []string{`\fBfilering watch\fP [\fIOPTIONS\fP] \fIDIR\fP`, `\-\-version`, `\-\-help`} {
		if !strings.Contains(synopsis, want) {
			t.Errorf("synopsis lacks %q:\n%s", want, synopsis)
		}
	}
	if !strings.Contains(page, `.TH filering 1 "" "filering `+cmdline.ReadBuildInfo().Version) {
		t.Errorf("the title line does not name the version %q", cmdline.ReadBuildInfo().Version)
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"filering", "--version"}, {"filering", "--version", "extra"}} {
		var out, errOut bytes.Buffer
		if code := run(args, strings.NewReader(""), &out, &errOut); code != 0 {
			t.Fatalf("%s: exit status %d: %s", strings.Join(args, " "), code, errOut.String())
		}
		got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		if len(got) != 3 || got[0] != "filering "+cmdline.ReadBuildInfo().Version ||
			!strings.HasPrefix(got[1], "commit ") || !strings.HasPrefix(got[2], runtime.Version()+" ") {
			t.Errorf("%s printed %q, want the version, commit and Go version", strings.Join(args, " "), got)
		}
	}
}
