// Command filering-forward is `filering forward`: it forwards a ring's records to a NATS
// JetStream stream, with package forward. `filering forward ARGS` runs
// `filering-forward ARGS`; it is a program of its own so that the other commands do not
// link a NATS client (package cmdline).
package main

import (
	"io"
	"os"

	"github.com/filering/filering/internal/cmdline"
)

const seeAlso = `.BR filering (1),
.BR nats-server (8).
The forwarder is described in docs/FORWARD.md in the filering source tree.
`

func main() { os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr)) }

// run runs filering-forward with the command line args and returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return cmdline.RunPart(forwardCommand(), seeAlso, args, stdin, stdout, stderr)
}
