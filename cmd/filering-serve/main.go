// Command filering-serve is `filering serve`: it serves a ring, or a directory of rings,
// over HTTP, with package serve. `filering serve ARGS` runs `filering-serve ARGS`; it is
// a program of its own so that the other commands do not link an HTTP server (package
// cmdline).
package main

import (
	"io"
	"os"

	"github.com/filering/filering/internal/cmdline"
)

const seeAlso = `.BR filering (1).
`

func main() { os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr)) }

// run runs filering-serve with the command line args and returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return cmdline.RunPart(serveCommand(), seeAlso, args, stdin, stdout, stderr)
}
