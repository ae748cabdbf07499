package tests

import (
	"strings"
	"testing"
	"time"
)

// TestWait covers `filering wait`: it prints the newest sequence number once a record
// newer than --after exists, waits for one that does not exist yet, and exits 3 when
// its timeout passes first. Flags may follow the directory.
func TestWait(t *testing.T) {
	dir := ring(t)
	if r := run(t, lines(10), "produce", dir); r.code != 0 {
		t.Fatalf("produce: %v", r)
	}
	if r := run(t, nil, "wait", dir, "--after", "3"); r.code != 0 || strings.TrimSpace(string(r.stdout)) != "10" {
		t.Fatalf("wait --after 3: %v, stdout %q", r, r.stdout)
	}
	start := time.Now()
	r := run(t, nil, "wait", dir, "--after", "10", "--timeout", "300ms")
	if r.code != 3 || len(r.stdout) != 0 {
		t.Fatalf("wait past the newest record: %v, stdout %q; want exit 3 and no output", r, r.stdout)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("timed out after %v, before its timeout", d)
	}
	// A record that arrives while it waits ends the wait.
	done := make(chan result, 1)
	go func() {
		r, err := execute(nil, "wait", "--after", "10", "--timeout", "20s", dir)
		if err != nil {
			r.code, r.stderr = -2, []byte(err.Error())
		}
		done <- r
	}()
	time.Sleep(200 * time.Millisecond)
	if r := run(t, lines(1), "produce", dir); r.code != 0 {
		t.Fatalf("produce: %v", r)
	}
	if r := <-done; r.code != 0 || strings.TrimSpace(string(r.stdout)) != "11" {
		t.Fatalf("wait for a new record: %v, stdout %q", r, r.stdout)
	}
}
