package corpus

import (
	"hash/crc32"
	"slices"
)

var crcIEEE = crc32.ChecksumIEEE

// indexSegSize and indexBlock are the segment size and index block of the cases with
// indexes: three entries a segment.
const (
	indexSegSize = 16384
	indexBlock   = 4096
)

// indexed returns the cases of segment indexes (docs/FORMAT.md, "The segment index").
// Their selections start inside a segment; what they deliver follows from which entry
// the read starts at, so each damaged case says for each such run what it delivers.
func indexed() []*ring {
	var out []*ring
	newIndexed := func(name, desc string) *ring {
		r := newRing(name, desc)
		r.segSize, r.gen = indexSegSize, 5
		return r
	}
	flip := func(s *seg, i int) *seg {
		s.buf[s.offs[i]+4] ^= 1 // the record's CRC
		return s.recordError(i, s.offs[i], KindChecksum)
	}

	r := newIndexed("index-healthy", "Segments of 16 KiB with indexes (blocks of 4 KiB, three entries): selections that start inside a segment, after its first entry, at it and before it, in a sealed segment and in the hot one, deliver what they deliver without the index.")
	r.sealedSeg(1, 1, 400).index(indexBlock)
	r.sealedSeg(2, 401, 400).index(indexBlock)
	r.hotSeg(3, 801, 300).index(indexBlock)
	r.json().sel(1, 0).sel(5, 0).sel(150, 0).sel(299, 0).sel(300, 0).sel(301, 0).sel(650, 0).
		sel(0, 402).sel(0, 600).sel(0, 799).sel(0, 1000).sel(0, 1100).sel(3, 700)
	out = append(out, r)

	r = newIndexed("index-damage-before", "A record failing its CRC early in the hot segment (index 5), before its index entries: --last and --from runs that start at an entry past it deliver the records after it and report nothing; runs that need records before the first entry read the segment from its start and meet the damage, as a whole read does.")
	s1 := r.sealedSeg(1, 1, 400).index(indexBlock)
	s2 := flip(r.hotSeg(2, 401, 300).index(indexBlock), 5)
	if s2.recs[0].Seq != 401 || s1.idx == nil {
		panic(r.name)
	}
	all := slices.Concat(s1.recs, s2.recs)
	r.json().sel(350, 0).sel(0, 403).
		selWant(5, 0, all, nil).selWant(100, 0, all, nil).selWant(0, 551, all, nil)
	out = append(out, r)

	r = newIndexed("index-damage-before-sealed", "A record failing its CRC early in a sealed segment (index 3), before its index entries: --last and --from runs that start in that segment at an entry past the damage deliver the records after it and report nothing; a whole read reports it.")
	s1 = flip(r.sealedSeg(1, 1, 400).index(indexBlock), 3)
	s2 = r.hotSeg(2, 401, 10)
	all = slices.Concat(s1.recs, s2.recs)
	r.json().selWant(50, 0, all, nil).selWant(0, 201, all, nil).selWant(0, 395, all, nil)
	out = append(out, r)

	r = newIndexed("index-damage-before-and-after", "Records failing their CRC in the hot segment before its index entries (index 5) and after them (index 280): --from after the entry delivers as it goes from the entry, up to the second damage, and reports that one only; --last, which needs the count, reads the segment from its start, as without the index, and meets the first.")
	s1 = r.sealedSeg(1, 1, 400).index(indexBlock)
	s2 = flip(r.hotSeg(2, 401, 300).index(indexBlock), 5)
	late := s2.offs[280]
	s2.buf[late+4] ^= 1
	r.json().sel(5, 0).sel(300, 0).
		selWant(0, 551, slices.Concat(s1.recs, s2.recs[:280]), []Error{{File: str(s2.file), Offset: at(late), Kind: KindChecksum}})
	out = append(out, r)

	r = newIndexed("index-damage-after", "A record failing its CRC after the index entries a run would start at, in a sealed segment (index 390) and in the hot one (index 280): the run reads that segment from its start instead, so it delivers and reports exactly what it does without the index.")
	s1 = flip(r.sealedSeg(1, 1, 400).index(indexBlock), 390)
	s2 = r.sealedSeg(2, 401, 20).index(indexBlock)
	s3 := flip(r.hotSeg(3, 421, 300).index(indexBlock), 280)
	all = slices.Concat(s1.recs[:390], s2.recs, s3.recs[:280])
	hotOnly := []Error{*s3.err}
	r.json().sel(320, 0).sel(0, 300).sel(0, 395).
		selWant(5, 0, all, hotOnly).selWant(0, 700, all, hotOnly).selWant(0, 550, all, hotOnly)
	out = append(out, r)

	out = append(out, hostileIndexes())
	return out
}

// hostileIndexes is a ring whose every segment has an index that fails a check, and a
// record failing its CRC before the entries: a reader that used such an index would
// deliver records past the damage. None is used, so every run delivers and reports
// what it would without indexes: each sealed segment its first 3 records and the
// damage, the hot one (listed hot, sealed since at a torn record, with records past it
// that its entries point at) its first 100.
func hostileIndexes() *ring {
	r := newRing("index-hostile", "Every segment has an index that fails a check (header CRC, another segment's, an entry in the middle of a record, an entry with the wrong index, a file one entry too long, a block size that is no power of two, an entry before its block, a symbolic link, a FIFO, entries past a sealed segment's committed word): none is used, and none is reported; each segment is read from its start, meeting the damage there.")
	r.segSize, r.gen = indexSegSize, 5
	var segs []*seg
	crc := func(b []byte) { le.PutUint32(b[12:], crcIEEE(b[16:40])) }
	for n := uint64(1); n <= 9; n++ {
		s := r.sealedSeg(n, 400*n-399, 400).index(indexBlock)
		s.buf[s.offs[3]+4] ^= 1
		s.recordError(3, s.offs[3], KindChecksum)
		e1 := entryAt(s, 1)
		switch n {
		case 1:
			s.idx[13] ^= 1
		case 2:
			s.idx = slices.Clone(segs[0].idx) // segment 1's, its header CRC made right
			crc(s.idx)
		case 3:
			s.entry(1, s.offs[e1]+8, uint64(e1))
		case 4:
			s.entry(1, s.offs[e1], uint64(e1)+1)
		case 5:
			s.idx = append(s.idx, make([]byte, 8)...)
		case 6:
			le.PutUint32(s.idx[32:], 3000)
			le.PutUint32(s.idx[36:], uint32((indexSegSize-1)/3000))
			crc(s.idx)
			s.idx = append(s.idx, make([]byte, 8*((indexSegSize-1)/3000-3))...)
		case 7:
			s.entry(2, s.offs[e1+5], uint64(e1+5))
			s.entry(1, s.offs[10], 10)
		case 8:
			r.files["index-8.bin"] = s.idx
			r.step(OpSymlink, "0000000000000008.idx", "index-8.bin", "")
			s.idx = nil
		case 9:
			s.idx = nil
			r.step(OpMkfifo, "0000000000000009.idx", "", "")
		}
		segs = append(segs, s)
	}
	hot := r.hotSeg(10, 3601, 300).index(indexBlock)
	hot.word(48, 1).word(56, uint64(hot.offs[100])).word(hot.offs[100], 0) // sealed at a torn record
	hot.deliver = 100
	r.json().selWant(5, 0, hot.recs[:100], nil).selWant(50, 0, hot.recs[:100], nil).
		selWant(103, 0, slices.Concat(segs[8].recs[:3], hot.recs[:100]), []Error{*segs[8].err})
	for _, s := range segs {
		var recs []Record
		var errs []Error
		for _, t := range segs {
			if t.num >= s.num {
				recs = append(recs, t.recs[:3]...)
				errs = append(errs, *t.err)
			}
		}
		recs = append(recs, hot.recs[:100]...)
		r.selWant(0, s.first+200, recs, errs)
	}
	return r
}

// entryAt returns the index of the record entry k of s's index describes.
func entryAt(s *seg, k int) int {
	for i, off := range s.offs {
		if off >= k*indexBlock {
			return i
		}
	}
	panic("no record in block")
}
