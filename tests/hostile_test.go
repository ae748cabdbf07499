package tests

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/segment"
)

// hostileSize is the segment size of the hostile rings: the largest there is.
const hostileSize = 1 << 30

// writeHostileRing writes a ring of 1 GiB segments, four sealed and one hot, each file a
// valid header (and, with huge, a first record) followed by a hole: it costs the file
// system a few pages, and a reader that maps, prefaults or copies by the sizes it reads
// gigabytes. committedAll sets every committed word to the segment size (committed
// records below it that are not there); huge makes the first record of each segment
// claim to be as large as the segment allows, with a CRC that does not match its zeroes.
func writeHostileRing(t *testing.T, dir string, committedAll, huge bool) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	m := &segment.Manifest{Version: 1, SegmentSize: hostileSize, SegmentsMax: 8, Generation: 9, Segments: []segment.Entry{}}
	for num := uint64(1); num <= 5; num++ {
		first := (num-1)*1000 + 1
		sealed := num < 5
		b := make([]byte, 4096)
		segment.PutHeader(b, segment.Header{Size: hostileSize, Number: num, FirstSeq: first, Created: 1})
		le := binary.LittleEndian
		if sealed {
			le.PutUint64(b[segment.OffSealed:], 1)
		}
		if committedAll {
			le.PutUint64(b[segment.OffCommitted:], hostileSize)
		}
		if huge {
			size := uint32(hostileSize - segment.HeaderSize - 8)
			le.PutUint64(b[segment.HeaderSize:], uint64(size)|uint64(0xdeadbeef)<<32)
			le.PutUint64(b[segment.HeaderSize+8:], first)
		}
		path := filepath.Join(dir, segment.Name(num))
		if err := os.WriteFile(path, b, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, hostileSize); err != nil {
			t.Fatal(err)
		}
		e := segment.Entry{Name: segment.Name(num), FirstSeq: first, Sealed: sealed}
		if sealed {
			e.LastSeq = first + 999
		}
		m.Segments = append(m.Segments, e)
	}
	ringtest.PutManifest(t, dir, m)
}

// allocated returns the bytes the file system has allocated to the files in dir.
func allocated(t *testing.T, dir string) int64 {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(dir, "*"))
	var n int64
	for _, name := range names {
		var st syscall.Stat_t
		if syscall.Lstat(name, &st) == nil {
			n += st.Blocks * 512
		}
	}
	return n
}

// rssHelperEnv, when set in the environment of this test binary, makes it a helper that
// runs one command and reports the command's peak resident memory (see runRSS). Its
// value is the JSON of an rssJob.
const rssHelperEnv = "FILERING_TEST_RSS_HELPER"

// rssJob is what a helper runs: args, with SIGINT after StopAfter when it is not zero.
type rssJob struct {
	Args      []string
	StopAfter time.Duration
}

// rssResult is what a helper reports on its standard output.
type rssResult struct {
	Exit   int
	MaxRSS int64 // bytes
}

func init() {
	v := os.Getenv(rssHelperEnv)
	if v == "" {
		return
	}
	var job rssJob
	if err := json.Unmarshal([]byte(v), &job); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	cmd := exec.Command(job.Args[0], job.Args[1:]...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if job.StopAfter > 0 {
		time.AfterFunc(job.StopAfter, func() { cmd.Process.Signal(syscall.SIGINT) })
	}
	cmd.Wait()
	ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	res := rssResult{Exit: cmd.ProcessState.ExitCode()}
	if ru != nil {
		res.MaxRSS = int64(ru.Maxrss) << 10 // Maxrss is an int32 on 32-bit platforms
	}
	json.NewEncoder(os.Stdout).Encode(res)
	os.Exit(0)
}

// runRSS runs filering args, sending SIGINT after stopAfter when it is not zero, and
// returns its exit status, its standard error and its peak resident memory in bytes.
//
// The command is started by a helper, a fresh copy of this test binary, and not by the
// test process itself: Linux starts a child with the parent's memory (vfork) and counts
// that memory's peak in the child's at exec, so a child of a test process that has grown
// would report the test's peak. The helper's own peak, a few MiB, still counts: the figure
// is an upper bound.
func runRSS(t *testing.T, stopAfter time.Duration, args ...string) (int, string, int64) {
	t.Helper()
	job, _ := json.Marshal(rssJob{Args: append([]string{bin}, args...), StopAfter: stopAfter})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), rssHelperEnv+"="+string(job))
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("filering %s: %v; stderr %q", strings.Join(args, " "), err, stderr.String())
	}
	var res rssResult
	if err := json.Unmarshal([]byte(stdout.String()), &res); err != nil {
		t.Fatalf("filering %s: helper said %q: %v", strings.Join(args, " "), stdout.String(), err)
	}
	if res.MaxRSS == 0 {
		t.Skip("no rusage on this platform")
	}
	return res.Exit, stderr.String(), res.MaxRSS
}

// TestReaders_HostileRingMemory runs every reader on rings of 1 GiB segments whose files
// are a valid header and a hole: a reader's memory is bounded by what it delivers
// (nothing here), never by a size read from a file. Each peaks below 64 MiB, reports
// the damage (every sealed segment lacks the records the manifest lists), and leaves the
// files as sparse as it found them. Before, readers asked the kernel to back each mapped
// segment with huge pages, which filled the files and mapped them all: 5 GB for `cat`,
// `stat` and `wait`, 1 GB for `take`.
func TestReaders_HostileRingMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's shadow memory is not the reader's")
	}
	const limit = 64 << 20
	for _, c := range []struct {
		name               string
		committedAll, huge bool
	}{
		{"empty segments", false, false},
		{"committed records missing", true, false},
		{"a record the size of the segment", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := ring(t)
			writeHostileRing(t, dir, c.committedAll, c.huge)
			before := allocated(t, dir)
			runs := []struct {
				args      []string
				stopAfter time.Duration
				exit      int
			}{
				{[]string{"cat", dir}, 0, 1},
				{[]string{"cat", "--last", "5", dir}, 0, 1},
				{[]string{"stat", dir}, 0, 1},
				{[]string{"wait", "--after", "0", "--timeout", "1s", dir}, 0, exitTimeout},
				{[]string{"watch", "--all", dir}, 1500 * time.Millisecond, 1},
				{[]string{"take", dir}, 0, 1}, // last: it sets the segments aside
			}
			for _, r := range runs {
				code, stderr, rss := runRSS(t, r.stopAfter, r.args...)
				t.Logf("filering %s: exit %d, peak RSS %.1f MiB", r.args[0], code, float64(rss)/(1<<20))
				if rss > limit {
					t.Errorf("filering %s: peak RSS %d MiB, want at most %d MiB", strings.Join(r.args, " "), rss>>20, limit>>20)
				}
				if code != r.exit || !strings.Contains(stderr, "corrupt at offset 64") {
					t.Errorf("filering %s: exit %d, stderr %q; want exit %d and the damage at offset 64 reported",
						strings.Join(r.args, " "), code, stderr, r.exit)
				}
			}
			if after := allocated(t, dir); after > before+(1<<20) {
				t.Errorf("the readers made the ring's files grow from %d to %d bytes", before, after)
			}
		})
	}
}

// exitTimeout is `filering wait`'s exit status when its timeout passes.
const exitTimeout = 3
