package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLI_UsageErrors checks that every mistake in how filering is called exits 2 with a
// message on stderr, and does nothing: no ring directory is created.
func TestCLI_UsageErrors(t *testing.T) {
	existing := ring(t)
	mustRun(t, lines(3), "produce", existing)
	dir := ring(t) // must still not exist afterwards

	cases := []struct {
		name string
		args []string
	}{
		{"cat without DIR", []string{"cat"}},
		{"cat with two DIRs", []string{"cat", existing, existing}},
		{"cat unknown flag", []string{"cat", "--no-such-flag", existing}},
		{"cat format bogus", []string{"cat", "--format", "bogus", existing}},
		{"cat negative last", []string{"cat", "--last", "-1", existing}},
		{"watch format bogus", []string{"watch", "--format", "bogus", dir}},
		{"take format bogus", []string{"take", "--format", "bogus", existing}},
		{"stat without DIR", []string{"stat"}},
		{"produce segment size not a multiple of 4KiB", []string{"produce", "--segment-size", "12345", dir}},
		{"produce segment size too small", []string{"produce", "--segment-size", "1KiB", dir}},
		{"produce one segment", []string{"produce", "--segments", "1", dir}},
		{"produce input bogus", []string{"produce", "--input", "bogus", dir}},
		{"produce negative seal-after", []string{"produce", "--seal-after", "-1s", dir}},
		{"unknown command", []string{"frobnicate", dir}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, []byte("1\n"), c.args...)
			if r.code != 2 {
				t.Errorf("filering %s: %v; want exit 2", strings.Join(c.args, " "), r)
			}
			if !strings.HasPrefix(string(r.stderr), "filering: ") {
				t.Errorf("filering %s: stderr %q; want a message starting with \"filering: \"", strings.Join(c.args, " "), r.stderr)
			}
			if exists(dir) {
				t.Fatalf("filering %s created %s", strings.Join(c.args, " "), dir)
			}
		})
	}
	if out := mustRun(t, nil, "cat", existing); string(out) != "1\n2\n3\n" {
		t.Errorf("the ring changed: cat prints %q", out)
	}
}

// TestCLI_RuntimeErrors checks that failures while running exit 1 with one message on
// stderr that starts with "filering:" and names the directory.
func TestCLI_RuntimeErrors(t *testing.T) {
	empty := filepath.Join(filepath.Dir(ring(t)), "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(filepath.Dir(ring(t)), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		dir  string
		args []string
	}{
		{"cat missing directory", "/nonexistent/dir", []string{"cat", "/nonexistent/dir"}},
		{"stat missing directory", "/nonexistent/dir", []string{"stat", "/nonexistent/dir"}},
		{"take missing directory", "/nonexistent/dir", []string{"take", "/nonexistent/dir"}},
		{"cat directory without a ring", empty, []string{"cat", empty}},
		{"stat directory without a ring", empty, []string{"stat", empty}},
		{"produce into a file", file, []string{"produce", file}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, []byte("1\n"), c.args...)
			msg := string(r.stderr)
			if r.code != 1 || !strings.HasPrefix(msg, "filering: ") || !strings.Contains(msg, c.dir) {
				t.Errorf("filering %s: %v; want exit 1 and a message starting \"filering: \" naming %s", strings.Join(c.args, " "), r, c.dir)
			}
			if strings.Count(msg, "\n") != 1 || strings.Count(msg, "filering:") != 1 {
				t.Errorf("filering %s: stderr %q; want one line with one \"filering:\" prefix", strings.Join(c.args, " "), msg)
			}
			if len(r.stdout) != 0 {
				t.Errorf("filering %s: stdout %q; want nothing", strings.Join(c.args, " "), r.stdout)
			}
		})
	}
}
