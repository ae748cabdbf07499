package cgi

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/publish"
	"github.com/filering/filering/segment"
	"github.com/filering/filering/watch"
)

// python returns the python3 to run, skipping the test when there is none unless
// FILERING_REQUIRE_PYTHON=1 says it must be there.
func python(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("FILERING_REQUIRE_PYTHON") == "1" {
			t.Fatal("python3 is required (FILERING_REQUIRE_PYTHON=1) but not found")
		}
		t.Skip("python3 not found")
	}
	return p
}

type pyRecord struct {
	Seq     uint64  `json:"seq"`
	Time    string  `json:"time"`
	Data    *string `json:"data"`
	DataB64 *string `json:"data_b64"`
}

// readPython runs `python3 -m filering cat DIR --format json ARGS` with the package in
// ../../python (an installed copy, if any, is not used).
func readPython(t *testing.T, py, dir string, args ...string) ([]pyRecord, string, error) {
	t.Helper()
	pkg, err := filepath.Abs(filepath.Join("..", "..", "python"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, append([]string{"-m", "filering", "cat", dir, "--format", "json"}, args...)...)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+pkg)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	var recs []pyRecord
	sc := bufio.NewScanner(&out)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var r pyRecord
		if jerr := json.Unmarshal(sc.Bytes(), &r); jerr != nil {
			t.Fatalf("python printed %q: %v", sc.Text(), jerr)
		}
		recs = append(recs, r)
	}
	return recs, errb.String(), err
}

// TestInterop_GoWritesPythonReads: records appended by the Go producer, across rolls,
// retention and a taken segment, read by the standard-library Python package (python/),
// equal what the Go reader returns, byte for byte.
func TestInterop_GoWritesPythonReads(t *testing.T) {
	py := python(t)
	dir := ringtest.Dir(t)
	w, err := publish.Open(dir, publish.Options{SegmentSize: 8192, Segments: 6})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3000; i++ {
		var p []byte
		switch i % 4 {
		case 0:
			p = []byte(fmt.Sprintf("%d.%03d", i, i%1000))
		case 1:
			p = []byte(fmt.Sprintf("quote \" backslash \\ newline \n tab \t é \u2028 %d", i))
		case 2:
			p = binary.LittleEndian.AppendUint64([]byte{0xff, 0xfe}, uint64(i)) // not UTF-8
		case 3:
			p = nil
		}
		if _, err := w.Append(p); err != nil {
			t.Fatal(err)
		}
	}
	// Take the oldest sealed segment, leaving a gap the readers must skip.
	r, err := watch.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tk, err := r.Taker().Take()
	if err != nil {
		t.Fatal(err)
	}
	tk.Done()

	for _, args := range [][]string{nil, {"--last", "1"}, {"--last", "700"}, {"--from", "2500"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			sel := watch.Selection{}
			if len(args) == 2 && args[0] == "--last" {
				fmt.Sscan(args[1], &sel.Last)
			}
			if len(args) == 2 && args[0] == "--from" {
				fmt.Sscan(args[1], &sel.From)
			}
			snap, err := r.Snapshot(sel)
			if err != nil {
				t.Fatal(err)
			}
			var want []segment.Record
			for snap.Next() {
				rec := snap.Record()
				rec.Data = bytes.Clone(rec.Data)
				want = append(want, rec)
			}
			snap.Close()
			got, stderr, err := readPython(t, py, dir, args...)
			if err != nil {
				t.Fatalf("python -m filering cat: %v: %s", err, stderr)
			}
			if len(got) != len(want) || len(want) == 0 {
				t.Fatalf("python read %d records, Go %d", len(got), len(want))
			}
			for i := range want {
				g, wnt := got[i], want[i]
				var data []byte
				if g.Data != nil {
					data = []byte(*g.Data)
				} else if g.DataB64 != nil {
					data, _ = base64.StdEncoding.DecodeString(*g.DataB64)
				}
				wantTime := time.Unix(0, wnt.Time).UTC().Format("2006-01-02T15:04:05.000000000Z07:00")
				if g.Seq != wnt.Seq || g.Time != wantTime || !bytes.Equal(data, wnt.Data) {
					t.Fatalf("record %d: python %d %s %q, Go %d %s %q", i, g.Seq, g.Time, data, wnt.Seq, wantTime, wnt.Data)
				}
			}
		})
	}
	w.Close()
}

// TestInterop_PythonDetectsCorruption: a bit flipped in a committed record is reported
// by the Python package as corruption naming the file and offset.
func TestInterop_PythonDetectsCorruption(t *testing.T) {
	py := python(t)
	dir := ringtest.Dir(t)
	w, err := publish.Open(dir, publish.Options{SegmentSize: 8192})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		w.Append([]byte(fmt.Sprintf("value %d", i)))
	}
	w.Close()
	seg := filepath.Join(dir, segment.Name(1))
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	off := segment.HeaderSize + 10*segment.RecordSpan(len("value 0"))
	b[off+segment.RecordHeaderSize] ^= 0x20
	if err := os.WriteFile(seg, b, 0o640); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := readPython(t, py, dir)
	if err == nil {
		t.Fatal("python -m filering cat accepted a corrupt record")
	}
	if !strings.Contains(stderr, seg) || !strings.Contains(stderr, fmt.Sprint(off)) {
		t.Fatalf("python error does not name %s and offset %d: %s", seg, off, stderr)
	}
}
