package corpus

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/conformance with what Build produces")

// corpusDir is the committed corpus, from this package's directory.
const corpusDir = "../../testdata/conformance"

// TestCorpusUpToDate fails when the committed corpus differs from what Build produces.
// With -update it rewrites the corpus first: every case directory is removed and written
// again (README.md, written by hand, is left alone).
func TestCorpusUpToDate(t *testing.T) {
	cases := Build()
	if *update {
		ents, err := os.ReadDir(corpusDir)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.IsDir() {
				if err := os.RemoveAll(filepath.Join(corpusDir, e.Name())); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := Write(corpusDir, cases); err != nil {
			t.Fatal(err)
		}
	}
	want := t.TempDir()
	if err := Write(want, cases); err != nil {
		t.Fatal(err)
	}
	wantFiles := tree(t, want)
	gotFiles := tree(t, corpusDir)
	delete(gotFiles, "README.md")
	var diffs []string
	for _, name := range SortedKeys(wantFiles) {
		got, ok := gotFiles[name]
		switch {
		case !ok:
			diffs = append(diffs, "missing: "+name)
		case !bytes.Equal(got, wantFiles[name]):
			diffs = append(diffs, fmt.Sprintf("differs: %s (%d bytes, builder makes %d)", name, len(got), len(wantFiles[name])))
		}
	}
	for _, name := range SortedKeys(gotFiles) {
		if _, ok := wantFiles[name]; !ok {
			diffs = append(diffs, "not made by the builder: "+name)
		}
	}
	if len(diffs) > 0 {
		if len(diffs) > 30 {
			diffs = append(diffs[:30], fmt.Sprintf("... and %d more", len(diffs)-30))
		}
		t.Errorf("testdata/conformance is not what the builder makes; run `go test ./internal/corpus -update` after changing the builder:\n%s", strings.Join(diffs, "\n"))
	}
}

// tree returns every file under dir by slash-separated relative path. Anything that is
// neither a regular file nor a directory is an error: git could not store it.
func tree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s is not a regular file", p)
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		files[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestBuild_Deterministic(t *testing.T) {
	a, b := Build(), Build()
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two Builds differ")
	}
}

// TestBuild_Consistent checks what every case promises: a known error vocabulary, exit
// status 1 exactly when errors are expected, a stdout file for each run, known setup
// operations, small files.
func TestBuild_Consistent(t *testing.T) {
	ops := []string{OpMkfifo, OpMkdir, OpSymlink, OpChmod}
	total := 0
	for _, c := range Build() {
		if strings.ContainsAny(c.Spec.Description, "\n") || c.Spec.Description == "" {
			t.Errorf("%s: description must be one line", c.Name)
		}
		for _, s := range c.Spec.Setup {
			if !slices.Contains(ops, s.Op) {
				t.Errorf("%s: unknown op %q", c.Name, s.Op)
			}
		}
		for _, r := range c.Spec.Runs {
			if _, ok := c.Outputs[r.Stdout]; !ok {
				t.Errorf("%s: no output %s", c.Name, r.Stdout)
			}
			if (r.Exit == 1) != (len(r.Errors) > 0) || r.Exit > 1 {
				t.Errorf("%s: exit %d with %d errors", c.Name, r.Exit, len(r.Errors))
			}
			for _, e := range r.Errors {
				if !slices.Contains(Kinds, e.Kind) {
					t.Errorf("%s: unknown kind %q", c.Name, e.Kind)
				}
			}
			if _, _, _, err := Selection(r.Args); err != nil {
				t.Errorf("%s: %v", c.Name, err)
			}
		}
		for name, b := range c.Ring {
			total += len(b)
			if len(b) > 1<<20+1 {
				t.Errorf("%s: %s is %d bytes", c.Name, name, len(b))
			}
		}
	}
	if total > 4<<20 {
		t.Errorf("the rings of the corpus hold %d bytes; keep it small", total)
	}
}

// TestREADME checks that README.md documents every kind and every setup operation.
func TestREADME(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(corpusDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range append(slices.Clone(Kinds), OpMkfifo, OpMkdir, OpSymlink, OpChmod) {
		if !bytes.Contains(b, []byte("`"+w+"`")) {
			t.Errorf("README.md does not document `%s`", w)
		}
	}
}

func TestAppendTime(t *testing.T) {
	cases := map[int64]string{
		0:                    "1970-01-01T00:00:00.000000000Z",
		-1:                   "1969-12-31T23:59:59.999999999Z",
		math.MinInt64:        "1677-09-21T00:12:43.145224192Z",
		math.MaxInt64:        "2262-04-11T23:47:16.854775807Z",
		951782400000000005:   "2000-02-29T00:00:00.000000005Z",
		-2208988800000000000: "1900-01-01T00:00:00.000000000Z",
	}
	for ns, want := range cases {
		if got := string(AppendTime(nil, ns)); got != want {
			t.Errorf("AppendTime(%d) = %s, want %s", ns, got, want)
		}
	}
	// And against package time, over the whole int64 range.
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		ns := int64(rnd.Uint64())
		if i%2 == 0 {
			ns >>= rnd.IntN(63)
		}
		want := time.Unix(0, ns).UTC().Format("2006-01-02T15:04:05.000000000Z")
		if got := string(AppendTime(nil, ns)); got != want {
			t.Fatalf("AppendTime(%d) = %s, want %s", ns, got, want)
		}
	}
}

func TestAppendJSON(t *testing.T) {
	cases := []struct {
		data []byte
		want string
	}{
		{nil, `"data":""`},
		{[]byte("a\"b\\c/"), `"data":"a\"b\\c/"`},
		{[]byte("\n\r\t\b\f\x00\x1f\x7f"), `"data":"\n\r\t\b\f\u0000\u001f` + "\x7f\""},
		{[]byte("\x0b\x1a"), `"data":"\u000b\u001a"`},
		{[]byte("é\u2028"), "\"data\":\"é\u2028\""},
		{[]byte{0xed, 0xa0, 0x80}, `"data_b64":"7aCA"`},
		{[]byte{0xff}, `"data_b64":"/w=="`},
	}
	for _, c := range cases {
		want := `{"seq":18446744073709551615,"time":"1969-12-31T23:59:59.999999999Z",` + c.want + "}\n"
		got := string(AppendJSON(nil, Record{Seq: math.MaxUint64, Time: -1, Data: c.data}))
		if got != want {
			t.Errorf("AppendJSON(%q) = %s, want %s", c.data, got, want)
		}
		var doc map[string]any
		if err := json.Unmarshal([]byte(got), &doc); err != nil {
			t.Errorf("AppendJSON(%q) is not JSON: %v", c.data, err)
		} else if s, ok := doc["data"].(string); ok && s != string(c.data) {
			t.Errorf("AppendJSON(%q) decodes to %q", c.data, s)
		}
	}
}

// TestCheckStderr pins the rules a runner applies to stderr.
func TestCheckStderr(t *testing.T) {
	dir := "/tmp/x/ring"
	seg := "0000000000000002.seg"
	e := []Error{{File: &seg, Offset: at(136), Kind: KindChecksum}}
	ok := []string{
		"filering: /tmp/x/ring/0000000000000002.seg: corrupt at offset 136: bad CRC\nfilering: /tmp/x/ring: damaged\n",
		"reader: corrupt segment /tmp/x/ring/0000000000000002.seg at offset 136 (record CRC)\n",
	}
	for _, s := range ok {
		if err := CheckStderr([]byte(s), dir, e); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	bad := []string{
		"",
		"filering: /tmp/x/ring/0000000000000002.seg: corrupt at offset 1360: bad CRC\n",
		"filering: /tmp/x/ring/0000000000000002.segment: corrupt at offset 136\n",
		"filering: /tmp/x/ring/0000000000000002.seg: corrupt at offset 136\nfilering: /tmp/x/ring/0000000000000003.seg: missing\n",
	}
	for _, s := range bad {
		if err := CheckStderr([]byte(s), dir, e); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	if err := CheckStderr([]byte("warning\n"), dir, nil); err == nil {
		t.Error("stderr accepted when no error is expected")
	}
	if err := CheckStderr([]byte("x: /tmp/x/ring: no ring\n"), dir, []Error{{Kind: KindNoRing}}); err != nil {
		t.Error(err)
	}
	if err := CheckStderr([]byte("x: /tmp/x/ring/manifest: no ring\n"), dir, []Error{{Kind: KindNoRing}}); err == nil {
		t.Error("a line naming dir/manifest accepted for the directory")
	}
}
