// Package tests holds multi-process integration tests of filering: they build the real
// binary once and drive producers, readers, followers and takers as separate processes
// through rings on tmpfs (/dev/shm when present).
//
// Run them with `go test ./tests/`; `-short` shrinks the record counts and the number of
// crash rounds. Under `-race` the binary itself is built with the race detector too (and
// the counts shrink as with -short), so a data race in any filering process shows up on
// its standard error, which the tests check.
package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// bin is the path of the filering binary TestMain builds.
var bin string

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "filering-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "tests: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "filering")
	args := []string{"build", "-o", dir}
	if raceEnabled {
		args = append(args, "-race")
		// The race runtime sleeps a second at exit by default; the tests start hundreds
		// of processes.
		if _, ok := os.LookupEnv("GORACE"); !ok {
			os.Setenv("GORACE", "atexit_sleep_ms=0")
		}
	}
	// filering runs filering-serve and filering-forward from its own directory.
	args = append(args, "github.com/filering/filering/cmd/filering",
		"github.com/filering/filering/cmd/filering-serve", "github.com/filering/filering/cmd/filering-forward")
	cmd := exec.Command("go", args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "tests: go %v: %v\n", args, err)
		return 1
	}
	return m.Run()
}
