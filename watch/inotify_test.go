package watch

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/publish"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("FILERING_REQUIRE_ROOT") == "1" {
			t.Fatal("this test needs root")
		}
		t.Skip("needs root")
	}
}

// TestFollower_InotifyOverflow gives a follower an inotify queue of one event, so that
// a burst of records and rolls overflows it: the follower falls back to rescanning and
// polling fast, and loses nothing.
func TestFollower_InotifyOverflow(t *testing.T) {
	needRoot(t)
	const knob = "/proc/sys/fs/inotify/max_queued_events"
	old, err := os.ReadFile(knob)
	if err != nil {
		t.Skip(err)
	}
	dir := ringtest.Dir(t)
	w := produce(t, dir, publish.Options{SegmentSize: 64 << 10, Segments: 64}, 1)
	defer w.Close()
	r := openRing(t, dir)
	// The queue size is fixed when the inotify instance is created: shrink the limit
	// only for that moment.
	if err := os.WriteFile(knob, []byte("1"), 0); err != nil {
		t.Skip(err)
	}
	f, err := r.Follow(Selection{})
	os.WriteFile(knob, old, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !f.Next(ctx) {
		t.Fatal(f.Err())
	}
	const n = 20000
	go func() {
		for i := 0; i < n; i++ {
			w.Append([]byte(fmt.Sprint(w.NextSeq())))
			if i%2000 == 0 {
				time.Sleep(2 * time.Millisecond) // let events pile up between bursts
			}
		}
	}()
	for want := uint64(2); want <= n+1; want++ {
		if !f.Next(ctx) {
			t.Fatalf("stopped before record %d: %v", want, f.Err())
		}
		if got := f.Record().Seq; got != want {
			t.Fatalf("record %d, want %d", got, want)
		}
	}
	if f.wake.overflows == 0 {
		t.Fatal("the inotify queue never overflowed; the test proves nothing")
	}
	t.Logf("%d overflows, %d events, %d polls", f.wake.overflows, f.wake.events, f.wake.polls)
}

// TestFollower_InotifyExhausted runs a follower as a user whose inotify instances are
// all used up: it polls instead, and sees every record.
func TestFollower_InotifyExhausted(t *testing.T) {
	if os.Getenv("FILERING_TEST_EXHAUSTED_FOLLOWER") != "" {
		exhaustedFollower(os.Getenv("FILERING_TEST_EXHAUSTED_FOLLOWER"))
		return
	}
	needRoot(t)
	dir := ringtest.Dir(t)
	os.Chmod(strings.TrimSuffix(dir, "/ring"), 0o755)
	w, err := publish.Open(dir, publish.Options{SegmentSize: 16 << 10, Segments: 64, FileMode: 0o644, DirMode: 0o755})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// The other user needs to be able to run this test binary.
	bin, err := os.MkdirTemp("", "filering-test-bin-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(bin)
	os.Chmod(bin, 0o755)
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin+"/watch.test", self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin+"/watch.test", "-test.run=^TestFollower_InotifyExhausted$")
	cmd.Env = append(os.Environ(), "FILERING_TEST_EXHAUSTED_FOLLOWER="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "ready" {
		t.Fatalf("follower did not start: %q", sc.Text())
	}
	const n = 3000
	for i := 1; i <= n; i++ {
		w.Append([]byte(strconv.Itoa(i)))
	}
	for want := 1; want <= n; want++ {
		if !sc.Scan() {
			t.Fatalf("follower stopped before record %d", want)
		}
		if sc.Text() != strconv.Itoa(want) {
			t.Fatalf("follower printed %q, want %d", sc.Text(), want)
		}
	}
}

// exhaustedFollower uses up this user's inotify instances, then follows dir and prints
// each record's payload, after a line "ready".
func exhaustedFollower(dir string) {
	var fds []int
	for {
		fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
		if err != nil {
			break
		}
		fds = append(fds, fd)
	}
	r, err := Open(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	f, err := r.Follow(Selection{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if f.wake.w != nil {
		fmt.Fprintln(os.Stderr, "inotify still available after exhausting it")
		os.Exit(1)
	}
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "ready")
	out.Flush()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f.OnWait(func() { out.Flush() })
	for f.Next(ctx) {
		fmt.Fprintf(out, "%s\n", f.Record().Data)
	}
	out.Flush()
	os.Exit(0)
}
