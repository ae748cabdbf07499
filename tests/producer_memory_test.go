package tests

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestProduce_MemoryBeyondSegments feeds `filering produce` 200 MB of 64-byte lines
// through a pipe and samples its memory meanwhile: what it holds besides the ring's
// segments (anonymous memory, and the pages of its own binary: RssAnon + RssFile in
// /proc/PID/status; the segments are RssShmem) stays at or below 16 MiB, whatever the
// stream's length.
func TestProduce_MemoryBeyondSegments(t *testing.T) {
	const limit = 16 << 20
	dir := ring(t)
	p := startProducer(t, dir)
	line := bytes.Repeat([]byte("x"), 63)
	chunk := bytes.Repeat(append(line, '\n'), 1<<14) // 1 MiB of lines
	fed := make(chan error, 1)
	go func() {
		for range 200 {
			if _, err := p.stdin.Write(chunk); err != nil {
				fed <- err
				return
			}
		}
		fed <- p.stdin.Close()
	}()
	status := fmt.Sprintf("/proc/%d/status", p.pid())
	var peak, anon, file, shmem int64
	for done := false; !done; {
		select {
		case err := <-fed:
			if err != nil {
				t.Fatal(err)
			}
			done = true
		case <-time.After(10 * time.Millisecond):
		}
		b, err := os.ReadFile(status)
		if err != nil {
			break // it exited
		}
		f := statusKiB(string(b))
		if rss := (f["RssAnon"] + f["RssFile"]) << 10; rss > peak {
			peak, anon, file, shmem = rss, f["RssAnon"]<<10, f["RssFile"]<<10, f["RssShmem"]<<10
		}
	}
	p.wait()
	t.Logf("peak beyond the segments: %.1f MiB (anonymous %.1f MiB, binary and other files %.1f MiB; segments mapped then %.1f MiB)",
		mib(peak), mib(anon), mib(file), mib(shmem))
	if peak == 0 {
		t.Fatal("no sample of the producer's memory")
	}
	if peak > limit {
		t.Errorf("produce held %.1f MiB besides its segments, want at most %d MiB", mib(peak), limit>>20)
	}
	if r, err := execute(nil, "cat", "--last", "1", dir); err != nil || string(r.stdout) != string(line)+"\n" {
		t.Errorf("cat --last 1: %v, %q", err, r.stdout)
	}
}

// statusKiB returns the "Name: N kB" fields of a /proc/PID/status text.
func statusKiB(s string) map[string]int64 {
	m := map[string]int64{}
	for _, l := range strings.Split(s, "\n") {
		name, rest, ok := strings.Cut(l, ":")
		if !ok || !strings.HasSuffix(rest, " kB") {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(rest, " kB")), 10, 64); err == nil {
			m[name] = n
		}
	}
	return m
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
