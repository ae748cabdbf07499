package tests

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/filering/filering/internal/ringtest"
	"github.com/filering/filering/segment"
)

// damageRing writes the ring every damage case starts from: 4 KiB segments, three sealed
// ones holding records 1-10, 11-20 and 21-30, and a hot one holding 31-35. Every record
// takes 32 bytes, so record k of a segment (from 0) is at offset 64 + 32k.
func damageRing(t *testing.T, dir string) *segment.Manifest {
	ringtest.WriteRing(t, dir, 4096, 1,
		handSeg{Num: 1, First: 1, N: 10, Sealed: true},
		handSeg{Num: 2, First: 11, N: 10, Sealed: true},
		handSeg{Num: 3, First: 21, N: 10, Sealed: true},
		handSeg{Num: 4, First: 31, N: 5})
	return loadManifest(t, dir)
}

// damageCase is one kind of damage done to segment 2 of the damage ring.
type damageCase struct {
	name string
	// damage changes the segment's bytes, or, when it returns nil, does what it does
	// to the ring directory itself.
	damage func(t *testing.T, dir string, b []byte, m *segment.Manifest) []byte
	offset int    // the offset the error names; -1 when the error is about the whole file
	upTo   uint64 // the last record of segment 2 delivered; 10 when none is
	// statSees is whether stat, which reads the headers of sealed segments but not
	// their records, finds the damage; when it does not, it counts what the manifest
	// lists, and statRecords (35 when 0) is that.
	statSees    bool
	statRecords uint64
}

// header rewrites the fixed fields of the header of b with h, with a valid header CRC,
// keeping its sealed and committed words.
func header(b []byte, h segment.Header) {
	words := append([]byte(nil), b[48:64]...)
	segment.PutHeader(b, h)
	copy(b[48:], words)
}

func damageCases() []damageCase {
	le := binary.LittleEndian
	seg2 := segment.Name(2)
	replace := func(make func(path string) error) func(*testing.T, string, []byte, *segment.Manifest) []byte {
		return func(t *testing.T, dir string, b []byte, _ *segment.Manifest) []byte {
			path := filepath.Join(dir, seg2)
			if err := os.WriteFile(filepath.Join(dir, "segment-2.bin"), b, 0o640); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := make(path); err != nil {
				t.Fatal(err)
			}
			return nil
		}
	}
	bytesOf := func(f func(b []byte)) func(*testing.T, string, []byte, *segment.Manifest) []byte {
		return func(_ *testing.T, _ string, b []byte, _ *segment.Manifest) []byte { f(b); return b }
	}
	const rec4 = 64 + 3*32 // the fourth record of segment 2: seq 14
	return []damageCase{
		// Segment-level: nothing of segment 2.
		{"symlink", replace(func(p string) error { return os.Symlink("segment-2.bin", p) }), -1, 10, true, 0},
		{"fifo", replace(func(p string) error { return syscall.Mkfifo(p, 0o644) }), -1, 10, true, 0},
		{"directory", replace(func(p string) error { return os.Mkdir(p, 0o755) }), -1, 10, true, 0},
		{"short file", bytesOf(func(b []byte) {}), -1, 10, true, 0}, // truncated below
		{"bad magic", bytesOf(func(b []byte) { b[0] ^= 1 }), 0, 10, true, 0},
		{"bad version", bytesOf(func(b []byte) { b[8] = 2 }), 8, 10, true, 0},
		{"bad header CRC", bytesOf(func(b []byte) { b[40] ^= 1 }), 12, 10, true, 0},
		{"header first sequence", bytesOf(func(b []byte) {
			header(b, segment.Header{Size: 4096, Number: 2, FirstSeq: 12, Created: 1})
		}), 32, 10, true, 0},
		{"header number", bytesOf(func(b []byte) {
			header(b, segment.Header{Size: 4096, Number: 7, FirstSeq: 11, Created: 1})
		}), 24, 10, true, 0},
		{"bad sealed word", bytesOf(func(b []byte) { le.PutUint64(b[48:], 2) }), 48, 10, true, 0},
		{"listed sealed, sealed word 0", bytesOf(func(b []byte) { le.PutUint64(b[48:], 0) }), 48, 10, true, 0},
		{"bad committed word", bytesOf(func(b []byte) { le.PutUint64(b[56:], 65) }), 56, 10, true, 0},
		// Record-level: the records before the offset.
		{"checksum", bytesOf(func(b []byte) { b[rec4+24] ^= 1 }), rec4, 13, false, 0},
		{"record size", bytesOf(func(b []byte) { le.PutUint32(b[rec4:], 7) }), rec4, 13, false, 0},
		{"record missing", bytesOf(func(b []byte) { le.PutUint64(b[rec4:], 0) }), rec4, 13, false, 0},
		{"record sequence", bytesOf(func(b []byte) {
			clear(b[rec4 : rec4+32])
			segment.PutRecord(b, rec4, 99, 14000, []byte("14"))
		}), rec4, 13, false, 0},
		{"record above last_seq", func(t *testing.T, dir string, b []byte, m *segment.Manifest) []byte {
			m.Segments[1].LastSeq = 13
			m.Generation++
			ringtest.PutManifest(t, dir, m)
			return b
		}, rec4, 13, false, 28},
		{"records end before last_seq", bytesOf(func(b []byte) {
			for k := 7; k < 10; k++ {
				clear(b[64+32*k : 64+32*k+32])
			}
			le.PutUint64(b[56:], 64+7*32)
		}), 64 + 7*32, 17, true, 0},
	}
}

// TestDamage_EveryReader damages segment 2 of a ring in every way docs/FORMAT.md names,
// and runs cat, watch, take and stat on it: they agree on what they deliver (nothing of
// a segment with segment-level damage, the records before record-level damage, every
// other segment), each reports the damage once on stderr, naming the file and the offset,
// and exits 1 at the end; watch reports the records it skipped as lost, and take sets the
// segment aside as N.damaged. Before, a symlinked, FIFO or short segment made the whole
// read fail, a bad sealed word was reported while the segment's records were still
// printed, and take stopped at a segment whose sealed word was 0.
func TestDamage_EveryReader(t *testing.T) {
	for _, c := range damageCases() {
		t.Run(c.name, func(t *testing.T) {
			want := func(upTo uint64, hot bool) []uint64 {
				var s []uint64
				for seq := uint64(1); seq <= 30; seq++ {
					if seq <= 10 || seq > 20 || seq <= upTo {
						s = append(s, seq)
					}
				}
				if hot {
					for seq := uint64(31); seq <= 35; seq++ {
						s = append(s, seq)
					}
				}
				return s
			}
			setup := func() string {
				dir := ring(t)
				m := damageRing(t, dir)
				path := filepath.Join(dir, segment.Name(2))
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if b = c.damage(t, dir, b, m); b != nil {
					if c.name == "short file" {
						b = b[:2048]
					}
					if err := os.WriteFile(path, b, 0o640); err != nil {
						t.Fatal(err)
					}
				}
				return dir
			}
			// errLine matches the one line that reports the damage.
			errLine := func(dir string) *regexp.Regexp {
				pat := `^filering: ` + regexp.QuoteMeta(dir) + `/0000000000000002\.(seg|taken)\b.*`
				if c.offset >= 0 {
					pat += fmt.Sprintf(`\boffset %d\b.*`, c.offset)
				}
				return regexp.MustCompile(pat + `$`)
			}

			t.Run("cat", func(t *testing.T) {
				dir := setup()
				r := run(t, nil, "cat", "--format", "json", dir)
				checkDamageRun(t, r, want(c.upTo, true), errLine(dir), nil)
			})
			t.Run("cat --last", func(t *testing.T) {
				dir := setup()
				n := len(want(c.upTo, true)) - 9 // reaches back into segment 1
				r := run(t, nil, "cat", "--format", "json", "--last", fmt.Sprint(n), dir)
				checkDamageRun(t, r, want(c.upTo, true)[9:], errLine(dir), nil)
			})
			t.Run("watch", func(t *testing.T) {
				dir := setup()
				w := startProc(t, "watch", "--all", "--format", "json", dir)
				w.waitOutput(10*time.Second, "record 35", func(out []byte) bool { return lastSeq(out) == 35 })
				time.Sleep(100 * time.Millisecond) // anything printed twice shows by now
				w.signal(syscall.SIGINT)
				code := w.wait()
				lost := regexp.MustCompile(fmt.Sprintf(`^filering: %s: lost %d records \(%d to 20\)$`,
					regexp.QuoteMeta(dir), 20-c.upTo, c.upTo+1))
				checkDamageRun(t, result{stdout: w.stdout.Bytes(), stderr: w.stderr.Bytes(), code: code},
					want(c.upTo, true), errLine(dir), lost)
			})
			t.Run("take", func(t *testing.T) {
				dir := setup()
				r := run(t, nil, "take", "--format", "json", dir)
				aside := regexp.MustCompile(`^filering: ` + regexp.QuoteMeta(dir) + `: set aside as ` +
					regexp.QuoteMeta(filepath.Join(dir, "0000000000000002.damaged")) + `$`)
				checkDamageRun(t, r, want(c.upTo, false), errLine(dir), aside)
				if !exists(filepath.Join(dir, "0000000000000002.damaged")) {
					t.Errorf("segment 2 not set aside: %v", segmentFiles(t, dir))
				}
			})
			t.Run("stat", func(t *testing.T) {
				dir := setup()
				r := run(t, nil, "stat", "--json", dir)
				var st statDoc
				if err := json.Unmarshal(r.stdout, &st); err != nil {
					t.Fatalf("stat --json printed %q: %v", r.stdout, err)
				}
				wantRecords := uint64(35)
				if c.statRecords != 0 {
					wantRecords = c.statRecords
				}
				if c.statSees {
					wantRecords = uint64(len(want(c.upTo, true)))
				}
				if st.Records != wantRecords || st.LastSeq != 35 {
					t.Errorf("stat counts %d records to %d, want %d to 35", st.Records, st.LastSeq, wantRecords)
				}
				if !c.statSees {
					if r.code != 0 || len(r.stderr) != 0 {
						t.Errorf("stat: %v; want exit 0: it does not read sealed records", r)
					}
					return
				}
				checkDamageRun(t, result{stderr: r.stderr, code: r.code}, nil, errLine(dir), nil)
			})
		})
	}
}

// checkDamageRun checks a reader's run on a damaged ring: exit 1, the records want in
// order (when stdout holds JSON Lines), one line on stderr matching damage, and, when
// other is not nil, exactly one more matching it.
func checkDamageRun(t *testing.T, r result, want []uint64, damage, other *regexp.Regexp) {
	t.Helper()
	if r.code != 1 {
		t.Errorf("exit %d, want 1; stderr %q", r.code, r.stderr)
	}
	if want != nil {
		recs, err := parseJSON(r.stdout, false)
		var got []uint64
		for _, rec := range recs {
			if p, perr := rec.payload(); perr != nil || string(p) != fmt.Sprint(rec.Seq) {
				t.Errorf("seq %d holds %q", rec.Seq, p)
			}
			got = append(got, rec.Seq)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("printed %v, want %v (%v)", got, want, err)
		}
	}
	lines := strings.Split(strings.TrimSuffix(string(r.stderr), "\n"), "\n")
	var damaged, others int
	for _, line := range lines {
		switch {
		case damage.MatchString(line):
			damaged++
		case other != nil && other.MatchString(line):
			others++
		default:
			t.Errorf("unexpected line on stderr: %q", line)
		}
	}
	if damaged != 1 || other != nil && others != 1 {
		t.Errorf("stderr %q: want one line matching %v and one matching %v", r.stderr, damage, other)
	}
}

// TestDamage_ManifestNotRegular replaces the manifest with a FIFO, a symbolic link and a
// directory: no reader blocks (a FIFO is opened non-blocking and refused), and every one
// that reads the manifest fails as a whole, naming it. A taker, which does not need the
// manifest, takes the sealed segments.
func TestDamage_ManifestNotRegular(t *testing.T) {
	for _, c := range []struct {
		name string
		make func(path string) error
	}{
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o644) }},
		{"symlink", func(p string) error { return os.Symlink("manifest.real", p) }},
		{"directory", func(p string) error { return os.Mkdir(p, 0o755) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := ring(t)
			damageRing(t, dir)
			path := filepath.Join(dir, segment.ManifestName)
			if err := os.Rename(path, path+".real"); err != nil {
				t.Fatal(err)
			}
			if err := c.make(path); err != nil {
				t.Fatal(err)
			}
			line := regexp.MustCompile(`^filering: ` + regexp.QuoteMeta(path) + `\b`)
			for _, args := range [][]string{
				{"cat", dir}, {"cat", "--last", "3", dir}, {"stat", dir}, {"watch", "--all", dir},
				{"wait", "--after", "0", "--timeout", "5s", dir},
			} {
				r := run(t, nil, args...)
				if r.code != 1 || len(r.stdout) != 0 || !line.Match(r.stderr) || bytes.Count(r.stderr, []byte("\n")) != 1 {
					t.Errorf("filering %s: %v, stdout %q; want exit 1 and one line naming %s", strings.Join(args, " "), r, r.stdout, path)
				}
			}
			r := run(t, nil, "take", "--format", "json", dir)
			recs, err := parseJSON(r.stdout, false)
			if r.code != 0 || len(r.stderr) != 0 || err != nil || len(recs) != 30 {
				t.Errorf("take: %v, %d records (%v)", r, len(recs), err)
			}
		})
	}
}
