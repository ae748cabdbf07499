package segment

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// DecodeManifest parses and validates a manifest. It accepts no unknown fields, no
// trailing data and nothing larger than MaxManifestSize. Errors wrap ErrManifest or
// ErrVersion.
func DecodeManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrManifest, len(b), MaxManifestSize)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrManifest)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var m Manifest
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrManifest, err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: trailing data after the manifest object", ErrManifest)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
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
	if m.SegmentsMax < MinSegments || m.SegmentsMax > MaxSegments {
		return bad("segments_max %d out of range %d..%d", m.SegmentsMax, MinSegments, MaxSegments)
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
