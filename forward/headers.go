package forward

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/filering/filering/forward/cursor"
	"github.com/filering/filering/segment"
)

// The headers of every message a forwarder publishes. docs/FORWARD.md describes them.
const (
	// HeaderRing holds the ring's identity, 32 lowercase hexadecimal digits.
	HeaderRing = "Filering-Ring"
	// HeaderSeq holds a record's sequence number, in decimal. Gap markers have none.
	HeaderSeq = "Filering-Seq"
	// HeaderTime holds a record's time, RFC 3339 in UTC with nine fractional digits.
	HeaderTime = "Filering-Time"
	// HeaderGap marks a gap marker, a message with no payload that stands for records
	// lost before they could be forwarded: "A-B", the first and last lost, inclusive.
	HeaderGap = "Filering-Gap"
	// HeaderAcked holds the stream sequence number of a message of the same subject
	// that JetStream had acknowledged when this one was published, with every message
	// of the subject before it acknowledged too and in order: where a forwarder that
	// resumes starts checking the order of what the stream holds (0: the subject held
	// nothing that this chain of messages continues).
	HeaderAcked = "Filering-Acked"
	// HeaderMsgID is JetStream's deduplication header: "RING:SEQ" for a record and
	// "RING:A-B" for a gap marker; when a message is published again after the
	// forwarder removed a copy of it from the stream (see docs/FORWARD.md), ":N"
	// follows, N a stream sequence number that makes the identifier new.
	HeaderMsgID = jetstream.MsgIDHeader
)

// timeLayout is RFC 3339 with exactly nine fractional digits, as `--format json` prints.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// span is what one message of the subject stands for: a record or a gap marker of a ring.
type span struct {
	ring        string
	first, last uint64 // the sequence numbers covered; first == last for a record
	gap         bool
	acked       uint64 // HeaderAcked
}

func (s span) String() string {
	if s.gap {
		return fmt.Sprintf("gap %d to %d of ring %s", s.first, s.last, s.ring)
	}
	return fmt.Sprintf("record %d of ring %s", s.first, s.ring)
}

// end returns the position after the span.
func (s span) end() cursor.Cursor { return cursor.Cursor{Ring: s.ring, Seq: s.last} }

// follows reports whether s is what may come right after prev on the subject: the next
// sequence number of the same ring, or the beginning of another ring (the ring was
// created anew; a forwarder starts a new ring from 1, with a gap marker when its first
// records are gone).
func (s span) follows(prev span) bool {
	if s.ring == prev.ring {
		return s.first == prev.last+1
	}
	return s.first == 1
}

// header returns the headers of the message for s: t is a record's time; reissue, when
// not 0, makes its identifier new (see HeaderMsgID). The values are cut from one buffer,
// and the slices from one array: a message costs few allocations.
func (s span) header(t int64, reissue uint64) nats.Header {
	b := make([]byte, 0, 2*len(s.ring)+len(timeLayout)+5*20+8)
	mark := func() int { return len(b) }
	// Nats-Msg-Id: RING:SEQ or RING:A-B, and :N when reissued.
	b = append(b, s.ring...)
	b = append(b, ':')
	b = strconv.AppendUint(b, s.first, 10)
	gapAt := mark()
	if s.gap {
		b = append(b, '-')
		b = strconv.AppendUint(b, s.last, 10)
	}
	gapEnd := mark()
	if reissue != 0 {
		b = append(b, ':')
		b = strconv.AppendUint(b, reissue, 10)
	}
	idEnd := mark()
	var timeAt, timeEnd int
	if !s.gap {
		timeAt = mark()
		b = time.Unix(0, t).UTC().AppendFormat(b, timeLayout)
		timeEnd = mark()
	}
	ackedAt := mark()
	b = strconv.AppendUint(b, s.acked, 10)
	all := string(b)
	ringEnd := len(s.ring)
	vals := make([]string, 5)
	vals[0] = all[:idEnd]
	vals[1] = all[:ringEnd]
	if s.gap {
		vals[2] = all[ringEnd+1 : gapEnd] // A-B
	} else {
		vals[2] = all[ringEnd+1 : gapAt] // SEQ
		vals[3] = all[timeAt:timeEnd]
	}
	vals[4] = all[ackedAt:]
	h := make(nats.Header, 5)
	h[HeaderMsgID] = vals[0:1:1]
	h[HeaderRing] = vals[1:2:2]
	if s.gap {
		h[HeaderGap] = vals[2:3:3]
	} else {
		h[HeaderSeq] = vals[2:3:3]
		h[HeaderTime] = vals[3:4:4]
	}
	h[HeaderAcked] = vals[4:5:5]
	return h
}

// errForeign marks a message on the subject that a forwarder did not publish.
type errForeign struct {
	seq    uint64
	reason string
}

func (e *errForeign) Error() string {
	return fmt.Sprintf("stream sequence %d: not a message a forwarder published: %s", e.seq, e.reason)
}

// parseSpan reads what a stored message stands for from its headers.
func parseSpan(m *jetstream.RawStreamMsg) (span, error) {
	bad := func(format string, args ...any) (span, error) {
		return span{}, &errForeign{seq: m.Sequence, reason: fmt.Sprintf(format, args...)}
	}
	var s span
	ring := m.Header.Get(HeaderRing)
	if _, err := segment.ParseID([]byte(ring + "\n")); err != nil {
		return bad("header %s %q: not a ring identity", HeaderRing, ring)
	}
	s.ring = ring
	acked, err := strconv.ParseUint(m.Header.Get(HeaderAcked), 10, 64)
	if err != nil {
		return bad("header %s %q: not a stream sequence number", HeaderAcked, m.Header.Get(HeaderAcked))
	}
	s.acked = acked
	if g := m.Header.Get(HeaderGap); g != "" {
		a, b, ok := strings.Cut(g, "-")
		first, err1 := strconv.ParseUint(a, 10, 64)
		last, err2 := strconv.ParseUint(b, 10, 64)
		if !ok || err1 != nil || err2 != nil || first == 0 || last < first {
			return bad("header %s %q: not a range A-B", HeaderGap, g)
		}
		s.first, s.last, s.gap = first, last, true
		return s, nil
	}
	seq, err := strconv.ParseUint(m.Header.Get(HeaderSeq), 10, 64)
	if err != nil || seq == 0 {
		return bad("header %s %q: not a sequence number", HeaderSeq, m.Header.Get(HeaderSeq))
	}
	s.first, s.last = seq, seq
	return s, nil
}
