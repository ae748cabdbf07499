package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestReaders_ManySegmentsFewDescriptors reads a ring of 1,000 segments, whole and its
// last 5,000 records (556 segments), with every reader's command-line program in a
// process allowed 100 open files: the Go binary, the C library's filering-read and the
// Python package. Each reader holds at most 64 segment
// files open at once (docs/FORMAT.md, "Reading: a consistent snapshot", step 2), so each
// prints every record, the same bytes, where opening the whole set first failed with
// "too many open files".
func TestReaders_ManySegmentsFewDescriptors(t *testing.T) {
	dir := ring(t)
	var in bytes.Buffer
	for i := 1; i <= 9000; i++ {
		fmt.Fprintf(&in, "%0100d\n", i) // 9 records of 101 bytes per 4 KiB segment
	}
	if r := run(t, in.Bytes(), "produce", "--segment-size", "4KiB", "--segments", "2000", dir); r.code != 0 {
		t.Fatalf("produce: %s", r.stderr)
	}
	limited := func(name string, args ...string) *exec.Cmd {
		return exec.Command("sh", append([]string{"-c", `ulimit -n 100 && exec "$@"`, "sh", name}, args...)...)
	}
	_, cRead := cPrograms(t)
	py, err := exec.LookPath("python3")
	if err != nil && os.Getenv("FILERING_REQUIRE_PYTHON") == "1" {
		t.Fatal("python3 not found")
	}
	repo, _ := filepath.Abs("..")
	all := in.String()
	last := all[strings.Index(all, fmt.Sprintf("%0100d\n", 9000-5000+1)):]
	for _, sel := range [][]string{nil, {"--last", "5000"}} {
		want := all
		if sel != nil {
			want = last
		}
		readers := map[string]*exec.Cmd{"go": limited(bin, append(append([]string{"cat"}, sel...), dir)...)}
		if cRead != "" {
			readers["c"] = limited(cRead, append(sel, dir)...)
		}
		if py != "" {
			cmd := limited(py, append(append([]string{"-m", "filering", "cat"}, sel...), dir)...)
			cmd.Env = append(os.Environ(), "PYTHONPATH="+filepath.Join(repo, "python"))
			readers["python"] = cmd
		}
		for name, cmd := range readers {
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil || stderr.Len() != 0 {
				t.Errorf("%s reader %v: %v: %s", name, sel, err, stderr.Bytes())
				continue
			}
			if got := stdout.String(); got != want {
				t.Errorf("%s reader %v: %d lines, want %d", name, sel, strings.Count(got, "\n"), strings.Count(want, "\n"))
			}
		}
	}
}
