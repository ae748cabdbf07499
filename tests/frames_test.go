package tests

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// maxPayload4K is the largest payload a ring of 4 KiB segments holds: the segment less
// its 64-byte header and one 24-byte record header.
const maxPayload4K = 4096 - 64 - 24

// frames encodes payloads in the frames format: a 4-byte little-endian length, then the
// payload.
func frames(payloads [][]byte) []byte {
	var b []byte
	for _, p := range payloads {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	return b
}

// framePayloads returns payloads that exercise the encoders: empty, newlines, control
// bytes, invalid UTF-8, the largest a 4 KiB segment takes, and random binary ones.
func framePayloads() [][]byte {
	ps := [][]byte{
		[]byte("hello"),
		{},
		[]byte("line one\nline two\n"),
		[]byte("\n"),
		{0xff, 0xfe, 0x00, 'a'},
		[]byte("\x00\x01\x02\x1f\x7f"),
		[]byte("quote \" backslash \\ tab \t cr \r"),
		[]byte("日本語 ✓"),
		[]byte("truncated \xe6\x97"),
		[]byte("\xed\xa0\x80 surrogate"),
		bytes.Repeat([]byte{0x80}, maxPayload4K),
		bytes.Repeat([]byte("x"), maxPayload4K),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		p := make([]byte, rng.IntN(300))
		for i := range p {
			p[i] = byte(rng.UintN(256))
		}
		ps = append(ps, p)
	}
	return ps
}

// TestFrames_RoundTrip sends binary payloads through `produce --input frames` and reads
// them back byte for byte with `cat --format raw`, and as JSON with `cat --format json`.
func TestFrames_RoundTrip(t *testing.T) {
	dir := ring(t)
	payloads := framePayloads()
	in := frames(payloads)
	if r := run(t, in, "produce", "--input", "frames", "--segment-size", "4KiB", "--segments", "1000", dir); r.code != 0 || !producerLogOK(r.stderr) {
		t.Fatalf("produce --input frames: %v", r)
	}
	if out := mustRun(t, nil, "cat", "--format", "raw", dir); !bytes.Equal(out, in) {
		t.Fatalf("cat --format raw printed %d bytes that differ from the %d bytes of frames produced", len(out), len(in))
	}
	checkJSONPayloads(t, mustRun(t, nil, "cat", "--format", "json", dir), payloads)
}

// checkJSONPayloads checks `--format json` output against payloads: data for valid
// UTF-8, data_b64 (standard base64) otherwise, never both.
func checkJSONPayloads(t *testing.T, out []byte, payloads [][]byte) {
	t.Helper()
	lines := bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n"))
	if len(out) == 0 || len(lines) != len(payloads) {
		t.Fatalf("cat --format json printed %d lines, want %d", len(lines), len(payloads))
	}
	for i, line := range lines {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(line, &fields); err != nil {
			t.Fatalf("line %d %q: %v", i+1, line, err)
		}
		var seq uint64
		if err := json.Unmarshal(fields["seq"], &seq); err != nil || seq != uint64(i)+1 {
			t.Errorf("line %d: seq %s, want %d", i+1, fields["seq"], i+1)
		}
		var s string
		if utf8.Valid(payloads[i]) {
			if _, ok := fields["data_b64"]; ok || json.Unmarshal(fields["data"], &s) != nil || s != string(payloads[i]) {
				t.Errorf("line %d: %s; want \"data\" holding %q", i+1, line, payloads[i])
			}
		} else {
			want := base64.StdEncoding.EncodeToString(payloads[i])
			if _, ok := fields["data"]; ok || json.Unmarshal(fields["data_b64"], &s) != nil || s != want {
				t.Errorf("line %d: %s; want \"data_b64\" holding %q", i+1, line, want)
			}
		}
	}
}

// TestFrames_BadFrame checks that a frame the ring cannot hold, or one cut short, stops
// the producer with exit 1 and an error naming the frame's byte offset, keeping the
// records before it.
func TestFrames_BadFrame(t *testing.T) {
	good := framePayloads()[:12]
	prefix := frames(good)
	cases := []struct {
		name string
		bad  []byte
		want string
	}{
		{"too long", append(binary.LittleEndian.AppendUint32(nil, maxPayload4K+1), bytes.Repeat([]byte("y"), maxPayload4K+1)...),
			fmt.Sprintf("frame at byte offset %d has length %d", len(prefix), maxPayload4K+1)},
		{"length beyond any segment", binary.LittleEndian.AppendUint32(nil, 0xffffffff),
			fmt.Sprintf("frame at byte offset %d has length %d", len(prefix), uint32(0xffffffff))},
		{"truncated payload", append(binary.LittleEndian.AppendUint32(nil, 10), "abc"...),
			fmt.Sprintf("truncated frame at byte offset %d", len(prefix))},
		{"truncated header", []byte{1, 0},
			fmt.Sprintf("truncated frame header at byte offset %d", len(prefix))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := ring(t)
			in := append(bytes.Clone(prefix), c.bad...)
			if !strings.Contains(c.name, "truncated") {
				in = append(in, frames([][]byte{[]byte("after")})...) // never read
			}
			r := run(t, in, "produce", "--input", "frames", "--segment-size", "4KiB", "--segments", "100", dir)
			if r.code != 1 || !strings.HasPrefix(string(r.stderr), "filering: ") || !strings.Contains(string(r.stderr), c.want) {
				t.Fatalf("produce --input frames: %v; want exit 1 and %q", r, c.want)
			}
			if out := mustRun(t, nil, "cat", "--format", "raw", dir); !bytes.Equal(out, prefix) {
				t.Fatalf("cat --format raw printed %d bytes, want the %d bytes of the frames before the bad one", len(out), len(prefix))
			}
			checkJSONPayloads(t, mustRun(t, nil, "cat", "--format", "json", dir), good)
		})
	}
}
