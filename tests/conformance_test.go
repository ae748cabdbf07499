package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/filering/filering/internal/corpus"
	"github.com/filering/filering/segment"
	"github.com/filering/filering/watch"
)

// conformanceDir is the corpus every reader implementation must pass
// (testdata/conformance/README.md).
const conformanceDir = "../testdata/conformance"

// conformanceTimeout bounds one run: a reader that blocks (on a FIFO, say) fails.
const conformanceTimeout = 20 * time.Second

// TestConformance runs every case of the conformance corpus against the watch library
// (Snapshot, with SkipDamaged, its records formatted by the corpus's formatter, which is
// written from the contract) and against the filering binary (`filering cat`, compared
// byte for byte). A failure names the case, the run and what differs.
func TestConformance(t *testing.T) {
	cases, err := corpus.Load(conformanceDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatal("no conformance cases")
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			for _, run := range c.Spec.Runs {
				name := strings.Join(run.Args, " ")
				if name == "" {
					name = "cat"
				}
				want, err := os.ReadFile(filepath.Join(c.Dir, run.Stdout))
				if err != nil {
					t.Fatal(err)
				}
				t.Run("library/"+name, func(t *testing.T) { conformLibrary(t, c, run, want) })
				t.Run("binary/"+name, func(t *testing.T) { conformBinary(t, c, run, want) })
			}
		})
	}
}

// materialize copies the case's ring to a fresh directory on tmpfs and sets it up.
func materialize(t *testing.T, c corpus.Loaded) string {
	t.Helper()
	dir := ring(t)
	t.Cleanup(func() { corpus.Unmaterialize(dir) })
	if err := corpus.Materialize(c, dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func conformBinary(t *testing.T, c corpus.Loaded, run corpus.Run, want []byte) {
	dir := materialize(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), conformanceTimeout)
	defer cancel()
	args := append(append([]string{"cat"}, run.Args...), dir)
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("filering %s did not finish within %v", strings.Join(args, " "), conformanceTimeout)
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if d := outputDiff(stdout.Bytes(), want); d != "" {
		t.Errorf("stdout differs from %s: %s", run.Stdout, d)
	}
	if code != run.Exit {
		t.Errorf("exit status %d, want %d", code, run.Exit)
	}
	if err := corpus.CheckStderr(stderr.Bytes(), dir, run.Errors); err != nil {
		t.Errorf("errors: want %v: %v", run.Errors, err)
	}
}

func conformLibrary(t *testing.T, c corpus.Loaded, run corpus.Run, want []byte) {
	dir := materialize(t, c)
	last, from, format, err := corpus.Selection(run.Args)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		recs []corpus.Record
		errs []error
	}
	done := make(chan result, 1)
	go func() {
		recs, errs := readLibrary(dir, watch.Selection{Last: last, From: from})
		done <- result{recs, errs}
	}()
	var res result
	select {
	case res = <-done:
	case <-time.After(conformanceTimeout):
		t.Fatalf("the library's snapshot did not finish within %v", conformanceTimeout)
	}
	got, err := corpus.Format(res.recs, format)
	if err != nil {
		t.Fatal(err)
	}
	if d := outputDiff(got, want); d != "" {
		t.Errorf("records differ from %s: %s", run.Stdout, d)
	}
	var gotErrs []corpus.Error
	for _, e := range res.errs {
		gotErrs = append(gotErrs, classify(dir, e))
	}
	if !sameErrors(gotErrs, run.Errors) {
		t.Errorf("errors: got %v, want %v (%v)", gotErrs, run.Errors, res.errs)
	}
}

// readLibrary reads the ring the way `filering cat` does with the library: one snapshot,
// moving past damaged segments with SkipDamaged. It returns the records delivered and
// every error met, the last one fatal unless it was skipped.
func readLibrary(dir string, sel watch.Selection) ([]corpus.Record, []error) {
	r, err := watch.Open(dir)
	if err != nil {
		return nil, []error{err}
	}
	defer r.Close()
	snap, err := r.Snapshot(sel)
	if err != nil {
		return nil, []error{err}
	}
	defer snap.Close()
	var recs []corpus.Record
	var errs []error
	for {
		for snap.Next() {
			rec := snap.Record()
			recs = append(recs, corpus.Record{Seq: rec.Seq, Time: rec.Time, Data: bytes.Clone(rec.Data)})
		}
		err := snap.Err()
		if err == nil {
			return recs, errs
		}
		errs = append(errs, err)
		if !snap.SkipDamaged() {
			return recs, errs
		}
	}
}

// classify turns an error of the library into the corpus's terms: the file it names
// (relative to dir), the offset when it is a *segment.CorruptionError, and the kind,
// from the sentinel it wraps. Where the library has no sentinel of its own for a kind,
// the kind is recognised from the message: a file that is not a regular file (a
// *os.PathError), a wrong file size, and damage against the manifest's last_seq, which
// the library wraps as ErrSequence (a record past last_seq) or ErrMissing (records
// ending before it), naming the segment's last sequence in the message.
func classify(dir string, err error) corpus.Error {
	var e corpus.Error
	var ce *segment.CorruptionError
	if errors.As(err, &ce) {
		off := ce.Offset
		e.Offset = &off
		e.File = relName(dir, ce.Path)
	} else {
		e.File = fileIn(dir, err.Error())
	}
	msg := err.Error()
	isManifest := e.File != nil && *e.File == segment.ManifestName
	header := errors.Is(err, segment.ErrHeader) || errors.Is(err, segment.ErrBadMagic) || errors.Is(err, segment.ErrVersion)
	switch {
	case errors.Is(err, watch.ErrNoRing):
		e.Kind = corpus.KindNoRing
	case strings.Contains(msg, "not a regular file") || strings.Contains(msg, "symbolic link"):
		e.Kind = corpus.KindNotRegular
	case errors.Is(err, segment.ErrManifest) || isManifest && errors.Is(err, segment.ErrVersion):
		e.Kind = corpus.KindManifest
	case errors.Is(err, segment.ErrShort) || header && strings.Contains(msg, "file is"):
		e.Kind = corpus.KindSize
	case header && ce != nil && ce.Offset == segment.OffSealed:
		e.Kind = corpus.KindSealedWord
	case header && ce != nil && ce.Offset == segment.OffCommitted:
		e.Kind = corpus.KindCommittedWord
	case header:
		e.Kind = corpus.KindHeader
	case errors.Is(err, segment.ErrRecordSize):
		e.Kind = corpus.KindRecordSize
	case errors.Is(err, segment.ErrChecksum):
		e.Kind = corpus.KindChecksum
	case lastSeqMessage.MatchString(msg):
		e.Kind = corpus.KindLastSeq
	case errors.Is(err, segment.ErrSequence):
		e.Kind = corpus.KindSequence
	case errors.Is(err, segment.ErrMissing):
		e.Kind = corpus.KindMissing
	default:
		e.Kind = "unclassified"
	}
	return e
}

// lastSeqMessage matches the messages of damage against the manifest's last_seq.
var lastSeqMessage = regexp.MustCompile(`last_seq|segment's last|last sequence`)

// relName returns path's name when it is a file directly in dir, else path itself.
func relName(dir, path string) *string {
	name := path
	if filepath.Dir(path) == filepath.Clean(dir) {
		name = filepath.Base(path)
	}
	return &name
}

// fileIn returns the name of the first file of dir that msg names (dir/NAME), or nil.
func fileIn(dir, msg string) *string {
	i := strings.Index(msg, dir+"/")
	if i < 0 {
		return nil
	}
	rest := msg[i+len(dir)+1:]
	if j := strings.IndexAny(rest, ": \n"); j >= 0 {
		rest = rest[:j]
	}
	return &rest
}

// sameErrors compares errors in order: the file, the offset when the expected one has
// one, and the kind.
func sameErrors(got, want []corpus.Error) bool {
	if len(got) != len(want) {
		return false
	}
	for i, w := range want {
		g := got[i]
		if (g.File == nil) != (w.File == nil) || g.File != nil && *g.File != *w.File || g.Kind != w.Kind {
			return false
		}
		if w.Offset != nil && (g.Offset == nil || *g.Offset != *w.Offset) {
			return false
		}
	}
	return true
}

// outputDiff describes how got differs from want, or returns "".
func outputDiff(got, want []byte) string {
	if bytes.Equal(got, want) {
		return ""
	}
	if len(got) < 600 && len(want) < 600 {
		return fmt.Sprintf("got %q, want %q", got, want)
	}
	gl, wl := bytes.SplitAfter(got, []byte("\n")), bytes.SplitAfter(want, []byte("\n"))
	for i := 0; i < max(len(gl), len(wl)); i++ {
		var g, w []byte
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if !bytes.Equal(g, w) {
			return fmt.Sprintf("%d bytes, want %d; line %d is %.300q, want %.300q", len(got), len(want), i+1, g, w)
		}
	}
	return fmt.Sprintf("%d bytes, want %d", len(got), len(want))
}
