package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/filering/filering/internal/cmdline"
	"github.com/filering/filering/ramdisk"
)

// runBench runs `filering bench args...` in an app of its own and returns what it printed.
func runBench(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	app := &cli.App{
		Name:           "filering",
		Writer:         &out,
		ErrWriter:      &errOut,
		ExitErrHandler: func(*cli.Context, error) {},
		Commands:       []*cli.Command{benchCommand()},
	}
	if err := app.Run(append([]string{"filering", "bench"}, args...)); err != nil {
		t.Fatalf("filering bench %s: %v\nstderr:\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String()
}

// benchDir returns /dev/shm when it is tmpfs with room for the test's rings, and a
// temporary directory otherwise.
func benchDir(t *testing.T) string {
	if info, err := ramdisk.Check("/dev/shm"); err == nil && info.TmpFS && info.Exists && info.Free > 512<<20 {
		return "/dev/shm"
	}
	return t.TempDir()
}

// TestBench_table runs `filering bench` from its flags to its table. Its latency
// measurement starts reader processes, this test binary started again: that checks the
// hook in this package's init that hands them to bench.RunPeer. The measurements
// themselves are tested in internal/bench.
func TestBench_table(t *testing.T) {
	if testing.Short() {
		t.Skip("starts reader processes")
	}
	out := runBench(t, "--duration", "20ms", "--samples", "10", "--sizes", "1KiB",
		"--transports", "filering,pipe", "--measure", "alone,latency", "--dir", benchDir(t))
	for _, want := range []string{"machine:", "directory:", "1. Producer alone", "3. Wake latency",
		"filering ÷ this", "filering p50 ÷ this", "1KiB"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "2. Producer to a reader") {
		t.Errorf("table shows a measurement not asked for:\n%s", out)
	}
}

func TestBench_usage(t *testing.T) {
	for _, args := range [][]string{
		{"--sizes", "16"},
		{"--sizes", "64,1kB"},
		{"--transports", "pipe,carrier-pigeon"},
		{"--measure", "everything"},
		{"--rate", "0"},
		{"--duration", "0s"},
		{"--segment-size", "1000"},
	} {
		app := &cli.App{Name: "filering", Writer: new(bytes.Buffer), ErrWriter: new(bytes.Buffer),
			ExitErrHandler: func(*cli.Context, error) {}, Commands: []*cli.Command{benchCommand()}}
		err := app.Run(append([]string{"filering", "bench"}, args...))
		if _, ok := err.(cmdline.UsageError); !ok {
			t.Errorf("bench %v: error %v, want a usage error", args, err)
		}
	}
}
