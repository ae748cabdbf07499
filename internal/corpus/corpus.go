// Package corpus builds the conformance corpus in testdata/conformance: ring directories,
// whole or damaged in every way docs/FORMAT.md names, each with
// the exact output and errors a conforming `cat` gives for it. Every implementation of
// the reader (the Go library and binary, the Python package, the C library) runs
// the same corpus; testdata/conformance/README.md describes how.
//
// The corpus is generated, deterministically, by Build; TestCorpusUpToDate fails when the
// committed files differ from what Build produces, and `go test ./internal/corpus
// -update` rewrites them. The expected outputs are derived from what the builder put in
// each ring and the rules of the format, never captured from an implementation.
//
// The package also holds what a Go test needs to run the corpus: Load, Materialize and
// CheckStderr.
package corpus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Kinds is the vocabulary of error kinds (README.md, "Kinds").
var Kinds = []string{
	KindNoRing, KindManifest, KindNotRegular, KindSize, KindHeader, KindSealedWord,
	KindCommittedWord, KindRecordSize, KindChecksum, KindSequence, KindMissing, KindLastSeq,
}

// The error kinds.
const (
	KindNoRing        = "no-ring"        // no manifest in the directory
	KindManifest      = "manifest"       // the manifest is invalid
	KindNotRegular    = "not-regular"    // manifest or listed segment is a symlink, FIFO, directory...
	KindSize          = "size"           // segment file size is not the ring's segment size
	KindHeader        = "header"         // magic, version, header CRC, or a field disagreeing with the manifest
	KindSealedWord    = "sealed-word"    // sealed word not 0 or 1, or 0 while the manifest lists the segment sealed
	KindCommittedWord = "committed-word" // committed word out of range or not a multiple of 8
	KindRecordSize    = "record-size"    // record size word below 24 or reaching past the segment
	KindChecksum      = "checksum"       // record CRC mismatch below the committed word
	KindSequence      = "sequence"       // record sequence number not the expected one
	KindMissing       = "missing"        // zero commit word below the committed word
	KindLastSeq       = "last-seq"       // sealed segment's records disagree with the manifest's last_seq
)

// Setup operations (README.md, "Setup").
const (
	OpMkfifo  = "mkfifo"
	OpMkdir   = "mkdir"
	OpSymlink = "symlink"
	OpChmod   = "chmod"
)

// Error is an error a run expects.
type Error struct {
	File   *string `json:"file"`   // a name in the ring directory; nil for the directory itself
	Offset *int64  `json:"offset"` // nil: no offset to check (segment or manifest as a whole)
	Kind   string  `json:"kind"`
}

func (e Error) String() string {
	file, off := "(ring)", "null"
	if e.File != nil {
		file = *e.File
	}
	if e.Offset != nil {
		off = strconv.FormatInt(*e.Offset, 10)
	}
	return fmt.Sprintf("%s@%s:%s", file, off, e.Kind)
}

// Step is one setup step, applied to the copy of ring/ before the runs.
type Step struct {
	Op     string `json:"op"`
	Path   string `json:"path"`
	Target string `json:"target,omitempty"` // symlink: what the link points to
	Mode   string `json:"mode,omitempty"`   // chmod: octal permission bits, e.g. "0444"
}

// Run is one invocation of the reader and what it must give.
type Run struct {
	Args   []string `json:"args"`   // cat options: --last N, --from SEQ, --format F
	Stdout string   `json:"stdout"` // file next to case.json holding the exact stdout
	Exit   int      `json:"exit"`
	Errors []Error  `json:"errors"`
}

// Spec is the content of a case.json.
type Spec struct {
	Description string `json:"description"`
	Setup       []Step `json:"setup"`
	Runs        []Run  `json:"runs"`
}

// Case is one case of the corpus, in memory.
type Case struct {
	Name    string
	Spec    Spec
	Ring    map[string][]byte // the files of ring/; nil: no ring/ directory at all
	Outputs map[string][]byte // expected stdout files, by name
}

// Selection returns the --last, --from and --format values in args (0, 0 and "lines"
// when absent), and an error for anything else.
func Selection(args []string) (last int, from uint64, format string, err error) {
	format = FormatLines
	for i := 0; i < len(args); i += 2 {
		if i+1 >= len(args) {
			return 0, 0, "", fmt.Errorf("option %s without a value", args[i])
		}
		v := args[i+1]
		switch args[i] {
		case "--last":
			last, err = strconv.Atoi(v)
		case "--from":
			from, err = strconv.ParseUint(v, 10, 64)
		case "--format":
			format = v
		default:
			err = fmt.Errorf("unknown option %s", args[i])
		}
		if err != nil {
			return 0, 0, "", err
		}
	}
	return last, from, format, nil
}

// Write writes the cases under dir, one directory each.
func Write(dir string, cases []Case) error {
	for _, c := range cases {
		cd := filepath.Join(dir, c.Name)
		if err := os.MkdirAll(cd, 0o755); err != nil {
			return err
		}
		spec, err := encodeSpec(c.Spec)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(cd, "case.json"), spec, 0o644); err != nil {
			return err
		}
		for name, b := range c.Outputs {
			if err := os.WriteFile(filepath.Join(cd, name), b, 0o644); err != nil {
				return err
			}
		}
		if c.Ring == nil {
			continue
		}
		rd := filepath.Join(cd, "ring")
		if err := os.MkdirAll(rd, 0o755); err != nil {
			return err
		}
		for name, b := range c.Ring {
			if err := os.WriteFile(filepath.Join(rd, name), b, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// encodeSpec writes a case.json: plain JSON, one setup step or run a line.
func encodeSpec(s Spec) ([]byte, error) {
	compact := func(v any) (string, error) {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		err := enc.Encode(v)
		return strings.TrimSuffix(buf.String(), "\n"), err
	}
	list := func(name string, n int, item func(i int) any) (string, error) {
		if n == 0 {
			return fmt.Sprintf("  %q: []", name), nil
		}
		lines := make([]string, n)
		for i := range lines {
			l, err := compact(item(i))
			if err != nil {
				return "", err
			}
			lines[i] = "    " + l
		}
		return fmt.Sprintf("  %q: [\n%s\n  ]", name, strings.Join(lines, ",\n")), nil
	}
	desc, err := compact(s.Description)
	if err != nil {
		return nil, err
	}
	setup, err := list("setup", len(s.Setup), func(i int) any { return s.Setup[i] })
	if err != nil {
		return nil, err
	}
	runs, err := list("runs", len(s.Runs), func(i int) any { return s.Runs[i] })
	if err != nil {
		return nil, err
	}
	return []byte("{\n  \"description\": " + desc + ",\n" + setup + ",\n" + runs + "\n}\n"), nil
}

// Loaded is a case read back from disk.
type Loaded struct {
	Name string
	Dir  string // the case's directory
	Spec Spec
}

// Load reads every case under dir (every subdirectory holding a case.json), in name
// order. case.json is parsed strictly: unknown fields are an error.
func Load(dir string) ([]Loaded, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []Loaded
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		cd := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(filepath.Join(cd, "case.json"))
		if err != nil {
			return nil, err
		}
		d := json.NewDecoder(bytes.NewReader(b))
		d.DisallowUnknownFields()
		var s Spec
		if err := d.Decode(&s); err != nil {
			return nil, fmt.Errorf("%s/case.json: %v", cd, err)
		}
		out = append(out, Loaded{Name: e.Name(), Dir: cd, Spec: s})
	}
	return out, nil
}

// Materialize copies the case's ring/ to dst, which must not exist, and applies the setup
// steps. Without a ring/ directory dst is made empty.
func Materialize(c Loaded, dst string) error {
	if err := os.Mkdir(dst, 0o755); err != nil {
		return err
	}
	src := filepath.Join(c.Dir, "ring")
	ents, err := os.ReadDir(src)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			return fmt.Errorf("%s/%s: ring/ holds only regular files", src, e.Name())
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			return err
		}
	}
	for _, s := range c.Spec.Setup {
		if err := apply(dst, s); err != nil {
			return fmt.Errorf("setup %+v: %w", s, err)
		}
	}
	return nil
}

func apply(dir string, s Step) error {
	if s.Path != "." && (s.Path == "" || strings.ContainsRune(s.Path, '/') || s.Path == "..") {
		return fmt.Errorf("path %q is not a name in the ring", s.Path)
	}
	p := filepath.Join(dir, s.Path)
	switch s.Op {
	case OpMkfifo:
		return syscall.Mkfifo(p, 0o644)
	case OpMkdir:
		return os.Mkdir(p, 0o755)
	case OpSymlink:
		return os.Symlink(s.Target, p)
	case OpChmod:
		mode, err := strconv.ParseUint(s.Mode, 8, 32)
		if err != nil || mode > 0o777 {
			return fmt.Errorf("bad mode %q", s.Mode)
		}
		return os.Chmod(p, os.FileMode(mode))
	}
	return fmt.Errorf("unknown op %q", s.Op)
}

// Unmaterialize makes everything under dir writable again, so that it can be removed.
func Unmaterialize(dir string) {
	os.Chmod(dir, 0o755)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Type().IsRegular() || e.IsDir() {
			os.Chmod(filepath.Join(dir, e.Name()), 0o755)
		}
	}
}

// CheckStderr checks what a `cat` of the ring at dir wrote on stderr against the errors
// the run expects (README.md, "Running a case"):
//
//   - each expected error has its own line of stderr that names the file (dir/FILE; the
//     ring directory dir itself when File is nil) and, when Offset is given, contains
//     "offset N" as whole words;
//   - no other line names a file in the ring (dir/...);
//   - with no error expected, stderr is empty.
func CheckStderr(stderr []byte, dir string, want []Error) error {
	text := strings.TrimSuffix(string(stderr), "\n")
	if len(want) == 0 {
		if len(stderr) != 0 {
			return fmt.Errorf("no error expected, stderr is %q", stderr)
		}
		return nil
	}
	lines := strings.Split(text, "\n")
	used := make([]bool, len(lines))
	var problems []string
	for _, e := range want {
		name := dir
		if e.File != nil {
			name = dir + "/" + *e.File
		}
		var off *regexp.Regexp
		if e.Offset != nil {
			off = regexp.MustCompile(`\boffset ` + strconv.FormatInt(*e.Offset, 10) + `\b`)
		}
		found := false
		for i, l := range lines {
			if used[i] || !containsName(l, name) || (off != nil && !off.MatchString(l)) {
				continue
			}
			used[i], found = true, true
			break
		}
		if !found {
			problems = append(problems, fmt.Sprintf("no line of stderr names %s%s", name, offsetText(e.Offset)))
		}
	}
	for i, l := range lines {
		if !used[i] && strings.Contains(l, dir+"/") {
			problems = append(problems, fmt.Sprintf("unexpected error: %q", l))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s; stderr:\n%s", strings.Join(problems, "; "), stderr)
	}
	return nil
}

// containsName reports whether line names path: path followed by the end of the line or
// by something that cannot continue a path (so that dir/0000000000000001.seg does not
// match dir/0000000000000001.segment, and dir does not match dir/manifest).
func containsName(line, path string) bool {
	for i := 0; ; {
		j := strings.Index(line[i:], path)
		if j < 0 {
			return false
		}
		end := i + j + len(path)
		if end == len(line) {
			return true
		}
		c := line[end]
		if !(c == '/' || c == '.' || c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return true
		}
		i = end
	}
}

func offsetText(o *int64) string {
	if o == nil {
		return ""
	}
	return fmt.Sprintf(" with \"offset %d\"", *o)
}

// SortedKeys returns the keys of m in order.
func SortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
