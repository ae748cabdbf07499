package corpus

// reused returns the cases of segment files a producer reused (docs/FORMAT.md, "Reusing a
// segment file"): past its records, such a file still holds the records of the segment it
// was, whose sequence numbers are below its own.
func reused() []*ring {
	var out []*ring
	// old writes records of an older segment, from sequence first on, from offset at to
	// as far as they fit.
	old := func(s *seg, at int, first uint64) {
		for seq := first; ; seq++ {
			rec := Record{Seq: seq, Time: timeOf(seq), Data: payload(seq)}
			if at+align8(recHeader+len(rec.Data)) > len(s.buf) {
				return
			}
			at = putRecord(s.buf, at, rec)
		}
	}

	r := newRing("reused-files", "Segments in reused files: past the last record of each, the records of an older segment (sequence numbers from 1, CRCs valid). In the sealed segment they start right at its committed word; in the hot one, after the zero word a producer leaves at its next record offset. Every record of the ring, nothing else, no error.")
	r.gen = 12
	s := r.sealedSeg(7, 301, 25)
	old(s, s.end, 1)
	s = r.sealedSeg(8, 326, 40)
	old(s, s.end, 90)
	s = r.hotSeg(9, 366, 12)
	old(s, s.end+8, 200)
	r.all().sel(1, 0).sel(12, 0).sel(13, 0).sel(60, 0).sel(0, 320).sel(0, 366).sel(0, 377).sel(0, 378)
	out = append(out, r)

	r = newRing("reused-hot-old-record-next", "A hot segment in a reused file whose next record offset still holds an old record (lower sequence number, valid CRC) at its committed word: the end of what is committed, not damage; the records before it.")
	r.gen = 3
	r.sealedSeg(4, 51, 10)
	s = r.hotSeg(5, 61, 9)
	old(s, s.end, 20)
	r.all().sel(3, 0).sel(0, 65)
	out = append(out, r)
	return out
}
