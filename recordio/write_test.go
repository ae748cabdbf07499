package recordio

import (
	"bytes"
	"math"
	"testing"

	"github.com/filering/filering/internal/corpus"
	"github.com/filering/filering/segment"
)

// TestWriter_Contract: every output format writes what internal/corpus, an independent
// implementation of the contract, says it should, for payloads that exercise each rule:
// escapes, control characters, invalid UTF-8, empty payloads, times far from now.
func TestWriter_Contract(t *testing.T) {
	recs := []segment.Record{
		{Seq: 1, Time: 0, Data: []byte("21.5")},
		{Seq: 2, Time: 1_700_000_000_123_456_789, Data: []byte{}},
		{Seq: 3, Time: -1, Data: []byte("quote \" backslash \\ tab \t nl \n cr \r bs \b ff \f nul \x00 us \x1f del \x7f")},
		{Seq: 4, Time: math.MaxInt64, Data: []byte("é€𝄞 and U+2028 \u2028")},
		{Seq: 5, Time: math.MinInt64, Data: []byte{0xff, 'a', 0xc3}},
		{Seq: math.MaxUint64, Time: 42, Data: []byte("\xed\xa0\x80")}, // a surrogate: not valid UTF-8
	}
	var want []corpus.Record
	for _, r := range recs {
		want = append(want, corpus.Record{Seq: r.Seq, Time: r.Time, Data: r.Data})
	}
	for _, format := range []string{Lines, JSON, Raw} {
		var got bytes.Buffer
		w, err := NewWriter(&got, format)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if err := w.WriteRecord(r); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		exp, err := corpus.Format(want, format)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), exp) {
			t.Errorf("%s:\n got %q\nwant %q", format, got.Bytes(), exp)
		}
	}
	if _, err := NewWriter(new(bytes.Buffer), "xml"); err == nil || ValidFormat("xml") {
		t.Error("format xml accepted")
	}
}
