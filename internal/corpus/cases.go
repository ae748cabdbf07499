package corpus

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Build returns every case of the corpus, in name order.
func Build() []Case {
	var rs []*ring
	rs = append(rs, healthy()...)
	rs = append(rs, wrapped()...)
	rs = append(rs, hotTail()...)
	rs = append(rs, segmentDamage()...)
	rs = append(rs, recordDamage()...)
	rs = append(rs, hostile()...)
	rs = append(rs, manifests()...)
	rs = append(rs, payloads()...)
	rs = append(rs, taken()...)
	rs = append(rs, indexed()...)
	rs = append(rs, reused()...)
	var cs []Case
	seen := map[string]bool{}
	for _, r := range rs {
		if seen[r.name] {
			panic("two cases named " + r.name)
		}
		seen[r.name] = true
		cs = append(cs, r.build())
	}
	slices.SortFunc(cs, func(a, b Case) int { return strings.Compare(a.Name, b.Name) })
	return cs
}

func healthy() []*ring {
	var out []*ring

	r := newRing("healthy-empty-ring", "A manifest listing no segment: nothing to print, no error.")
	r.all().sel(3, 0).sel(0, 5)
	out = append(out, r)

	r = newRing("healthy-hot-empty", "One hot segment holding no record (committed word 64), as a producer stopped before its first record leaves it: nothing to print, no error.")
	r.add(1, 1, nil, false)
	r.all().sel(1, 0).sel(0, 1)
	out = append(out, r)

	r = newRing("healthy-hot-records", "One hot segment holding 7 records: all of them, in order; --last larger than the ring gives everything, --from beyond the end nothing.")
	r.hotSeg(1, 1, 7)
	r.all().sel(2, 0).sel(100, 0).sel(0, 3).sel(0, 7).sel(0, 8).sel(2, 3)
	out = append(out, r)

	r = newRing("healthy-sealed-and-hot", "Three sealed segments and a hot one: every record in sequence order; selections inside, at and across segment boundaries.")
	r.gen = 4
	r.sealedSeg(1, 1, 30)
	r.sealedSeg(2, 31, 45)
	r.sealedSeg(3, 76, 20)
	r.hotSeg(4, 96, 9)
	r.all().sel(1, 0).sel(9, 0).sel(10, 0).sel(30, 0).sel(1000, 0).sel(0, 50).sel(0, 76).sel(0, 104).sel(0, 105).sel(3, 50)
	out = append(out, r)

	r = newRing("healthy-all-sealed", "Every segment sealed, as after a clean stop: every record, no error.")
	r.gen = 9
	r.sealedSeg(1, 1, 20)
	r.sealedSeg(2, 21, 20)
	r.sealedSeg(3, 41, 5)
	r.json().sel(7, 0).sel(0, 21)
	out = append(out, r)

	r = newRing("healthy-stopped-empty-hot", "Sealed segments and, last, a hot segment holding no record, listed hot with last_seq 0 while no producer runs (a clean stop keeps it, so its number is never reused): every record, no error.")
	r.gen = 5
	r.sealedSeg(1, 1, 12)
	r.sealedSeg(2, 13, 8)
	r.add(3, 21, nil, false)
	r.json().sel(2, 0).sel(0, 20).sel(0, 21)
	out = append(out, r)

	// Segment 1: 62 records of 64 bytes and one of 57 bytes padded to 64 end exactly at
	// 4096. Segment 2: one record of the largest payload (4008 bytes). Segment 3: a record
	// ending at 4088, leaving an 8-byte zero commit word. Segment 4, hot: 126 records of
	// 32 bytes fill it to 4096, committed word 4096.
	r = newRing("healthy-full-segments", "Segments filled exactly to their end (the last record's size not a multiple of 8; one record of the largest payload, 4008 bytes, binary), one ending 8 bytes short, and a hot segment full to its end: every record.")
	r.gen = 6
	var ps [][]byte
	for i := 0; i < 62; i++ {
		ps = append(ps, fmt.Appendf(nil, "reading %02d: %s", i, strings.Repeat("=", 37-14)))
	}
	ps = append(ps, []byte("the last record: 33 bytes long..."))
	s1 := r.add(1, 1, withPayloads(1, ps...), true)
	big := make([]byte, maxPayload)
	for i := range big {
		big[i] = byte(i*7 + i/256)
	}
	s2 := r.add(2, 64, withPayloads(64, big), true)
	s3 := r.add(3, 65, withPayloads(65, []byte(strings.Repeat("0123456789", 400))), true)
	var small [][]byte
	for i := 0; i < 126; i++ {
		small = append(small, fmt.Appendf(nil, "%08d", i))
	}
	s4 := r.add(4, 66, withPayloads(66, small...), false)
	if s1.end != segSize || s2.end != segSize || s3.end != segSize-8 || s4.end != segSize || len(ps[62])%8 == 0 {
		panic(fmt.Sprint("healthy-full-segments: ends ", s1.end, s2.end, s3.end, s4.end))
	}
	r.json().run(FormatRaw, 0, 0).sel(1, 0).sel(2, 0).sel(128, 0)
	out = append(out, r)

	r = newRing("healthy-committed-word-lags", "A hot segment whose committed word still says 64 while 6 records are written (the word is a lazy lower bound): every record, no error.")
	r.sealedSeg(1, 1, 5)
	r.hotSeg(2, 6, 6).word(56, 64)
	r.json().sel(2, 0)
	out = append(out, r)

	r = newRing("healthy-sequence-gap", "Segment numbers and sequence numbers that jump (segments removed in crash recovery; first_seq above the previous last_seq + 1 is valid): every record; --last counts records across the gap.")
	r.segMax = 4
	r.gen = 31
	r.sealedSeg(3, 1, 5)
	r.sealedSeg(5, 179, 4)
	r.hotSeg(6, 400, 3)
	r.json().sel(5, 0).sel(8, 0).sel(0, 100).sel(0, 6)
	out = append(out, r)

	r = newRing("healthy-manifest-exactly-1mib", "A manifest of exactly 1 MiB (1048576 bytes: JSON whitespace inside the object), the largest a reader accepts: every record.")
	r.hotSeg(1, 1, 3)
	m := r.manifestText()
	i := strings.Index(m, `"segments":`)
	r.manifest = []byte(m[:i] + strings.Repeat(" ", 1<<20-len(m)) + m[i:])
	r.json()
	out = append(out, r)

	r = newRing("healthy-manifest-limits", "A valid manifest at the limits: pretty-printed, keys in another order, no final newline, segments_max 65536 (older rings), generation 2^63-1: every record.")
	r.segMax = 65536
	r.gen = math.MaxInt64
	r.sealedSeg(1, 1, 4)
	r.hotSeg(2, 5, 2)
	r.manifest = []byte("{\n\t\"segments\" : [\n\t\t{ \"sealed\": true, \"last_seq\": 4, \"first_seq\": 1, \"name\": \"0000000000000001.seg\" },\r\n" +
		"\t\t{\"last_seq\":0,\"sealed\":false,\"name\":\"0000000000000002.seg\",\"first_seq\":5}\n\t],\n" +
		"\t\"generation\": 9223372036854775807,\n\t\"segments_max\": 65536,\n\t\"segment_size\": 4096,\n\t\"version\": 1\n}")
	r.json()
	out = append(out, r)

	r = newRing("healthy-read-only", "A ring whose files are mode 0444 and directory 0555: a reader needs only read permission; every record.")
	r.sealedSeg(1, 1, 4)
	r.hotSeg(2, 5, 3)
	r.step(OpChmod, "manifest", "", "0444").step(OpChmod, segName(1), "", "0444").step(OpChmod, segName(2), "", "0444").step(OpChmod, ".", "", "0555")
	r.json()
	out = append(out, r)

	r = newRing("healthy-midroll", "A ring caught mid-roll: the last listed segment is still hot in the manifest but already sealed in its header, and the next segment exists but is not listed yet: every listed record, the unlisted segment ignored, no error.")
	r.gen = 12
	r.sealedSeg(1, 1, 10)
	r.hotSeg(2, 11, 8).word(48, 1)
	r.add(3, 19, nil, false).listed = false
	r.json().sel(3, 0).sel(0, 18)
	out = append(out, r)

	return out
}

func wrapped() []*ring {
	var out []*ring

	r := newRing("wrapped-ring", "A ring that has wrapped many times: segments 4711 to 4714 of segments_max 4, sequence numbers above 10^9; --from below the first retained record gives them all.")
	r.segMax = 4
	r.gen = 98765
	r.sealedSeg(4711, 1000000001, 25)
	r.sealedSeg(4712, 1000000026, 30)
	r.sealedSeg(4713, 1000000056, 22)
	r.hotSeg(4714, 1000000078, 6)
	r.all().sel(3, 0).sel(10, 0).sel(0, 5).sel(0, 1000000030)
	out = append(out, r)

	r = newRing("wrapped-seq-2p32", "Sequence numbers crossing 2^32 inside a segment and between segments: every record, numbers printed in full.")
	r.segMax = 8
	r.gen = 140001
	r.sealedSeg(70000, 4294967290, 10)
	r.hotSeg(70001, 4294967300, 4)
	r.json().sel(0, 4294967296).sel(5, 0)
	out = append(out, r)

	r = newRing("wrapped-seq-max", "The largest segment number (9999999999999999) and sequence numbers just below 2^63: every record, numbers printed in full.")
	r.gen = 1 << 40
	const first = uint64(math.MaxInt64 - 17)
	r.sealedSeg(9999999999999998, first, 10)
	r.hotSeg(9999999999999999, first+10, 7)
	r.json().sel(3, 0).sel(0, math.MaxInt64-2)
	out = append(out, r)

	return out
}

func hotTail() []*ring {
	var out []*ring

	r := newRing("hot-torn-last-record", "The last record of the hot segment is torn (CRC mismatch) at the committed word: not committed yet, so not an error; the records before it, exit 0.")
	r.sealedSeg(1, 1, 5)
	s := r.hotSeg(2, 6, 6)
	s.buf[s.offs[5]+4] ^= 0x5a // its CRC
	s.word(56, uint64(s.offs[5]))
	s.deliver = 5
	r.all().sel(1, 0).sel(0, 11)
	out = append(out, r)

	r = newRing("hot-uncommitted-garbage", "Past the hot segment's committed word, a commit word whose size runs past the end of the segment: not committed yet (or torn), so not an error; the records before it.")
	s = r.hotSeg(1, 1, 4)
	s.word(s.end, 0xdeadbeef_ffffffff)
	r.json().sel(2, 0)
	out = append(out, r)

	r = newRing("hot-uncommitted-sequence", "Past the hot segment's committed word (which lags), a record with a valid CRC but the wrong sequence number: not committed, so not an error; the records before it.")
	s = r.hotSeg(1, 1, 4)
	putRecord(s.buf, s.offs[3], Record{Seq: 5, Time: s.recs[3].Time, Data: s.recs[3].Data})
	s.deliver = 3
	s.word(56, uint64(s.offs[2]))
	r.json().sel(1, 0)
	out = append(out, r)

	return out
}

// damaged3 lays out the usual ring of the damage cases: segment 1 sealed (records 1-6),
// segment 2 sealed (7-14), segment 3 hot (15-18). It returns segment 2.
func damaged3(name, desc string) (*ring, *seg) {
	r := newRing(name, desc)
	r.gen = 3
	r.sealedSeg(1, 1, 6)
	s := r.sealedSeg(2, 7, 8)
	r.hotSeg(3, 15, 4)
	r.run("", 0, 0).json()
	return r, s
}

func segmentDamage() []*ring {
	var out []*ring

	r := newRing("seg-size", "Listed segments of the wrong size (2048 bytes, 8192 bytes, empty): each is an error naming the file, none of its records is printed; the other segments are.")
	r.gen = 3
	r.sealedSeg(1, 1, 6)
	s := r.sealedSeg(2, 7, 5)
	s.override = s.buf[:2048]
	s.segmentError(nil, KindSize)
	s = r.sealedSeg(3, 12, 5)
	s.override = append(slices.Clone(s.buf), make([]byte, segSize)...)
	s.segmentError(nil, KindSize)
	s = r.sealedSeg(4, 17, 5)
	s.override = []byte{}
	s.segmentError(nil, KindSize)
	r.hotSeg(5, 22, 3)
	r.run("", 0, 0).json()
	out = append(out, r)

	r, s = damaged3("seg-bad-magic", "A segment whose magic is FILERSEX: an error at offset 0 naming the file, none of its records; the other segments are printed, exit 1.")
	s.buf[7] = 'X'
	s.segmentError(at(0), KindHeader)
	r.sel(6, 0)
	out = append(out, r)

	r, s = damaged3("seg-bad-version", "A segment header with version 2: an error at offset 8 naming the file, none of its records; the other segments are printed, exit 1.")
	le.PutUint32(s.buf[8:], 2)
	s.segmentError(at(8), KindHeader)
	out = append(out, r)

	r = newRing("seg-bad-header-crc", "Segment headers failing their CRC (the CRC field changed; the created time, which the CRC covers, changed): errors at offset 12, none of their records; the other segments are printed.")
	r.gen = 3
	r.sealedSeg(1, 1, 6)
	s = r.sealedSeg(2, 7, 5)
	s.buf[12] ^= 0x01
	s.segmentError(at(12), KindHeader)
	s = r.sealedSeg(3, 12, 5)
	s.buf[40] ^= 0x80
	s.segmentError(at(12), KindHeader)
	r.hotSeg(4, 17, 3)
	r.run("", 0, 0).json()
	out = append(out, r)

	r, s = damaged3("seg-header-size-mismatch", "A segment header (valid CRC) saying size 8192 while the file and the manifest say 4096: an error at offset 16, none of its records; the other segments are printed.")
	s.rehead(8192, 2, 7)
	s.segmentError(at(16), KindHeader)
	out = append(out, r)

	r, s = damaged3("seg-header-number-mismatch", "A segment header (valid CRC) saying segment number 3 in file 0000000000000002.seg: an error at offset 24, none of its records; the other segments are printed.")
	s.rehead(segSize, 3, 7)
	s.segmentError(at(24), KindHeader)
	out = append(out, r)

	r, s = damaged3("seg-header-first-seq-mismatch", "A segment header (valid CRC) saying first sequence 8 while the manifest entry says 7: an error at offset 32, none of its records; the other segments are printed.")
	s.rehead(segSize, 2, 8)
	s.segmentError(at(32), KindHeader)
	out = append(out, r)

	r = newRing("seg-bad-sealed-word", "Sealed words that are neither 0 nor 1 (2, and 0x100000001 whose low 32 bits are 1): errors at offset 48, none of their records; the other segments are printed.")
	r.gen = 3
	r.sealedSeg(1, 1, 6)
	r.sealedSeg(2, 7, 5).word(48, 2).segmentError(at(48), KindSealedWord)
	r.sealedSeg(3, 12, 5).word(48, 1<<32|1).segmentError(at(48), KindSealedWord)
	r.hotSeg(4, 17, 3)
	r.run("", 0, 0).json()
	out = append(out, r)

	r = newRing("seg-bad-committed-word", "Committed words out of range: 0, 100 (not a multiple of 8), 4104 (past the end), 2^32+64 (low 32 bits valid): errors at offset 56, none of their records; the other segments are printed.")
	r.gen = 3
	r.sealedSeg(1, 1, 4)
	r.sealedSeg(2, 5, 4).word(56, 0).segmentError(at(56), KindCommittedWord)
	r.sealedSeg(3, 9, 4).word(56, 100).segmentError(at(56), KindCommittedWord)
	r.sealedSeg(4, 13, 4).word(56, segSize+8).segmentError(at(56), KindCommittedWord)
	r.sealedSeg(5, 17, 4).word(56, 1<<32|64).segmentError(at(56), KindCommittedWord)
	r.hotSeg(6, 21, 3)
	r.run("", 0, 0).json().sel(0, 6)
	out = append(out, r)

	r, s = damaged3("seg-listed-sealed-word-zero", "A segment the manifest lists sealed whose sealed word is 0: an error at offset 48, none of its records; the other segments are printed.")
	s.word(48, 0)
	s.segmentError(at(48), KindSealedWord)
	out = append(out, r)

	return out
}

func recordDamage() []*ring {
	var out []*ring

	r, s := damaged3("rec-checksum", "A record in the middle of a sealed segment fails its CRC (a payload bit flipped): the records before it, an error at its offset, then the next segments; --last counts only records printed.")
	s.buf[s.offs[3]+24] ^= 0x04
	s.recordError(3, s.offs[3], KindChecksum)
	r.sel(6, 0).sel(0, 12)
	out = append(out, r)

	r, s = damaged3("rec-checksum-first", "The first record of a sealed segment fails its CRC (the CRC field changed): an error at offset 64, none of that segment's records, then the next segments.")
	s.buf[s.offs[0]+5] ^= 0x10
	s.recordError(0, s.offs[0], KindChecksum)
	out = append(out, r)

	r, s = damaged3("rec-checksum-last-sealed", "The last record of a sealed segment fails its CRC (its time changed): below the final committed word this is corruption, not a torn record; the records before it and an error at its offset.")
	s.buf[s.offs[7]+16] ^= 0x01
	s.recordError(7, s.offs[7], KindChecksum)
	out = append(out, r)

	r = newRing("rec-checksum-hot", "A record of the hot segment below its committed word fails its CRC: the records before it and an error at its offset, exit 1.")
	r.sealedSeg(1, 1, 6)
	s = r.hotSeg(2, 7, 5)
	s.buf[s.offs[1]+24] ^= 0x40
	s.recordError(1, s.offs[1], KindChecksum)
	r.run("", 0, 0).json().sel(1, 0)
	out = append(out, r)

	r = newRing("rec-bad-size", "Record size words that break the rules (23, below 24; 0xffffffff; one that runs 8 bytes past the end of the segment): the records before each, errors at their offsets, then the next segments.")
	r.gen = 3
	r.sealedSeg(1, 1, 4)
	s = r.sealedSeg(2, 5, 5)
	le.PutUint32(s.buf[s.offs[2]:], 23)
	s.recordError(2, s.offs[2], KindRecordSize)
	s = r.sealedSeg(3, 10, 5)
	le.PutUint32(s.buf[s.offs[0]:], 0xffffffff)
	s.recordError(0, s.offs[0], KindRecordSize)
	s = r.add(4, 15, withPayloads(15, []byte("a"), []byte("b"), make([]byte, segSize-headerSize-2*32-recHeader-40)), true)
	le.PutUint32(s.buf[s.offs[2]:], uint32(segSize-s.offs[2]+1))
	s.recordError(2, s.offs[2], KindRecordSize)
	r.hotSeg(5, 18, 3)
	r.run("", 0, 0).json()
	out = append(out, r)

	r = newRing("rec-sequence", "Records whose sequence number is wrong although their CRC matches (one ahead, and one repeating the previous number): the records before each, errors at their offsets, then the next segments.")
	r.gen = 3
	r.sealedSeg(1, 1, 4)
	s = r.sealedSeg(2, 5, 6)
	putRecord(s.buf, s.offs[4], Record{Seq: 10, Time: s.recs[4].Time, Data: s.recs[4].Data})
	s.recordError(4, s.offs[4], KindSequence)
	s = r.sealedSeg(3, 11, 6)
	putRecord(s.buf, s.offs[1], Record{Seq: 11, Time: s.recs[1].Time, Data: s.recs[1].Data})
	s.recordError(1, s.offs[1], KindSequence)
	r.hotSeg(4, 17, 3)
	r.run("", 0, 0).json()
	out = append(out, r)

	r = newRing("rec-missing", "A zero commit word below the committed word, in a sealed segment and in the hot one: a committed record is missing; the records before each and errors at their offsets.")
	r.gen = 3
	r.sealedSeg(1, 1, 4)
	s = r.sealedSeg(2, 5, 6)
	s.word(s.offs[3], 0)
	s.recordError(3, s.offs[3], KindMissing)
	s = r.hotSeg(3, 11, 5)
	s.word(s.offs[2], 0)
	s.recordError(2, s.offs[2], KindMissing)
	r.run("", 0, 0).json()
	out = append(out, r)

	r, s = damaged3("rec-past-last-seq", "A sealed segment holding records past the manifest's last_seq (it lists 7-10, the file holds 7-14): records 7-10, an error at the offset of record 11, then the next segments.")
	last := uint64(10)
	s.lastSeq = &last
	s.recordError(4, s.offs[4], KindLastSeq)
	r.sel(5, 0)
	out = append(out, r)

	r = newRing("rec-end-before-last-seq", "A sealed segment whose records end before the manifest's last_seq (it lists 7-17, the file holds 7-14): records 7-14 and an error at their end offset, then the next segments.")
	r.gen = 3
	r.sealedSeg(1, 1, 6)
	s = r.sealedSeg(2, 7, 8)
	last2 := uint64(17)
	s.lastSeq = &last2
	s.recordError(8, s.end, KindLastSeq)
	r.hotSeg(3, 18, 4)
	r.run("", 0, 0).json().sel(5, 0)
	out = append(out, r)

	return out
}

func hostile() []*ring {
	var out []*ring

	r, s := damaged3("seg-symlink", "A listed segment that is a symbolic link to a valid copy of it: readers never follow links; an error naming the file, none of its records, the other segments printed.")
	s.file = "segment-2.bin"
	s.err = &Error{File: str(segName(2)), Kind: KindNotRegular}
	s.deliver = 0
	r.step(OpSymlink, segName(2), "segment-2.bin", "")
	out = append(out, r)

	r, s = damaged3("seg-symlink-dangling", "A listed segment that is a dangling symbolic link: an error naming the file (not a missing, taken segment, which would be skipped silently); the other segments printed.")
	s.file = ""
	s.err = &Error{File: str(segName(2)), Kind: KindNotRegular}
	s.deliver = 0
	r.step(OpSymlink, segName(2), "0000000000000002.gone", "")
	out = append(out, r)

	r, s = damaged3("seg-fifo", "A listed segment that is a FIFO: opening it must not block; an error naming the file, the other segments printed.")
	s.file = ""
	s.err = &Error{File: str(segName(2)), Kind: KindNotRegular}
	s.deliver = 0
	r.step(OpMkfifo, segName(2), "", "")
	r.sel(6, 0)
	out = append(out, r)

	r, s = damaged3("seg-directory", "A listed segment that is a directory: an error naming it, the other segments printed.")
	s.file = ""
	s.err = &Error{File: str(segName(2)), Kind: KindNotRegular}
	s.deliver = 0
	r.step(OpMkdir, segName(2), "", "")
	out = append(out, r)

	manifestErr := []Error{{File: str("manifest"), Kind: KindNotRegular}}
	r = newRing("manifest-symlink", "The manifest is a symbolic link to a valid manifest: readers never follow links; the read fails as a whole, nothing printed, exit 1.")
	r.sealedSeg(1, 1, 3)
	r.hotSeg(2, 4, 2)
	r.files["manifest.json"] = []byte(r.manifestText())
	r.noManifest = true
	r.errs = manifestErr
	r.step(OpSymlink, "manifest", "manifest.json", "")
	r.json()
	out = append(out, r)

	r = newRing("manifest-fifo", "The manifest is a FIFO: opening it must not block; the read fails as a whole, nothing printed, exit 1.")
	r.sealedSeg(1, 1, 3)
	r.hotSeg(2, 4, 2)
	r.noManifest = true
	r.errs = manifestErr
	r.step(OpMkfifo, "manifest", "", "")
	r.json()
	out = append(out, r)

	r = newRing("manifest-directory", "The manifest is a directory: the read fails as a whole, nothing printed, exit 1.")
	r.sealedSeg(1, 1, 3)
	r.hotSeg(2, 4, 2)
	r.noManifest = true
	r.errs = manifestErr
	r.step(OpMkdir, "manifest", "", "")
	r.json()
	out = append(out, r)

	r = newRing("unlisted-names", "Files the manifest does not list, some with segment-like names (a newer valid segment, garbage, 15/17 digits, number 0, temporary '.' files including a manifest, .taken, .damaged, lock, a FIFO, a directory, a symlink): all ignored, every listed record, no error.")
	r.gen = 2
	r.sealedSeg(1, 1, 5)
	r.hotSeg(2, 6, 3)
	other := newRing("", "")
	other.sealedSeg(1, 1, 5)
	other.sealedSeg(2, 6, 3)
	s3 := other.hotSeg(3, 9, 2)
	tmp4 := newRing("", "").hotSeg(4, 11, 2)
	taken5 := newRing("", "").sealedSeg(5, 100, 2)
	r.files[segName(3)] = s3.buf
	r.files["."+segName(4)] = tmp4.buf
	r.files[".manifest.tmp"] = []byte(other.manifestText())
	r.files["0000000000000005.taken"] = taken5.buf
	r.files["0000000000000006.damaged"] = []byte("damaged\n")
	r.files["0000000000000009.seg"] = []byte("not a segment\n")
	r.files["0000000000000000.seg"] = []byte("segment number 0\n")
	r.files["00000000000000001.seg"] = []byte("17 digits\n")
	r.files["000000000000001.seg"] = []byte("15 digits\n")
	r.files["1.seg"] = []byte("one\n")
	r.files["lock"] = []byte("4242\n")
	r.files["manifest.bak"] = []byte("{}\n")
	r.step(OpMkfifo, segName(7), "", "").step(OpMkdir, segName(8), "", "").
		step(OpSymlink, segName(10), segName(1), "").step(OpMkfifo, "."+segName(11), "", "")
	r.json().sel(2, 0).sel(0, 8)
	out = append(out, r)

	r = newRing("no-ring", "A directory with no manifest: not a ring (yet); an error naming the directory, nothing printed, exit 1.")
	r.noRing = true
	r.errs = []Error{{Kind: KindNoRing}}
	r.json()
	out = append(out, r)

	return out
}

// manifests returns the cases of invalid manifests. Each ring holds valid segment files,
// so a reader that wrongly accepts the manifest prints records.
func manifests() []*ring {
	base := func() *ring {
		r := newRing("", "")
		r.gen = 7
		r.sealedSeg(1, 1, 3)
		r.hotSeg(2, 4, 2)
		return r
	}
	good := base().manifestText()
	type mc struct {
		name, desc string
		text       string
	}
	rep := func(old, new string) string {
		if !strings.Contains(good, old) {
			panic("manifest cases: no " + old)
		}
		return strings.Replace(good, old, new, 1)
	}
	hot := `{"name":"0000000000000002.seg","first_seq":4,"last_seq":0,"sealed":false}`
	sealed := `{"name":"0000000000000001.seg","first_seq":1,"last_seq":3,"sealed":true}`
	cases := []mc{
		{"manifest-invalid-json", "truncated JSON", good[:len(good)-4]},
		{"manifest-empty", "an empty file", ""},
		{"manifest-not-object", "a JSON array holding the manifest object", "[" + strings.TrimSuffix(good, "\n") + "]\n"},
		{"manifest-trailing-data", "a second object after the manifest object", good + good},
		{"manifest-bom", "a UTF-8 byte order mark before the object", "\ufeff" + good},
		{"manifest-unknown-field", "an unknown top-level field", rep(`{"version":1,`, `{"version":1,"producer":"sensor",`)},
		{"manifest-unknown-entry-field", "an unknown field in a segment entry", rep(`"sealed":true}`, `"sealed":true,"crc":0}`)},
		{"manifest-missing-field", "the generation field missing", rep(`"generation":7,`, ``)},
		{"manifest-missing-last-seq", "the hot entry without last_seq (its value would be 0)", rep(`"last_seq":0,`, ``)},
		{"manifest-missing-sealed", "the hot entry without sealed (its value would be false)", rep(`,"sealed":false`, ``)},
		{"manifest-null-generation", "generation null", rep(`"generation":7`, `"generation":null`)},
		{"manifest-null-segments", "segments null (a lenient reader sees an empty ring)", rep(`"segments":[`+sealed+`,`+hot+`]`, `"segments":null`)},
		{"manifest-null-last-seq", "the hot entry's last_seq null (a lenient reader sees 0)", rep(`"last_seq":0`, `"last_seq":null`)},
		{"manifest-duplicate-key", "the generation key twice, with the same value", rep(`"generation":7,`, `"generation":7,"generation":7,`)},
		{"manifest-duplicate-entry-key", "the sealed key twice in the hot entry, with the same value", rep(`"sealed":false`, `"sealed":false,"sealed":false`)},
		{"manifest-float", "generation written 7.0", rep(`"generation":7`, `"generation":7.0`)},
		{"manifest-exponent", "segment_size written 4096e0", rep(`"segment_size":4096`, `"segment_size":4096e0`)},
		{"manifest-negative", "generation -7", rep(`"generation":7`, `"generation":-7`)},
		{"manifest-negative-zero", "generation -0 (a sign is not allowed)", rep(`"generation":7`, `"generation":-0`)},
		{"manifest-leading-zero", "generation 07 (not JSON)", rep(`"generation":7`, `"generation":07`)},
		{"manifest-int-2p63", "generation 2^63, one above the largest allowed", rep(`"generation":7`, `"generation":9223372036854775808`)},
		{"manifest-int-2p64-wraps", "the sealed entry's last_seq 2^64+3 (3 when wrapped to 64 bits)", rep(`"last_seq":3`, `"last_seq":18446744073709551619`)},
		{"manifest-segments-max-2p32-wraps", "segments_max 2^32+2 (2 when wrapped to 32 bits)", rep(`"segments_max":16`, `"segments_max":4294967298`)},
		{"manifest-string-int", "generation the string \"7\"", rep(`"generation":7`, `"generation":"7"`)},
		{"manifest-nan", "generation NaN (not JSON)", rep(`"generation":7`, `"generation":NaN`)},
		{"manifest-bool-as-int", "the sealed entry's sealed written 1", rep(`"sealed":true`, `"sealed":1`)},
		{"manifest-int-as-bool", "version written true", rep(`"version":1`, `"version":true`)},
		{"manifest-version-2", "version 2", rep(`"version":1`, `"version":2`)},
		{"manifest-segment-size-unaligned", "segment_size 4097, not a multiple of 4096", rep(`"segment_size":4096`, `"segment_size":4097`)},
		{"manifest-segment-size-too-large", "segment_size 2^30+4096, above 1 GiB", rep(`"segment_size":4096`, `"segment_size":1073745920`)},
		{"manifest-segments-max-too-large", "segments_max 65537", rep(`"segments_max":16`, `"segments_max":65537`)},
		{"manifest-segments-max-1", "segments_max 1 (below 2), with one entry", strings.Replace(rep(`"segments_max":16`, `"segments_max":1`), sealed+",", "", 1)},
		{"manifest-bad-name-taken", "an entry named 0000000000000001.taken", rep(`0000000000000001.seg`, `0000000000000001.taken`)},
		{"manifest-bad-name-path", "an entry named ../ring/0000000000000001.seg", rep(`"0000000000000001.seg"`, `"../ring/0000000000000001.seg"`)},
		{"manifest-bad-name-digits", "an entry named with 15 digits, 000000000000001.seg", rep(`"0000000000000001.seg"`, `"000000000000001.seg"`)},
		{"manifest-name-zero", "an entry named 0000000000000000.seg (numbers start at 1)", rep(`0000000000000001.seg`, `0000000000000000.seg`)},
		{"manifest-bad-order", "segment numbers decreasing (2 listed before 1)", strings.Replace(rep(`0000000000000001.seg`, `0000000000000003.seg`), `0000000000000002.seg`, `0000000000000001.seg`, 1)},
		{"manifest-same-name", "the same segment listed twice", rep(`0000000000000002.seg`, `0000000000000001.seg`)},
		{"manifest-seq-overlap", "the hot entry's first_seq 3, not above the previous last_seq 3", rep(`"first_seq":4`, `"first_seq":3`)},
		{"manifest-hot-not-last", "an unsealed entry that is not the last", rep(`"last_seq":3,"sealed":true`, `"last_seq":0,"sealed":false`)},
		{"manifest-sealed-last-below-first", "a sealed entry with last_seq 0, below its first_seq 1", rep(`"last_seq":3`, `"last_seq":0`)},
		{"manifest-hot-last-seq-nonzero", "the hot entry with last_seq 5", rep(`"last_seq":0`, `"last_seq":5`)},
		{"manifest-first-seq-zero", "a sealed entry with first_seq 0", rep(`"first_seq":1,`, `"first_seq":0,`)},
		{"manifest-over-1mib", "1 byte over 1 MiB (otherwise valid: JSON whitespace inside the object)", ""},
	}
	var out []*ring
	for _, c := range cases {
		r := base()
		r.name, r.desc = c.name, "An invalid manifest: "+c.desc+". The read fails as a whole with an error naming the manifest; nothing printed, exit 1."
		r.manifest = []byte(c.text)
		if c.name == "manifest-over-1mib" {
			i := strings.Index(good, `"segments":`)
			r.manifest = []byte(good[:i] + strings.Repeat(" ", 1<<20+1-len(good)) + good[i:])
		}
		if string(r.manifest) == good {
			panic(c.name + ": manifest unchanged")
		}
		r.errs = []Error{{File: str("manifest"), Kind: KindManifest}}
		r.json()
		out = append(out, r)
	}
	r := base()
	r.name = "manifest-too-many-entries"
	r.desc = "An invalid manifest: 3 entries while segments_max is 2. The read fails as a whole with an error naming the manifest; nothing printed, exit 1."
	r.segs = nil
	r.segMax = 2
	r.sealedSeg(1, 1, 3)
	r.sealedSeg(2, 4, 3)
	r.hotSeg(3, 7, 2)
	r.errs = []Error{{File: str("manifest"), Kind: KindManifest}}
	r.json()
	out = append(out, r)
	return out
}

func payloads() []*ring {
	var out []*ring

	r := newRing("payload-empty", "Records with empty payloads: \"data\":\"\" in JSON Lines, an empty line in lines, a zero length in raw.")
	r.add(1, 1, withPayloads(1, []byte{}, []byte{}, []byte("x"), []byte{}), false)
	r.all()
	out = append(out, r)

	var ps [][]byte
	for c := 0; c < 0x20; c++ {
		ps = append(ps, []byte{byte(c)})
	}
	all := make([]byte, 0x20)
	for i := range all {
		all[i] = byte(i)
	}
	ps = append(ps, all, []byte(`"`), []byte(`\`), []byte{0x7f}, []byte("/"), []byte(`a"b\c`+"\r\n"), []byte(`</script>&amp;`), []byte(`\u0041 is not an escape`), []byte("\x1b[31mred\x1b[0m"))
	r = newRing("payload-control-chars", "Payloads with every control character alone and all together, quote, backslash, DEL, slash, HTML: JSON escapes only quote, backslash and bytes below 0x20 (\\n \\r \\t \\b \\f by name, others \\u00XX lowercase).")
	r.add(1, 1, withPayloads(1, ps...), false)
	r.all()
	out = append(out, r)

	utf := []string{"é", "€", "😀", "\u2028\u2029", "\ufeff", "\ufffd", "\U0010ffff", "\u0085", "\u07ff\u0800", "\uffff", "日本語のテキスト", "temp 21.5 °C — ok ✓", "mixed \"quote\" é\n€\t😀"}
	ps = nil
	for _, s := range utf {
		ps = append(ps, []byte(s))
	}
	r = newRing("payload-utf8", "Valid multi-byte UTF-8 payloads (2, 3 and 4 bytes, U+2028, BOM, U+FFFF, U+10FFFF, C1 control U+0085): written as they are in \"data\".")
	r.add(1, 1, withPayloads(1, ps...), false)
	r.all()
	out = append(out, r)

	bad := [][]byte{
		{0xed, 0xa0, 0x80},             // the surrogate U+D800, encoded
		{0xed, 0xbf, 0xbf},             // U+DFFF
		{0xc0, 0xaf},                   // overlong '/'
		{0xe0, 0x80, 0xaf},             // overlong, 3 bytes
		{0xf0, 0x80, 0x80, 0xaf},       // overlong, 4 bytes
		{0xf4, 0x90, 0x80, 0x80},       // above U+10FFFF
		{0xe2, 0x82},                   // truncated
		{0x80},                         // a lone continuation byte
		{0xff},                         // never in UTF-8
		{0xf8, 0x88, 0x80, 0x80, 0x80}, // a 5-byte form
		[]byte("valid text, then \xfe"),
		[]byte("\xed\xa0\x80\xed\xb0\x80"), // a surrogate pair, CESU-8 style
	}
	everyByte := make([]byte, 256)
	for i := range everyByte {
		everyByte[i] = byte(i)
	}
	bad = append(bad, everyByte)
	r = newRing("payload-invalid-utf8", "Payloads that are not valid UTF-8 (encoded surrogates, overlong forms, above U+10FFFF, truncated, stray bytes, all 256 bytes): \"data_b64\" with standard padded base64.")
	r.add(1, 1, withPayloads(1, bad...), false)
	r.all()
	out = append(out, r)

	times := []int64{0, 1, -1, 999999999, 1000000000, -1000000000, -1000000001, -999999999, 86399999999999, -86400000000000,
		951782400000000005, 1709164800000000000, 4102444800000000000, -2208988800000000000, math.MaxInt64, math.MinInt64,
		t0, t0, t0 - 1}
	recs := make([]Record, len(times))
	for i, t := range times {
		recs[i] = Record{Seq: uint64(i + 1), Time: t, Data: fmt.Appendf(nil, "t=%d", t)}
	}
	r = newRing("times", "Record times at the edges: 0, ±1 ns, whole seconds (zero fraction), negative (before 1970: -1 ns is 1969-12-31T23:59:59.999999999Z), leap days, the minimum and maximum int64, repeated and going backwards: always a 4-digit year, 9 fraction digits, Z.")
	r.add(1, 1, recs, false)
	r.json().sel(3, 0)
	out = append(out, r)

	return out
}

func taken() []*ring {
	var out []*ring

	r := newRing("taken-missing", "A listed sealed segment whose file is gone (taken and finished, or retired) while the generation is unchanged: skipped silently, exit 0; --last counts records across the gap, --from inside the gap starts at the next record.")
	r.gen = 8
	r.sealedSeg(1, 1, 10)
	r.sealedSeg(2, 11, 10).missing()
	r.sealedSeg(3, 21, 10)
	r.hotSeg(4, 31, 4)
	r.json().sel(4, 0).sel(14, 0).sel(16, 0).sel(100, 0).sel(0, 15).sel(0, 11).sel(2, 15)
	out = append(out, r)

	r = newRing("taken-windows", "150 segments, more than a reader holds open at once (64: docs/FORMAT.md, reading step 2), so it reads them in windows: a listed segment missing in the first window (3) and one in the second (100) are skipped silently, a record failing its CRC in the third (segment 130) is reported there; --last counts back across windows and gaps.")
	r.gen = 8
	r.segMax = 200
	for n := uint64(1); n <= 150; n++ {
		s := r.sealedSeg(n, 2*n-1, 2)
		switch n {
		case 3, 100:
			s.missing()
		case 130:
			s.buf[s.offs[1]+24] ^= 0x04
			s.recordError(1, s.offs[1], KindChecksum)
		}
	}
	r.hotSeg(151, 301, 2)
	r.json().sel(100, 0).sel(0, 199).sel(250, 0)
	out = append(out, r)

	r = newRing("taken-present", "Listed sealed segments present only as N.taken (claimed by a taker) and N.damaged (set aside by a taker): the listed names are missing, so both are skipped silently; every other record, exit 0.")
	r.gen = 8
	r.sealedSeg(1, 1, 10)
	s := r.sealedSeg(2, 11, 10)
	s.file = "0000000000000002.taken"
	s.deliver = 0
	s = r.sealedSeg(3, 21, 10)
	s.buf[s.offs[4]+24] ^= 1
	s.file = "0000000000000003.damaged"
	s.deliver = 0
	r.hotSeg(4, 31, 4)
	r.json().sel(3, 0).sel(6, 0).sel(0, 12)
	out = append(out, r)

	return out
}
