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
	"github.com/filering/filering/segment"
)

// TestReaders_ListedButMissingSegments runs cat, stat and wait on rings whose manifest
// lists thousands of sealed segments that takers took (renamed to N.taken, or done with
// and removed): the work of reading is linear in what is listed, so each command finishes
// in well under a second here, and wait's timeout holds. Before, readers read the
// manifest again for every missing file: with 1,302 taken segments `cat --last 10` took
// 5 s, stat 2 s and `wait --timeout 1s` 3.7 s; with 12,000, cat and stat ran for minutes
// and wait for six. The bounds here are generous (several times what it takes); the
// watch package's test of the same counts the work exactly.
func TestReaders_ListedButMissingSegments(t *testing.T) {
	const bound = 5 * time.Second
	cases := []struct {
		name  string
		build func(t *testing.T, dir string) (last uint64)
	}{
		{"1302 taken by takers", func(t *testing.T, dir string) uint64 {
			// 4 KiB segments hold 126 records of up to 8 bytes: 1310 segments.
			mustRun(t, lines(165000), "produce", "--segment-size", "4KiB", "--segments", "1400", dir)
			m := loadManifest(t, dir)
			for _, e := range m.Segments[len(m.Segments)-1302:] {
				if err := os.Rename(filepath.Join(dir, e.Name), filepath.Join(dir, segment.TakenName(e.Number()))); err != nil {
					t.Fatal(err)
				}
			}
			return m.Segments[len(m.Segments)-1303].LastSeq
		}},
		{"12000 gone", func(t *testing.T, dir string) uint64 {
			const n = 12000
			hot := handSeg{Num: n + 1, First: n + 1, N: 10}
			ringtest.WriteRing(t, dir, 4096, 1, hot)
			m := loadManifest(t, dir)
			es := make([]segment.Entry, 0, n+1)
			for i := uint64(1); i <= n; i++ {
				es = append(es, segment.Entry{Name: segment.Name(i), FirstSeq: i, LastSeq: i, Sealed: true})
			}
			m.Segments, m.SegmentsMax = append(es, m.Segments...), n+1
			ringtest.PutManifest(t, dir, m)
			return n + 10
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := ring(t)
			last := c.build(t, dir)
			timed := func(args ...string) (result, time.Duration) {
				t.Helper()
				start := time.Now()
				r := run(t, nil, args...)
				d := time.Since(start)
				t.Logf("filering %s: %v, exit %d", args[0], d.Round(time.Millisecond), r.code)
				if d > bound {
					t.Errorf("filering %s took %v", strings.Join(args, " "), d)
				}
				return r, d
			}
			r, _ := timed("cat", "--last", "10", "--format", "json", dir)
			if recs, err := parseJSON(r.stdout, false); r.code != 0 || err != nil || len(recs) != 10 || recs[9].Seq != last {
				t.Errorf("cat --last 10: %v, %s (%v); want 10 records to %d", r, seqRange(recs), err, last)
			}
			r, _ = timed("stat", "--json", dir)
			if r.code != 0 || !bytes.Contains(r.stdout, []byte(fmt.Sprintf(`"last_seq":%d,`, last))) {
				t.Errorf("stat: %v, %s", r, r.stdout)
			}
			r, _ = timed("wait", "--after", "0", "--timeout", "1s", dir)
			if r.code != 0 || strings.TrimSpace(string(r.stdout)) != fmt.Sprint(last) {
				t.Errorf("wait --after 0: %v, %q; want %d", r, r.stdout, last)
			}
			r, d := timed("wait", "--after", fmt.Sprint(last), "--timeout", "1s", dir)
			if r.code != exitTimeout || d < time.Second {
				t.Errorf("wait past the newest record: %v after %v; want exit %d after its timeout", r, d, exitTimeout)
			}
		})
	}
}
