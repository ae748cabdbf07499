package tests

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWatch_CursorFile: watch --cursor-file resumes after what it printed last time,
// reports what the ring lost in between, and follows a ring created anew from its first
// record.
func TestWatch_CursorFile(t *testing.T) {
	dir := ring(t)
	cur := filepath.Join(t.TempDir(), "cursor")
	seqs := func(from, to int) []byte {
		var b bytes.Buffer
		for i := from; i <= to; i++ {
			fmt.Fprintf(&b, "%d\n", i)
		}
		return b.Bytes()
	}
	mustRun(t, seqs(1, 33), "produce", "--segment-size", "4KiB", "--segments", "2", dir)
	watchOnce := func(want func([]byte) bool) *proc {
		p := startProc(t, "watch", "--cursor-file", cur, dir)
		p.waitOutput(10*time.Second, "the records after the cursor", want)
		time.Sleep(200 * time.Millisecond) // nothing more may come
		p.interrupt()
		if code := p.wait(); code != 0 {
			t.Fatalf("watch exited %d: %q", code, p.stderr.Bytes())
		}
		return p
	}
	// No cursor yet: the last 10, as a plain watch.
	p := watchOnce(func(b []byte) bool { return bytes.HasSuffix(b, []byte("33\n")) })
	if got := p.stdout.Bytes(); !bytes.Equal(got, seqs(24, 33)) {
		t.Fatalf("first watch printed %q", got)
	}
	// Five more: exactly those.
	mustRun(t, seqs(34, 38), "produce", dir)
	p = watchOnce(func(b []byte) bool { return bytes.HasSuffix(b, []byte("38\n")) })
	if got := p.stdout.Bytes(); !bytes.Equal(got, seqs(34, 38)) {
		t.Fatalf("resumed watch printed %q, want 34..38", got)
	}
	// Far more than the ring holds: the ones in between are reported lost, exactly.
	mustRun(t, seqs(39, 3000), "produce", dir)
	p = watchOnce(func(b []byte) bool { return bytes.HasSuffix(b, []byte("3000\n")) })
	lines := strings.Split(strings.TrimSpace(string(p.stdout.Bytes())), "\n")
	var first int
	fmt.Sscan(lines[0], &first)
	wantLoss := fmt.Sprintf("lost %d records (39 to %d)", first-39, first-1)
	if !bytes.Contains(p.stderr.Bytes(), []byte(wantLoss)) || lines[len(lines)-1] != "3000" {
		t.Fatalf("after an overrun: printed %s..%s, said %q; want %q", lines[0], lines[len(lines)-1], p.stderr.Bytes(), wantLoss)
	}
	// A ring created anew at the same path: from its first record, and said so.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	mustRun(t, seqs(1, 3), "produce", "--segment-size", "4KiB", dir)
	p = watchOnce(func(b []byte) bool { return bytes.HasSuffix(b, []byte("3\n")) })
	if got := p.stdout.Bytes(); !bytes.Equal(got, seqs(1, 3)) || !bytes.Contains(p.stderr.Bytes(), []byte("created anew")) {
		t.Fatalf("recreated ring: printed %q, said %q", got, p.stderr.Bytes())
	}
}
