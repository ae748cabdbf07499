package recordio

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
)

func frames(payloads ...string) []byte {
	var b []byte
	for _, p := range payloads {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	return b
}

func TestFrameReader(t *testing.T) {
	cases := []struct {
		name  string
		in    []byte
		want  []string
		error string // substring of the error after the frames in want
	}{
		{"empty input", nil, nil, ""},
		{"frames", frames("a", "", "ccc"), []string{"a", "", "ccc"}, ""},
		{"too long", append(frames("ok"), frames(strings.Repeat("x", 11))...), []string{"ok"}, "byte offset 6 has length 11"},
		{"truncated header", append(frames("ok"), 1, 0), []string{"ok"}, "truncated frame header at byte offset 6"},
		{"truncated payload", append(frames("ok"), 5, 0, 0, 0, 'a'), []string{"ok"}, "truncated frame at byte offset 6"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fr := NewFrameReader(bufio.NewReader(bytes.NewReader(c.in)), "standard input", 10)
			var got []string
			var err error
			for {
				var p []byte
				if p, err = fr.Next(); err != nil {
					break
				}
				got = append(got, string(p))
			}
			if strings.Join(got, "|") != strings.Join(c.want, "|") || len(got) != len(c.want) {
				t.Fatalf("frames %q, want %q", got, c.want)
			}
			if c.error == "" && !errors.Is(err, io.EOF) || c.error != "" && !strings.Contains(err.Error(), c.error) {
				t.Fatalf("error %v, want %q", err, c.error)
			}
		})
	}
}

// FuzzFrameReader: any input decodes to frames within the limit, then a clean end or an
// error naming a byte offset; frames re-encode to a prefix of the input.
func FuzzFrameReader(f *testing.F) {
	f.Add(frames("hello", "", "world"))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{3, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		fr := NewFrameReader(bytes.NewReader(in), "standard input", 64)
		var again []byte
		for {
			p, err := fr.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "byte offset") {
					t.Fatalf("error without an offset: %v", err)
				}
				break
			}
			if len(p) > 64 {
				t.Fatalf("frame of %d bytes past the limit", len(p))
			}
			again = append(again, frames(string(p))...)
		}
		if !bytes.HasPrefix(in, again) {
			t.Fatal("decoded frames are not a prefix of the input")
		}
	})
}
