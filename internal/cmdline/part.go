package cmdline

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// Exec runs the program filering-name in this process's place with args, the arguments
// of `filering name`: the one in the directory of the running program (installed
// together), or else the one on PATH. It returns only when it cannot.
func Exec(name string, args []string) error {
	prog := "filering-" + name
	path := ""
	if self, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(self), prog); unix.Access(p, unix.X_OK) == nil {
			path = p
		}
	}
	if path == "" {
		p, err := exec.LookPath(prog)
		if err != nil {
			return fmt.Errorf("%s: `filering %s` is the program %s, which is neither beside filering nor on PATH; install it with filering", name, name, prog)
		}
		path = p
	}
	err := syscall.Exec(path, append([]string{prog}, args...), os.Environ())
	return fmt.Errorf("%s: running %s: %w", name, path, err)
}

// RunPart runs the program filering-NAME, whose one command is cmd, named NAME: its
// command line args after the program's name are those of `filering NAME` after NAME.
// It returns the exit status, as Run does. `filering-NAME --version` prints the
// version, and `filering-NAME --man` its manual page, with seeAlso as SEE ALSO.
func RunPart(cmd *cli.Command, seeAlso string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := NewApp([]*cli.Command{cmd}, stdin, stdout, stderr)
	title := "filering-" + cmd.Name
	app.Usage = cmd.Usage
	app.Description = fmt.Sprintf("%s is the program `filering %s` runs; it may be run itself, with the same arguments.", title, cmd.Name)
	if len(args) == 2 {
		switch args[1] {
		case "--version":
			ReadBuildInfo().Write(stdout)
			return 0
		case "--man":
			if _, err := io.WriteString(stdout, ManPage(app, title, seeAlso)); err != nil {
				fmt.Fprintf(stderr, "filering: %v\n", err)
				return 1
			}
			return 0
		}
	}
	return Run(app, append([]string{"filering", cmd.Name}, args[1:]...), stderr)
}
