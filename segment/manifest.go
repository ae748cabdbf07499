package segment

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// MaxManifestSize bounds the size of a manifest file a reader accepts.
const MaxManifestSize = 1 << 20

// Manifest lists the segments of a ring, oldest first. The producer replaces the
// manifest file atomically whenever the set of segments changes.
type Manifest struct {
	Version     int     `json:"version"`
	SegmentSize int64   `json:"segment_size"`
	SegmentsMax int     `json:"segments_max"`
	Generation  uint64  `json:"generation"`
	Segments    []Entry `json:"segments"`
}

// Entry describes one segment in a manifest.
type Entry struct {
	Name     string `json:"name"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"` // 0 while the segment is hot
	Sealed   bool   `json:"sealed"`
}

// Number returns the segment number in e.Name, or 0 when the name is not valid.
func (e Entry) Number() uint64 {
	n, _ := ParseName(e.Name, SegmentSuffix)
	return n
}

// Hot returns the manifest's hot segment and true, or false when every segment is
// sealed.
func (m *Manifest) Hot() (Entry, bool) {
	if n := len(m.Segments); n > 0 && !m.Segments[n-1].Sealed {
		return m.Segments[n-1], true
	}
	return Entry{}, false
}

// DecodeManifest parses and validates a manifest. The parse is strict, so that every
// implementation accepts exactly the same documents (docs/FORMAT.md, "The manifest"):
// every field is required and appears once; unknown fields, null, and numbers other than
// plain non-negative integers below 2^63 are refused; nothing may follow the object;
// nothing larger than MaxManifestSize is read. Errors wrap ErrManifest or ErrVersion.
func DecodeManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrManifest, len(b), MaxManifestSize)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrManifest)
	}
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("%w: not UTF-8", ErrManifest)
	}
	p := manifestParser{d: json.NewDecoder(bytes.NewReader(b))}
	p.d.UseNumber()
	m, err := p.manifest()
	if err != nil {
		// A manifest of another version may have other fields: say so, rather than
		// name the first field this reader does not know.
		var probe struct{ Version json.Number }
		if json.Unmarshal(b, &probe) == nil && probe.Version != "" && probe.Version != "1" {
			return nil, fmt.Errorf("%w: manifest version %s, this reader knows %d", ErrVersion, probe.Version, Version)
		}
		return nil, fmt.Errorf("%w: %v", ErrManifest, err)
	}
	if _, err := p.d.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: trailing data after the manifest object", ErrManifest)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// manifestParser reads a manifest token by token, which lets it see what a decode into
// a struct hides: duplicate keys, null, missing fields and the literal form of numbers.
type manifestParser struct{ d *json.Decoder }

func (p *manifestParser) token() (json.Token, error) {
	t, err := p.d.Token()
	if errors.Is(err, io.EOF) {
		return nil, io.ErrUnexpectedEOF
	}
	return t, err
}

func (p *manifestParser) delim(want json.Delim, what string) error {
	t, err := p.token()
	if err != nil {
		return err
	}
	if d, ok := t.(json.Delim); !ok || d != want {
		return fmt.Errorf("%s: want %q, found %s", what, want, describe(t))
	}
	return nil
}

// object reads one JSON object whose keys must be exactly the names in fields, each once,
// calling value for each key with the decoder positioned before its value.
func (p *manifestParser) object(what string, fields []string, value func(key string) error) error {
	if err := p.delim('{', what); err != nil {
		return err
	}
	seen := make(map[string]bool, len(fields))
	for p.d.More() {
		t, err := p.token()
		if err != nil {
			return err
		}
		key, _ := t.(string)
		known := false
		for _, f := range fields {
			known = known || f == key
		}
		switch {
		case !known:
			return fmt.Errorf("%s: unknown field %q", what, key)
		case seen[key]:
			return fmt.Errorf("%s: field %q appears twice", what, key)
		}
		seen[key] = true
		if err := value(key); err != nil {
			return fmt.Errorf("%s: field %q: %w", what, key, err)
		}
	}
	for _, f := range fields {
		if !seen[f] {
			return fmt.Errorf("%s: field %q missing", what, f)
		}
	}
	return p.delim('}', what)
}

// integer reads a plain non-negative integer below 2^63: no sign, fraction or exponent.
func (p *manifestParser) integer() (uint64, error) {
	t, err := p.token()
	if err != nil {
		return 0, err
	}
	n, ok := t.(json.Number)
	if !ok {
		return 0, fmt.Errorf("want an integer, found %s", describe(t))
	}
	s := string(n)
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%s is not a plain non-negative integer", s)
		}
	}
	v, err := strconv.ParseUint(s, 10, 63)
	if err != nil {
		return 0, fmt.Errorf("%s is not below 2^63", s)
	}
	return v, nil
}

func (p *manifestParser) str() (string, error) {
	t, err := p.token()
	if err != nil {
		return "", err
	}
	if s, ok := t.(string); ok {
		return s, nil
	}
	return "", fmt.Errorf("want a string, found %s", describe(t))
}

func (p *manifestParser) boolean() (bool, error) {
	t, err := p.token()
	if err != nil {
		return false, err
	}
	if b, ok := t.(bool); ok {
		return b, nil
	}
	return false, fmt.Errorf("want true or false, found %s", describe(t))
}

var manifestFields = []string{"version", "segment_size", "segments_max", "generation", "segments"}
var entryFields = []string{"name", "first_seq", "last_seq", "sealed"}

func (p *manifestParser) manifest() (*Manifest, error) {
	m := &Manifest{Segments: []Entry{}}
	err := p.object("manifest", manifestFields, func(key string) error {
		if key == "segments" {
			return p.entries(m)
		}
		v, err := p.integer()
		if err != nil {
			return err
		}
		switch key {
		case "version":
			// A version this reader does not know is reported as such by Validate.
			m.Version = int(min(v, 1<<31-1))
		case "segment_size":
			m.SegmentSize = int64(v)
		case "segments_max":
			m.SegmentsMax = int(min(v, 1<<31-1))
		case "generation":
			m.Generation = v
		}
		return nil
	})
	return m, err
}

func (p *manifestParser) entries(m *Manifest) error {
	if err := p.delim('[', "segments"); err != nil {
		return err
	}
	for p.d.More() {
		var e Entry
		what := fmt.Sprintf("segments[%d]", len(m.Segments))
		err := p.object(what, entryFields, func(key string) (err error) {
			switch key {
			case "name":
				e.Name, err = p.str()
			case "first_seq":
				e.FirstSeq, err = p.integer()
			case "last_seq":
				e.LastSeq, err = p.integer()
			case "sealed":
				e.Sealed, err = p.boolean()
			}
			return err
		})
		if err != nil {
			return err
		}
		// Validate checks the count against segments_max too; this bound only keeps
		// a huge list from being held before that check.
		if len(m.Segments) >= MaxSegmentsListed {
			return fmt.Errorf("more than %d entries", MaxSegmentsListed)
		}
		m.Segments = append(m.Segments, e)
	}
	return p.delim(']', "segments")
}

// describe names a JSON token in an error.
func describe(t json.Token) string {
	switch v := t.(type) {
	case nil:
		return "null"
	case json.Delim:
		return fmt.Sprintf("%q", rune(v))
	case string:
		return "a string"
	case bool:
		return fmt.Sprintf("%v", v)
	case json.Number:
		return string(v)
	}
	return fmt.Sprintf("%v", t)
}

// Validate checks every rule docs/FORMAT.md sets for a manifest.
func (m *Manifest) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrManifest}, a...)...)
	}
	if m.Version != Version {
		return fmt.Errorf("%w: manifest version %d, this reader knows %d", ErrVersion, m.Version, Version)
	}
	if !ValidSize(m.SegmentSize) {
		return bad("segment_size %d not allowed", m.SegmentSize)
	}
	if m.SegmentsMax < MinSegments || m.SegmentsMax > MaxSegmentsListed {
		return bad("segments_max %d out of range %d..%d", m.SegmentsMax, MinSegments, MaxSegmentsListed)
	}
	if m.Generation >= 1<<63 {
		return bad("generation %d out of range", m.Generation)
	}
	if len(m.Segments) > m.SegmentsMax {
		return bad("%d segments listed, segments_max is %d", len(m.Segments), m.SegmentsMax)
	}
	var prev *Entry
	for i := range m.Segments {
		e := &m.Segments[i]
		n, ok := ParseName(e.Name, SegmentSuffix)
		switch {
		case !ok:
			return bad("segment %d: invalid name %q", i, e.Name)
		case e.FirstSeq == 0 || e.FirstSeq >= 1<<63:
			return bad("segment %s: first_seq %d out of range", e.Name, e.FirstSeq)
		case e.Sealed && (e.LastSeq < e.FirstSeq || e.LastSeq >= 1<<63):
			return bad("segment %s: sealed with last_seq %d before first_seq %d", e.Name, e.LastSeq, e.FirstSeq)
		case !e.Sealed && e.LastSeq != 0:
			return bad("segment %s: hot segment with last_seq %d", e.Name, e.LastSeq)
		case !e.Sealed && i != len(m.Segments)-1:
			return bad("segment %s: only the last segment may be hot", e.Name)
		}
		if prev != nil {
			switch {
			case n <= prev.Number():
				return bad("segment %s listed after %s", e.Name, prev.Name)
			case e.FirstSeq <= prev.LastSeq:
				return bad("segment %s: first_seq %d not after last_seq %d of %s",
					e.Name, e.FirstSeq, prev.LastSeq, prev.Name)
			}
		}
		prev = e
	}
	return nil
}

// Encode returns the manifest as the producer writes it: compact JSON and a newline.
func (m *Manifest) Encode() []byte {
	b, err := json.Marshal(m)
	if err != nil {
		// A Manifest holds only numbers, strings and booleans: Marshal cannot fail.
		panic(err)
	}
	return append(b, '\n')
}

// NextSeq returns the sequence number that follows the last record of the last sealed
// segment in the manifest, or 1 when there is none. It says nothing about a hot segment.
func (m *Manifest) NextSeq() uint64 {
	for i := len(m.Segments) - 1; i >= 0; i-- {
		if m.Segments[i].Sealed {
			return m.Segments[i].LastSeq + 1
		}
	}
	return 1
}
