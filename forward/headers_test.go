package forward

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestHeaders(t *testing.T) {
	const ring = "0123456789abcdef0123456789abcdef"
	for _, c := range []struct {
		s       span
		t       int64
		reissue uint64
		want    map[string]string
	}{
		{span{ring: ring, first: 7, last: 7, acked: 41}, 1_700_000_000_000_000_005, 0, map[string]string{
			HeaderMsgID: ring + ":7", HeaderRing: ring, HeaderSeq: "7", HeaderTime: "2023-11-14T22:13:20.000000005Z", HeaderAcked: "41"}},
		{span{ring: ring, first: 7, last: 7}, 0, 99, map[string]string{
			HeaderMsgID: ring + ":7:99", HeaderRing: ring, HeaderSeq: "7", HeaderTime: "1970-01-01T00:00:00.000000000Z", HeaderAcked: "0"}},
		{span{ring: ring, first: 3, last: 12, gap: true, acked: 5}, 0, 0, map[string]string{
			HeaderMsgID: ring + ":3-12", HeaderRing: ring, HeaderGap: "3-12", HeaderAcked: "5"}},
		{span{ring: ring, first: 3, last: 12, gap: true, acked: 5}, 0, 8, map[string]string{
			HeaderMsgID: ring + ":3-12:8", HeaderRing: ring, HeaderGap: "3-12", HeaderAcked: "5"}},
	} {
		h := c.s.header(c.t, c.reissue)
		if len(h) != len(c.want) {
			t.Errorf("%v: headers %v, want %v", c.s, h, c.want)
		}
		for k, v := range c.want {
			if got := h.Get(k); got != v || len(h[k]) != 1 {
				t.Errorf("%v: %s = %q, want %q", c.s, k, h[k], v)
			}
		}
		// And back.
		got, err := parseSpan(&jetstream.RawStreamMsg{Header: nats.Header(h), Sequence: 1})
		if err != nil || got != c.s {
			t.Errorf("parseSpan(header(%v)) = %v, %v", c.s, got, err)
		}
	}
}
