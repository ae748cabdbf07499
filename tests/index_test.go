package tests

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/filering/filering/segment"
)

// TestReaders_Indexes: rings of 1 MiB segments written by the Go producer and by the C
// one carry indexes (docs/FORMAT.md, "The segment index"), and the three readers (the
// Go binary, filering-read, the Python package) print the same bytes for the last
// records and those from a sequence number: the records a whole read prints. With a
// record damaged early in the newest segment, before its index entries, the same
// selections still print those records, with nothing on standard error, while a whole
// read reports the damage; every reader then starts at an entry.
func TestReaders_Indexes(t *testing.T) {
	produceC, readC := cPrograms(t)
	py, err := exec.LookPath("python3")
	if err != nil && os.Getenv("FILERING_REQUIRE_PYTHON") == "1" {
		t.Fatal("python3 not found")
	}
	repo, _ := filepath.Abs("..")
	// Mostly short records, now and then one longer than an index block.
	var ps [][]byte
	for i := 1; i <= 60000; i++ {
		p := fmt.Sprintf("%d:%s", i, strings.Repeat("r", i%50))
		if i%4000 == 0 {
			p += strings.Repeat("L", 100000)
		}
		ps = append(ps, []byte(p))
	}
	flags := []string{"--input", "frames", "--segment-size", "1MiB", "--segments", "6"}
	producers := map[string]func(dir string){
		"go": func(dir string) { mustRun(t, framesOf(ps), append(append([]string{"produce"}, flags...), dir)...) },
	}
	if produceC != "" {
		producers["c"] = func(dir string) {
			if r := runC(t, framesOf(ps), produceC, append(flags, dir)...); r.code != 0 || len(r.stderr) != 0 {
				t.Fatalf("filering-produce: %v", r)
			}
		}
	}
	for name, produce := range producers {
		t.Run(name+" producer", func(t *testing.T) {
			dir := ring(t)
			produce(dir)
			m := loadManifest(t, dir)
			newest := m.Segments[len(m.Segments)-1]
			for _, e := range m.Segments {
				if _, err := os.Stat(filepath.Join(dir, segment.IndexName(e.Number()))); err != nil {
					t.Fatalf("segment %s has no index: %v", e.Name, err)
				}
			}
			whole := mustRun(t, nil, "cat", "--format", "json", dir)
			lines := bytes.SplitAfter(whole, []byte("\n"))
			lines = lines[:len(lines)-1]
			first := len(lines) - int(newest.LastSeq-newest.FirstSeq+1) // the newest segment's first line
			sels := map[string][]byte{
				"--last 5":   bytes.Join(lines[len(lines)-5:], nil),
				"--last 700": bytes.Join(lines[len(lines)-700:], nil),
				"--from " + strconv.FormatUint(newest.FirstSeq+2000, 10): bytes.Join(lines[first+2000:], nil),
			}
			readers := func(sel string) map[string]*exec.Cmd {
				args := append(strings.Fields(sel), "--format", "json", dir)
				cmds := map[string]*exec.Cmd{"go": exec.Command(bin, append([]string{"cat"}, args...)...)}
				if readC != "" {
					cmds["c"] = exec.Command(readC, args...)
				}
				if py != "" {
					cmd := exec.Command(py, append([]string{"-m", "filering", "cat"}, args...)...)
					cmd.Env = append(os.Environ(), "PYTHONPATH="+filepath.Join(repo, "python"))
					cmds["python"] = cmd
				}
				return cmds
			}
			check := func(what string) {
				for sel, want := range sels {
					for reader, cmd := range readers(sel) {
						var stdout, stderr bytes.Buffer
						cmd.Stdout, cmd.Stderr = &stdout, &stderr
						if err := cmd.Run(); err != nil || stderr.Len() != 0 {
							t.Errorf("%s: %s reader %s: %v: %s", what, reader, sel, err, stderr.Bytes())
							continue
						}
						sameBytes(t, fmt.Sprintf("%s: %s reader %s", what, reader, sel), stdout.Bytes(), want)
					}
				}
			}
			check("healthy")

			// Damage the CRC of the newest segment's fourth record.
			path := filepath.Join(dir, newest.Name)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			off := segment.HeaderSize
			for i := 0; i < 3; i++ {
				off += segment.RecordSpan(int(binary.LittleEndian.Uint32(b[off:])) - segment.RecordHeaderSize)
			}
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt([]byte{b[off+4] ^ 1}, int64(off+4))
			f.Close()
			if r := run(t, nil, "cat", dir); r.code != 1 || !strings.Contains(string(r.stderr), fmt.Sprintf("offset %d", off)) {
				t.Fatalf("whole read of the damaged ring: exit %d, stderr %q", r.code, r.stderr)
			}
			check("damaged before the entries")
		})
	}
}
