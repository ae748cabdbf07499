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
		{"no version", strings.Replace(good, `"version":1,`, ``, 1), ErrVersion},
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
