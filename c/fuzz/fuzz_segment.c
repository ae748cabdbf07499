/*
 * libFuzzer target: the segment header checks and the scanner every reader uses. The
 * input is a segment file (4 to 16 KiB, zero-padded); its last byte chooses fix-ups that
 * let the fuzzer past the checksums: bit 0 writes a valid header (keeping the sealed and
 * committed words), bit 1 recomputes the CRC of every record that is framed, bit 2 lists
 * the segment sealed with a last_seq taken from the input. Whatever the bytes, the
 * scanner must stay inside the segment, deliver strictly increasing sequence numbers,
 * and never crash.
 *
 *     clang -g -O1 -fsanitize=fuzzer,address,undefined -o fuzz_segment fuzz_segment.c
 */
#include "../filering.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void scan_all(struct seg *s, unsigned char *b, uint64_t segsize, uint64_t first, int mode)
{
	struct scanner sc;
	uint64_t prev = 0;
	int rc, i;

	memset(&sc, 0, sizeof sc);
	scan_init(&sc, b, segsize, first);
	for (i = 0; i < 100000; i++) {
		rc = cur_next(s, &sc, mode);
		if (rc != 1)
			break;
		if (sc.seq < first || (prev && sc.seq != prev + 1) || sc.off > segsize || sc.off % 8)
			abort();
		if (mode != SCAN_SKIP && sc.len && (sc.data < b || sc.data + sc.len > b + segsize) &&
		    (sc.data < sc.buf || sc.data + sc.len > sc.buf + sc.cap))
			abort();
		prev = sc.seq;
	}
	if (rc < 0 && (sc.err_off < 0 || (uint64_t)sc.err_off > segsize || !sc.why[0]))
		abort();
	free(sc.buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t segsize = 4096, off, first, w;
	unsigned flags = size ? data[size - 1] : 0;
	struct seghdr h;
	struct seg s;
	struct scanner sc;
	char why[160];
	int64_t hoff;
	unsigned char *b;
	uint32_t rsize;

	while (segsize < size && segsize < 16384)
		segsize += 4096;
	b = (unsigned char *)aligned_alloc(4096, segsize);
	memset(b, 0, segsize);
	memcpy(b, data, size < segsize ? size : segsize);
	first = size >= 40 ? (ld64(b + 32) & ((1ull << 62) - 1)) + 1 : 1;
	if (flags & 1) {
		uint64_t sealed = ld64(b + OFF_SEALED), committed = ld64(b + OFF_COMMITTED);
		put_header(b, segsize, 1, first, 0);
		st64(b + OFF_SEALED, sealed);
		st64(b + OFF_COMMITTED, committed);
	}
	if (flags & 2) {
		for (off = HDR; off + 8 <= segsize; off += (rsize + 7) & ~7u) {
			w = ld64(b + off);
			rsize = (uint32_t)w;
			if (rsize < RECHDR || rsize > segsize - off)
				break;
			st32(b + off + 4, filering_crc32(0, b + off + 8, rsize - 8));
		}
	}
	memset(&s, 0, sizeof s);
	s.e.num = 1;
	s.e.first = first;
	if (flags & 4) {
		s.e.sealed = 1;
		s.e.last = first + (flags >> 3);
	}
	if (check_header(b, segsize, 1, &s.e, &h, &hoff, why, sizeof why) == 0) {
		if (h.first != first)
			abort();
		scan_all(&s, b, segsize, h.first, SCAN_DELIVER);
		scan_all(&s, b, segsize, h.first, SCAN_CHECK);
		scan_all(&s, b, segsize, h.first, SCAN_SKIP);
	} else if (hoff < 0 || hoff > 56 || !why[0]) {
		abort();
	}
	/* The recovery scan, whatever the header says. */
	memset(&sc, 0, sizeof sc);
	scan_init(&sc, b, segsize, first);
	scan_valid(&sc);
	if (sc.off > segsize)
		abort();
	free(b);
	return 0;
}
