/*
 * libFuzzer target: the segment index (docs/FORMAT.md, "The segment index"): its header
 * checks, finding the entry a read starts at, and checking that entry against the
 * segment. The target builds a healthy segment itself; the input chooses its shape and is
 * the index:
 *
 *   byte 0      flags: bits 0-1 the segment size (8 KiB << n), bit 2 the block size (4 or
 *               8 KiB), bit 3 sealed, bit 4 (sealed) at an earlier record than the last,
 *               bit 5 write a valid index header, bit 6 start from the entries the
 *               producer stores (the input's entry bytes are then XORed into them), bit 7
 *               an index 8 bytes short
 *   byte 1      how many records
 *   bytes 2...  one byte a record: its payload is 4 times that many bytes
 *   the rest    the index file's bytes (zero-padded to 64 + 8K)
 *
 * Whatever the bytes, the lookups stay inside the index and the segment, and an entry
 * that passes the checks is where a record of the segment starts, with that record's
 * index, below the committed word of a sealed segment, and reading on from it gives
 * exactly what reading from offset 64 gives from there on: the same records, and the
 * same end or damage. (Payloads are 0xff bytes and sequence numbers have bit 31 set, so
 * that no 8-byte word inside a record reads as a valid commit word.)
 *
 *     clang -g -O1 -fsanitize=fuzzer,address,undefined -o fuzz_index fuzz_index.c
 */
#include "../filering.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FIRST 0x80000001ull

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static unsigned char payload[1024];
	uint64_t segsize, block, nk, off = HDR, k, i, e, got, tries[6], offs[256], block_out = 0, nref;
	uint64_t ref_off[257];
	int64_t ref_err_off;
	int ref_rc;
	unsigned flags, nrec, r, n = 0, end_rec;
	const uint8_t *p;
	unsigned char *seg, *idx;
	size_t ilen, rest, j;
	struct scanner sc;
	struct seg s;
	int t, rc;

	if (size < 2)
		return 0;
	flags = data[0];
	nrec = data[1];
	segsize = 8192u << (flags & 3);
	block = 4096u << ((flags >> 2) & 1);
	nk = idx_entries(segsize, block);
	if (nk == 0)
		return 0;
	memset(payload, 0xff, sizeof payload);
	seg = (unsigned char *)aligned_alloc(4096, segsize);
	memset(seg, 0, segsize);
	put_header(seg, segsize, 7, FIRST, 0);
	p = data + 2;
	for (r = 0; r < nrec && p < data + size; r++, p++) {
		size_t len = (size_t)*p * 4;
		if (off + align8(RECHDR + len) > segsize)
			break;
		offs[n++] = off;
		off = put_record(seg, off, FIRST + n - 1, 0x0101010101010101ll, payload, len);
	}
	/* Sealed at the end, or at an earlier record (the later ones then lie beyond the
	 * committed word); hot with the committed word lagging at 64. */
	end_rec = n;
	if ((flags & 8) && (flags & 16) && n > 0)
		end_rec = (unsigned)(data[size - 1] % n) + 1;
	if (flags & 8)
		seal(seg, end_rec < n ? offs[end_rec] : off);

	/* The index. */
	ilen = IDX_HDR + 8 * (size_t)nk;
	idx = (unsigned char *)malloc(ilen);
	memset(idx, 0, ilen);
	if (flags & 64) {
		for (k = 1; k <= nk; k++) {
			for (i = 0; i < n && offs[i] < k * block; i++)
				;
			if (i < n)
				st64(idx + IDX_HDR + 8 * (k - 1), offs[i] | i << 32);
		}
	}
	rest = size - (size_t)(p - data);
	for (j = 0; j < rest && j < ilen; j++)
		idx[j] ^= p[j];
	if (flags & 32)
		idx_put_header(idx, 7, segsize, (uint32_t)block);
	if (flags & 128)
		ilen -= 8;

	/* The reference: every record, read from offset 64 as a reader reads a segment. */
	memset(&s, 0, sizeof s);
	s.e.num = 7;
	s.e.first = FIRST;
	if (flags & 8) {
		s.e.sealed = 1;
		s.e.last = FIRST + (end_rec ? end_rec - 1 : 0);
	}
	memset(&sc, 0, sizeof sc);
	scan_init(&sc, seg, segsize, FIRST);
	for (nref = 0;; nref++) {
		uint64_t at = sc.off;
		if ((ref_rc = cur_next(&s, &sc, SCAN_CHECK)) != 1)
			break;
		ref_off[nref] = at;
	}
	ref_err_off = sc.err_off;
	for (i = 0; i < nref; i++)
		if (ref_off[i] != offs[i])
			abort();
	got = idx_parse(idx, ilen, 7, segsize, &block_out);
	if (got != 0 && (got != nk || block_out != block || ilen != IDX_HDR + 8 * nk))
		abort();
	if (got) {
		tries[0] = 0;
		tries[1] = n / 2;
		tries[2] = n ? n - 1 : 0;
		tries[3] = UINT64_MAX;
		tries[4] = (uint64_t)data[size - 1];
		tries[5] = 1ull << 32;
		for (t = 0; t < 6; t++) {
			k = idx_find(idx, got, tries[t], &e);
			if (k > got || (k && (e == 0 || e >> 32 > tries[t])))
				abort();
			if (!k || !idx_check(seg, segsize, FIRST, k, block, e))
				continue;
			/* A checked entry is a record of the segment, with its own index... */
			i = e >> 32;
			if (i >= n || offs[i] != (e & 0xffffffffu) || offs[i] < k * block)
				abort();
			if ((flags & 8) && i >= end_rec)
				abort();
			/* ...and reading on from it gives what reading from 64 gives. */
			if (i >= nref)
				abort();
			memset(&sc, 0, sizeof sc);
			scan_init(&sc, seg, segsize, FIRST);
			scan_from(&sc, offs[i], i);
			while ((rc = cur_next(&s, &sc, SCAN_CHECK)) == 1) {
				if (sc.seq != FIRST + i || i >= nref || (i + 1 < n && sc.off != offs[i + 1]))
					abort();
				i++;
			}
			if (rc != ref_rc || i != nref || (rc < 0 && sc.err_off != ref_err_off))
				abort();
		}
	}
	free(idx);
	free(seg);
	return 0;
}
