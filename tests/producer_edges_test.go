package tests

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/filering/filering/internal/ringtest"
)

// TestProduce_FullTmpfs is the board whose /run fills up under a running producer: on
// a 6 MiB tmpfs with the default 2 MiB segments, another file takes all free room
// mid-stream. produce keeps running, drops its oldest segments with an exact report,
// and once the other file is gone its records reach readers again.
func TestProduce_FullTmpfs(t *testing.T) {
	mnt := ringtest.Tmpfs(t, "6m")
	dir := filepath.Join(mnt, "ring")
	p := startProducer(t, dir)
	line := bytes.Repeat([]byte("x"), 1000)
	write := func(n int, tag string) {
		for i := 0; i < n; i++ {
			if _, err := fmt.Fprintf(p.stdin, "%s %06d %s\n", tag, i, line); err != nil {
				t.Fatalf("write to produce: %v (stderr %q)", err, p.stderr.Bytes())
			}
		}
	}
	write(3000, "before") // about 1.5 segments
	waitFor(t, 10*time.Second, "records before the filler", func() bool {
		r, err := execute(nil, "cat", "--last", "1", dir)
		return err == nil && bytes.HasPrefix(r.stdout, []byte("before 002999"))
	})
	filler := ringtest.Fill(t, mnt)
	write(10000, "full") // five segments' worth with no room for them
	waitFor(t, 10*time.Second, "a report of dropped records", func() bool {
		return bytes.Contains(p.stderr.Bytes(), []byte("file system full: dropped segment")) ||
			bytes.Contains(p.stderr.Bytes(), []byte("dropping records read until there is room"))
	})
	if p.exited() {
		t.Fatalf("produce ended on a full file system: %q", p.stderr.Bytes())
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	write(3000, "after")
	waitFor(t, 10*time.Second, "records after the room came back", func() bool {
		r, err := execute(nil, "cat", "--last", "1", dir)
		return err == nil && bytes.HasPrefix(r.stdout, []byte("after 002999"))
	})
	p.stdin.Close()
	if code := p.wait(); code != 0 {
		t.Fatalf("produce exited %d: %q", code, p.stderr.Bytes())
	}
	out := mustRun(t, nil, "cat", "--format", "json", dir)
	recs, err := parseJSON(out, false)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].Seq != recs[i-1].Seq+1 {
			t.Fatalf("records %d and %d are neighbours in the ring", recs[i-1].Seq, recs[i].Seq)
		}
	}
	if !bytes.Contains(p.stderr.Bytes(), []byte("lost")) && !bytes.Contains(p.stderr.Bytes(), []byte("dropped")) {
		t.Fatalf("no loss reported: %q", p.stderr.Bytes())
	}
	t.Logf("ring holds %d..%d; producer said:\n%s", recs[0].Seq, recs[len(recs)-1].Seq, p.stderr.Bytes())
}

// TestProduce_IdleRestartNoRedelivery restarts a producer that appended nothing, as
// systemd's Restart= does with a quiet one: a follower prints each record once, and does
// not say the ring was created anew.
func TestProduce_IdleRestartNoRedelivery(t *testing.T) {
	dir := ring(t)
	mustRun(t, []byte("a\nb\n"), "produce", "--segment-size", "4KiB", dir)
	w := startProc(t, "watch", "--from", "1", "--format", "json", dir)
	w.waitOutput(10*time.Second, "the two records", func(b []byte) bool { return bytes.Count(b, []byte("\n")) >= 2 })
	for i := 0; i < 3; i++ {
		mustRun(t, []byte{}, "produce", dir)
	}
	mustRun(t, []byte("c\n"), "produce", dir)
	w.waitOutput(10*time.Second, "the third record", func(b []byte) bool { return bytes.Count(b, []byte("\n")) >= 3 })
	time.Sleep(1500 * time.Millisecond) // a poll interval: anything delivered again shows by now
	recs, err := parseJSON(w.stdout.Bytes(), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || recs[0].Seq != 1 || recs[2].Seq != 3 || len(w.stderr.Bytes()) != 0 {
		t.Fatalf("follower printed %s, said %q; want 1..3 once and nothing on stderr", seqRange(recs), w.stderr.Bytes())
	}
}

// TestProduce_ManyListedSegmentsReadable: with 4 KiB segments a producer cannot be
// asked for a retention whose manifest its readers would refuse.
func TestProduce_ManyListedSegmentsReadable(t *testing.T) {
	dir := ring(t)
	r := run(t, []byte("a\n"), "produce", "--segment-size", "4KiB", "--segments", "65536", dir)
	if r.code != 2 || !bytes.Contains(r.stderr, []byte("--segments 65536: want 2 to 8192")) {
		t.Fatalf("produce --segments 65536: %v", r)
	}
	// The largest accepted retention, filled: every reader still reads the manifest.
	n := short(8192*60, 3000*60)
	mustRun(t, lines(n), "produce", "--segment-size", "4KiB", "--segments", "8192", dir)
	m, err := os.ReadFile(filepath.Join(dir, "manifest"))
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, nil, "stat", dir)
	if out := mustRun(t, nil, "cat", "--last", "1", dir); len(out) == 0 {
		t.Fatal("cat --last 1 printed nothing")
	}
	mustRun(t, []byte("more\n"), "produce", dir)
	t.Logf("%d records, manifest %d bytes", n, len(m))
}

// TestDemo_PrivateDir: the demo's default ring lives where no other user can have made
// it first, and is gone when the demo ends.
func TestDemo_PrivateDir(t *testing.T) {
	r := run(t, nil, "demo", "--duration", "300ms", "--rate", "50")
	if r.code != 0 {
		t.Fatalf("demo: %v", r)
	}
	first, _, _ := bytes.Cut(r.stdout, []byte("\n"))
	_, after, ok := bytes.Cut(first, []byte(" into "))
	if !ok {
		t.Fatalf("demo's first line %q names no directory", first)
	}
	dir, _, _ := strings.Cut(string(after), " (")
	if dir == "/dev/shm/filering-demo" || dir == "/tmp/filering-demo" {
		t.Fatalf("demo used the predictable %s", dir)
	}
	if os.Getenv("XDG_RUNTIME_DIR") == "" && exists(filepath.Dir(dir)) {
		t.Fatalf("demo left %s behind", filepath.Dir(dir))
	}
}
