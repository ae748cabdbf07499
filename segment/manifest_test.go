package segment

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeManifest(t *testing.T) {
	const good = `{"version":1,"segment_size":65536,"segments_max":4,"generation":3,"segments":[` +
		`{"name":"0000000000000002.seg","first_seq":1,"last_seq":10,"sealed":true},` +
		`{"name":"0000000000000003.seg","first_seq":11,"last_seq":0,"sealed":false}]}`
	m, err := DecodeManifest([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if hot, ok := m.Hot(); !ok || hot.Number() != 3 || m.NextSeq() != 11 {
		t.Fatalf("hot %v %v next %d", hot, ok, m.NextSeq())
	}
	if again, err := DecodeManifest(m.Encode()); err != nil || again.Generation != 3 {
		t.Fatalf("re-decode: %v", err)
	}

	entry := func(name string, first, last uint64, sealed bool) string {
		return `{"name":"` + name + `","first_seq":` + itoa(first) + `,"last_seq":` + itoa(last) + `,"sealed":` +
			map[bool]string{true: "true", false: "false"}[sealed] + `}`
	}
	with := func(entries ...string) string {
		return `{"version":1,"segment_size":65536,"segments_max":4,"generation":3,"segments":[` +
			strings.Join(entries, ",") + `]}`
	}
	bad := []struct {
		name, doc string
		want      error
	}{
		{"empty", "", ErrManifest},
		{"garbage", "\x00\x01garbage", ErrManifest},
		{"truncated", good[:len(good)/2], ErrManifest},
		{"not an object", `[1,2]`, ErrManifest},
		{"trailing data", good + `{}`, ErrManifest},
		{"future version", strings.Replace(good, `"version":1`, `"version":2`, 1), ErrVersion},
		{"no version", strings.Replace(good, `"version":1,`, ``, 1), ErrManifest},
		{"future version with new fields", strings.Replace(good, `"version":1,`, `"version":2,"ring_id":"x",`, 1), ErrVersion},
		{"no generation", strings.Replace(good, `"generation":3,`, ``, 1), ErrManifest},
		{"no segments", `{"version":1,"segment_size":65536,"segments_max":4,"generation":3}`, ErrManifest},
		{"null generation", strings.Replace(good, `"generation":3`, `"generation":null`, 1), ErrManifest},
		{"null segments", `{"version":1,"segment_size":65536,"segments_max":4,"generation":3,"segments":null}`, ErrManifest},
		{"duplicate key", strings.Replace(good, `"generation":3`, `"generation":3,"generation":4`, 1), ErrManifest},
		{"float", strings.Replace(good, `"generation":3`, `"generation":3.0`, 1), ErrManifest},
		{"exponent", strings.Replace(good, `"generation":3`, `"generation":3e0`, 1), ErrManifest},
		{"minus zero", strings.Replace(good, `"generation":3`, `"generation":-0`, 1), ErrManifest},
		{"2^63", strings.Replace(good, `"generation":3`, `"generation":9223372036854775808`, 1), ErrManifest},
		{"string number", strings.Replace(good, `"generation":3`, `"generation":"3"`, 1), ErrManifest},
		{"bool number", strings.Replace(good, `"generation":3`, `"generation":true`, 1), ErrManifest},
		{"number bool", strings.Replace(good, `"sealed":true`, `"sealed":1`, 1), ErrManifest},
		{"entry missing field", strings.Replace(good, `,"sealed":false`, ``, 1), ErrManifest},
		{"entry unknown field", strings.Replace(good, `"sealed":false`, `"sealed":false,"x":1`, 1), ErrManifest},
		{"entry duplicate field", strings.Replace(good, `"sealed":false`, `"sealed":false,"sealed":false`, 1), ErrManifest},
		{"entry null name", strings.Replace(good, `"0000000000000003.seg"`, `null`, 1), ErrManifest},
		{"not UTF-8", strings.Replace(good, `"version"`, "\"vers\xffion\"", 1), ErrManifest},
		{"unknown field", strings.Replace(good, `"generation"`, `"extra":1,"generation"`, 1), ErrManifest},
		{"segment size not a page multiple", strings.Replace(good, `65536`, `65537`, 1), ErrManifest},
		{"segment size too big", strings.Replace(good, `65536`, `2147483648`, 1), ErrManifest},
		{"negative size", strings.Replace(good, `65536`, `-4096`, 1), ErrManifest},
		{"segments_max 1", strings.Replace(good, `"segments_max":4`, `"segments_max":1`, 1), ErrManifest},
		{"too many segments", with(entry("0000000000000001.seg", 1, 1, true), entry("0000000000000002.seg", 2, 2, true),
			entry("0000000000000003.seg", 3, 3, true), entry("0000000000000004.seg", 4, 4, true),
			entry("0000000000000005.seg", 5, 0, false)), ErrManifest},
		{"slash in name", with(entry("../000000000002.seg", 1, 1, true)), ErrManifest},
		{"absolute name", with(entry("/etc/passwd", 1, 1, true)), ErrManifest},
		{"dir in name", with(entry("a/00000000000002.seg", 1, 1, true)), ErrManifest},
		{"dot dot", with(entry("..", 1, 1, true)), ErrManifest},
		{"duplicate", with(entry("0000000000000002.seg", 1, 1, true), entry("0000000000000002.seg", 2, 2, true)), ErrManifest},
		{"unsorted", with(entry("0000000000000003.seg", 1, 1, true), entry("0000000000000002.seg", 2, 2, true)), ErrManifest},
		{"overlapping sequences", with(entry("0000000000000002.seg", 1, 5, true), entry("0000000000000003.seg", 5, 0, false)), ErrManifest},
		{"hot not last", with(entry("0000000000000002.seg", 1, 0, false), entry("0000000000000003.seg", 2, 0, false)), ErrManifest},
		{"sealed empty", with(entry("0000000000000002.seg", 5, 4, true)), ErrManifest},
		{"zero first seq", with(entry("0000000000000002.seg", 0, 4, true)), ErrManifest},
		{"huge seq", with(entry("0000000000000002.seg", 1<<63, 0, false)), ErrManifest},
		{"number overflow", strings.Replace(good, `"generation":3`, `"generation":99999999999999999999999`, 1), ErrManifest},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			if _, err := DecodeManifest([]byte(c.doc)); !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
		})
	}
	if _, err := DecodeManifest(make([]byte, MaxManifestSize+1)); !errors.Is(err, ErrManifest) {
		t.Fatalf("oversized manifest: %v", err)
	}
}

// TestManifestLargestFits holds that the largest manifest a producer can write, MaxSegments
// entries with the longest numbers there are, is one every reader accepts.
func TestManifestLargestFits(t *testing.T) {
	const top = 1<<63 - 1
	m := Manifest{Version: Version, SegmentSize: MaxSegmentSize, SegmentsMax: MaxSegments, Generation: top}
	first := uint64(top - 2*MaxSegments)
	for i := 0; i < MaxSegments; i++ {
		e := Entry{Name: Name(MaxNumber - MaxSegments + 1 + uint64(i)), FirstSeq: first, LastSeq: first + 1, Sealed: true}
		if i == MaxSegments-1 {
			e.LastSeq, e.Sealed = 0, false
		}
		m.Segments = append(m.Segments, e)
		first += 2
	}
	b := m.Encode()
	if len(b) > MaxManifestSize {
		t.Fatalf("largest manifest is %d bytes, readers accept %d", len(b), MaxManifestSize)
	}
	if _, err := DecodeManifest(b); err != nil {
		t.Fatal(err)
	}
	t.Logf("largest manifest: %d bytes of %d", len(b), MaxManifestSize)
}

func itoa(n uint64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func TestParseID(t *testing.T) {
	good := "0123456789abcdef0123456789abcdef\n"
	if id, err := ParseID([]byte(good)); err != nil || id != good[:32] {
		t.Fatalf("%q: %q %v", good, id, err)
	}
	if id := NewID(); len(id) != IDLen {
		t.Fatalf("NewID %q", id)
	} else if _, err := ParseID(EncodeID(id)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "\n", good[:32], good + "\n", strings.ToUpper(good), "0123456789abcdef0123456789abcdeg\n", good[:32] + "\r"} {
		if _, err := ParseID([]byte(bad)); !errors.Is(err, ErrID) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
