package cmdline

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// Interspersed returns args with the flags of the (sub)command moved before its
// arguments, so that `filering wait DIR --after 5` works as well as
// `filering wait --after 5 DIR`: urfave/cli stops reading flags at the first argument.
// A "--" ends the flags; what follows it is left as it is.
func Interspersed(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	// Shell completion asks with --generate-bash-completion last, where urfave/cli looks.
	if n := len(args); args[n-1] == "--generate-bash-completion" {
		return append(Interspersed(app, args[:n-1:n-1]), args[n-1])
	}
	out := []string{args[0]}
	cmds := app.Commands
	flags := app.Flags
	i := 1
	// Global flags, then the command path.
	for i < len(args) {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			out = append(out, a)
			if takesValue(flags, a) && i+1 < len(args) {
				out = append(out, args[i+1])
				i++
			}
			i++
			continue
		}
		c := Find(cmds, a)
		if c == nil {
			return args // not a command filering knows: leave it to the usage error
		}
		out = append(out, a)
		i++
		flags, cmds = c.Flags, c.Subcommands
		if len(cmds) == 0 {
			break
		}
	}
	var pos []string
	for ; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i:]...)
			i = len(args)
		case strings.HasPrefix(a, "-") && a != "-":
			out = append(out, a)
			if takesValue(flags, a) && i+1 < len(args) {
				out = append(out, args[i+1])
				i++
			}
		default:
			pos = append(pos, a)
		}
	}
	return append(out, pos...)
}

// Find returns the command of cmds named name, or by an alias name; nil when none is.
func Find(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.Name == name {
			return c
		}
		for _, a := range c.Aliases {
			if a == name {
				return c
			}
		}
	}
	return nil
}

// takesValue reports whether the flag token a (like "--last" or "-f") names a flag that
// takes a separate value: not a boolean one, and not written as --name=value.
func takesValue(flags []cli.Flag, a string) bool {
	name := strings.TrimLeft(a, "-")
	if strings.Contains(name, "=") {
		return false
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				if _, isBool := f.(*cli.BoolFlag); isBool {
					return false
				}
				return true
			}
		}
	}
	return false
}
