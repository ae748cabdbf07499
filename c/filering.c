/*
 * filering.c: the filering ring format (docs/FORMAT.md, version 1): writer and reader.
 * See filering.h for the API and its contracts. C99 plus POSIX and Linux system calls;
 * one translation unit with no dependency beyond the C library.
 *
 * Layout of this file:
 *   1. basics: errors, little-endian and atomic words, CRC-32, clocks, names, files
 *   2. the manifest: a strict parser for exactly its grammar, validation, encoding
 *   3. segments: header, records, the scanner every reader and the recovery use
 *   4. the writer
 *   5. the reader: snapshots and followers
 *   6. output formats
 */
#define _GNU_SOURCE 1
#define _FILE_OFFSET_BITS 64

#include "filering.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* Linux constants that older C libraries may not name. */
#ifndef F_OFD_GETLK
#define F_OFD_GETLK 36
#define F_OFD_SETLK 37
#endif
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE 1
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#ifndef MAP_POPULATE
#define MAP_POPULATE 0
#endif
#ifndef F_SETLEASE
#define F_SETLEASE 1024
#define F_GETLEASE 1025
#endif
#ifndef F_SETSIG
#define F_SETSIG 10
#endif

/* Every word of a segment is loaded and stored as one aligned 8-byte atomic access: it
 * must not need a lock (libatomic). True on x86-64, i386, arm64 and armv7. */
#if defined(__GCC_ATOMIC_LLONG_LOCK_FREE) && __GCC_ATOMIC_LLONG_LOCK_FREE != 2
#error "8-byte atomic loads and stores are not lock-free on this target"
#endif

#define HDR 64u                      /* segment header size */
#define RECHDR 24u                   /* record header size */
#define OFF_SEALED 48u
#define OFF_COMMITTED 56u
#define MAX_NUMBER 9999999999999999ull /* the largest segment number (16 digits) */
#define SEQ_LIMIT (1ull << 63)        /* sequence numbers stay below this */
#define NAME_LEN 20                   /* "NNNNNNNNNNNNNNNN.seg" */
#define BIG_RECORD (1u << 20)         /* above this a record's CRC is checked in place first */
#define READ_WINDOW (8u << 20)        /* a reader releases mapped pages behind it by this */
#define MAX_RETRIES 100               /* reader restarts when the producer rolls meanwhile */
#define MAX_OPEN 64                   /* segment files a reader holds open at once (a window) */
#define KEEP_MAX 2                    /* files of removed segments a writer keeps for reuse */
#define HOLD_MAX 16                   /* sealed segments' files a writer holds mapped, */
#define HOLD_BYTES (SIZE_MAX > 0xffffffffu ? 1ull << 30 : 64ull << 20) /* and their bytes at most */

/* The segment index (docs/FORMAT.md, "The segment index"): N.idx, a 64-byte header and K
 * entries of 8 bytes, entry k saying where the first record at or after offset k * B
 * starts. The writer makes one for segments of IDX_MIN_SEGMENT bytes or more, with
 * blocks of IDX_BLOCK bytes; a reader takes any block size the format allows. */
#define IDX_HDR 64u
#define IDX_BLOCK 65536u
#define IDX_MIN_SEGMENT 1048576u
#define IDX_MIN_BLOCK 4096u
#define IDX_MAX_BLOCK 1048576u
#define IDX_MAX_LEN (IDX_HDR + 8u * ((FILERING_MAX_SEGMENT_SIZE - 1) / IDX_MIN_BLOCK))

#define WAKE_QUIET_NS 100000ll   /* a record after a pause this long is announced at once */
#define WAKE_MIN_NS 100000ll     /* during a burst, announce every 0.1 ms at first, */
#define WAKE_MAX_NS 1000000ll    /* growing to every 1 ms */
#define CLOCK_RESYNC_NS 100000000ll /* the wall clock is read again every 100 ms */
#define MANIFEST_RETRY_NS 10000000ll /* a manifest a full file system refused: retry */

#define POLL_MS 1000      /* a follower rescans at least this often */
#define FAST_POLL_MS 100  /* without inotify, or after its queue overflowed */
#define FAST_POLL_FOR_NS 10000000000ll

static uint64_t align8(uint64_t x) { return (x + 7u) & ~(uint64_t)7u; }

/* ---- errors --------------------------------------------------------------------------- */

const char *filering_strerror(int code)
{
	switch (code) {
	case 0: return "success";
	case FILERING_ELOCKED: return "ring is in use by another producer";
	case FILERING_EUNSAFE: return "ring writable by another user";
	case FILERING_ETOOLARGE: return "record larger than a segment can hold";
	case FILERING_EMISMATCH: return "ring exists with a different segment size";
	case FILERING_ECLOSED: return "writer is closed";
	case FILERING_EEXHAUSTED: return "segment or sequence numbers exhausted";
	case FILERING_EORPHANED: return "directory holds segments but no manifest";
	case FILERING_EID: return "bad ring identity";
	case FILERING_ENORING: return "no ring in this directory (no manifest)";
	case FILERING_EMANIFEST: return "bad manifest";
	case FILERING_ENOTREG: return "not a regular file";
	case FILERING_EUNREADABLE: return "segment cannot be read";
	case FILERING_ESIZE: return "segment file has the wrong size";
	case FILERING_EHEADER: return "bad segment header";
	case FILERING_ESEALED: return "bad sealed word";
	case FILERING_ECOMMITTED: return "bad committed word";
	case FILERING_ERECSIZE: return "bad record size";
	case FILERING_ECHECKSUM: return "record checksum mismatch";
	case FILERING_ESEQUENCE: return "record sequence out of order";
	case FILERING_EMISSING: return "committed record missing";
	case FILERING_ELASTSEQ: return "records disagree with the manifest's last_seq";
	}
	if (code < 0 && code > -4096)
		return strerror(-code); /* glibc and musl: static strings for known errnos */
	return "unknown error";
}

const char *filering_kind(int code)
{
	switch (code) {
	case FILERING_ENORING: return "no-ring";
	case FILERING_EMANIFEST: return "manifest";
	case FILERING_ENOTREG: return "not-regular";
	case FILERING_EUNREADABLE: return "unreadable";
	case FILERING_ESIZE: return "size";
	case FILERING_EHEADER: return "header";
	case FILERING_ESEALED: return "sealed-word";
	case FILERING_ECOMMITTED: return "committed-word";
	case FILERING_ERECSIZE: return "record-size";
	case FILERING_ECHECKSUM: return "checksum";
	case FILERING_ESEQUENCE: return "sequence";
	case FILERING_EMISSING: return "missing";
	case FILERING_ELASTSEQ: return "last-seq";
	}
	return NULL;
}

int filering_is_damage(int code) { return code <= FILERING_ENOTREG && code >= FILERING_ELASTSEQ; }

/* ---- little-endian and atomic words ------------------------------------------------------ */

static uint32_t ld32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t ld64(const unsigned char *p) { return (uint64_t)ld32(p) | (uint64_t)ld32(p + 4) << 32; }

static void st32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static void st64(unsigned char *p, uint64_t v)
{
	st32(p, (uint32_t)v);
	st32(p + 4, (uint32_t)(v >> 32));
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define WORD_LE(v) __builtin_bswap64(v)
#else
#define WORD_LE(v) (v)
#endif

/* load_acquire loads the little-endian word at p (8-byte aligned, in a mapping) with one
 * atomic 8-byte load with acquire ordering: a reader that sees a commit word sees the
 * record it publishes. store_release is the producer's side. */
static uint64_t load_acquire(const unsigned char *p)
{
	uint64_t v = __atomic_load_n((const uint64_t *)(const void *)p, __ATOMIC_ACQUIRE);
	return WORD_LE(v);
}

static void store_release(unsigned char *p, uint64_t v)
{
	__atomic_store_n((uint64_t *)(void *)p, WORD_LE(v), __ATOMIC_RELEASE);
}

/* ---- CRC-32 (IEEE) ----------------------------------------------------------------------------
 *
 * Slicing by 8 everywhere; on x86-64 with PCLMULQDQ, blocks of 32 bytes or more are
 * folded with carry-less multiplication (Intel, "Fast CRC Computation for Generic
 * Polynomials Using PCLMULQDQ", the reflected constants zlib uses), and on arm64 with
 * the CRC32 extension the crc32x instruction does 8 bytes at a time. Both are detected
 * at run time. The state passed around inside is the raw register (not inverted). */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <emmintrin.h>
#include <wmmintrin.h>
#define CRC_CLMUL 1

/* Folding a 128-bit value across 128 * m bits of message multiplies its low half by
 * x^(128m+32) and its high half by x^(128m-32), modulo the polynomial (bit-reflected,
 * shifted left by one): crc_fold[m] holds the two, low first, for m = 1 to 6. */
static const uint64_t crc_fold[7][2] = {
	{0, 0},
	{0x1751997d0ull, 0x0ccaa009eull},
	{0x0f1da05aaull, 0x15a546366ull},
	{0x03db1ecdcull, 0x174359406ull},
	{0x154442bd4ull, 0x1c6e41596ull},
	{0x1c7569e54ull, 0x0ae0b5394ull},
	{0x0df068dc2ull, 0x18cb44e58ull},
};

/* crc_fold_by returns x folded across 128 * m bits (m = 0: x itself). */
__attribute__((target("pclmul,sse2"))) static __m128i crc_fold_by(__m128i x, int m)
{
	__m128i k;

	if (m == 0)
		return x;
	k = _mm_set_epi64x((long long)crc_fold[m][1], (long long)crc_fold[m][0]);
	return _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11));
}

/* crc_clmul_end folds nx 128-bit blocks x (nx <= 4: the message so far, already folded
 * into them) and the len bytes at buf (len < 64, a multiple of 16) that follow them into
 * one, each block folded across the distance to the last one, all at once rather than
 * one after another, and reduces that to the raw 32-bit state. */
__attribute__((target("pclmul,sse2"))) static uint32_t crc_clmul_end(const __m128i *x, int nx,
                                                                     const unsigned char *buf, size_t len)
{
	const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009ell, 0x01751997d0ll);
	const __m128i k5k0 = _mm_set_epi64x(0, 0x0163cd6124ll);
	const __m128i poly = _mm_set_epi64x(0x01f7011641ll, 0x01db710641ll);
	const __m128i mask = _mm_setr_epi32(~0, 0, ~0, 0);
	int t = (int)(len / 16), m = nx + t, i;
	__m128i x1 = _mm_setzero_si128(), x2;

	for (i = 0; i < nx; i++)
		x1 = _mm_xor_si128(x1, crc_fold_by(x[i], m - 1 - i));
	for (i = 0; i < t; i++)
		x1 = _mm_xor_si128(x1, crc_fold_by(_mm_loadu_si128((const __m128i *)(const void *)(buf + 16 * i)),
		                                   t - 1 - i));
	/* Fold 128 bits to 64, then Barrett-reduce to 32. */
	x2 = _mm_clmulepi64_si128(x1, k3k4, 0x10);
	x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), x2);
	x2 = _mm_srli_si128(x1, 4);
	x1 = _mm_and_si128(x1, mask);
	x1 = _mm_xor_si128(_mm_clmulepi64_si128(x1, k5k0, 0x00), x2);
	x2 = _mm_and_si128(x1, mask);
	x2 = _mm_clmulepi64_si128(x2, poly, 0x10);
	x2 = _mm_and_si128(x2, mask);
	x2 = _mm_clmulepi64_si128(x2, poly, 0x00);
	x1 = _mm_xor_si128(x1, x2);
	return (uint32_t)_mm_cvtsi128_si32(_mm_srli_si128(x1, 4));
}

/* crc_clmul_more folds the len bytes at buf (a multiple of 16) after the 64 bytes whose
 * fold is x[0..3], 64 at a time, then ends (crc_clmul_end). */
__attribute__((target("pclmul,sse2"))) static uint32_t crc_clmul_more(__m128i *x, const unsigned char *buf,
                                                                      size_t len)
{
	const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596ll, 0x0154442bd4ll);
	__m128i x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];

#define CRC_FOLD64(v, i)                                                                              \
	v = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(v, k1k2, 0x00), _mm_clmulepi64_si128(v, k1k2, 0x11)), \
	                  _mm_loadu_si128((const __m128i *)(const void *)(buf + 16 * (i))))
	while (len >= 64) {
		CRC_FOLD64(x0, 0);
		CRC_FOLD64(x1, 1);
		CRC_FOLD64(x2, 2);
		CRC_FOLD64(x3, 3);
		buf += 64;
		len -= 64;
	}
#undef CRC_FOLD64
	x[0] = x0;
	x[1] = x1;
	x[2] = x2;
	x[3] = x3;
	return crc_clmul_end(x, 4, buf, len);
}

/* crc_clmul folds len bytes (at least 16, a multiple of 16) into the raw state c. */
__attribute__((target("pclmul,sse2"))) static uint32_t crc_clmul(uint32_t c, const unsigned char *buf, size_t len)
{
	__m128i x[4];
	int i;

	x[0] = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(const void *)buf), _mm_cvtsi32_si128((int)c));
	if (len < 64)
		return crc_clmul_end(x, 1, buf + 16, len - 16);
	for (i = 1; i < 4; i++)
		x[i] = _mm_loadu_si128((const __m128i *)(const void *)(buf + 16 * i));
	return crc_clmul_more(x, buf + 64, len - 64);
}

static int crc_hw_detect(void)
{
	unsigned a, b, c, d;

	return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_PCLMUL) && (d & bit_SSE2);
}
#elif defined(__aarch64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__)) && \
	!(defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)
#include <sys/auxv.h>
#define CRC_ARM64 1

static uint32_t crc_arm64(uint32_t c, const unsigned char *p, size_t n)
{
	uint64_t v;
	uint32_t b;

	while (n >= 8) {
		memcpy(&v, p, 8);
		__asm__(".arch_extension crc\n\tcrc32x %w0, %w0, %x1" : "+r"(c) : "r"(v));
		p += 8;
		n -= 8;
	}
	while (n--) {
		b = *p++;
		__asm__(".arch_extension crc\n\tcrc32b %w0, %w0, %w1" : "+r"(c) : "r"(b));
	}
	return c;
}

static int crc_hw_detect(void) { return (getauxval(AT_HWCAP) & (1ul << 7)) != 0; /* HWCAP_CRC32 */ }
#else
static int crc_hw_detect(void) { return 0; }
#endif

static uint32_t crc_table[8][256];
static int crc_state; /* 0: not built, 1: being built, 2: built */
static int crc_hw;    /* set before crc_state becomes 2; FILERING_CRC_TABLE=1 in the environment clears it */

static void crc_init(void)
{
	int expected = 0;
	uint32_t i, c;
	int k;
	const char *env;

	if (__atomic_load_n(&crc_state, __ATOMIC_ACQUIRE) == 2)
		return;
	if (!__atomic_compare_exchange_n(&crc_state, &expected, 1, 0, __ATOMIC_ACQUIRE,
	                                 __ATOMIC_ACQUIRE)) {
		while (__atomic_load_n(&crc_state, __ATOMIC_ACQUIRE) != 2)
			; /* another thread builds them: a few microseconds */
		return;
	}
	for (i = 0; i < 256; i++) {
		c = i;
		for (k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
		crc_table[0][i] = c;
	}
	for (i = 0; i < 256; i++)
		for (k = 1; k < 8; k++)
			crc_table[k][i] = (crc_table[k - 1][i] >> 8) ^ crc_table[0][crc_table[k - 1][i] & 0xff];
	env = getenv("FILERING_CRC_TABLE");
	crc_hw = env && env[0] == '1' ? 0 : crc_hw_detect();
	__atomic_store_n(&crc_state, 2, __ATOMIC_RELEASE);
}

static uint32_t crc_update(uint32_t crc, const unsigned char *p, size_t n)
{
	uint32_t c = ~crc, a, b;

#ifdef CRC_CLMUL
	if (crc_hw && n >= 32) { /* below, the tables are as fast */
		size_t k = n & ~(size_t)15;
		c = crc_clmul(c, p, k);
		p += k;
		n -= k;
	}
#endif
#ifdef CRC_ARM64
	if (crc_hw)
		return ~crc_arm64(c, p, n);
#endif
	while (n >= 8) {
		a = c ^ ld32(p);
		b = ld32(p + 4);
		c = crc_table[7][a & 0xff] ^ crc_table[6][(a >> 8) & 0xff] ^
		    crc_table[5][(a >> 16) & 0xff] ^ crc_table[4][a >> 24] ^
		    crc_table[3][b & 0xff] ^ crc_table[2][(b >> 8) & 0xff] ^
		    crc_table[1][(b >> 16) & 0xff] ^ crc_table[0][b >> 24];
		p += 8;
		n -= 8;
	}
	while (n--)
		c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
	return ~c;
}

uint32_t filering_crc32(uint32_t crc, const void *p, size_t len)
{
	crc_init();
	return crc_update(crc, (const unsigned char *)p, len);
}

/* ---- clocks and randomness ------------------------------------------------------------------ */

static int64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	if (clock_gettime(id, &ts) != 0)
		return 0;
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static int64_t mono_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
static int64_t wall_ns(void) { return clock_ns(CLOCK_REALTIME); }

/* The CPU's counter, where the kernel keeps time with it too (its clock source is then
 * TICKS_SOURCE): reading it costs a third of a clock_gettime on a virtual machine. The
 * writer measures its rate against CLOCK_MONOTONIC (see fast_mono). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TICKS_SOURCE "tsc"
static uint64_t read_ticks(void)
{
	uint32_t lo, hi;

	__asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#define TICKS_SOURCE "arch_sys_counter"
static uint64_t read_ticks(void)
{
	uint64_t v;

	__asm__ __volatile__("mrs %0, cntvct_el0" : "=r"(v));
	return v;
}
#endif

#ifdef TICKS_SOURCE
static int ticks_state; /* 0: not known yet, 1: usable, 2: not */

/* ticks_usable reports whether the kernel's clock source is the counter read_ticks reads,
 * which it is only where it found the counter constant in rate and the same on every
 * CPU. FILERING_NO_TICKS=1 in the environment says no. */
static int ticks_usable(void)
{
	char buf[64];
	const char *env;
	ssize_t n;
	int fd, st = __atomic_load_n(&ticks_state, __ATOMIC_RELAXED);

	if (st != 0)
		return st == 1;
	st = 2;
	env = getenv("FILERING_NO_TICKS");
	fd = env && env[0] == '1' ? -1 : open("/sys/devices/system/clocksource/clocksource0/current_clocksource", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, buf, sizeof buf - 1);
		if (n > 0) {
			buf[n] = 0;
			if (buf[n - 1] == '\n')
				buf[n - 1] = 0;
			if (strcmp(buf, TICKS_SOURCE) == 0)
				st = 1;
		}
		close(fd);
	}
	__atomic_store_n(&ticks_state, st, __ATOMIC_RELAXED);
	return st == 1;
}
#endif

/* random_bytes fills p with n bytes from the kernel's generator (getrandom, else
 * /dev/urandom). Returns 0 or -errno. */
static int random_bytes(unsigned char *p, size_t n)
{
	size_t got = 0;
	ssize_t k;
	int fd;

#ifdef SYS_getrandom
	while (got < n) {
		k = syscall(SYS_getrandom, p + got, n - got, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	if (got == n)
		return 0;
#endif
	fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (got < n) {
		k = read(fd, p + got, n - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			close(fd);
			return k < 0 ? -errno : -EIO;
		}
		got += (size_t)k;
	}
	close(fd);
	return 0;
}

static void hex_encode(char *out, const unsigned char *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = hex[p[i] >> 4];
		out[2 * i + 1] = hex[p[i] & 15];
	}
	out[2 * n] = 0;
}

/* push_u64 appends v to the array *a of *n numbers with room for *cap, growing it as
 * needed. Returns 0 or -ENOMEM (the array unchanged). */
static int push_u64(uint64_t **a, size_t *n, size_t *cap, uint64_t v)
{
	if (*n == *cap) {
		size_t c = *cap ? 2 * *cap : 16;
		uint64_t *p = (uint64_t *)realloc(*a, c * sizeof *p);
		if (!p)
			return -ENOMEM;
		*a = p;
		*cap = c;
	}
	(*a)[(*n)++] = v;
	return 0;
}

/* ---- names ---------------------------------------------------------------------------------- */

/* seg_name writes the name of segment num with suffix (".seg", ".taken", ".damaged"). */
static void seg_name(char *buf, size_t cap, uint64_t num, const char *suffix)
{
	snprintf(buf, cap, "%016llu%s", (unsigned long long)num, suffix);
}

/* parse_name returns the number in name when it is exactly 16 decimal digits followed by
 * suffix and not zero; else 0. */
static uint64_t parse_name(const char *name, size_t len, const char *suffix)
{
	size_t sl = strlen(suffix), i;
	uint64_t n = 0;

	if (len != 16 + sl || memcmp(name + 16, suffix, sl) != 0)
		return 0;
	for (i = 0; i < 16; i++) {
		if (name[i] < '0' || name[i] > '9')
			return 0;
		n = n * 10 + (uint64_t)(name[i] - '0');
	}
	return n;
}

/* ---- files ---------------------------------------------------------------------------------- */

/* open_in opens name in the directory dirfd as docs/FORMAT.md, "Opening a file" says:
 * never through a symbolic link (-ELOOP), never blocking on a FIFO, and only a regular
 * file (FILERING_ENOTREG otherwise). With O_CREAT the mode is set exactly (fchmod), not
 * filtered through the umask. st (may be NULL) receives the file's status. Returns the
 * descriptor or a negative code. */
static int open_in(int dirfd, const char *name, int flags, unsigned mode, struct stat *st)
{
	struct stat s;
	int fd;

	do
		fd = openat(dirfd, name, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, (mode_t)mode);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &s) != 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	if (!S_ISREG(s.st_mode)) {
		close(fd);
		return FILERING_ENOTREG;
	}
	if ((flags & O_CREAT) && fchmod(fd, (mode_t)mode) != 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	if (st)
		*st = s;
	return fd;
}

/* read_upto reads from fd, from offset 0, until the end of the file or cap bytes, into
 * buf. Returns the number of bytes read or -errno. */
static ssize_t read_upto(int fd, unsigned char *buf, size_t cap)
{
	size_t got = 0;
	ssize_t k;

	while (got < cap) {
		k = pread(fd, buf + got, cap - got, (off_t)got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			break;
		got += (size_t)k;
	}
	return (ssize_t)got;
}

/* write_all writes n bytes at offset off. Returns 0 or -errno (-ENOSPC on a short write). */
static int write_all(int fd, const void *p, size_t n, off_t off)
{
	const unsigned char *b = (const unsigned char *)p;
	ssize_t k;

	while (n > 0) {
		k = pwrite(fd, b, n, off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			return -ENOSPC;
		b += k;
		n -= (size_t)k;
		off += k;
	}
	return 0;
}

/* ====================================================================================== 
 * 2. The manifest
 * ==================================================================================== */

struct mentry {
	uint64_t num, first, last;
	int sealed;
};

struct manifest {
	uint64_t version, segment_size, segments_max, generation;
	struct mentry *e;
	size_t n, cap;
};

static void manifest_free(struct manifest *m)
{
	free(m->e);
	memset(m, 0, sizeof *m);
}

static int manifest_push(struct manifest *m, const struct mentry *e)
{
	if (m->n == m->cap) {
		size_t cap = m->cap ? 2 * m->cap : 16;
		struct mentry *p = (struct mentry *)realloc(m->e, cap * sizeof *p);
		if (!p)
			return -ENOMEM;
		m->e = p;
		m->cap = cap;
	}
	m->e[m->n++] = *e;
	return 0;
}

static int valid_segment_size(uint64_t n)
{
	return n >= FILERING_MIN_SEGMENT_SIZE && n <= FILERING_MAX_SEGMENT_SIZE && n % 4096 == 0;
}

/* filering_utf8_valid: strict UTF-8, as Go's utf8.Valid. */
int filering_utf8_valid(const void *p, size_t n)
{
	const unsigned char *s = (const unsigned char *)p, *end = s + n;
	unsigned c;

	while (s < end) {
		c = *s;
		if (c < 0x80) {
			s++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF) {
			if (end - s < 2 || (s[1] & 0xC0) != 0x80)
				return 0;
			s += 2;
		} else if (c >= 0xE0 && c <= 0xEF) {
			if (end - s < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
				return 0;
			if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F))
				return 0; /* overlong, or a surrogate */
			s += 3;
		} else if (c >= 0xF0 && c <= 0xF4) {
			if (end - s < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 ||
			    (s[3] & 0xC0) != 0x80)
				return 0;
			if ((c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] > 0x8F))
				return 0; /* overlong, or above U+10FFFF */
			s += 4;
		} else {
			return 0;
		}
	}
	return 1;
}

/* The parser reads exactly the manifest's grammar (RFC 8259 JSON restricted to it):
 * every field required and once, no unknown field, no null, integers plain and below
 * 2^63, nothing after the object. It never allocates more than the entries it keeps, and
 * refuses more than FILERING_MAX_SEGMENTS_LISTED of them. */
struct jparser {
	const unsigned char *p, *end;
	char *why; /* the reason of a failure, for the message */
	size_t whycap;
	int have_version; /* a version != 1 was read: a failure reports it as such */
	uint64_t version;
};

static int jfail(struct jparser *j, const char *fmt, ...)
{
	va_list ap;

	if (j->why && j->whycap && !j->why[0]) {
		va_start(ap, fmt);
		vsnprintf(j->why, j->whycap, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static void jws(struct jparser *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

/* jfound describes the next token, for messages. */
static const char *jfound(struct jparser *j)
{
	if (j->p >= j->end)
		return "the end of the file";
	switch (*j->p) {
	case '"': return "a string";
	case 'n': return "null";
	case 't': case 'f': return "a boolean";
	case '{': return "an object";
	case '[': return "an array";
	case '-': return "a signed number";
	}
	if (*j->p >= '0' && *j->p <= '9')
		return "a number";
	return "something that is not JSON";
}

static int jexpect(struct jparser *j, unsigned char c)
{
	jws(j);
	if (j->p >= j->end || *j->p != c)
		return jfail(j, "want '%c', found %s", c, jfound(j));
	j->p++;
	return 0;
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

static int jhex4(struct jparser *j, unsigned *out)
{
	unsigned v = 0;
	int i, h;

	if (j->end - j->p < 4)
		return jfail(j, "truncated \\u escape");
	for (i = 0; i < 4; i++) {
		if ((h = hexval(j->p[i])) < 0)
			return jfail(j, "bad \\u escape");
		v = v << 4 | (unsigned)h;
	}
	j->p += 4;
	*out = v;
	return 0;
}

/* jstring reads a JSON string and decodes it into out (cap bytes, NUL-terminated). A
 * string that does not fit is an error: no manifest string is longer than a name. Lone
 * surrogates decode to U+FFFD, as Go's decoder does. */
static int jstring(struct jparser *j, char *out, size_t cap)
{
	size_t n = 0;
	unsigned c, lo = 0;
	unsigned char u[4];
	size_t k, i;
	int raw;

	jws(j);
	if (j->p >= j->end || *j->p != '"')
		return jfail(j, "want a string, found %s", jfound(j));
	j->p++;
	for (;;) {
		if (j->p >= j->end)
			return jfail(j, "unterminated string");
		c = *j->p++;
		if (c == '"')
			break;
		if (c < 0x20)
			return jfail(j, "control character in a string");
		raw = c != '\\';
		if (!raw) {
			if (j->p >= j->end)
				return jfail(j, "unterminated string");
			c = *j->p++;
			switch (c) {
			case '"': case '\\': case '/': break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'n': c = '\n'; break;
			case 'r': c = '\r'; break;
			case 't': c = '\t'; break;
			case 'u':
				if (jhex4(j, &c))
					return -1;
				if (c >= 0xD800 && c < 0xDC00 && j->end - j->p >= 6 && j->p[0] == '\\' &&
				    j->p[1] == 'u') {
					const unsigned char *save = j->p;
					j->p += 2;
					if (jhex4(j, &lo))
						return -1;
					if (lo >= 0xDC00 && lo < 0xE000)
						c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
					else
						j->p = save; /* the second escape stands alone */
				}
				if (c >= 0xD800 && c < 0xE000)
					c = 0xFFFD;
				break;
			default:
				return jfail(j, "bad escape \\%c in a string", c);
			}
		}
		/* c is a byte of the file or a decoded code point: append its UTF-8. */
		if (c < 0x80) {
			u[0] = (unsigned char)c;
			k = 1;
		} else if (c < 0x800) {
			u[0] = (unsigned char)(0xC0 | c >> 6);
			u[1] = (unsigned char)(0x80 | (c & 0x3F));
			k = 2;
		} else if (c < 0x10000) {
			u[0] = (unsigned char)(0xE0 | c >> 12);
			u[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
			u[2] = (unsigned char)(0x80 | (c & 0x3F));
			k = 3;
		} else {
			u[0] = (unsigned char)(0xF0 | c >> 18);
			u[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
			u[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
			u[3] = (unsigned char)(0x80 | (c & 0x3F));
			k = 4;
		}
		/* A raw byte >= 0x80 is part of a UTF-8 sequence of the file (checked whole
		 * before parsing): copy it as it is, not as a code point. */
		if (raw) {
			u[0] = (unsigned char)c;
			k = 1;
		}
		if (n + k >= cap)
			return jfail(j, "string too long");
		for (i = 0; i < k; i++)
			out[n++] = (char)u[i];
	}
	out[n] = 0;
	return 0;
}

/* jinteger reads a plain JSON integer: digits only, no sign, fraction or exponent, and
 * below 2^63. */
static int jinteger(struct jparser *j, uint64_t *out)
{
	uint64_t v = 0;
	int big = 0;
	const unsigned char *start;

	jws(j);
	if (j->p >= j->end || *j->p < '0' || *j->p > '9') {
		if (j->p < j->end && *j->p == '-')
			return jfail(j, "a signed number where a plain integer belongs");
		return jfail(j, "want an integer, found %s", jfound(j));
	}
	start = j->p;
	while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
		unsigned d = (unsigned)(*j->p - '0');
		if (v > (SEQ_LIMIT - 1 - d) / 10)
			big = 1;
		else
			v = v * 10 + d;
		j->p++;
	}
	if (*start == '0' && j->p - start > 1)
		return jfail(j, "a number with a leading zero");
	if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
		return jfail(j, "a number with a fraction or exponent where a plain integer belongs");
	if (big)
		return jfail(j, "an integer not below 2^63");
	*out = v;
	return 0;
}

static int jbool(struct jparser *j, int *out)
{
	jws(j);
	if (j->end - j->p >= 4 && memcmp(j->p, "true", 4) == 0) {
		j->p += 4;
		*out = 1;
	} else if (j->end - j->p >= 5 && memcmp(j->p, "false", 5) == 0) {
		j->p += 5;
		*out = 0;
	} else {
		return jfail(j, "want true or false, found %s", jfound(j));
	}
	/* "truex" is not JSON: a literal ends at a delimiter. */
	if (j->p < j->end && ((*j->p >= 'a' && *j->p <= 'z') || (*j->p >= '0' && *j->p <= '9')))
		return jfail(j, "not JSON after a boolean");
	return 0;
}

/* jnext reads what follows a member or an element: ',' (returns 1) or close (returns 0). */
static int jnext(struct jparser *j, unsigned char close)
{
	jws(j);
	if (j->p < j->end && *j->p == ',') {
		j->p++;
		return 1;
	}
	if (j->p < j->end && *j->p == close) {
		j->p++;
		return 0;
	}
	return jfail(j, "want ',' or '%c', found %s", close, jfound(j));
}

/* jopen reads '{' or '[' and reports whether the object or array is empty. */
static int jopen(struct jparser *j, unsigned char open, unsigned char close)
{
	if (jexpect(j, open))
		return -1;
	jws(j);
	if (j->p < j->end && *j->p == close) {
		j->p++;
		return 1;
	}
	return 0;
}

/* jkey reads a member's key and the colon after it, and returns its index in names
 * (n of them); an unknown key, or one seen already (its bit in *seen), is an error. */
static int jkey(struct jparser *j, const char *const *names, int n, unsigned *seen, const char *what)
{
	char key[40];
	int i;

	if (jstring(j, key, sizeof key))
		return -1;
	for (i = 0; i < n; i++)
		if (strcmp(key, names[i]) == 0)
			break;
	if (i == n)
		return jfail(j, "%s: unknown field \"%s\"", what, key);
	if (*seen & (1u << i))
		return jfail(j, "%s: field \"%s\" appears twice", what, key);
	*seen |= 1u << i;
	if (jexpect(j, ':'))
		return -1;
	return i;
}

static int jmissing(struct jparser *j, const char *const *names, int n, unsigned seen, const char *what)
{
	int i;

	for (i = 0; i < n; i++)
		if (!(seen & (1u << i)))
			return jfail(j, "%s: field \"%s\" missing", what, names[i]);
	return 0;
}

static const char *const top_fields[] = {"version", "segment_size", "segments_max", "generation", "segments"};
static const char *const entry_fields[] = {"name", "first_seq", "last_seq", "sealed"};

static int jentry(struct jparser *j, struct manifest *m)
{
	struct mentry e;
	char name[64], what[48];
	unsigned seen = 0;
	int k, r;

	memset(&e, 0, sizeof e);
	snprintf(what, sizeof what, "segments[%lu]", (unsigned long)m->n);
	if ((r = jopen(j, '{', '}')) < 0)
		return -1;
	while (!r) {
		if ((k = jkey(j, entry_fields, 4, &seen, what)) < 0)
			return -1;
		switch (k) {
		case 0:
			if (jstring(j, name, sizeof name))
				return -1;
			e.num = parse_name(name, strlen(name), ".seg");
			if (!e.num)
				return jfail(j, "%s: invalid name \"%s\"", what, name);
			break;
		case 1: r = jinteger(j, &e.first); break;
		case 2: r = jinteger(j, &e.last); break;
		case 3: r = jbool(j, &e.sealed); break;
		}
		if (r)
			return -1;
		if ((r = jnext(j, '}')) < 0)
			return -1;
		r = !r;
	}
	if (jmissing(j, entry_fields, 4, seen, what))
		return -1;
	if (m->n >= FILERING_MAX_SEGMENTS_LISTED)
		return jfail(j, "more than %u entries", FILERING_MAX_SEGMENTS_LISTED);
	if (manifest_push(m, &e))
		return jfail(j, "out of memory");
	return 0;
}

static int jentries(struct jparser *j, struct manifest *m)
{
	int r;

	if ((r = jopen(j, '[', ']')) < 0)
		return -1;
	while (!r) {
		if (jentry(j, m))
			return -1;
		if ((r = jnext(j, ']')) < 0)
			return -1;
		r = !r;
	}
	return 0;
}

static int jmanifest(struct jparser *j, struct manifest *m)
{
	unsigned seen = 0;
	int k, r;
	uint64_t v;

	if ((r = jopen(j, '{', '}')) < 0)
		return -1;
	while (!r) {
		if ((k = jkey(j, top_fields, 5, &seen, "manifest")) < 0)
			return -1;
		if (k == 4) {
			if (jentries(j, m))
				return -1;
		} else {
			if (jinteger(j, &v))
				return -1;
			switch (k) {
			case 0:
				m->version = v;
				if (v != 1) {
					j->have_version = 1;
					j->version = v;
				}
				break;
			case 1: m->segment_size = v; break;
			case 2: m->segments_max = v; break;
			case 3: m->generation = v; break;
			}
		}
		if ((r = jnext(j, '}')) < 0)
			return -1;
		r = !r;
	}
	if (jmissing(j, top_fields, 5, seen, "manifest"))
		return -1;
	jws(j);
	if (j->p != j->end)
		return jfail(j, "trailing data after the manifest object");
	return 0;
}

/* jskip passes over any one JSON value (depth-limited), for probe_version. */
static int jskip(struct jparser *j, int depth)
{
	const unsigned char *p;
	int r;

	jws(j);
	if (j->p >= j->end || depth > 64)
		return -1;
	p = j->p;
	if (*p == '"') {
		for (j->p++; j->p < j->end && *j->p != '"'; j->p++)
			if (*j->p == '\\' && ++j->p >= j->end)
				return -1;
		if (j->p >= j->end)
			return -1;
		j->p++;
		return 0;
	}
	if (*p == '{' || *p == '[') {
		unsigned char close = *p == '{' ? '}' : ']';
		if ((r = jopen(j, *p, close)) != 0)
			return r < 0 ? -1 : 0;
		for (;;) {
			if (close == '}' && (jskip(j, depth + 1) || jexpect(j, ':')))
				return -1;
			if (jskip(j, depth + 1) || (r = jnext(j, close)) < 0)
				return -1;
			if (!r)
				return 0;
		}
	}
	while (j->p < j->end && ((*j->p >= '0' && *j->p <= '9') || (*j->p >= 'a' && *j->p <= 'z') || *j->p == '-' ||
	                         *j->p == '+' || *j->p == '.' || *j->p == 'E'))
		j->p++;
	return j->p == p ? -1 : 0;
}

/* probe_version looks, in a manifest the strict parser refused, for a top-level
 * "version" whose value is a number other than 1, so that a manifest of another version
 * is refused as such whatever else it holds. It writes the number's text to out. */
static int probe_version(const unsigned char *b, size_t n, char *out, size_t cap)
{
	struct jparser j;
	const unsigned char *key, *val;
	int r;

	memset(&j, 0, sizeof j);
	j.p = b;
	j.end = b + n;
	if ((r = jopen(&j, '{', '}')) != 0)
		return 0;
	for (;;) {
		jws(&j);
		key = j.p;
		if (jskip(&j, 0) || jexpect(&j, ':'))
			return 0;
		jws(&j);
		val = j.p;
		if (jskip(&j, 0))
			return 0;
		if (j.p - key >= 9 && memcmp(key, "\"version\"", 9) == 0 && *val >= '0' && *val <= '9' &&
		    !(j.p - val == 1 && *val == '1') && (size_t)(j.p - val) < cap) {
			memcpy(out, val, (size_t)(j.p - val));
			out[j.p - val] = 0;
			return 1;
		}
		if ((r = jnext(&j, '}')) <= 0)
			return 0;
	}
}

/* manifest_validate checks every rule docs/FORMAT.md sets for a manifest. */
static int manifest_validate(const struct manifest *m, char *why, size_t whycap)
{
	size_t i;
	const struct mentry *e, *prev = NULL;

#define BAD(...) do { snprintf(why, whycap, __VA_ARGS__); return -1; } while (0)
	if (m->version != 1)
		BAD("manifest version %llu, this reader knows 1", (unsigned long long)m->version);
	if (!valid_segment_size(m->segment_size))
		BAD("segment_size %llu not allowed", (unsigned long long)m->segment_size);
	if (m->segments_max < FILERING_MIN_SEGMENTS || m->segments_max > FILERING_MAX_SEGMENTS_LISTED)
		BAD("segments_max %llu out of range 2..65536", (unsigned long long)m->segments_max);
	if (m->n > m->segments_max)
		BAD("%lu segments listed, segments_max is %llu", (unsigned long)m->n,
		    (unsigned long long)m->segments_max);
	for (i = 0; i < m->n; i++) {
		e = &m->e[i];
		if (e->num == 0 || e->num > MAX_NUMBER)
			BAD("segment %lu: invalid name", (unsigned long)i);
		if (e->first == 0 || e->first >= SEQ_LIMIT)
			BAD("segment %016llu.seg: first_seq %llu out of range", (unsigned long long)e->num,
			    (unsigned long long)e->first);
		if (e->sealed && e->last < e->first)
			BAD("segment %016llu.seg: sealed with last_seq %llu before first_seq %llu",
			    (unsigned long long)e->num, (unsigned long long)e->last,
			    (unsigned long long)e->first);
		if (!e->sealed && e->last != 0)
			BAD("segment %016llu.seg: hot segment with last_seq %llu", (unsigned long long)e->num,
			    (unsigned long long)e->last);
		if (!e->sealed && i != m->n - 1)
			BAD("segment %016llu.seg: only the last segment may be hot", (unsigned long long)e->num);
		if (prev && e->num <= prev->num)
			BAD("segment %016llu.seg listed after %016llu.seg", (unsigned long long)e->num,
			    (unsigned long long)prev->num);
		if (prev && e->first <= prev->last)
			BAD("segment %016llu.seg: first_seq %llu not after last_seq %llu of %016llu.seg",
			    (unsigned long long)e->num, (unsigned long long)e->first,
			    (unsigned long long)prev->last, (unsigned long long)prev->num);
		prev = e;
	}
#undef BAD
	return 0;
}

/* manifest_parse parses and validates the n bytes of a manifest file into m (which it
 * resets first). Returns 0, or -1 with the reason in why. */
static int manifest_parse(const unsigned char *b, size_t n, struct manifest *m, char *why, size_t whycap)
{
	struct jparser j;
	size_t i;

	why[0] = 0;
	m->n = 0;
	m->version = m->segment_size = m->segments_max = m->generation = 0;
	if (n > FILERING_MAX_MANIFEST_SIZE) {
		snprintf(why, whycap, "%lu bytes or more, limit %u", (unsigned long)n, FILERING_MAX_MANIFEST_SIZE);
		return -1;
	}
	for (i = 0; i < n; i++)
		if (b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r')
			break;
	if (i == n) {
		snprintf(why, whycap, "empty");
		return -1;
	}
	if (!filering_utf8_valid(b, n)) {
		snprintf(why, whycap, "not UTF-8");
		return -1;
	}
	memset(&j, 0, sizeof j);
	j.p = b;
	j.end = b + n;
	j.why = why;
	j.whycap = whycap;
	if (jmanifest(&j, m)) {
		char v[24];
		if (j.have_version)
			snprintf(why, whycap, "manifest version %llu, this reader knows 1",
			         (unsigned long long)j.version);
		else if (probe_version(b, n, v, sizeof v))
			snprintf(why, whycap, "manifest version %s, this reader knows 1", v);
		return -1;
	}
	return manifest_validate(m, why, whycap);
}

/* manifest_encode writes m as the producer writes it: compact JSON, fields in the
 * documented order, and a newline. buf must hold manifest_bound(m->n). */
static size_t manifest_bound(size_t n) { return 160 + n * 120; }

static size_t manifest_encode(const struct manifest *m, char *buf)
{
	char *p = buf;
	size_t i;

	p += sprintf(p, "{\"version\":1,\"segment_size\":%llu,\"segments_max\":%llu,\"generation\":%llu,\"segments\":[",
	             (unsigned long long)m->segment_size, (unsigned long long)m->segments_max,
	             (unsigned long long)m->generation);
	for (i = 0; i < m->n; i++)
		p += sprintf(p, "%s{\"name\":\"%016llu.seg\",\"first_seq\":%llu,\"last_seq\":%llu,\"sealed\":%s}",
		             i ? "," : "", (unsigned long long)m->e[i].num, (unsigned long long)m->e[i].first,
		             (unsigned long long)m->e[i].last, m->e[i].sealed ? "true" : "false");
	p += sprintf(p, "]}\n");
	return (size_t)(p - buf);
}

/* ======================================================================================
 * 3. Segments
 * ==================================================================================== */

struct seghdr {
	uint64_t size, number, first;
	int64_t created;
	uint64_t sealed, committed;
};

/* put_header writes a new segment's header into b: magic, version, the fixed fields and
 * their CRC, sealed word 0, committed word 64. */
static void put_header(unsigned char *b, uint64_t size, uint64_t num, uint64_t first, int64_t created)
{
	memcpy(b, "FILERSEG", 8);
	st32(b + 8, 1);
	st64(b + 16, size);
	st64(b + 24, num);
	st64(b + 32, first);
	st64(b + 40, (uint64_t)created);
	st32(b + 12, filering_crc32(0, b + 16, 32));
	st64(b + OFF_SEALED, 0);
	st64(b + OFF_COMMITTED, HDR);
}

/* parse_header decodes the 64 header bytes at b and checks its own rules: magic (offset
 * 0), version (8), CRC (12), an allowed size (16), a segment number (24) and a first
 * sequence (32) in range. Returns 0 or FILERING_EHEADER with the offset of the bad field
 * in *off and the reason in why. */
static int parse_header(const unsigned char *b, struct seghdr *h, int64_t *off, char *why, size_t whycap)
{
	uint32_t crc;

	if (memcmp(b, "FILERSEG", 8) != 0) {
		*off = 0;
		snprintf(why, whycap, "bad magic");
		return FILERING_EHEADER;
	}
	if (ld32(b + 8) != 1) {
		*off = 8;
		snprintf(why, whycap, "segment version %u, this reader knows 1", ld32(b + 8));
		return FILERING_EHEADER;
	}
	crc = filering_crc32(0, b + 16, 32);
	if (crc != ld32(b + 12)) {
		*off = 12;
		snprintf(why, whycap, "header CRC %08x, stored %08x", crc, ld32(b + 12));
		return FILERING_EHEADER;
	}
	h->size = ld64(b + 16);
	h->number = ld64(b + 24);
	h->first = ld64(b + 32);
	h->created = (int64_t)ld64(b + 40);
	h->sealed = ld64(b + OFF_SEALED);
	h->committed = ld64(b + OFF_COMMITTED);
	if (!valid_segment_size(h->size)) {
		*off = 16;
		snprintf(why, whycap, "segment size %llu not allowed", (unsigned long long)h->size);
		return FILERING_EHEADER;
	}
	if (h->number == 0 || h->number > MAX_NUMBER) {
		*off = 24;
		snprintf(why, whycap, "segment number %llu out of range", (unsigned long long)h->number);
		return FILERING_EHEADER;
	}
	if (h->first == 0 || h->first >= SEQ_LIMIT) {
		*off = 32;
		snprintf(why, whycap, "first sequence %llu out of range", (unsigned long long)h->first);
		return FILERING_EHEADER;
	}
	return 0;
}

/* check_header checks a segment's header against what is expected of it: its size the
 * ring's, its number the name's, and, when e is not NULL (the manifest's entry), its
 * first sequence and its sealed word; and the sealed and committed words as they are.
 * Returns 0 or a damage code with *off and why set. */
static int check_header(const unsigned char *b, uint64_t size, uint64_t num, const struct mentry *e,
                        struct seghdr *h, int64_t *off, char *why, size_t whycap)
{
	int r = parse_header(b, h, off, why, whycap);

	if (r)
		return r;
#define BAD(code, o, ...) do { *off = (o); snprintf(why, whycap, __VA_ARGS__); return (code); } while (0)
	if (h->size != size)
		BAD(FILERING_EHEADER, 16, "header says segment size %llu, ring segments are %llu",
		    (unsigned long long)h->size, (unsigned long long)size);
	if (h->number != num)
		BAD(FILERING_EHEADER, 24, "header says segment %llu, the name says %llu",
		    (unsigned long long)h->number, (unsigned long long)num);
	if (e && h->first != e->first)
		BAD(FILERING_EHEADER, 32, "header says first sequence %llu, the manifest says %llu",
		    (unsigned long long)h->first, (unsigned long long)e->first);
	if (h->sealed > 1)
		BAD(FILERING_ESEALED, OFF_SEALED, "sealed word %#llx", (unsigned long long)h->sealed);
	if (e && e->sealed && h->sealed == 0)
		BAD(FILERING_ESEALED, OFF_SEALED, "the manifest lists it sealed, its sealed word is 0");
	if (h->committed < HDR || h->committed > size || h->committed % 8)
		BAD(FILERING_ECOMMITTED, OFF_COMMITTED, "committed word %llu outside 64..%llu or not a multiple of 8",
		    (unsigned long long)h->committed, (unsigned long long)size);
#undef BAD
	return 0;
}

/* write_record writes a record at offset off of the segment of size bytes mapped at b
 * and publishes it (docs/FORMAT.md, "Appending"): sequence, time, payload and zero
 * padding; then zero in the 8 bytes after it, the next record's commit word, when they
 * are inside the segment; then its commit word, with one atomic release store, the last
 * store it makes. It writes every byte it covers, so the bytes there may be anything
 * before (a reused file holds old records), and a reader that sees this record sees a
 * zero after it, never an old record. The caller guarantees that it fits. It returns the
 * offset of the next record. */
static uint64_t write_record(unsigned char *b, uint64_t size, uint64_t off, uint64_t seq, int64_t t,
                             const void *data, size_t len)
{
	unsigned char *r = b + off;
	uint64_t next = off + align8(RECHDR + len);
	uint32_t crc;

	/* The padding: the record's last word zeroed, then the payload copied over its
	 * first bytes. */
	if ((RECHDR + len) & 7)
		memset(b + next - 8, 0, 8);
	st64(r + 8, seq);
	st64(r + 16, (uint64_t)t);
	if (len)
		memcpy(r + RECHDR, data, len);
	if (next + 8 <= size)
		__atomic_store_n((uint64_t *)(void *)(b + next), 0, __ATOMIC_RELAXED);
	crc = crc_update(0, r + 8, 16 + len);
	store_release(r, (uint64_t)(RECHDR + len) | (uint64_t)crc << 32);
	return next;
}

/* put_record is write_record for a segment whose header is in place (put_header): its
 * size is the header's. For segments built in memory by the tests and fuzz targets. */
#define put_record(b, off, seq, t, data, len) write_record((b), ld64((b) + 16), (off), (seq), (t), (data), (len))

/* The scanner reads the records of one mapped segment in order, as docs/FORMAT.md,
 * "Reading: a consistent snapshot", step 4 says. Every reader and the recovery use it.
 * It never reads outside [b, b + size) whatever the words in the file say. */
enum { SCAN_DELIVER, SCAN_CHECK, SCAN_SKIP };

struct scanner {
	const unsigned char *b; /* the mapping, size bytes, 8-byte aligned */
	uint64_t size;
	uint64_t off;  /* offset of the next record */
	uint64_t next; /* sequence number the next record must carry */
	int sealed;    /* the segment was seen sealed */
	int done;      /* sealed, and every record read */
	int err;       /* damage: sticky */
	int64_t err_off;
	char why[160];
	/* The current record. data is in buf (SCAN_DELIVER) or in the mapping. */
	uint64_t seq;
	int64_t time;
	const unsigned char *data;
	size_t len;
	unsigned char *buf; /* owned by the scanner's user, grown as needed */
	size_t cap;
};

static void scan_init(struct scanner *sc, const unsigned char *b, uint64_t size, uint64_t first)
{
	unsigned char *buf = sc->buf;
	size_t cap = sc->cap;

	memset(sc, 0, sizeof *sc);
	sc->b = b;
	sc->size = size;
	sc->off = HDR;
	sc->next = first;
	sc->buf = buf;
	sc->cap = cap;
}

/* scan_read checks the record whose commit word w was loaded at sc->off and, when it
 * passes, makes it the current record and advances. Returns 0, a damage code (the
 * reason in sc->why), or -ENOMEM. */
static int scan_read(struct scanner *sc, uint64_t w, int mode)
{
	uint32_t size = (uint32_t)w, crc = (uint32_t)(w >> 32), got;
	uint64_t room = sc->size - sc->off;
	const unsigned char *body = sc->b + sc->off + 8, *src;
	size_t n;

	if (size < RECHDR || size > room || align8(size) > room) {
		snprintf(sc->why, sizeof sc->why, "bad record size %u", size);
		return FILERING_ERECSIZE;
	}
	n = size - 8;
	if (mode == SCAN_SKIP) {
		src = body;
	} else if (mode == SCAN_DELIVER) {
		if (n > BIG_RECORD && (got = crc_update(0, body, n)) != crc)
			goto checksum; /* checked in place first: no buffer for a bad record */
		if (sc->cap < n) {
			size_t cap = sc->cap ? sc->cap : 256;
			unsigned char *p;
			while (cap < n)
				cap *= 2;
			if (!(p = (unsigned char *)realloc(sc->buf, cap)))
				return -ENOMEM;
			sc->buf = p;
			sc->cap = cap;
		}
		memcpy(sc->buf, body, n);
		src = sc->buf;
		if ((got = crc_update(0, src, n)) != crc)
			goto checksum;
	} else {
		src = body;
		if ((got = crc_update(0, src, n)) != crc)
			goto checksum;
	}
	if (ld64(src) != sc->next) {
		snprintf(sc->why, sizeof sc->why, "record sequence %llu, want %llu",
		         (unsigned long long)ld64(src), (unsigned long long)sc->next);
		return FILERING_ESEQUENCE;
	}
	sc->seq = sc->next;
	sc->time = (int64_t)ld64(src + 8);
	sc->data = src + 16;
	sc->len = n - 16;
	sc->off += align8(size);
	sc->next++;
	return 0;
checksum:
	snprintf(sc->why, sizeof sc->why, "record checksum mismatch (computed %08x, stored %08x)", got, crc);
	return FILERING_ECHECKSUM;
}

/* scan_damage records damage at off and returns its code. */
static int scan_damage(struct scanner *sc, int code, uint64_t off)
{
	sc->err = code;
	sc->err_off = (int64_t)off;
	return code;
}

/* scan_next advances to the next committed record. Returns 1 (the current record is
 * set), 0 at the end of what is committed so far (sc->done when the segment is sealed
 * and read to its end), a damage code (sticky; sc->err_off and sc->why say where and
 * what), or -ENOMEM (nothing changed: call again). In SCAN_SKIP mode only the framing
 * and the sequence number of records are checked, for records a reader has checked
 * before. */
static int scan_next(struct scanner *sc, int mode)
{
	uint64_t c, w, s;
	int pass, why;

	if (sc->err)
		return sc->err;
	if (sc->done)
		return 0;
	/* A second pass happens only when the segment turns out to have been sealed after
	 * the committed word was loaded: a record may have been written meanwhile. */
	for (pass = 0; pass < 2; pass++) {
		c = load_acquire(sc->b + OFF_COMMITTED);
		if (c < HDR || c > sc->size || c % 8) {
			snprintf(sc->why, sizeof sc->why, "committed word %llu outside 64..%llu or not a multiple of 8",
			         (unsigned long long)c, (unsigned long long)sc->size);
			return scan_damage(sc, FILERING_ECOMMITTED, OFF_COMMITTED);
		}
		if (sc->sealed && sc->off >= c) {
			sc->done = 1;
			return 0;
		}
		if (sc->off + 8 <= sc->size) {
			w = load_acquire(sc->b + sc->off);
			if (w == 0) {
				why = FILERING_EMISSING;
				snprintf(sc->why, sizeof sc->why, "committed record missing (zero commit word)");
			} else {
				why = scan_read(sc, w, mode);
				if (why == 0)
					return 1;
				if (why == -ENOMEM)
					return why;
			}
			if (sc->off < c)
				return scan_damage(sc, why, sc->off);
		}
		if (sc->sealed)
			break;
		s = load_acquire(sc->b + OFF_SEALED);
		if (s > 1) {
			snprintf(sc->why, sizeof sc->why, "sealed word %#llx", (unsigned long long)s);
			return scan_damage(sc, FILERING_ESEALED, OFF_SEALED);
		}
		if (!s)
			return 0; /* the end of what is committed so far */
		sc->sealed = 1;
	}
	/* Sealed, and nothing valid at off even with the final committed word. */
	c = load_acquire(sc->b + OFF_COMMITTED);
	if (sc->off < c && c <= sc->size) {
		snprintf(sc->why, sizeof sc->why, "committed record missing: sealed segment ends before its committed word %llu",
		         (unsigned long long)c);
		return scan_damage(sc, FILERING_EMISSING, sc->off);
	}
	sc->done = 1;
	return 0;
}

/* scan_valid reads records from the scanner's position while they are valid (commit
 * word non-zero, record rules met), without consulting the committed or sealed words,
 * as a producer recovering a segment does. Returns how many it read; sc->off is then
 * just past the last one. */
static uint64_t scan_valid(struct scanner *sc)
{
	uint64_t n = 0, w;

	while (sc->off + 8 <= sc->size) {
		w = load_acquire(sc->b + sc->off);
		if (w == 0 || scan_read(sc, w, SCAN_CHECK) != 0)
			break;
		n++;
	}
	return n;
}

/* scan_from moves a scanner just made by scan_init to the record with index index (its
 * sequence number is first + index) at offset off: an offset the caller has checked,
 * a multiple of 8 from 64 to below the segment's size. */
static void scan_from(struct scanner *sc, uint64_t off, uint64_t index)
{
	sc->off = off;
	sc->next += index;
}

/* ---- the segment index ---------------------------------------------------------------------
 *
 * docs/FORMAT.md, "The segment index". The index never counts for anything until the
 * entry a read would use is checked against the segment (idx_check): a reader trusts
 * nothing in it, and an index that fails any check is as no index. */

/* idx_entries returns K, the number of entries of the index of a segment of size bytes
 * with blocks of block bytes. */
static uint64_t idx_entries(uint64_t size, uint64_t block) { return (size - 1) / block; }

/* idx_put_header writes the 64-byte header of the index of segment num into b. */
static void idx_put_header(unsigned char *b, uint64_t num, uint64_t size, uint32_t block)
{
	memset(b, 0, IDX_HDR);
	memcpy(b, "FILERIDX", 8);
	st32(b + 8, 1);
	st64(b + 16, num);
	st64(b + 24, size);
	st32(b + 32, block);
	st32(b + 36, (uint32_t)idx_entries(size, block));
	st32(b + 12, filering_crc32(0, b + 16, 24));
}

/* idx_parse checks the len bytes at b as the index of segment num of a ring of size-byte
 * segments ("Using it", step 1: magic, version, header CRC, number, segment size, B, K,
 * and the length 64 + 8K). Returns K, with B in *block, or 0 when it is not one. */
static uint64_t idx_parse(const unsigned char *b, uint64_t len, uint64_t num, uint64_t size, uint64_t *block)
{
	uint64_t bs, k;

	if (len < IDX_HDR + 8 || memcmp(b, "FILERIDX", 8) != 0 || ld32(b + 8) != 1 ||
	    ld32(b + 12) != filering_crc32(0, b + 16, 24) || ld64(b + 16) != num || ld64(b + 24) != size)
		return 0;
	bs = ld32(b + 32);
	k = ld32(b + 36);
	if (bs < IDX_MIN_BLOCK || bs > IDX_MAX_BLOCK || (bs & (bs - 1)) != 0 || k == 0 ||
	    k != idx_entries(size, bs) || len != IDX_HDR + 8 * k)
		return 0;
	*block = bs;
	return k;
}

/* idx_find returns the largest k from 1 to nk whose entry in the index mapped at b (8-byte
 * aligned) is non-zero and whose index is at most i, with the entry in *entry; 0 when
 * there is none. Each entry is loaded with one atomic acquire load: a producer may be
 * storing them. */
static uint64_t idx_find(const unsigned char *b, uint64_t nk, uint64_t i, uint64_t *entry)
{
	uint64_t k, e;

	for (k = nk; k > 0; k--) {
		e = load_acquire(b + IDX_HDR + 8 * (k - 1));
		if (e != 0 && e >> 32 <= i) {
			*entry = e;
			return k;
		}
	}
	return 0;
}

/* idx_check checks entry k (the value entry) of an index with blocks of block bytes
 * against the segment mapped at seg (size bytes, first sequence first), as "Using it",
 * step 3, says: its offset a multiple of 8, at least k * block and below size; its index
 * at most (offset - 64) / 24; a committed record there that meets the record rules with
 * sequence first + index; in a segment found sealed, one that ends at or below the
 * committed word. Returns 1 when it passes. */
static int idx_check(const unsigned char *seg, uint64_t size, uint64_t first, uint64_t k, uint64_t block,
                     uint64_t entry)
{
	struct scanner sc;
	uint64_t off = entry & 0xffffffffu, index = entry >> 32, w;

	if (off % 8 != 0 || off < k * block || off >= size || index > (off - HDR) / RECHDR)
		return 0;
	w = load_acquire(seg + off);
	if (w == 0)
		return 0;
	memset(&sc, 0, sizeof sc);
	scan_init(&sc, seg, size, first);
	scan_from(&sc, off, index);
	if (scan_read(&sc, w, SCAN_CHECK) != 0)
		return 0;
	/* The sealed word before the committed word: a segment seen sealed shows its final
	 * committed word. */
	if (load_acquire(seg + OFF_SEALED) == 1 && sc.off > load_acquire(seg + OFF_COMMITTED))
		return 0;
	return 1;
}

/* read_manifest reads and validates the manifest of the ring directory dirfd into m,
 * with *buf and *cap a buffer it may grow. Returns 0; FILERING_ENORING when there is none;
 * FILERING_EMANIFEST with *notreg set when it is not a regular file (a symbolic link, a
 * FIFO, a directory...) and the reason in why; -EMFILE, -ENFILE or -ENOMEM when out of
 * resources. */
static int read_manifest(int dirfd, struct manifest *m, unsigned char **buf, size_t *cap, int *notreg,
                         char *why, size_t whycap)
{
	struct stat st;
	size_t want, got = 0;
	ssize_t k;
	int fd;

	*notreg = 0;
	why[0] = 0;
	fd = open_in(dirfd, "manifest", O_RDONLY, 0, &st);
	if (fd == -ENOENT)
		return FILERING_ENORING;
	if (fd == -EMFILE || fd == -ENFILE || fd == -ENOMEM)
		return fd;
	if (fd == -ELOOP || fd == FILERING_ENOTREG) {
		*notreg = 1;
		snprintf(why, whycap, fd == -ELOOP ? "is a symbolic link" : "not a regular file");
		return FILERING_EMANIFEST;
	}
	if (fd < 0) {
		snprintf(why, whycap, "cannot open: %s", strerror(-fd));
		return FILERING_EMANIFEST;
	}
	/* The size is a hint only: read until the end, or one byte past the limit. */
	want = st.st_size > 0 && (uint64_t)st.st_size < FILERING_MAX_MANIFEST_SIZE ? (size_t)st.st_size + 1
	                                                                         : FILERING_MAX_MANIFEST_SIZE + 1;
	for (;;) {
		if (*cap < want) {
			unsigned char *p = (unsigned char *)realloc(*buf, want);
			if (!p) {
				close(fd);
				return -ENOMEM;
			}
			*buf = p;
			*cap = want;
		}
		k = pread(fd, *buf + got, want - got, (off_t)got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			snprintf(why, whycap, "cannot read: %s", strerror(errno));
			close(fd);
			return FILERING_EMANIFEST;
		}
		got += (size_t)k;
		if (k == 0 || got > FILERING_MAX_MANIFEST_SIZE)
			break;
		if (got == want)
			want = want * 2 > FILERING_MAX_MANIFEST_SIZE + 1 ? FILERING_MAX_MANIFEST_SIZE + 1 : want * 2;
	}
	close(fd);
	if (manifest_parse(*buf, got, m, why, whycap))
		return FILERING_EMANIFEST;
	return 0;
}

/* manifest_next_seq returns the sequence number after the last sealed entry's last
 * record, or 1 when none is sealed. */
static uint64_t manifest_next_seq(const struct manifest *m)
{
	size_t i = m->n;

	while (i-- > 0)
		if (m->e[i].sealed)
			return m->e[i].last + 1;
	return 1;
}

/* manifest_find returns the index of the entry for segment num, or -1. */
static long manifest_find(const struct manifest *m, uint64_t num)
{
	size_t lo = 0, hi = m->n, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (m->e[mid].num == num)
			return (long)mid;
		if (m->e[mid].num < num)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* map_file maps the first size bytes of fd, shared. A writable mapping of a size that is
 * a multiple of the huge page size (hp, 0 for none) is placed on a huge page boundary
 * and backed with huge pages where the kernel allows (MADV_COLLAPSE, Linux 6.1): *huge
 * says whether it was. Other writable mappings are faulted in at once. Returns the
 * mapping or NULL with errno set. */
static unsigned char *map_file(int fd, uint64_t size, int writable, uint64_t hp, int *huge)
{
	int prot = PROT_READ | (writable ? PROT_WRITE : 0);
	void *res, *p;
	uintptr_t pad;

	if (huge)
		*huge = 0;
	if (size > (uint64_t)SIZE_MAX - (hp ? hp : 0)) {
		errno = ENOMEM;
		return NULL;
	}
	if (writable && hp && size % hp == 0) {
		res = mmap(NULL, (size_t)(size + hp), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (res != MAP_FAILED) {
			pad = (uintptr_t)((hp - (uintptr_t)res % hp) % hp);
			p = mmap((char *)res + pad, (size_t)size, prot, MAP_SHARED | MAP_FIXED, fd, 0);
			if (p == MAP_FAILED) {
				munmap(res, (size_t)(size + hp));
			} else {
				if (pad)
					munmap(res, pad);
				if (hp - pad)
					munmap((char *)p + size, (size_t)(hp - pad));
				if (huge)
					*huge = madvise(p, (size_t)size, MADV_COLLAPSE) == 0;
				return (unsigned char *)p;
			}
		}
	}
	p = mmap(NULL, (size_t)size, prot, MAP_SHARED | (writable ? MAP_POPULATE : 0), fd, 0);
	return p == MAP_FAILED ? NULL : (unsigned char *)p;
}

/* ======================================================================================
 * 4. The writer
 * ==================================================================================== */

/* A segment's index, as the writer holds it: a writable shared mapping of the whole file
 * (NULL: the segment has none) and, until it is renamed to N.idx, its temporary name. */
struct widx {
	unsigned char *b;
	size_t len;
	char tmp[72];
};

struct hot {
	uint64_t num, first;
	int fd;
	dev_t dev;         /* the file's, from fstat */
	ino_t ino;
	unsigned char *b;  /* writable shared mapping of the whole file */
	uint64_t off;      /* offset of the next record */
	uint64_t count;    /* records in the segment */
	int64_t created;   /* monotonic ns, for seal_after */
	/* The index: the next entry to store is ik (1..nk); a record at an offset of inext
	 * = ik * IDX_BLOCK or more stores it. inext is UINT64_MAX when there is no index or
	 * every entry is stored, so that an append costs one comparison. */
	uint64_t inext, ik, nk;
	struct widx idx;
};

/* A segment made ready to be installed: a new file under a temporary name (allocate),
 * or a kept file (seg_reuse) on which the writer then holds a write lease, which install
 * releases once the file has its new name. */
struct spare {
	uint64_t num;
	int fd;
	dev_t dev;
	ino_t ino;
	unsigned char *b;
	char tmp[64];
	int leased;
	struct widx idx;
};

/* The file of a removed segment, kept for reuse (docs/FORMAT.md, "Reusing a segment
 * file"): under a temporary name, open read-write; fd is the only descriptor the writer
 * holds of it, and b (NULL until poll or a reuse maps it) a mapping made from fd, which
 * is the same open file description and so does not stand in the way of the lease. */
struct kept {
	int fd;
	dev_t dev;
	ino_t ino;
	unsigned char *b;
	char tmp[64];
};

/* A sealed segment whose file the writer still holds, as it held it hot: its descriptor
 * and its mapping, so that when retention removes the segment the file is kept for reuse
 * as it is, with no open, no mapping made and no page faulted in again (seg_keep). At
 * most HOLD_MAX of them, of HOLD_BYTES in all. */
struct held {
	uint64_t num;
	int fd;
	dev_t dev;
	ino_t ino;
	unsigned char *b;
};

/* A sealed segment's index the writer still holds mapped, so that when retention removes
 * the segment its file can serve a new segment's index (idx_reuse). */
struct sealed_idx {
	uint64_t num;
	struct widx x;
};

struct filering_writer {
	char *path;
	int dirfd, lockfd;
	uint64_t segment_size; /* the ring's */
	uint32_t segments;     /* retention */
	int64_t seal_after;
	unsigned dir_mode, file_mode;
	long gid; /* > 0: chown */
	uint64_t hp; /* huge page size, 0 when none */
	filering_log_fn log;
	void *log_arg;
	struct manifest man;
	char *mbuf; /* encoded manifest */
	size_t mcap;
	struct hot hot;
	int have_hot;
	struct spare spare;
	int have_spare;
	uint64_t next;   /* sequence number of the next record */
	int closed;
	int dirty;       /* the manifest on disk is behind man */
	int tight;       /* the file system ran out of room: allocate nothing ahead */
	uint64_t lost;   /* records dropped to make room */
	int64_t retry_at; /* when a manifest that found no room is tried again (mono ns) */
	/* wake-ups */
	int pending;          /* records appended since the last wake-up write */
	int64_t last_append;  /* mono ns */
	int64_t wake_due;
	int64_t wake_interval;
	/* the record clock: wall = base_wall + (mono - base_mono) */
	int64_t base_mono, base_wall;
	/* the monotonic clock from the CPU's counter (see fast_mono): at tick0 it read
	 * tick_mono; tick_mult is ns per tick in 32.32 fixed point, 0 until measured;
	 * tick_span is how many ticks a reading may be from tick0 */
	uint64_t tick0, tick_mult, tick_span;
	int64_t tick_mono;
	uint64_t highest; /* highest segment number seen in the directory at open */
	uint64_t *leftovers; /* unlisted segments found at open, removed after the manifest */
	size_t nleft, capleft;
	/* index files kept for reuse: those of sealed segments (by number), and free ones of
	 * removed segments, under temporary names (see idx_reuse) */
	struct sealed_idx *isealed;
	size_t nsealed, capsealed;
	struct widx *ifree;
	size_t nfree, capfree;
	/* files of removed segments kept for reuse, oldest first (seg_keep, seg_reuse), and
	 * files of sealed segments still held (hold_hot) */
	struct kept kept[KEEP_MAX];
	size_t nkept;
	struct held *held;
	size_t nheld, capheld;
	int no_lease; /* leases are unavailable here (not refused: unavailable): no reuse */
	char id[33];
	char msg[PATH_MAX + 512];
};

static void wlog(filering_writer *w, const char *fmt, ...)
{
	va_list ap;

	if (!w->log)
		return;
	va_start(ap, fmt);
	vsnprintf(w->msg, sizeof w->msg, fmt, ap);
	va_end(ap);
	w->log(w->log_arg, w->msg);
}

/* check_safe refuses a file or directory that another user owns or that group or
 * others may write (docs/FORMAT.md, "Who may write"). */
static int check_safe(filering_writer *w, const char *name, const struct stat *st)
{
	if (st->st_uid != geteuid()) {
		wlog(w, "%s%s%s is owned by uid %lu, the producer runs as uid %lu; remove it, or run the producer as its owner",
		     w->path, name ? "/" : "", name ? name : "", (unsigned long)st->st_uid, (unsigned long)geteuid());
		return FILERING_EUNSAFE;
	}
	if (st->st_mode & 022) {
		wlog(w, "%s%s%s has mode %04o, writable by group or others; only the producer may write a ring",
		     w->path, name ? "/" : "", name ? name : "", (unsigned)(st->st_mode & 07777));
		return FILERING_EUNSAFE;
	}
	return 0;
}

static int check_file(filering_writer *w, const char *name)
{
	struct stat st;

	if (fstatat(w->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return errno == ENOENT ? 0 : -errno;
	return check_safe(w, name, &st);
}

/* for_names calls fn for every name in the directory but "." and "..", stopping at the
 * first non-zero result, which it returns. */
static int for_names(int dirfd, int (*fn)(void *, const char *), void *arg)
{
	DIR *d;
	struct dirent *de;
	int fd, r = 0;

	fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (!(d = fdopendir(fd))) {
		r = -errno;
		close(fd);
		return r;
	}
	for (;;) {
		errno = 0;
		if (!(de = readdir(d))) {
			if (errno)
				r = -errno;
			break;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if ((r = fn(arg, de->d_name)) != 0)
			break;
	}
	closedir(d);
	return r;
}

static int check_one(void *arg, const char *name) { return check_file((filering_writer *)arg, name); }

static void wchown(filering_writer *w, int fd, const char *what)
{
	if (w->gid > 0 && fchown(fd, (uid_t)-1, (gid_t)w->gid) != 0)
		wlog(w, "%s/%s: set group: %s", w->path, what, strerror(errno));
}

static int wunlink(filering_writer *w, const char *name)
{
	if (unlinkat(w->dirfd, name, 0) != 0 && errno != ENOENT) {
		int e = -errno;
		wlog(w, "%s/%s: remove: %s", w->path, name, strerror(errno));
		return e;
	}
	return 0;
}

/* Index files are reused: the writer keeps a sealed segment's index mapped until the
 * segment is removed (idx_keep), then renames it away from N.idx and keeps it free
 * (idx_retire) for the next segment to take (idx_allocate), header rewritten and entries
 * zeroed. A roll then costs two renames rather than an index file created, allocated,
 * mapped, unmapped and removed. A reader holding the old file sees it change; its checks
 * catch that (docs/FORMAT.md, "The segment index"). Growing the lists allocates, at a
 * roll, never on the append path. */

static void tmp_name(char *buf, size_t cap, const char *base);
static int do_rename(int dirfd, const char *from, const char *to, int noreplace);

/* idx_keep keeps x, the index of segment num, which stops being hot; on failure to grow
 * the list it unmaps it. */
static void idx_keep(filering_writer *w, uint64_t num, struct widx *x)
{
	if (!x->b)
		return;
	if (w->nsealed == w->capsealed) {
		size_t cap = w->capsealed ? 2 * w->capsealed : 16;
		struct sealed_idx *p = (struct sealed_idx *)realloc(w->isealed, cap * sizeof *p);
		if (!p) {
			munmap(x->b, x->len);
			x->b = NULL;
			return;
		}
		w->isealed = p;
		w->capsealed = cap;
	}
	w->isealed[w->nsealed].num = num;
	w->isealed[w->nsealed].x = *x;
	w->nsealed++;
	x->b = NULL;
}

/* idx_retire moves the index of segment num, named name, from the sealed list to the free
 * one, renamed to a temporary name; it returns 0 when the writer does not hold it (or the
 * rename fails, after which it is unmapped), for the caller to unlink the name. */
static int idx_retire(filering_writer *w, uint64_t num, const char *name)
{
	struct widx x;
	size_t i;

	for (i = 0; i < w->nsealed && w->isealed[i].num != num; i++)
		;
	if (i == w->nsealed)
		return 0;
	x = w->isealed[i].x;
	w->isealed[i] = w->isealed[--w->nsealed];
	if (w->nfree == w->capfree) {
		size_t cap = w->capfree ? 2 * w->capfree : 4;
		struct widx *p = (struct widx *)realloc(w->ifree, cap * sizeof *p);
		if (p) {
			w->ifree = p;
			w->capfree = cap;
		}
	}
	tmp_name(x.tmp, sizeof x.tmp, "idx-free");
	if (w->nfree == w->capfree || do_rename(w->dirfd, name, x.tmp, 1) != 0) {
		munmap(x.b, x.len);
		return 0;
	}
	w->ifree[w->nfree++] = x;
	return 1;
}

/* idx_free_all unmaps every index the writer keeps, removing the free files, and with
 * sealed, forgets (and unmaps) those of sealed segments too. It reports whether it
 * removed a file. */
static int idx_free_all(filering_writer *w, int sealed)
{
	int any = w->nfree > 0;

	while (w->nfree > 0) {
		struct widx *x = &w->ifree[--w->nfree];
		munmap(x->b, x->len);
		unlinkat(w->dirfd, x->tmp, 0);
	}
	while (sealed && w->nsealed > 0) {
		struct widx *x = &w->isealed[--w->nsealed].x;
		munmap(x->b, x->len);
	}
	return any;
}

/* Segment files are reused (docs/FORMAT.md, "Reusing a segment file"): the file of a
 * segment that retention or a full file system removes is renamed away and kept
 * (seg_keep), at most KEEP_MAX of them, and the next segment is written into one
 * (seg_reuse) when Linux grants a write lease on it, which it does only when no other
 * process holds it open or mapped. Its pages are in place, so a roll then costs a lease,
 * a header and a rename instead of a new file allocated, zeroed and faulted in. Kept
 * files are unlinked at close and given back first when the file system is full.
 * FILERING_NO_REUSE=1 in the environment (read once) turns reuse off. */

static int reuse_state; /* 0: not known yet, 1: files are reused, 2: not */

static int reuse_on(void)
{
	int st = __atomic_load_n(&reuse_state, __ATOMIC_RELAXED);
	const char *env;

	if (st == 0) {
		env = getenv("FILERING_NO_REUSE");
		st = env && env[0] == '1' ? 2 : 1;
		__atomic_store_n(&reuse_state, st, __ATOMIC_RELAXED);
	}
	return st == 1;
}

/* reuse_hook, when set, is called by seg_reuse between taking the lease and checking it.
 * Only the tests, which include this file, set it. */
static void (*reuse_hook)(filering_writer *w, const struct kept *k);

/* held_take takes segment num's file out of the list of held ones into *h; h->fd is -1
 * when the writer does not hold it. */
static void held_take(filering_writer *w, uint64_t num, struct held *h)
{
	size_t i;

	h->fd = -1;
	for (i = 0; i < w->nheld; i++) {
		if (w->held[i].num == num) {
			*h = w->held[i];
			w->held[i] = w->held[--w->nheld];
			return;
		}
	}
}

/* held_release unmaps and closes a held file (h->fd -1: none). */
static void held_release(filering_writer *w, struct held *h)
{
	if (h->fd < 0)
		return;
	munmap(h->b, (size_t)w->segment_size);
	close(h->fd);
	h->fd = -1;
}

/* seg_keep takes the file of segment num, named name, out of the ring for reuse
 * ("Reusing a segment file", step 1): it renames it to .NNNNNNNNNNNNNNNN.seg.free-RANDOM,
 * never over another name, then checks that it is a regular file of the ring's segment
 * size with no other name: the file the writer holds (h, as it held it hot: the
 * descriptor and mapping are kept as they are), or else opened read-write. A file that
 * fails is unlinked. Returns 1 when name is dealt with: the file is kept, or unlinked, or
 * the name was gone (a taker took it: nothing to keep); 0 when the caller is to unlink
 * name itself (reuse off, KEEP_MAX files kept already, a rename that failed otherwise).
 * Either way h is released or kept. */
static int seg_keep(filering_writer *w, uint64_t num, const char *name, struct held *h)
{
	struct kept *k;
	struct stat st;
	char base[48];
	int fd, r, ok;

	if (w->nkept >= KEEP_MAX || !reuse_on() || w->no_lease) {
		held_release(w, h);
		return 0;
	}
	k = &w->kept[w->nkept];
	seg_name(base, sizeof base, num, ".seg.free");
	tmp_name(k->tmp, sizeof k->tmp, base);
	if ((r = do_rename(w->dirfd, name, k->tmp, 1)) != 0) {
		held_release(w, h);
		return r == -ENOENT;
	}
	if (h->fd >= 0) {
		/* The name must have named the file held: it is the only one checked. */
		fd = h->fd;
		k->b = h->b;
		h->fd = -1;
		ok = fstatat(w->dirfd, k->tmp, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == h->dev &&
		     st.st_ino == h->ino;
	} else {
		fd = open_in(w->dirfd, k->tmp, O_RDWR, 0, &st);
		k->b = NULL;
		ok = fd >= 0;
	}
	if (!ok || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != w->segment_size || st.st_nlink != 1) {
		if (fd >= 0)
			close(fd);
		if (k->b)
			munmap(k->b, (size_t)w->segment_size);
		unlinkat(w->dirfd, k->tmp, 0);
		return 1;
	}
	k->fd = fd;
	k->dev = st.st_dev;
	k->ino = st.st_ino;
	w->nkept++;
	return 1;
}

/* kept_unlink unmaps, closes (releasing a lease taken on it) and unlinks kept file k. */
static void kept_unlink(filering_writer *w, const struct kept *k)
{
	if (k->b)
		munmap(k->b, (size_t)w->segment_size);
	close(k->fd);
	unlinkat(w->dirfd, k->tmp, 0);
}

/* kept_drop gives back kept file i: unmapped, closed and unlinked. */
static void kept_drop(filering_writer *w, size_t i)
{
	struct kept *k = &w->kept[i];

	kept_unlink(w, k);
	memmove(k, k + 1, (w->nkept - i - 1) * sizeof *k);
	w->nkept--;
}

/* kept_free_all gives back every kept file, and reports whether there was one. */
static int kept_free_all(filering_writer *w)
{
	int any = w->nkept > 0;

	while (w->nkept > 0)
		kept_drop(w, w->nkept - 1);
	return any;
}

/* wunlink_seg removes segment num: N.seg (with keep, kept for reuse when it can be:
 * seg_keep; a file the writer holds is released otherwise), then its index N.idx, which
 * goes even when N.seg is gone already (a taker claimed it). */
static void wunlink_seg(filering_writer *w, uint64_t num, int keep)
{
	struct held h;
	char name[32];

	held_take(w, num, &h);
	seg_name(name, sizeof name, num, ".seg");
	if (!keep)
		held_release(w, &h);
	if (!keep || !seg_keep(w, num, name, &h))
		wunlink(w, name);
	seg_name(name, sizeof name, num, ".idx");
	if (!idx_retire(w, num, name))
		wunlink(w, name);
}

/* tmp_name makes a temporary name ".BASE-RANDOM" (12 hexadecimal digits). */
static void tmp_name(char *buf, size_t cap, const char *base)
{
	unsigned char r[6];
	char hex[13];

	if (random_bytes(r, sizeof r) != 0) {
		int64_t t = mono_ns() ^ ((int64_t)getpid() << 20);
		memcpy(r, &t, sizeof r);
	}
	hex_encode(hex, r, sizeof r);
	snprintf(buf, cap, ".%s-%s", base, hex);
}

/* do_rename renames from to to in the ring directory; with noreplace it fails with
 * -EEXIST rather than replace an existing to. */
static int do_rename(int dirfd, const char *from, const char *to, int noreplace)
{
	long r;

	if (!noreplace)
		return renameat(dirfd, from, dirfd, to) == 0 ? 0 : -errno;
#ifdef SYS_renameat2
	r = syscall(SYS_renameat2, dirfd, from, dirfd, to, RENAME_NOREPLACE);
	if (r == 0)
		return 0;
	if (errno != ENOSYS && errno != EINVAL)
		return -errno;
#else
	(void)r;
#endif
	/* No renameat2 here: link, which never replaces, then unlink. */
	if (linkat(dirfd, from, dirfd, to, 0) != 0)
		return -errno;
	unlinkat(dirfd, from, 0);
	return 0;
}

/* replace_file atomically replaces name with a file holding n bytes of data: a
 * temporary file (its name starts with a dot) renamed over it. */
static int replace_file(filering_writer *w, const char *name, const void *data, size_t n)
{
	char tmp[64];
	int fd, r;

	tmp_name(tmp, sizeof tmp, name);
	fd = open_in(w->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL, w->file_mode, NULL);
	if (fd < 0)
		return fd == FILERING_ENOTREG ? -EEXIST : fd;
	wchown(w, fd, tmp);
	r = write_all(fd, data, n, 0);
	if (close(fd) != 0 && r == 0)
		r = -errno;
	if (r == 0)
		r = do_rename(w->dirfd, tmp, name, 0);
	if (r != 0)
		unlinkat(w->dirfd, tmp, 0);
	return r;
}

/* replace_manifest writes w->man as the new manifest, with the next generation. */
static int replace_manifest(filering_writer *w)
{
	char why[256];
	size_t need = manifest_bound(w->man.n), n;
	int r;

	w->man.generation++;
	w->man.segments_max = w->segments;
	if (manifest_validate(&w->man, why, sizeof why) != 0) {
		/* The producer's own state is wrong: refuse to publish it. */
		wlog(w, "%s: internal error, manifest invalid: %s", w->path, why);
		return -EINVAL;
	}
	if (w->mcap < need) {
		char *p = (char *)realloc(w->mbuf, need);
		if (!p)
			return -ENOMEM;
		w->mbuf = p;
		w->mcap = need;
	}
	n = manifest_encode(&w->man, w->mbuf);
	if ((r = replace_file(w, "manifest", w->mbuf, n)) != 0)
		return r;
	w->dirty = 0;
	return 0;
}

/* idx_discard unmaps an index and, when name is not NULL, removes it. */
static void idx_discard(filering_writer *w, struct widx *x, const char *name)
{
	if (!x->b)
		return;
	munmap(x->b, x->len);
	x->b = NULL;
	if (name)
		unlinkat(w->dirfd, name, 0);
}

static void discard_spare(filering_writer *w)
{
	if (!w->have_spare)
		return;
	munmap(w->spare.b, (size_t)w->segment_size);
	close(w->spare.fd);
	unlinkat(w->dirfd, w->spare.tmp, 0);
	idx_discard(w, &w->spare.idx, w->spare.idx.tmp);
	w->have_spare = 0;
}

/* free_held gives back what the writer holds beyond the ring (free index files, files
 * kept for reuse, a spare segment), and reports whether there was anything. */
static int free_held(filering_writer *w)
{
	int any = idx_free_all(w, 0);

	any |= kept_free_all(w);
	if (!w->have_spare)
		return any;
	discard_spare(w);
	return 1;
}

/* drop_entry takes the oldest sealed segment out of the manifest in memory, counts its
 * records as lost and reports it. Returns its number, or 0 when there is none. */
static uint64_t drop_entry(filering_writer *w)
{
	struct mentry e;
	uint64_t n;

	if (w->man.n == 0 || !w->man.e[0].sealed)
		return 0;
	e = w->man.e[0];
	memmove(w->man.e, w->man.e + 1, (w->man.n - 1) * sizeof *w->man.e);
	w->man.n--;
	w->dirty = 1;
	n = e.last - e.first + 1;
	w->lost += n;
	wlog(w, "%s: file system full: dropped segment %016llu.seg, records %llu to %llu (%llu lost)", w->path,
	     (unsigned long long)e.num, (unsigned long long)e.first, (unsigned long long)e.last,
	     (unsigned long long)n);
	return e.num;
}

/* drop_oldest removes the oldest sealed segment to make room for a new one, and reports
 * whether there was one. The manifest goes first when it can, so that readers see the
 * segment retired rather than missing; when it cannot be written either, the file goes
 * first and the manifest that drops it follows once there is room. The file is kept for
 * reuse when it can be: the new segment may then be written into it, which needs no
 * room. */
static int drop_oldest(filering_writer *w)
{
	uint64_t num = drop_entry(w);
	int r;

	if (!num)
		return 0;
	if ((r = replace_manifest(w)) != 0) {
		w->dirty = 1;
		if (r != -ENOSPC)
			wlog(w, "%s/manifest: %s", w->path, strerror(-r));
	}
	wunlink_seg(w, num, 1);
	return 1;
}

/* write_manifest trims the manifest to the retention, replaces the file and then removes
 * the segments it no longer lists. When the file system has no room for it, it gives
 * back what the writer holds beyond the ring, then drops the oldest sealed segments one
 * at a time, reporting each, until it fits; it fails with -ENOSPC only when nothing is
 * left to drop, leaving w->dirty set so that a later call tries again. */
static int write_manifest(filering_writer *w)
{
	uint64_t *drop = NULL, num;
	size_t ndrop = 0, i, over;
	int r;

	if (w->man.n > w->segments) {
		over = w->man.n - w->segments;
		drop = (uint64_t *)malloc(over * sizeof *drop);
		if (!drop)
			return -ENOMEM;
		for (i = 0; i < over; i++)
			drop[i] = w->man.e[i].num;
		ndrop = over;
		memmove(w->man.e, w->man.e + over, (w->man.n - over) * sizeof *w->man.e);
		w->man.n -= over;
		w->dirty = 1;
	}
	for (;;) {
		if ((r = replace_manifest(w)) == 0)
			break;
		w->dirty = 1;
		if (r != -ENOSPC)
			goto out;
		w->tight = 1;
		if (free_held(w))
			continue;
		if (ndrop) {
			/* The segments past the retention go first: they are dropped anyway. Their
			 * files are unlinked, not kept: the room is what is needed. */
			for (i = 0; i < ndrop; i++)
				wunlink_seg(w, drop[i], 0);
			ndrop = 0;
			continue;
		}
		if (!(num = drop_entry(w)))
			goto out; /* -ENOSPC */
		/* No room to say so first: remove the file, then list it no more. A reader
		 * that finds a listed segment missing skips it, as it does a taken one. */
		wunlink_seg(w, num, 0);
	}
	for (i = 0; i < ndrop; i++)
		wunlink_seg(w, drop[i], 1);
out:
	free(drop);
	return r;
}

/* reserve allocates the first size bytes of fd: fallocate, or writing zeros on a file
 * system without it. Returns 0 or -errno (-ENOSPC: no room). */
static int reserve(int fd, uint64_t size)
{
	static const unsigned char zero[4096];
	uint64_t off;
	int r;

	do
		r = fallocate(fd, 0, 0, (off_t)size) == 0 ? 0 : -errno;
	while (r == -EINTR);
	if (r == -EOPNOTSUPP)
		for (off = 0, r = 0; off < size && r == 0; off += sizeof zero)
			r = write_all(fd, zero, size - off < sizeof zero ? (size_t)(size - off) : sizeof zero,
			              (off_t)off);
	return r;
}

/* idx_allocate makes the index of the segment allocated in sp, under sp->tmp with ".idx"
 * after it: allocated in full (a store through its mapping never faults), its header
 * written, its entries zero, mapped. An index that cannot be made is not: sp->idx.b stays
 * NULL, the segment goes on without one, and nothing is reported (docs/FORMAT.md, "The
 * segment index"). */
static void idx_allocate(filering_writer *w, struct spare *sp)
{
	struct widx *x = &sp->idx;
	size_t len = IDX_HDR + 8 * (size_t)idx_entries(w->segment_size, IDX_BLOCK);
	int fd;

	x->b = NULL;
	if (w->segment_size < IDX_MIN_SEGMENT)
		return;
	while (w->nfree > 0) {
		*x = w->ifree[--w->nfree];
		if (x->len == len) {
			memset(x->b + IDX_HDR, 0, len - IDX_HDR);
			idx_put_header(x->b, sp->num, w->segment_size, IDX_BLOCK);
			return;
		}
		idx_discard(w, x, x->tmp);
	}
	snprintf(x->tmp, sizeof x->tmp, "%s.idx", sp->tmp);
	fd = open_in(w->dirfd, x->tmp, O_RDWR | O_CREAT | O_EXCL, w->file_mode, NULL);
	if (fd < 0)
		return;
	wchown(w, fd, x->tmp);
	if (reserve(fd, len) == 0)
		x->b = map_file(fd, len, 1, 0, NULL);
	close(fd);
	if (!x->b) {
		unlinkat(w->dirfd, x->tmp, 0);
		return;
	}
	x->len = len;
	idx_put_header(x->b, sp->num, w->segment_size, IDX_BLOCK);
}

/* allocate creates, allocates and maps the file for segment num under a temporary name
 * ".NAME<suffix>-RANDOM", and its index when the segments are large enough for one. */
static int allocate(filering_writer *w, uint64_t num, const char *suffix, struct spare *sp)
{
	struct stat st;
	char base[48];
	int fd, r = 0, huge = 0;

	seg_name(base, sizeof base, num, suffix);
	tmp_name(sp->tmp, sizeof sp->tmp, base);
	fd = open_in(w->dirfd, sp->tmp, O_RDWR | O_CREAT | O_EXCL, w->file_mode, &st);
	if (fd < 0)
		return fd == FILERING_ENOTREG ? -EEXIST : fd;
	sp->dev = st.st_dev;
	sp->ino = st.st_ino;
	wchown(w, fd, sp->tmp);
	sp->b = NULL;
	sp->leased = 0;
	if (w->hp && w->segment_size % w->hp == 0) {
		/* Allocate one small page per huge page and map: the kernel then builds each
		 * huge page from one small page and zeros, instead of copying 512 of them. The
		 * full allocation below fills whatever it did not; nothing is written before. */
		uint64_t off;
		if (ftruncate(fd, (off_t)w->segment_size) == 0) {
			for (off = 0; off < w->segment_size; off += w->hp)
				if (fallocate(fd, 0, (off_t)off, 4096) != 0)
					break;
			sp->b = map_file(fd, w->segment_size, 1, w->hp, &huge);
		}
	}
	r = reserve(fd, w->segment_size);
	if (r == 0 && sp->b && !huge)
		madvise(sp->b, (size_t)w->segment_size, 23 /* MADV_POPULATE_WRITE: fault in now */);
	if (r == 0 && !sp->b && !(sp->b = map_file(fd, w->segment_size, 1, 0, NULL)))
		r = -errno;
	if (r != 0) {
		if (sp->b)
			munmap(sp->b, (size_t)w->segment_size);
		close(fd);
		unlinkat(w->dirfd, sp->tmp, 0);
		return r;
	}
	sp->fd = fd;
	sp->num = num;
	idx_allocate(w, sp);
	return 0;
}

/* map_segment maps a kept file for writing, faulted in at once, on a huge page boundary
 * when its size is a multiple of the huge page size. It does not collapse it
 * (MADV_COLLAPSE, which drains every CPU's page lists and waits for them, the most
 * costly part of a roll otherwise): the file's pages are what they were when it was
 * allocated, huge pages where allocate could collapse them, and a fault maps a huge page
 * of the file whole. */
static unsigned char *map_segment(filering_writer *w, int fd)
{
	unsigned char *b = map_file(fd, w->segment_size, 1, w->hp, NULL);

	if (b && w->hp && w->segment_size % w->hp == 0)
		madvise(b, (size_t)w->segment_size, 23 /* MADV_POPULATE_WRITE: fault in now */);
	return b;
}

/* seg_reuse readies the oldest kept file for segment num in sp ("Reusing a segment
 * file", steps 2 and 4): it takes a write lease on the file's descriptor, the only one
 * the writer holds of it (a mapping made from that descriptor is the same open file
 * description), which Linux grants only when no other process holds the file open or
 * mapped; a process that opens it while the lease is held sends the writer SIGURG
 * (F_SETSIG), ignored by default, and a non-blocking open fails with EWOULDBLOCK. It maps
 * the file, then checks that the lease is still held. sp then holds the leased file and
 * an index, for install to give the segment its header and name and release the lease.
 * Returns 0, or -1 when there is no kept file or the lease is refused, unavailable
 * (EAGAIN, EACCES, EINVAL, ENOLCK...) or broken: the file is then unlinked, nothing is
 * reported, and the caller makes a new segment the old way. Leases unavailable
 * (EINVAL, EACCES, EPERM, ENOLCK, ENOSYS) turn reuse off for the writer: no file is kept
 * any more. */
static int seg_reuse(filering_writer *w, uint64_t num, struct spare *sp)
{
	struct kept k;

	if (w->nkept == 0)
		return -1;
	k = w->kept[0];
	w->nkept--;
	memmove(w->kept, w->kept + 1, w->nkept * sizeof *w->kept);
	if (fcntl(k.fd, F_SETSIG, SIGURG) != 0 || fcntl(k.fd, F_SETLEASE, F_WRLCK) != 0) {
		/* EAGAIN: another process has the file open. These: no leases for this writer's
		 * files here, now or later. */
		if (errno == EINVAL || errno == EACCES || errno == EPERM || errno == ENOLCK || errno == ENOSYS) {
			w->no_lease = 1;
			kept_free_all(w);
		}
		goto refused;
	}
	if (!k.b && !(k.b = map_segment(w, k.fd)))
		goto refused;
	if (reuse_hook)
		reuse_hook(w, &k);
	if (fcntl(k.fd, F_GETLEASE) != F_WRLCK)
		goto refused;
	sp->num = num;
	sp->fd = k.fd;
	sp->dev = k.dev;
	sp->ino = k.ino;
	sp->b = k.b;
	sp->leased = 1;
	memcpy(sp->tmp, k.tmp, sizeof sp->tmp);
	idx_allocate(w, sp);
	return 0;
refused:
	kept_unlink(w, &k);
	return -1;
}

/* install writes the header of a segment made ready in sp (a new file, or a kept one
 * under a lease) and renames it into place, its index first (an index that cannot be
 * renamed is dropped: the segment goes on without one). The 8 bytes at offset 64, where
 * the first record goes, are zeroed: a kept file holds an old record there. A lease is
 * released only once the file has its new name ("Reusing a segment file", step 5). */
static int install(filering_writer *w, struct spare *sp, uint64_t first, struct hot *h)
{
	char name[32], iname[32];
	int r;

	seg_name(name, sizeof name, sp->num, ".seg");
	seg_name(iname, sizeof iname, sp->num, ".idx");
	put_header(sp->b, w->segment_size, sp->num, first, wall_ns());
	memset(sp->b + HDR, 0, 8);
	if (sp->idx.b && do_rename(w->dirfd, sp->idx.tmp, iname, 1) != 0)
		idx_discard(w, &sp->idx, sp->idx.tmp);
	if ((r = do_rename(w->dirfd, sp->tmp, name, 1)) != 0) {
		wlog(w, "%s/%s: create segment: %s", w->path, name, strerror(-r));
		munmap(sp->b, (size_t)w->segment_size);
		close(sp->fd);
		unlinkat(w->dirfd, sp->tmp, 0);
		idx_discard(w, &sp->idx, iname);
		return r;
	}
	if (sp->leased) {
		fcntl(sp->fd, F_SETLEASE, F_UNLCK);
		sp->leased = 0;
	}
	memset(h, 0, sizeof *h);
	h->num = sp->num;
	h->first = first;
	h->fd = sp->fd;
	h->dev = sp->dev;
	h->ino = sp->ino;
	h->b = sp->b;
	h->off = HDR;
	h->created = mono_ns();
	h->inext = UINT64_MAX;
	if (sp->idx.b) {
		h->idx = sp->idx;
		h->ik = 1;
		h->nk = idx_entries(w->segment_size, IDX_BLOCK);
		h->inext = IDX_BLOCK;
	}
	sp->idx.b = NULL;
	return 0;
}

/* create_segment makes segment num, with first sequence number first, ready to be
 * written: the spare when there is one for it, else a kept file when one can be reused,
 * else a new allocation. When the file system is full it drops the oldest sealed
 * segments, one at a time, to make room. */
static int create_segment(filering_writer *w, uint64_t num, uint64_t first, struct hot *h)
{
	struct spare sp;
	int dropped = 0, r;

	if (num > MAX_NUMBER)
		return FILERING_EEXHAUSTED;
	if (w->have_spare) {
		w->have_spare = 0;
		if (w->spare.num == num && install(w, &w->spare, first, h) == 0)
			return 0;
		if (w->spare.num != num) {
			w->have_spare = 1;
			discard_spare(w);
		}
	}
	for (;;) {
		/* A kept file first: it needs no room. */
		if (seg_reuse(w, num, &sp) == 0)
			return install(w, &sp, first, h);
		if ((r = allocate(w, num, ".new", &sp)) == 0) {
			if (!dropped)
				w->tight = 0; /* room enough without dropping anything */
			return install(w, &sp, first, h);
		}
		if (r != -ENOSPC)
			return r;
		/* Room is short: allocate nothing ahead, give back what is held beyond the
		 * ring, then drop records (the file of a dropped segment is kept, and reused at
		 * once when it can be). */
		w->tight = 1;
		if (free_held(w))
			continue;
		if (!drop_oldest(w))
			return -ENOSPC;
		dropped = 1;
	}
}

static void unmap_hot(filering_writer *w)
{
	if (!w->have_hot)
		return;
	munmap(w->hot.b, (size_t)w->segment_size);
	close(w->hot.fd);
	idx_keep(w, w->hot.num, &w->hot.idx);
	w->have_hot = 0;
}

/* hold_hot is unmap_hot for a hot segment just sealed by a roll: while segment files are
 * reused, its descriptor and mapping are held as they are (struct held), within
 * HOLD_MAX and HOLD_BYTES, for seg_keep to keep when retention removes it. A held file
 * that has no name left (a taker took the segment and removed it) is released here, so
 * that its memory goes back as it would without the writer: one fstat for each held
 * file at each roll. Growing the list allocates, at a roll. */
static void hold_hot(filering_writer *w)
{
	struct stat st;
	struct held *h;
	size_t i;

	if (!w->have_hot)
		return;
	for (i = 0; i < w->nheld;) {
		if (fstat(w->held[i].fd, &st) == 0 && st.st_nlink == 0) {
			held_release(w, &w->held[i]);
			w->held[i] = w->held[--w->nheld];
		} else {
			i++;
		}
	}
	if (!reuse_on() || w->no_lease || w->nheld >= HOLD_MAX ||
	    (w->nheld + 1) * w->segment_size > HOLD_BYTES) {
		unmap_hot(w);
		return;
	}
	if (w->nheld == w->capheld) {
		size_t cap = w->capheld ? 2 * w->capheld : 8;
		struct held *p = (struct held *)realloc(w->held, cap * sizeof *p);
		if (!p) {
			unmap_hot(w);
			return;
		}
		w->held = p;
		w->capheld = cap;
	}
	h = &w->held[w->nheld++];
	h->num = w->hot.num;
	h->fd = w->hot.fd;
	h->dev = w->hot.dev;
	h->ino = w->hot.ino;
	h->b = w->hot.b;
	idx_keep(w, w->hot.num, &w->hot.idx);
	w->have_hot = 0;
}

/* idx_store stores, after the record at offset off (the hot segment's record number
 * h->count, counting from 0) was published, the entries it completes: every entry k not
 * stored yet with k * IDX_BLOCK <= off, each with one atomic release store. Called only
 * when off >= h->inext. */
static void idx_store(struct hot *h, uint64_t off)
{
	uint64_t v = off | h->count << 32;

	while (h->inext <= off) {
		store_release(h->idx.b + IDX_HDR + 8 * (h->ik - 1), v);
		h->ik++;
		h->inext = h->ik <= h->nk ? h->ik * IDX_BLOCK : UINT64_MAX;
	}
}

/* seal stores the final committed word, then 1 in the sealed word: a reader that sees
 * the segment sealed sees its final end. */
static void seal(unsigned char *b, uint64_t end)
{
	store_release(b + OFF_COMMITTED, end);
	store_release(b + OFF_SEALED, 1);
}

/* wake makes the wake-up write: the committed word stored through the mapping, then the
 * same 8 bytes written with pwrite, which inotify reports as IN_MODIFY. A failure is
 * ignored: it is only a hint, and readers poll. */
static void wake(filering_writer *w)
{
	unsigned char buf[8];
	ssize_t k;

	w->pending = 0;
	if (!w->have_hot)
		return;
	store_release(w->hot.b + OFF_COMMITTED, w->hot.off);
	st64(buf, w->hot.off);
	do
		k = pwrite(w->hot.fd, buf, 8, OFF_COMMITTED);
	while (k < 0 && errno == EINTR);
}

/* announce arranges the wake-up write for records just appended at monotonic time now. */
static void announce(filering_writer *w, int64_t now)
{
	int quiet = now - w->last_append >= WAKE_QUIET_NS || now < w->last_append;

	w->last_append = now;
	if (quiet) {
		/* The first records after a pause: announced at once. */
		wake(w);
		w->wake_interval = WAKE_MIN_NS;
		w->wake_due = now + w->wake_interval;
	} else if (now >= w->wake_due) {
		/* A burst goes on: announce, and space the next one out further. */
		wake(w);
		w->wake_interval = w->wake_interval * 2 > WAKE_MAX_NS ? WAKE_MAX_NS : w->wake_interval * 2;
		w->wake_due = now + w->wake_interval;
	} else {
		w->pending = 1;
	}
}

/* roll seals the hot segment and starts the next one. On failure nothing changed (the
 * old segment stays hot), unless the new segment was made and only its manifest failed,
 * which is retried later. */
static int roll(filering_writer *w, int64_t now)
{
	struct hot nh;
	struct mentry e;
	int r;

	if (w->hot.count == 0)
		return FILERING_ETOOLARGE; /* an empty segment cannot hold the record */
	if ((r = create_segment(w, w->hot.num + 1, w->next, &nh)) != 0)
		return r;
	seal(w->hot.b, w->hot.off);
	w->man.e[w->man.n - 1].sealed = 1;
	w->man.e[w->man.n - 1].last = w->next - 1;
	hold_hot(w);
	w->hot = nh;
	w->have_hot = 1;
	w->pending = 0; /* the manifest's replacement announces what the old one held */
	memset(&e, 0, sizeof e);
	e.num = nh.num;
	e.first = nh.first;
	if ((r = manifest_push(&w->man, &e)) != 0) {
		w->dirty = 1;
		return r;
	}
	r = write_manifest(w);
	if (r == -ENOSPC) {
		/* The new segment is there and has room: records go on into it, and readers see
		 * them once a later append finds room for the manifest. */
		w->retry_at = now + MANIFEST_RETRY_NS;
		r = 0;
	}
	return r;
}

/* Calibration of the counter: from intervals of 10 ms to 2 s of CLOCK_MONOTONIC (the
 * shorter measure the clock reads more than the counter; the longer would overflow the
 * fixed point below), and a reading no further than 100 ms from the last one. */
#define TICK_CAL_MIN_NS 10000000ll
#define TICK_CAL_MAX_NS 2000000000ll
#define TICK_SPAN_NS 100000000ull

/* fast_mono returns CLOCK_MONOTONIC's time in ns, from the CPU's counter once its rate is
 * measured (within a few microseconds of clock_gettime's), from clock_gettime otherwise. */
static int64_t fast_mono(filering_writer *w)
{
#ifdef TICKS_SOURCE
	uint64_t t0, t1, t, d, mult;
	int64_t m, el;

	if (w->tick_mult != 0) {
		d = read_ticks() - w->tick0; /* a counter that went back wraps to a large d */
		if (d < w->tick_span)
			return w->tick_mono + (int64_t)((d * w->tick_mult) >> 32);
	}
	if (!ticks_usable())
		return mono_ns();
	t0 = read_ticks();
	m = mono_ns();
	t1 = read_ticks();
	t = t0 + (t1 - t0) / 2;
	el = m - w->tick_mono;
	if (w->tick_mono != 0 && el >= 0 && el < TICK_CAL_MIN_NS && t >= w->tick0 && w->tick_mult == 0)
		return m; /* too soon to measure the rate: keep the anchor */
	if (w->tick_mono != 0 && el >= TICK_CAL_MIN_NS && el <= TICK_CAL_MAX_NS && t > w->tick0) {
		mult = ((uint64_t)el << 32) / (t - w->tick0);
		/* Counters run between 1 MHz and 10 GHz; anything else jumped. */
		if (mult >= (1ull << 32) / 10 && mult <= 1000ull << 32) {
			w->tick_mult = mult;
			w->tick_span = (TICK_SPAN_NS << 32) / mult;
		} else {
			w->tick_mult = 0;
		}
	}
	w->tick0 = t;
	w->tick_mono = m;
	return m;
#else
	(void)w;
	return mono_ns();
#endif
}

/* record_time returns the time of a record appended at monotonic time now: the wall
 * clock read every 100 ms, plus the monotonic time elapsed since. */
static int64_t record_time(filering_writer *w, int64_t now)
{
	if (w->base_mono == 0 || now - w->base_mono >= CLOCK_RESYNC_NS || now < w->base_mono) {
		w->base_mono = now;
		w->base_wall = wall_ns();
	}
	return w->base_wall + (now - w->base_mono);
}

/* due does what appends and polls do before anything else: the manifest a full file
 * system refused, and sealing a segment older than seal_after. */
static int due(filering_writer *w, int64_t now)
{
	int r;

	if (w->dirty && now >= w->retry_at) {
		r = write_manifest(w);
		if (r == -ENOSPC)
			w->retry_at = now + MANIFEST_RETRY_NS;
		else if (r != 0)
			return r;
	}
	if (w->seal_after > 0 && w->hot.count > 0 && now - w->hot.created >= w->seal_after) {
		r = roll(w, now);
		if (r != 0)
			wlog(w, "%s: seal after %lld ns: %s", w->path, (long long)w->seal_after, filering_strerror(r));
	}
	return 0;
}

int filering_append_batch(filering_writer *w, const struct iovec *recs, size_t n, uint64_t *first_seq_out)
{
	uint64_t limit, first, span, off;
	int64_t now, t;
	size_t i;
	int r;

	if (!w || w->closed)
		return FILERING_ECLOSED;
	limit = w->segment_size - HDR - RECHDR;
	for (i = 0; i < n; i++)
		if (recs[i].iov_len > limit)
			return FILERING_ETOOLARGE;
	if (n >= SEQ_LIMIT - w->next)
		return FILERING_EEXHAUSTED;
	now = fast_mono(w);
	if ((w->dirty || w->seal_after > 0) && (r = due(w, now)) != 0)
		return r;
	t = record_time(w, now);
	first = w->next;
	if (first_seq_out)
		*first_seq_out = first;
	for (i = 0; i < n; i++) {
		span = align8(RECHDR + recs[i].iov_len);
		while (w->hot.off + span > w->segment_size) {
			if ((r = roll(w, now)) != 0) {
				if (i > 0)
					announce(w, now);
				return r;
			}
		}
		off = w->hot.off;
		w->hot.off = write_record(w->hot.b, w->segment_size, off, w->next, t, recs[i].iov_base,
		                           recs[i].iov_len);
		if (off >= w->hot.inext)
			idx_store(&w->hot, off);
		w->hot.count++;
		w->next++;
	}
	if (n > 0)
		announce(w, now);
	return 0;
}

int filering_append(filering_writer *w, const void *data, size_t len, uint64_t *seq_out)
{
	struct iovec one;

	one.iov_base = (void *)(uintptr_t)data;
	one.iov_len = len;
	return filering_append_batch(w, &one, 1, seq_out);
}

int filering_writer_flush(filering_writer *w)
{
	if (!w || w->closed)
		return FILERING_ECLOSED;
	if (w->pending)
		wake(w);
	return 0;
}

int filering_writer_poll(filering_writer *w, int *timeout_ms)
{
	int64_t now, wait = -1, d;
	int r;

	if (timeout_ms)
		*timeout_ms = -1;
	if (!w || w->closed)
		return FILERING_ECLOSED;
	if (w->pending)
		wake(w);
	now = mono_ns();
	if ((r = due(w, now)) != 0)
		return r;
	if (w->nkept > 0) {
		/* The next segment goes into a kept file: map it ahead of need (from its own
		 * descriptor, which the lease allows). */
		if (!w->kept[0].b)
			w->kept[0].b = map_segment(w, w->kept[0].fd);
	} else if (!w->tight && !w->have_spare && w->hot.num < MAX_NUMBER) {
		/* The next segment, ahead of need: the next roll then only writes a header. */
		r = allocate(w, w->hot.num + 1, ".spare", &w->spare);
		if (r == 0)
			w->have_spare = 1;
		else if (r == -ENOSPC)
			w->tight = 1;
	}
	if (w->seal_after > 0 && w->hot.count > 0) {
		d = w->hot.created + w->seal_after - now;
		wait = d < 0 ? 0 : d;
	}
	if (w->dirty) {
		d = w->retry_at - now;
		if (d < 0)
			d = 0;
		if (wait < 0 || d < wait)
			wait = d;
	}
	if (timeout_ms && wait >= 0)
		*timeout_ms = wait / 1000000 >= INT_MAX ? INT_MAX : (int)((wait + 999999) / 1000000);
	return 0;
}

/* ---- opening: the lock, the identity, creation and recovery ------------------------------- */

static int take_lock(filering_writer *w, long *holder)
{
	struct flock fl;
	char pid[32];
	unsigned char buf[32];
	ssize_t n, i;
	long p = 0;
	int fd, r;

	if ((r = check_file(w, "lock")) != 0)
		return r;
	fd = open_in(w->dirfd, "lock", O_RDWR | O_CREAT, w->file_mode, NULL);
	if (fd < 0)
		return fd == -ELOOP ? FILERING_EUNSAFE : fd;
	memset(&fl, 0, sizeof fl);
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	if (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
		r = -errno;
		if (r == -EAGAIN || r == -EACCES) {
			n = read_upto(fd, buf, sizeof buf);
			for (i = 0; i < n && buf[i] >= '0' && buf[i] <= '9' && p < (1l << 30); i++)
				p = p * 10 + (buf[i] - '0');
			if (holder)
				*holder = p;
			r = FILERING_ELOCKED;
		}
		close(fd);
		return r;
	}
	wchown(w, fd, "lock");
	w->lockfd = fd;
	/* The pid only informs: a full file system, which may have no page for it, does
	 * not stop the producer. */
	snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) != 0 || (r = write_all(fd, pid, strlen(pid), 0)) != 0)
		wlog(w, "%s/lock: write pid: %s", w->path, strerror(errno));
	return 0;
}

static int new_id(filering_writer *w)
{
	unsigned char r[16];
	char text[34];
	int e;

	if ((e = random_bytes(r, sizeof r)) != 0)
		return e;
	hex_encode(w->id, r, sizeof r);
	snprintf(text, sizeof text, "%s\n", w->id);
	if ((e = replace_file(w, "id", text, 33)) != 0)
		wlog(w, "%s/id: write ring identity: %s", w->path, strerror(-e));
	return e;
}

/* ensure_id reads the ring's identity, or gives the ring one when it has none. One that
 * is there but malformed is an error: replacing it would make the ring another one for
 * everyone who knew it. */
static int ensure_id(filering_writer *w)
{
	unsigned char buf[40];
	ssize_t n;
	int fd, i;

	fd = open_in(w->dirfd, "id", O_RDONLY, 0, NULL);
	if (fd == -ENOENT)
		return new_id(w);
	if (fd < 0)
		return fd == FILERING_ENOTREG || fd == -ELOOP ? FILERING_EID : fd;
	n = read_upto(fd, buf, 34);
	close(fd);
	if (n < 0)
		return (int)n;
	for (i = 0; i < 32 && n == 33 && buf[32] == '\n'; i++)
		if (!((buf[i] >= '0' && buf[i] <= '9') || (buf[i] >= 'a' && buf[i] <= 'f')))
			break;
	if (i != 32) {
		wlog(w, "%s/id: bad ring identity: want 32 lowercase hexadecimal digits and a newline; remove it to give the ring a new identity", w->path);
		return FILERING_EID;
	}
	memcpy(w->id, buf, 32);
	w->id[32] = 0;
	return 0;
}

static int any_segment(void *arg, const char *name)
{
	(void)arg;
	return parse_name(name, strlen(name), ".seg") ? 1 : 0;
}

/* create starts a new ring: the identity, then an empty manifest, so that a segment file
 * never exists without one. */
static int create_ring(filering_writer *w, const filering_options *opt)
{
	int r = for_names(w->dirfd, any_segment, NULL);

	if (r < 0)
		return r;
	if (r > 0) {
		wlog(w, "%s holds segments but no manifest; remove the directory to start a new ring", w->path);
		return FILERING_EORPHANED;
	}
	w->segment_size = opt->segment_size ? opt->segment_size : FILERING_DEFAULT_SEGMENT_SIZE;
	if (!w->segments)
		w->segments = FILERING_DEFAULT_SEGMENTS;
	/* A new ring gets a new identity, even where a removed ring left one. */
	if (unlinkat(w->dirfd, "id", 0) != 0 && errno != ENOENT)
		return -errno;
	if ((r = new_id(w)) != 0)
		return r;
	w->man.version = 1;
	w->man.segment_size = w->segment_size;
	w->man.segments_max = w->segments;
	w->man.generation = 0;
	w->man.n = 0;
	w->next = 1;
	return write_manifest(w);
}

/* retention settles how many segments an existing ring keeps: what its manifest says
 * unless the caller asked for another number, never more than a producer may list. */
static void retention(filering_writer *w)
{
	uint64_t old = w->man.segments_max;
	size_t over;
	const struct mentry *a, *b;

	if (w->segments == 0 && old > FILERING_MAX_SEGMENTS) {
		w->segments = FILERING_MAX_SEGMENTS;
		wlog(w, "%s: the ring retains %llu segments, more than the %u a manifest can list; keeping %u", w->path,
		     (unsigned long long)old, FILERING_MAX_SEGMENTS, FILERING_MAX_SEGMENTS);
	} else if (w->segments == 0) {
		w->segments = (uint32_t)old;
		return;
	} else if (w->segments >= old) {
		return;
	} else {
		wlog(w, "%s: retention lowered from %llu to %u segments", w->path, (unsigned long long)old, w->segments);
	}
	/* The new hot segment will take one place. */
	if (w->man.n + 1 <= w->segments)
		return;
	over = w->man.n + 1 - w->segments;
	a = &w->man.e[0];
	b = &w->man.e[(over < w->man.n ? over : w->man.n) - 1];
	if (b->sealed)
		wlog(w, "%s: dropping the %lu oldest segments (%016llu.seg to %016llu.seg), records %llu to %llu", w->path,
		     (unsigned long)over, (unsigned long long)a->num, (unsigned long long)b->num,
		     (unsigned long long)a->first, (unsigned long long)b->last);
	else
		wlog(w, "%s: dropping the %lu oldest segments (%016llu.seg to %016llu.seg), records from %llu", w->path,
		     (unsigned long)over, (unsigned long long)a->num, (unsigned long long)b->num,
		     (unsigned long long)a->first);
}

/* claimed_end finds the last sequence number of segment num (entry e) in N.taken or
 * N.damaged, where a taker holds it. */
static int claimed_end(filering_writer *w, const struct mentry *e, uint64_t *last)
{
	static const char *const suffixes[] = {".taken", ".damaged"};
	char name[40], why[160];
	struct stat st;
	struct seghdr h;
	struct scanner sc;
	unsigned char *b;
	int64_t off;
	uint64_t n;
	int i, fd, ok;

	for (i = 0; i < 2; i++) {
		seg_name(name, sizeof name, e->num, suffixes[i]);
		if ((fd = open_in(w->dirfd, name, O_RDONLY, 0, &st)) < 0)
			continue;
		if ((uint64_t)st.st_size < w->segment_size ||
		    !(b = map_file(fd, w->segment_size, 0, 0, NULL))) {
			close(fd);
			continue;
		}
		close(fd);
		ok = parse_header(b, &h, &off, why, sizeof why) == 0 && h.number == e->num && h.first == e->first;
		n = 0;
		if (ok && h.size == w->segment_size) {
			memset(&sc, 0, sizeof sc);
			scan_init(&sc, b, w->segment_size, h.first);
			n = scan_valid(&sc);
		}
		munmap(b, (size_t)w->segment_size);
		if (ok) {
			*last = e->first + n - 1;
			return 1;
		}
	}
	return 0;
}

/* next_segment_start finds the sequence number before the first one of segment num+1,
 * created (but not yet listed) before segment num was sealed. */
static int next_segment_start(filering_writer *w, const struct mentry *e, uint64_t *last)
{
	char name[40], why[160];
	unsigned char hdr[HDR];
	struct seghdr h;
	int64_t off;
	int fd;
	ssize_t n;

	seg_name(name, sizeof name, e->num + 1, ".seg");
	if ((fd = open_in(w->dirfd, name, O_RDONLY, 0, NULL)) < 0)
		return 0;
	n = read_upto(fd, hdr, HDR);
	close(fd);
	if (n != HDR || parse_header(hdr, &h, &off, why, sizeof why) != 0 || h.number != e->num + 1 ||
	    h.first < e->first)
		return 0;
	*last = h.first - 1;
	return 1;
}

/* recover_missing_hot handles a hot segment whose file is gone: a taker may have claimed
 * it between its seal and the manifest that would have listed it sealed. */
static void recover_missing_hot(filering_writer *w)
{
	struct mentry *e = &w->man.e[w->man.n - 1];
	uint64_t last = 0;
	int ok = claimed_end(w, e, &last);

	if (!ok)
		ok = next_segment_start(w, e, &last);
	if (ok && last >= e->first) {
		e->sealed = 1;
		e->last = last;
		w->next = last + 1;
		return;
	}
	w->man.n--;
	if (ok) {
		w->next = e->first; /* it held no records */
		return;
	}
	/* Nobody can know how many records it held: skip every number it could have used. */
	w->next = e->first + (w->segment_size - HDR) / RECHDR;
	wlog(w, "%s/%016llu.seg: hot segment missing; continuing at sequence %llu", w->path,
	     (unsigned long long)e->num, (unsigned long long)w->next);
}

/* recover_hot seals or drops the hot segment a dead producer left. */
static int recover_hot(filering_writer *w)
{
	struct mentry *e = &w->man.e[w->man.n - 1];
	char name[32], why[160];
	struct stat st;
	struct seghdr h;
	struct scanner sc;
	unsigned char *b;
	int64_t off;
	uint64_t n;
	int fd, r;

	/* Whatever happens to it, its number is never used again. */
	if (e->num > w->highest)
		w->highest = e->num;
	seg_name(name, sizeof name, e->num, ".seg");
	fd = open_in(w->dirfd, name, O_RDWR, 0, &st);
	if (fd == -ENOENT) {
		recover_missing_hot(w);
		return 0;
	}
	if (fd < 0) {
		wlog(w, "%s/%s: recover: %s", w->path, name, filering_strerror(fd));
		return fd;
	}
	if ((uint64_t)st.st_size < w->segment_size) {
		wlog(w, "%s/%s: recover: file is %lld bytes, want %llu", w->path, name, (long long)st.st_size,
		     (unsigned long long)w->segment_size);
		close(fd);
		return FILERING_ESIZE;
	}
	b = map_file(fd, w->segment_size, 1, 0, NULL);
	if (!b) {
		r = -errno;
		close(fd);
		return r;
	}
	r = parse_header(b, &h, &off, why, sizeof why);
	if (r == 0 && (h.number != e->num || h.first != e->first || h.size != w->segment_size)) {
		snprintf(why, sizeof why, "header says segment %llu, first sequence %llu, size %llu; the manifest says %llu, %llu, %llu",
		         (unsigned long long)h.number, (unsigned long long)h.first, (unsigned long long)h.size,
		         (unsigned long long)e->num, (unsigned long long)e->first, (unsigned long long)w->segment_size);
		r = FILERING_EHEADER;
	}
	if (r != 0) {
		wlog(w, "%s/%s: recover: bad segment header: %s", w->path, name, why);
		munmap(b, (size_t)w->segment_size);
		close(fd);
		return r;
	}
	memset(&sc, 0, sizeof sc);
	scan_init(&sc, b, w->segment_size, h.first);
	n = scan_valid(&sc);
	if (n == 0) {
		/* Dropped from the manifest; its file goes with the leftovers, once the new
		 * manifest is written. */
		w->man.n--;
		w->next = e->first;
	} else {
		seal(b, sc.off);
		e->sealed = 1;
		e->last = e->first + n - 1;
		w->next = e->first + n;
		wlog(w, "%s/%s: recovered %llu records after an unclean stop; next sequence %llu", w->path, name,
		     (unsigned long long)n, (unsigned long long)w->next);
	}
	munmap(b, (size_t)w->segment_size);
	close(fd);
	return 0;
}

/* scan_one learns the highest number a name uses, removes temporary files, and notes
 * segment files and indexes the manifest does not list, to be removed once the new one
 * is written (wunlink_seg removes both names of a number). An index counts for the
 * highest number too: one left by a crash between its rename and its segment's must not
 * meet a new segment of the same number. */
static int scan_one(void *arg, const char *name)
{
	filering_writer *w = (filering_writer *)arg;
	size_t len = strlen(name);
	uint64_t n;

	if ((n = parse_name(name, len, ".taken")) || (n = parse_name(name, len, ".damaged"))) {
		if (n > w->highest)
			w->highest = n;
		return 0;
	}
	if (name[0] == '.')
		return wunlink(w, name);
	if (((n = parse_name(name, len, ".seg")) || (n = parse_name(name, len, ".idx"))) &&
	    manifest_find(&w->man, n) < 0) {
		if (n > w->highest)
			w->highest = n;
		return push_u64(&w->leftovers, &w->nleft, &w->capleft, n);
	}
	return 0;
}

/* recover loads the ring's state, or starts a new ring (docs/FORMAT.md, "Recovery:
 * opening an existing ring"). It never changes a record. */
static int recover(filering_writer *w, const filering_options *opt)
{
	unsigned char *buf = NULL;
	size_t cap = 0;
	char why[256];
	int notreg, r;

	if ((r = for_names(w->dirfd, check_one, w)) != 0)
		return r;
	r = read_manifest(w->dirfd, &w->man, &buf, &cap, &notreg, why, sizeof why);
	free(buf);
	if (r == FILERING_ENORING)
		return create_ring(w, opt);
	if (r != 0) {
		if (r == FILERING_EMANIFEST)
			wlog(w, "%s/manifest: %s%s", w->path, notreg ? "" : "bad manifest: ", why);
		return r;
	}
	if ((r = ensure_id(w)) != 0)
		return r;
	if (opt->segment_size && opt->segment_size != w->man.segment_size) {
		wlog(w, "%s has segments of %llu bytes, asked for %llu", w->path,
		     (unsigned long long)w->man.segment_size, (unsigned long long)opt->segment_size);
		return FILERING_EMISMATCH;
	}
	w->segment_size = w->man.segment_size;
	w->next = manifest_next_seq(&w->man);
	retention(w);
	if (w->man.n > 0 && !w->man.e[w->man.n - 1].sealed && (r = recover_hot(w)) != 0)
		return r;
	return for_names(w->dirfd, scan_one, w);
}

/* start_segment creates the first hot segment after open, numbered after every number
 * the ring ever used, lists it, and then removes the leftovers of a crash. */
static int start_segment(filering_writer *w)
{
	uint64_t num = 1;
	struct mentry e;
	size_t i;
	int r;

	if (w->man.n > 0)
		num = w->man.e[w->man.n - 1].num + 1;
	if (w->highest + 1 > num)
		num = w->highest + 1;
	if (w->next >= SEQ_LIMIT)
		return FILERING_EEXHAUSTED;
	if ((r = create_segment(w, num, w->next, &w->hot)) != 0)
		return r;
	w->have_hot = 1;
	memset(&e, 0, sizeof e);
	e.num = num;
	e.first = w->next;
	if ((r = manifest_push(&w->man, &e)) != 0)
		return r;
	if ((r = write_manifest(w)) != 0)
		return r;
	for (i = 0; i < w->nleft; i++)
		wunlink_seg(w, w->leftovers[i], 0);
	w->nleft = 0;
	return 0;
}

/* make_dir creates the ring directory when it does not exist, with the parents it needs,
 * and gives it, and each parent it creates, the directory mode exactly and the group
 * (gid > 0), so that the group's readers can reach the ring. A parent that existed keeps
 * its own. */
static int make_dir(const char *path, unsigned mode, long gid)
{
	struct stat st;
	char *p, *s;
	int r = 0;

	if (lstat(path, &st) == 0) {
		if (S_ISLNK(st.st_mode))
			return -ELOOP;
		return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
	}
	if (errno != ENOENT)
		return -errno;
	if (!(p = strdup(path)))
		return -ENOMEM;
	for (s = p + 1; r == 0; s++) {
		if (*s != '/' && *s != 0)
			continue;
		char save = *s;
		*s = 0;
		if (mkdir(p, (mode_t)mode) == 0) {
			/* A parent made here: the ring directory itself is set below. */
			if (save && (chmod(p, (mode_t)mode) != 0 ||
			             (gid > 0 && chown(p, (uid_t)-1, (gid_t)gid) != 0)))
				r = -errno;
		} else if (errno != EEXIST) {
			r = -errno;
		}
		*s = save;
		if (!save)
			break;
	}
	free(p);
	if (r == 0 && chmod(path, (mode_t)mode) != 0)
		r = -errno;
	if (r == 0 && gid > 0 && chown(path, (uid_t)-1, (gid_t)gid) != 0)
		r = -errno;
	return r;
}

static uint64_t huge_page_size(void)
{
	char buf[32];
	ssize_t n;
	unsigned long long v = 0;
	int fd = open("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", O_RDONLY | O_CLOEXEC), i;

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	for (i = 0; i < n && buf[i] >= '0' && buf[i] <= '9' && v < (1ull << 31); i++)
		v = v * 10 + (unsigned)(buf[i] - '0');
	if (v == 0 || (v & (v - 1)) || v > (1ull << 30))
		return 0;
	return v;
}

static void writer_free(filering_writer *w)
{
	unmap_hot(w);
	discard_spare(w);
	kept_free_all(w);
	while (w->nheld > 0)
		held_release(w, &w->held[--w->nheld]);
	free(w->held);
	idx_free_all(w, 1);
	free(w->isealed);
	free(w->ifree);
	if (w->lockfd >= 0)
		close(w->lockfd);
	if (w->dirfd >= 0)
		close(w->dirfd);
	manifest_free(&w->man);
	free(w->mbuf);
	free(w->leftovers);
	free(w->path);
	free(w);
}

int filering_writer_open_ex(const char *dir, const filering_options *optp, filering_log_fn log, void *log_arg,
                            long *holder_pid, filering_writer **out)
{
	filering_options opt;
	filering_writer *w;
	struct stat st;
	int r;

	if (out)
		*out = NULL;
	if (holder_pid)
		*holder_pid = 0;
	if (!dir || !*dir || !out)
		return -EINVAL;
	memset(&opt, 0, sizeof opt);
	if (optp)
		opt = *optp;
	if ((opt.segment_size && !valid_segment_size(opt.segment_size)) ||
	    (opt.segments && (opt.segments < FILERING_MIN_SEGMENTS || opt.segments > FILERING_MAX_SEGMENTS)) ||
	    opt.seal_after_ns < 0 || ((opt.dir_mode | opt.file_mode) & 022) || opt.dir_mode > 07777 ||
	    opt.file_mode > 07777)
		return -EINVAL;
	crc_init();
	if (!(w = (filering_writer *)calloc(1, sizeof *w)))
		return -ENOMEM;
	w->dirfd = w->lockfd = -1;
	w->log = log;
	w->log_arg = log_arg;
	w->segments = opt.segments;
	w->seal_after = opt.seal_after_ns;
	w->dir_mode = opt.dir_mode ? opt.dir_mode : FILERING_DEFAULT_DIR_MODE;
	w->file_mode = opt.file_mode ? opt.file_mode : FILERING_DEFAULT_FILE_MODE;
	w->gid = opt.gid > 0 ? (long)opt.gid : 0;
	if (!(w->path = strdup(dir))) {
		free(w);
		return -ENOMEM;
	}
	if ((r = make_dir(dir, w->dir_mode, w->gid)) != 0) {
		if (r == -ELOOP)
			wlog(w, "open ring %s: is a symbolic link; name the real directory", dir);
		goto fail;
	}
	w->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (w->dirfd < 0) {
		r = -errno;
		goto fail;
	}
	if (fstat(w->dirfd, &st) != 0) {
		r = -errno;
		goto fail;
	}
	if ((r = check_safe(w, NULL, &st)) != 0 || (r = take_lock(w, holder_pid)) != 0)
		goto fail;
	w->hp = huge_page_size();
	if ((r = recover(w, &opt)) != 0 || (r = start_segment(w)) != 0)
		goto fail;
	*out = w;
	return 0;
fail:
	writer_free(w);
	return r;
}

int filering_writer_open(const char *dir, const filering_options *opt, filering_writer **out)
{
	return filering_writer_open_ex(dir, opt, NULL, NULL, NULL, out);
}

int filering_writer_close(filering_writer *w)
{
	int r = 0;

	if (!w)
		return 0;
	if (!w->closed && w->have_hot) {
		if (w->hot.count > 0) {
			seal(w->hot.b, w->hot.off);
			w->man.e[w->man.n - 1].sealed = 1;
			w->man.e[w->man.n - 1].last = w->next - 1;
			w->dirty = 1;
		} else if (w->pending) {
			wake(w);
		}
		unmap_hot(w);
		discard_spare(w);
		if (w->dirty)
			r = write_manifest(w);
	}
	w->closed = 1;
	writer_free(w);
	return r;
}

uint64_t filering_writer_next_seq(const filering_writer *w) { return w->next; }
uint64_t filering_writer_lost(const filering_writer *w) { return w->lost; }
size_t filering_writer_max_payload(const filering_writer *w) { return (size_t)(w->segment_size - HDR - RECHDR); }
uint64_t filering_writer_segment_size(const filering_writer *w) { return w->segment_size; }
const char *filering_writer_id(const filering_writer *w) { return w->id; }

int filering_producer_pid(const char *dir, long *pid)
{
	struct flock fl;
	unsigned char buf[32];
	ssize_t n, i;
	long p = 0;
	int dfd, fd;

	if (pid)
		*pid = 0;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	fd = open_in(dfd, "lock", O_RDONLY, 0, NULL);
	close(dfd);
	if (fd < 0)
		return fd;
	memset(&fl, 0, sizeof fl);
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	if (fcntl(fd, F_OFD_GETLK, &fl) != 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	if (fl.l_type == F_UNLCK) {
		close(fd);
		return 0;
	}
	n = read_upto(fd, buf, sizeof buf);
	close(fd);
	for (i = 0; i < n && buf[i] >= '0' && buf[i] <= '9' && p < (1l << 30); i++)
		p = p * 10 + (buf[i] - '0');
	if (pid)
		*pid = p;
	return 1;
}

/* ======================================================================================
 * 5. The reader
 * ==================================================================================== */

/* A listed segment held open. It is mapped only when its records are read. damage is set
 * when the segment has segment-level damage: then nothing of it is read. */
struct seg {
	struct mentry e; /* as listed */
	int fd;          /* -1 when it could not be opened */
	dev_t dev;
	ino_t ino;
	struct seghdr h;
	unsigned char *b; /* read-only mapping, NULL until read */
	uint64_t msize;   /* its size */
	uint64_t kept, next_release; /* pages released behind the reader (see seg_advance) */
	uint64_t ioff, inext; /* where a selection starts reading it, from its index: the offset
	                         and sequence of a checked entry's record; ioff 0: offset 64 */
	int damage;
	int64_t damage_off; /* -1: the file as a whole */
	char why[160];
};

struct filering_reader {
	char *path;
	int dirfd; /* -1 while a follower waits for the directory */
	dev_t dev;
	ino_t ino;
	int follow, born_late;
	filering_selection sel;
	uint64_t size; /* the ring's segment size, from the last manifest */
	unsigned char *mbuf;
	size_t mcap;
	struct manifest m, m2;
	/* the snapshot */
	int started, ended, in_snap, skip_pending;
	struct seg *segs; /* the window being read: at most MAX_OPEN */
	size_t nsegs, capsegs, si;
	int si_open;
	size_t wnext;   /* the entry of r->m where the next window starts (r->m.n: none) */
	struct scanner sc; /* over segs[si], or over cur for a follower */
	uint64_t start, end, seen, filtered, prev, floor;
	int64_t since;
	int filter, last_skip;
	uint64_t *missing;
	size_t nmissing, capmissing;
	/* the follower */
	struct seg cur;
	int have_cur, cur_done, cur_scan, recheck;
	uint64_t next, known;
	int pended, restarted, stash;
	uint64_t pend_from, pend_to, loss_from, loss_to;
	filering_record rec; /* the stashed record */
	int ifd, wd;
	int64_t fast_until, poll_due;
	/* the last error */
	char msg[PATH_MAX + 512];
	char file[32];
	int has_file;
	int64_t err_off;
	const char *kind;
};

/* rerr records the last error: code, the file it is about (NULL for the directory), the
 * offset (-1 for none), and the message after "DIR/FILE: ". Returns code. */
static int rerr(filering_reader *r, int code, const char *file, int64_t off, const char *fmt, ...)
{
	char why[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	r->has_file = file != NULL;
	if (file)
		snprintf(r->file, sizeof r->file, "%s", file);
	r->err_off = off;
	r->kind = filering_kind(code);
	if (file && off >= 0)
		snprintf(r->msg, sizeof r->msg, "%s/%s: corrupt at offset %lld: %s", r->path, file, (long long)off, why);
	else if (file)
		snprintf(r->msg, sizeof r->msg, "%s/%s: %s", r->path, file, why);
	else
		snprintf(r->msg, sizeof r->msg, "%s: %s", r->path, why);
	return code;
}

/* rmanifest reads the manifest into m, reporting what fails. */
static int rmanifest(filering_reader *r, struct manifest *m)
{
	char why[300];
	int notreg, rc;

	rc = read_manifest(r->dirfd, m, &r->mbuf, &r->mcap, &notreg, why, sizeof why);
	if (rc == FILERING_ENORING)
		return rerr(r, rc, NULL, -1, "no ring in this directory (no manifest)");
	if (rc == FILERING_EMANIFEST) {
		rerr(r, rc, "manifest", -1, "%s%s", notreg ? "" : "bad manifest: ", why);
		if (notreg)
			r->kind = "not-regular";
		return rc;
	}
	if (rc < 0)
		return rerr(r, rc, "manifest", -1, "%s", strerror(-rc));
	return 0;
}

static void seg_init(struct seg *s, const struct mentry *e)
{
	memset(s, 0, sizeof *s);
	s->e = *e;
	s->fd = -1;
	s->damage_off = -1;
}

static void seg_close(struct seg *s, uint64_t size)
{
	(void)size;
	if (s->b)
		munmap(s->b, (size_t)s->msize);
	if (s->fd >= 0)
		close(s->fd);
	s->b = NULL;
	s->fd = -1;
}

static void seg_damage(struct seg *s, int code, int64_t off, const char *fmt, ...)
{
	va_list ap;

	s->damage = code;
	s->damage_off = off;
	va_start(ap, fmt);
	vsnprintf(s->why, sizeof s->why, fmt, ap);
	va_end(ap);
}

/* name_moved reports whether name, in the directory dirfd, no longer names the file
 * whose status st is (the fstat of a descriptor opened by that name): the name is gone,
 * or names another file (another device or inode). Looked up without following a
 * symbolic link. A lookup that fails otherwise says nothing: 0. */
static int name_moved(int dirfd, const char *name, const struct stat *st)
{
	struct stat now;

	if (fstatat(dirfd, name, &now, AT_SYMLINK_NOFOLLOW) != 0)
		return errno == ENOENT;
	return now.st_dev != st->st_dev || now.st_ino != st->st_ino;
}

/* seg_open_hook, when set, is called by seg_open right after it opened a segment, with
 * the directory, the name and the descriptor. Only the tests, which include this file,
 * set it: to play a producer that reuses the file between the open and the checks. */
static void (*seg_open_hook)(int dirfd, const char *name, int fd);

/* seg_open opens the listed segment e of a ring whose segments are size bytes and checks
 * it against e, reading only its header (docs/FORMAT.md, reading steps 2 and 3). Returns
 * 0 (with s->damage set when the segment is damaged), 1 when the segment is missing, or
 * -EMFILE, -ENFILE, -ENOMEM: a failure that is not the segment's.
 *
 * Missing is: no file by that name (ENOENT); an open that fails with EAGAIN
 * (EWOULDBLOCK), a file the producer holds a lease on while it reuses it for a new
 * segment; and a file that fails the checks while its name no longer names it, a file
 * the producer reused after the name was looked up (docs/FORMAT.md, "Reusing a segment
 * file"). A file that fails them and still has the name is damaged. */
static int seg_open(int dirfd, const struct mentry *e, uint64_t size, struct seg *s)
{
	char name[32];
	unsigned char hdr[HDR];
	struct stat st;
	ssize_t n;
	int fd;

	seg_init(s, e);
	seg_name(name, sizeof name, e->num, ".seg");
	fd = open_in(dirfd, name, O_RDONLY, 0, &st);
	if (fd == -ENOENT || fd == -EAGAIN || fd == -EWOULDBLOCK)
		return 1;
	if (fd == -EMFILE || fd == -ENFILE || fd == -ENOMEM)
		return fd;
	if (fd == -ELOOP) {
		seg_damage(s, FILERING_ENOTREG, -1, "is a symbolic link");
		return 0;
	}
	if (fd == FILERING_ENOTREG) {
		seg_damage(s, FILERING_ENOTREG, -1, "not a regular file");
		return 0;
	}
	if (fd < 0) {
		seg_damage(s, FILERING_EUNREADABLE, -1, "cannot open: %s", strerror(-fd));
		return 0;
	}
	if (seg_open_hook)
		seg_open_hook(dirfd, name, fd);
	s->fd = fd;
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	if ((uint64_t)st.st_size != size) {
		seg_damage(s, FILERING_ESIZE, -1, "file is %lld bytes, ring segments are %llu", (long long)st.st_size,
		           (unsigned long long)size);
	} else if ((n = read_upto(fd, hdr, HDR)) != (ssize_t)HDR) {
		seg_damage(s, FILERING_EUNREADABLE, -1, "cannot read the header: %s",
		           n < 0 ? strerror((int)-n) : "short read");
	} else {
		s->damage = check_header(hdr, size, e->num, e, &s->h, &s->damage_off, s->why, sizeof s->why);
	}
	if (s->damage && name_moved(dirfd, name, &st)) {
		/* Removed, and its file reused, after the name was looked up: missing. */
		seg_close(s, size);
		seg_init(s, e);
		return 1;
	}
	return 0;
}

/* seg_map maps the segment, once; a file that shrank since it was checked, or a mapping
 * that fails, is damage. */
static int seg_map(struct seg *s, uint64_t size)
{
	struct stat st;

	if (s->b || s->damage)
		return s->damage;
	if (fstat(s->fd, &st) != 0) {
		seg_damage(s, FILERING_EUNREADABLE, -1, "stat: %s", strerror(errno));
		return s->damage;
	}
	if ((uint64_t)st.st_size < size) {
		seg_damage(s, FILERING_ESIZE, -1, "file is now %lld bytes, ring segments are %llu",
		           (long long)st.st_size, (unsigned long long)size);
		return s->damage;
	}
	if (size > SIZE_MAX || !(s->b = map_file(s->fd, size, 0, 0, NULL))) {
		seg_damage(s, FILERING_EUNREADABLE, -1, "cannot map: %s", strerror(errno));
		return s->damage;
	}
	s->msize = size;
	s->kept = 0;
	s->next_release = READ_WINDOW;
	return 0;
}

/* seg_advance tells the segment its reader has reached offset off: the pages of the
 * windows behind it are dropped from the page tables (the file keeps them), so that what
 * a reader holds resident stays bounded by about two windows whatever the segment size.
 * The first window, which holds the header, is kept. */
static void seg_advance(struct seg *s, uint64_t off)
{
	uint64_t w, lo;

	if (off < s->next_release)
		return;
	w = off & ~(uint64_t)(READ_WINDOW - 1);
	lo = s->kept > READ_WINDOW ? s->kept : READ_WINDOW;
	if (w > lo)
		madvise(s->b + lo, (size_t)(w - lo), MADV_DONTNEED);
	if (w > s->kept)
		s->kept = w;
	s->next_release = w + READ_WINDOW;
}

/* seg_release drops every page of the mapping from the page tables, for a segment read
 * for now but kept open. */
static void seg_release(struct seg *s, uint64_t size)
{
	(void)size;
	if (s->b) {
		madvise(s->b, (size_t)s->msize, MADV_DONTNEED);
		s->kept = 0;
		s->next_release = 0;
	}
}

/* cur_next is scan_next with the checks that need the manifest: a segment listed sealed
 * holds exactly first_seq to last_seq. Damage is sticky in sc, at sc->err_off. */
static int cur_next(struct seg *s, struct scanner *sc, int mode)
{
	uint64_t off = sc->off;
	int rc = scan_next(sc, mode);

	if (rc == 1) {
		seg_advance(s, sc->off);
		if (s->e.sealed && s->e.last && sc->seq > s->e.last) {
			snprintf(sc->why, sizeof sc->why, "record sequence %llu above the manifest's last_seq %llu for this sealed segment",
			         (unsigned long long)sc->seq, (unsigned long long)s->e.last);
			return scan_damage(sc, FILERING_ELASTSEQ, off);
		}
	} else if (rc == 0 && sc->done && s->e.sealed && s->e.last && sc->next <= s->e.last) {
		snprintf(sc->why, sizeof sc->why, "records end at sequence %llu, below the manifest's last_seq %llu for this sealed segment",
		         (unsigned long long)(sc->next - 1), (unsigned long long)s->e.last);
		return scan_damage(sc, FILERING_ELASTSEQ, sc->off);
	}
	return rc;
}

/* report_seg records the damage of segment s (segment-level, or sc's record-level when
 * sc is not NULL) as the reader's error, and returns its code. */
static int report_seg(filering_reader *r, const struct seg *s, const struct scanner *sc)
{
	char name[32];

	seg_name(name, sizeof name, s->e.num, ".seg");
	if (sc)
		return rerr(r, sc->err, name, sc->err_off, "%s", sc->why);
	return rerr(r, s->damage, name, s->damage_off, "%s", s->why);
}

/* ---- the segment index: where a selection starts inside a segment ----------------------- */

/* The index of one segment, mapped read-only for one positioning step and unmapped at its
 * end: a reader keeps no index open. */
struct idxmap {
	const unsigned char *b;
	size_t len;
	uint64_t k, block; /* K and B, from its checked header */
};

/* idx_map opens and maps N.idx for segment num of a ring of size-byte segments, as any
 * file of the ring ("Opening a file"), and checks its header and size. Returns 0, or -1
 * when there is no usable index (missing, not a regular file, unreadable, wrong size or
 * header): never an error of the read. */
static int idx_map(int dirfd, uint64_t num, uint64_t size, struct idxmap *x)
{
	char name[32];
	struct stat st;
	void *p;
	int fd;

	seg_name(name, sizeof name, num, ".idx");
	fd = open_in(dirfd, name, O_RDONLY, 0, &st);
	if (fd < 0)
		return -1;
	if (st.st_size < (off_t)(IDX_HDR + 8) || (uint64_t)st.st_size > IDX_MAX_LEN) {
		close(fd);
		return -1;
	}
	x->len = (size_t)st.st_size;
	p = mmap(NULL, x->len, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return -1;
	x->b = (const unsigned char *)p;
	if (!(x->k = idx_parse(x->b, x->len, num, size, &x->block))) {
		munmap(p, x->len);
		return -1;
	}
	return 0;
}

static void idx_unmap(struct idxmap *x) { munmap((void *)(uintptr_t)x->b, x->len); }

/* idx_entry finds, in the index x of the mapped segment s, the entry a read of the record
 * with index i starts at (i = UINT64_MAX: the newest entry) and checks it against the
 * segment ("Using it", steps 2 and 3). Returns 1 with its record's offset and index. */
static int idx_entry(const struct idxmap *x, const struct seg *s, uint64_t size, uint64_t i, uint64_t *off,
                     uint64_t *index)
{
	uint64_t k, e;

	if (!(k = idx_find(x->b, x->k, i, &e)) || !idx_check(s->b, size, s->h.first, k, x->block, e))
		return 0;
	*off = e & 0xffffffffu;
	*index = e >> 32;
	return 1;
}

/* idx_scan checks every record of the mapped segment s from offset off (index index) to
 * its end as delivery will (for a segment listed sealed: to its committed word, the last
 * one last_seq). Returns 1 when all pass, with the newest one's sequence in *newest; 0 at
 * damage. */
static int idx_scan(struct seg *s, uint64_t size, uint64_t off, uint64_t index, uint64_t *newest)
{
	struct scanner sc;
	int rc;

	memset(&sc, 0, sizeof sc);
	scan_init(&sc, s->b, size, s->h.first);
	scan_from(&sc, off, index);
	while ((rc = cur_next(s, &sc, SCAN_CHECK)) == 1)
		;
	*newest = sc.next - 1;
	return rc == 0;
}

/* idx_count finds, through its index, where the need newest records of s from sequence
 * start on begin, when s holds that many (docs/FORMAT.md, "Using it" and "Damage and the
 * index"): a segment listed sealed holds first_seq to last_seq; for the hot one, the
 * newest entry's index plus the records from it on. It checks every record from the entry
 * the read starts at to the end of the segment and sets s->ioff and s->inext for delivery.
 * Returns 1 with the newest record's sequence in *newest; 0 when the index cannot tell
 * (none, one that fails a check, damage after its entry, fewer records than need): then
 * the segment is counted from offset 64, as without an index. */
static int idx_count(filering_reader *r, struct seg *s, uint64_t start, uint64_t need, uint64_t *newest)
{
	struct idxmap x;
	uint64_t first, from, last, off, index;
	int ok = 0;

	if (s->damage)
		return 0;
	first = s->h.first;
	from = first > start ? first : start;
	last = s->e.last;
	if (s->e.sealed && (last < from || last - from + 1 < need))
		return 0; /* the read starts in an older segment */
	if (seg_map(s, r->size) != 0 || idx_map(r->dirfd, s->e.num, r->size, &x) != 0)
		return 0;
	if (!s->e.sealed && (!idx_entry(&x, s, r->size, UINT64_MAX, &off, &index) ||
	                     !idx_scan(s, r->size, off, index, &last) || last < from || last - from + 1 < need))
		goto out; /* no index, damage after its newest entry, or too few records */
	if (!idx_entry(&x, s, r->size, last - need + 1 - first, &off, &index) ||
	    !idx_scan(s, r->size, off, index, newest) || *newest < last)
		goto out;
	s->ioff = off;
	s->inext = first + index;
	ok = 1;
out:
	idx_unmap(&x);
	seg_release(s, r->size);
	return ok;
}

/* idx_seek finds, through its index, where a read of the mapped segment s from sequence
 * r->start on may start, and sets s->ioff and s->inext (left 0 when the index cannot
 * tell). Records are delivered as they are read, so damage after the entry is met as
 * from offset 64. */
static void idx_seek(filering_reader *r, struct seg *s)
{
	struct idxmap x;
	uint64_t off, index;

	if (idx_map(r->dirfd, s->e.num, r->size, &x) != 0)
		return;
	if (idx_entry(&x, s, r->size, r->start - s->h.first, &off, &index)) {
		s->ioff = off;
		s->inext = s->h.first + index;
	}
	idx_unmap(&x);
}

/* ---- snapshots -------------------------------------------------------------------------- */

static void close_segs(filering_reader *r)
{
	size_t i;

	for (i = 0; i < r->nsegs; i++)
		seg_close(&r->segs[i], r->size);
	r->nsegs = 0;
	r->si = 0;
	r->si_open = 0;
}

static int push_seg(filering_reader *r, const struct seg *s)
{
	if (r->nsegs == r->capsegs) {
		size_t cap = r->capsegs ? 2 * r->capsegs : 16;
		struct seg *p = (struct seg *)realloc(r->segs, cap * sizeof *p);
		if (!p)
			return -ENOMEM;
		r->segs = p;
		r->capsegs = cap;
	}
	r->segs[r->nsegs++] = *s;
	return 0;
}

static int push_missing(filering_reader *r, uint64_t num)
{
	return push_u64(&r->missing, &r->nmissing, &r->capmissing, num);
}

/* still_listed reports whether the segments found missing while opening the segments m
 * lists were taken, not retired: the manifest was not replaced since, or still lists
 * them all. It reads the manifest once more (once for the whole set). */
static int still_listed(filering_reader *r, const struct manifest *m)
{
	size_t i;

	if (rmanifest(r, &r->m2) != 0)
		return 0;
	if (r->m2.generation == m->generation)
		return 1;
	for (i = 0; i < r->nmissing; i++)
		if (manifest_find(&r->m2, r->missing[i]) < 0)
			return 0;
	return 1;
}

/* open_set reads the manifest and opens the first window of the listed segments that may
 * hold records from sequence from on: at most max entries, all before reading any, so
 * that the set is consistent; missing ones are left out (and the whole starts over when
 * the producer retired them meanwhile). The entries after it are read later, a window at
 * a time (next_window), so that at most MAX_OPEN segment files are open at once. */
static int open_set(filering_reader *r, uint64_t from, size_t max)
{
	struct seg s;
	size_t i, k;
	int attempt, rc;

	for (attempt = 0;; attempt++) {
		close_segs(r);
		r->nmissing = 0;
		if ((rc = rmanifest(r, &r->m)) != 0)
			return rc;
		r->size = r->m.segment_size;
		for (i = 0, k = 0; i < r->m.n && k < max; i++) {
			if (r->m.e[i].sealed && r->m.e[i].last < from)
				continue;
			k++;
			rc = seg_open(r->dirfd, &r->m.e[i], r->size, &s);
			if (rc == 1)
				rc = push_missing(r, r->m.e[i].num);
			else if (rc == 0 && (rc = push_seg(r, &s)) != 0)
				seg_close(&s, r->size);
			if (rc < 0) {
				close_segs(r);
				return rerr(r, rc, NULL, -1, "open segments: %s", strerror(-rc));
			}
		}
		r->wnext = i;
		if (r->nmissing == 0 || attempt >= MAX_RETRIES || still_listed(r, &r->m))
			return 0;
	}
}

/* next_window closes the window read and opens the next one: the next entries of the
 * manifest the read started with (r->m), at most MAX_OPEN, one fewer while a follower
 * holds a segment open, by name (docs/FORMAT.md, reading step 2). One that is missing is
 * skipped without reading the manifest again: it was taken or retired meanwhile, and
 * names are never reused. Entries that end before the start or begin after the end are
 * not opened. Returns 0, or -EMFILE, -ENFILE, -ENOMEM with nothing open, the window to be
 * opened again at the next call. */
static int next_window(filering_reader *r)
{
	size_t i, k, max = MAX_OPEN;
	const struct mentry *e;
	struct seg s;
	int rc;

	close_segs(r);
	if (r->have_cur && r->cur.fd >= 0)
		max--;
	for (i = r->wnext, k = 0; i < r->m.n && k < max; i++) {
		e = &r->m.e[i];
		if (e->sealed && e->last < r->start)
			continue;
		if (r->end && e->first > r->end) {
			i = r->m.n;
			break;
		}
		k++;
		rc = seg_open(r->dirfd, e, r->size, &s);
		if (rc == 1)
			continue; /* taken or retired since the manifest was read */
		if (rc == 0 && (rc = push_seg(r, &s)) != 0)
			seg_close(&s, r->size);
		if (rc < 0) {
			close_segs(r);
			return rerr(r, rc, NULL, -1, "open segments: %s", strerror(-rc));
		}
	}
	r->wnext = i;
	return 0;
}

/* count_seg reads the records of s from sequence start on, checking each as delivery
 * will (damage ends the count where it ends delivery), and returns how many there are
 * and the newest one's sequence number. The pages it read are released afterwards. */
static uint64_t count_seg(filering_reader *r, struct seg *s, uint64_t start, uint64_t *newest)
{
	struct scanner sc;
	uint64_t n = 0;

	*newest = 0;
	if (seg_map(s, r->size) != 0)
		return 0;
	memset(&sc, 0, sizeof sc);
	scan_init(&sc, s->b, r->size, s->h.first);
	while (cur_next(s, &sc, SCAN_CHECK) == 1) {
		if (sc.seq >= start) {
			n++;
			*newest = sc.seq;
		}
	}
	seg_release(s, r->size);
	return n;
}

/* open_last opens the newest segments holding the last n records from r->start on, and
 * sets where delivery starts and ends. It opens segments newest first until the
 * manifest's counts cover n (a hot segment counting for nothing), all before reading any,
 * but at most MAX_OPEN at once; then it counts the records of each, newest first; when
 * damage leaves the count short, or MAX_OPEN were not enough, it opens older segments
 * and counts on, closing first those counted when MAX_OPEN are open: delivery opens
 * those again by name, a window at a time after the ones still open (r->wnext). Records
 * of one segment have consecutive sequence numbers, so where the n-th newest is follows
 * from the counts. */
static int open_last(filering_reader *r, uint64_t n)
{
	uint64_t from = r->start, have, listed, c, newest, k;
	size_t i0, counted, a, b;
	long i;
	struct seg s, t;
	int attempt, rc, found;

	for (attempt = 0;; attempt++) {
		close_segs(r);
		r->nmissing = 0;
		r->start = from;
		r->end = 0;
		if ((rc = rmanifest(r, &r->m)) != 0)
			return rc;
		r->size = r->m.segment_size;
		for (i0 = 0; i0 < r->m.n && r->m.e[i0].sealed && r->m.e[i0].last < r->start; i0++)
			;
		i = (long)r->m.n - 1;
		counted = 0;
		have = 0;
		found = 0;
		while (!found && (counted < r->nsegs || i >= (long)i0)) {
			if (r->nsegs >= MAX_OPEN) {
				close_segs(r); /* all counted: make room */
				counted = 0;
			}
			for (listed = 0; i >= (long)i0 && have + listed < n && r->nsegs < MAX_OPEN; i--) {
				const struct mentry *e = &r->m.e[i];
				int opened;
				rc = seg_open(r->dirfd, e, r->size, &s);
				opened = rc == 0;
				if (rc == 1)
					rc = push_missing(r, e->num);
				else if (rc == 0 && (rc = push_seg(r, &s)) != 0)
					seg_close(&s, r->size);
				if (rc < 0) {
					close_segs(r);
					return rerr(r, rc, NULL, -1, "open segments: %s", strerror(-rc));
				}
				if (opened && !s.damage && e->sealed)
					listed += e->last - (e->first > r->start ? e->first : r->start) + 1;
			}
			for (; counted < r->nsegs && !found; counted++) {
				if (idx_count(r, &r->segs[counted], r->start, n - have, &newest))
					c = n - have; /* where the read starts is known: all that is needed */
				else
					c = count_seg(r, &r->segs[counted], r->start, &newest);
				if (r->end == 0)
					r->end = newest;
				have += c;
				if (have >= n) {
					found = 1;
					k = n - (have - c); /* the records needed from this segment */
					if (newest - k + 1 > r->start)
						r->start = newest - k + 1;
				}
			}
		}
		/* Delivery opens again the entries after the newest segment still open (all that
		 * were counted, when none is). */
		r->wnext = r->nsegs > 0 ? (size_t)manifest_find(&r->m, r->segs[0].e.num) + 1 : (size_t)(i + 1);
		/* Oldest first, as delivery reads them. */
		for (a = 0, b = r->nsegs; a + 1 < b; a++, b--) {
			t = r->segs[a];
			r->segs[a] = r->segs[b - 1];
			r->segs[b - 1] = t;
		}
		if (r->end == 0)
			r->start = SEQ_LIMIT; /* nothing to deliver */
		if (r->nmissing == 0 || attempt >= MAX_RETRIES || still_listed(r, &r->m))
			return 0;
	}
}

/* What keep_last keeps: the sequence numbers of the last n records that pass (a ring of
 * len, growing up to n, pos its oldest once full), and how many passed. */
struct keep {
	uint64_t *seqs, n, total, pos;
	size_t len, cap;
};

/* keep_seg counts the records of s that pass the filters into k. Returns 0 or -ENOMEM. */
static int keep_seg(filering_reader *r, struct seg *s, struct keep *k)
{
	struct scanner sc;

	if (seg_map(s, r->size) != 0)
		return 0;
	memset(&sc, 0, sizeof sc);
	scan_init(&sc, s->b, r->size, s->h.first);
	while (cur_next(s, &sc, SCAN_CHECK) == 1) {
		if (sc.seq < r->start || sc.time < r->since)
			continue;
		if (k->len < k->n) {
			if (k->len == k->cap) {
				size_t nc = k->cap ? 2 * k->cap : 64;
				uint64_t *p;
				if (nc > k->n)
					nc = (size_t)k->n;
				if (!(p = (uint64_t *)realloc(k->seqs, nc * sizeof *p)))
					return -ENOMEM;
				k->seqs = p;
				k->cap = nc;
			}
			k->seqs[k->len++] = sc.seq;
		} else {
			k->seqs[k->pos] = sc.seq;
			k->pos = (k->pos + 1) % k->n;
		}
		k->total++;
	}
	seg_release(s, r->size);
	return 0;
}

/* keep_last handles last combined with since: a first pass counts what passes the
 * filters, keeping the sequence numbers of the last n (memory for at most as many
 * records as are delivered), and raises the start so that only those remain. The pass
 * reads the first window, which stays open for delivery, then the entries after it one
 * at a time, opened by name and closed (open_set left room for one more file). */
static int keep_last(filering_reader *r, uint64_t n)
{
	const struct mentry *e;
	struct keep k;
	struct seg s;
	size_t i;
	int rc = 0;

	memset(&k, 0, sizeof k);
	k.n = n;
	for (i = 0; i < r->nsegs && rc == 0; i++)
		rc = keep_seg(r, &r->segs[i], &k);
	for (i = r->wnext; i < r->m.n && rc == 0; i++) {
		e = &r->m.e[i];
		if (e->sealed && e->last < r->start)
			continue;
		rc = seg_open(r->dirfd, e, r->size, &s);
		if (rc == 1) {
			rc = 0; /* taken or retired meanwhile */
			continue;
		}
		if (rc < 0) {
			free(k.seqs);
			return rerr(r, rc, NULL, -1, "open segments: %s", strerror(-rc));
		}
		rc = keep_seg(r, &s, &k);
		seg_close(&s, r->size);
	}
	if (rc != 0) {
		free(k.seqs);
		return rerr(r, rc, NULL, -1, "%s", strerror(-rc));
	}
	if (k.total == 0) {
		r->start = SEQ_LIMIT;
	} else {
		if (k.total > n && k.seqs[k.pos] > r->start)
			r->start = k.seqs[k.pos];
		r->end = k.seqs[(k.pos + k.len - 1) % k.len];
	}
	free(k.seqs);
	return 0;
}

/* snap_open opens the records the selection picks. It fails only when the ring cannot be
 * read as a whole (no ring, a manifest that is not valid, out of descriptors); damage to
 * a segment is reported when the read reaches it. */
static int snap_open(filering_reader *r)
{
	const filering_selection *sel = &r->sel;
	int rc;

	r->start = sel->from > 1 ? sel->from : 1;
	r->end = 0;
	r->filter = sel->has_since != 0;
	r->since = sel->since_ns;
	r->last_skip = 0;
	r->seen = r->filtered = r->prev = 0;
	if (sel->last > 0 && !r->filter) {
		rc = open_last(r, sel->last);
		r->last_skip = 1; /* counting checked every record before the start */
	} else {
		/* keep_last reads the entries after the first window while it is open */
		rc = open_set(r, sel->from, sel->last > 0 ? MAX_OPEN - 1 : MAX_OPEN);
	}
	if (rc != 0)
		return rc;
	r->floor = manifest_next_seq(&r->m);
	if (r->m.n > 0 && !r->m.e[r->m.n - 1].sealed)
		r->floor = r->m.e[r->m.n - 1].first;
	if (sel->last > 0 && r->filter && (rc = keep_last(r, sel->last)) != 0)
		return rc;
	r->si = 0;
	r->si_open = 0;
	return 0;
}

/* snap_finish is done with the segment being read: it closes it and moves on. */
static void snap_finish(filering_reader *r)
{
	if (r->si < r->nsegs)
		seg_close(&r->segs[r->si], r->size);
	r->si_open = 0;
	r->si++;
}

/* snap_next delivers the next selected record of the snapshot, opening the next window
 * when the read reaches it: FILERING_RECORD, 0 at the end, a damage code (the segment is
 * skipped at the next call: skip_pending), -ENOMEM, or -EMFILE, -ENFILE (the window is
 * opened again at the next call). */
static int snap_next(filering_reader *r, filering_record *rec)
{
	struct seg *s;
	uint64_t off;
	int mode, rc;

	for (;;) {
		if (!r->si_open) {
			if (r->si >= r->nsegs) {
				if (r->wnext >= r->m.n)
					return 0;
				if ((rc = next_window(r)) != 0)
					return rc;
				continue;
			}
			s = &r->segs[r->si];
			if ((s->e.sealed && s->e.last < r->start) || (r->end && s->e.first > r->end)) {
				snap_finish(r); /* outside the selection, damaged or not */
				continue;
			}
			if (s->damage || seg_map(s, r->size) != 0) {
				r->skip_pending = 1;
				return report_seg(r, s, NULL);
			}
			scan_init(&r->sc, s->b, r->size, s->h.first);
			/* A read from a sequence number starts in its first segment at an entry of
			 * the segment's index; a read of the last N where counting found one. */
			if (!s->ioff && !r->last_skip && r->start > s->h.first && r->start < SEQ_LIMIT)
				idx_seek(r, s);
			if (s->ioff)
				scan_from(&r->sc, s->ioff, s->inext - s->h.first);
			r->si_open = 1;
		}
		s = &r->segs[r->si];
		if (r->sc.next >= r->start)
			mode = SCAN_DELIVER;
		else
			mode = r->last_skip && r->start < SEQ_LIMIT ? SCAN_SKIP : SCAN_CHECK;
		off = r->sc.off;
		rc = cur_next(s, &r->sc, mode);
		if (rc == -ENOMEM)
			return rerr(r, rc, NULL, -1, "%s", strerror(ENOMEM));
		if (rc < 0) {
			r->skip_pending = 1;
			return report_seg(r, s, &r->sc);
		}
		if (rc == 0) {
			snap_finish(r);
			continue;
		}
		if (r->sc.seq <= r->prev) {
			snprintf(r->sc.why, sizeof r->sc.why, "record sequence %llu after %llu",
			         (unsigned long long)r->sc.seq, (unsigned long long)r->prev);
			scan_damage(&r->sc, FILERING_ESEQUENCE, off);
			r->skip_pending = 1;
			return report_seg(r, s, &r->sc);
		}
		if (r->end && r->sc.seq > r->end) {
			snap_finish(r);
			r->si = r->nsegs;
			r->wnext = r->m.n;
			return 0;
		}
		r->seen = r->sc.seq;
		if (r->sc.seq < r->start)
			continue;
		if (r->filter && r->sc.time < r->since) {
			r->filtered = r->sc.seq;
			continue;
		}
		r->prev = r->sc.seq;
		rec->seq = r->sc.seq;
		rec->time_ns = r->sc.time;
		rec->data = r->sc.data;
		rec->len = r->sc.len;
		return FILERING_RECORD;
	}
}

/* ---- followers ---------------------------------------------------------------------------- */

static void close_cur(filering_reader *r)
{
	if (r->have_cur)
		seg_close(&r->cur, 0);
	r->have_cur = r->cur_done = r->cur_scan = 0;
}

/* lost notes that the records from r->next to to will never be delivered. */
static void lost(filering_reader *r, uint64_t to)
{
	if (r->next == 0 || to < r->next)
		return;
	if (!r->pended) {
		r->pended = 1;
		r->pend_from = r->next;
	}
	r->pend_to = to;
	r->next = to + 1;
}

/* emit_loss hands the loss learnt so far to the caller. */
static int emit_loss(filering_reader *r)
{
	r->loss_from = r->pend_from;
	r->loss_to = r->pend_to;
	r->pended = 0;
	return FILERING_LOSS;
}

/* deliver makes rec the follower's next record, reporting first any loss before it and
 * a restart of the ring: the record then waits in r->rec (the stash) for the next call. */
static int deliver(filering_reader *r, filering_record *rec)
{
	if (r->next && rec->seq > r->next)
		lost(r, rec->seq - 1);
	r->next = rec->seq + 1;
	if (r->next > r->known)
		r->known = r->next;
	if (r->pended) {
		r->rec = *rec;
		r->stash = 1;
		return emit_loss(r);
	}
	if (r->restarted) {
		r->restarted = 0;
		r->rec = *rec;
		r->stash = 1;
		return FILERING_RESTART;
	}
	return FILERING_RECORD;
}

/* end_snapshot moves from the snapshot to following: the next record expected is the
 * one after what the snapshot scanned, or, when nothing was expected, the ring's next. */
static void end_snapshot(filering_reader *r)
{
	if (r->seen > 0 && r->seen + 1 > r->next)
		r->next = r->seen + 1;
	if (r->next == 0)
		r->next = r->floor > 1 ? r->floor : 1;
	if (r->floor > r->known)
		r->known = r->floor;
	if (r->seen + 1 > r->known)
		r->known = r->seen + 1;
	close_segs(r);
	r->in_snap = 0;
}

/* skip_damaged moves past the segment a damage report was about. A follower keeps it as
 * its current segment, done with, so that it knows it when the manifest lists it again
 * and reports its records as lost. */
static void skip_damaged(filering_reader *r)
{
	struct seg *s;

	r->skip_pending = 0;
	if (!r->in_snap || r->si >= r->nsegs) {
		if (!r->follow && r->si < r->nsegs)
			snap_finish(r);
		return;
	}
	if (r->follow) {
		s = &r->segs[r->si];
		if (r->next == 0)
			r->next = s->e.first; /* its records are lost: none were expected before */
		close_cur(r);
		r->cur = *s;
		r->have_cur = r->cur_done = 1;
		seg_release(&r->cur, 0);
		s->fd = -1;
		s->b = NULL;
	}
	snap_finish(r);
}

/* fol_read delivers the next record of the current segment, if there is one now. */
static int fol_read(filering_reader *r, filering_record *rec)
{
	int rc;

	if (!r->cur_scan) {
		if (seg_map(&r->cur, r->size) != 0) {
			r->cur_done = 1;
			return report_seg(r, &r->cur, NULL);
		}
		scan_init(&r->sc, r->cur.b, r->cur.msize, r->cur.h.first);
		r->cur_scan = 1;
	}
	/* Records before the next one expected were delivered or passed over already. */
	while (r->sc.next < r->next && cur_next(&r->cur, &r->sc, SCAN_SKIP) == 1)
		;
	rc = r->sc.next < r->next ? cur_next(&r->cur, &r->sc, SCAN_SKIP) : cur_next(&r->cur, &r->sc, SCAN_DELIVER);
	if (rc == 1 && r->sc.seq >= r->next) {
		rec->seq = r->sc.seq;
		rec->time_ns = r->sc.time;
		rec->data = r->sc.data;
		rec->len = r->sc.len;
		return deliver(r, rec);
	}
	if (rc == -ENOMEM)
		return rerr(r, rc, NULL, -1, "%s", strerror(ENOMEM));
	if (rc < 0) {
		r->cur_done = 1;
		seg_release(&r->cur, 0);
		return report_seg(r, &r->cur, &r->sc);
	}
	if (r->sc.next > r->known)
		r->known = r->sc.next;
	if (r->sc.done) {
		r->cur_done = 1;
		seg_release(&r->cur, 0);
	}
	return 0;
}

/* is_cur reports whether e lists the segment the follower holds. */
static int is_cur(filering_reader *r, const struct mentry *e)
{
	char name[32];
	struct stat st;

	if (!r->have_cur || e->num != r->cur.e.num)
		return 0;
	if (r->cur.fd < 0)
		return 1;
	seg_name(name, sizeof name, e->num, ".seg");
	return fstatat(r->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == r->cur.dev &&
	       st.st_ino == r->cur.ino;
}

/* anew reports whether the ring of manifest m was created anew: its next sequence number
 * is below what the follower saw it reach. The hot segment is scanned for that only
 * when its first sequence is below what the follower saw and it is not the current one. */
static int anew(filering_reader *r, const struct manifest *m)
{
	const struct mentry *hot = m->n > 0 && !m->e[m->n - 1].sealed ? &m->e[m->n - 1] : NULL;
	struct scanner sc;
	struct seg s;
	int result = 0;

	if (!hot)
		return manifest_next_seq(m) < r->known;
	if (hot->first >= r->known || is_cur(r, hot))
		return 0;
	if (seg_open(r->dirfd, hot, m->segment_size, &s) != 0)
		return 0; /* gone, or out of descriptors: cannot tell now */
	if (!s.damage && seg_map(&s, m->segment_size) == 0) {
		memset(&sc, 0, sizeof sc);
		scan_init(&sc, s.b, m->segment_size, s.h.first);
		while (sc.next < r->known && cur_next(&s, &sc, SCAN_SKIP) == 1)
			;
		result = sc.next < r->known;
	}
	seg_close(&s, 0);
	return result;
}

static void start_over(filering_reader *r)
{
	close_cur(r);
	r->next = 1;
	r->known = 0;
	r->pended = 0;
	r->restarted = 1;
}

/* no_inotify makes followers poll as they do where inotify is unavailable. Only the
 * tests, which include this file, set it. */
static int no_inotify;

static void watch_dir(filering_reader *r)
{
	if (no_inotify)
		return;
	if (r->ifd < 0) {
		r->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		if (r->ifd < 0)
			return;
	}
	if (r->wd >= 0)
		inotify_rm_watch(r->ifd, r->wd);
	r->wd = inotify_add_watch(r->ifd, r->path,
	                          IN_MODIFY | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_DELETE_SELF |
	                              IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW);
}

static int open_dir(filering_reader *r)
{
	struct stat st;
	int fd = open(r->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) != 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	if (r->dirfd >= 0)
		close(r->dirfd);
	r->dirfd = fd;
	r->dev = st.st_dev;
	r->ino = st.st_ino;
	if (r->follow)
		watch_dir(r);
	return 0;
}

/* replaced reports whether the ring's path now names another directory than the one the
 * follower has open: the ring was removed and created again. */
static int replaced(filering_reader *r)
{
	struct stat st;

	if (stat(r->path, &st) != 0)
		return 0;
	return st.st_ino != r->ino || st.st_dev != r->dev;
}

/* advance reads the manifest and opens the segment that holds the next record expected,
 * or the first one after it (the records in between are lost), noting as lost the
 * records of listed segments found gone. Returns 1 when there is something to read now,
 * 0 when not, or an error. It starts over when the ring was created anew. */
static int advance(filering_reader *r)
{
	struct manifest *m = &r->m;
	const struct mentry *e;
	struct seg s;
	size_t i;
	int rc;

	if (replaced(r) && open_dir(r) == 0)
		start_over(r);
	rc = rmanifest(r, m);
	if (rc == FILERING_ENORING)
		return 0;
	if (rc != 0)
		return rc;
	r->size = m->segment_size;
	if (r->have_cur && !r->cur_done && r->cur.b && load_acquire(r->cur.b + OFF_SEALED) == 1)
		return 1; /* sealed before a newer one is listed: read it to its end first */
	if (anew(r, m))
		start_over(r);
	if (manifest_next_seq(m) > r->known)
		r->known = manifest_next_seq(m);
	if (m->n > 0 && !m->e[m->n - 1].sealed && m->e[m->n - 1].first > r->known)
		r->known = m->e[m->n - 1].first;
	for (i = 0; i < m->n; i++) {
		e = &m->e[i];
		if (e->sealed && e->last < r->next)
			continue;
		if (is_cur(r, e)) {
			r->cur.e = *e;
			if (!r->cur_done || !e->sealed)
				return 0; /* reading it, or waiting for a damaged hot one to be sealed */
			lost(r, e->last);
			continue;
		}
		lost(r, e->first - 1);
		rc = seg_open(r->dirfd, e, m->segment_size, &s);
		if (rc == 1) {
			if (!e->sealed)
				return 0; /* the hot segment's file is gone: wait for the manifest */
			lost(r, e->last); /* taken or retired */
			continue;
		}
		if (rc < 0)
			return rerr(r, rc, NULL, -1, "open segment: %s", strerror(-rc));
		close_cur(r);
		r->cur = s;
		r->have_cur = 1;
		if (s.damage) {
			r->cur_done = 1;
			return report_seg(r, &r->cur, NULL);
		}
		return 1;
	}
	return 0;
}

/* fol_wait waits for an inotify event, the poll timer or the deadline (mono ns, -1 for
 * none). Returns 0 or -EINTR. */
static int fol_wait(filering_reader *r, int64_t deadline)
{
	unsigned char buf[4096] __attribute__((aligned(8)));
	struct pollfd pfd;
	const struct inotify_event *ev;
	int64_t now = mono_ns(), t = r->poll_due - now;
	ssize_t n, k;
	int rc, watching = r->ifd >= 0 && r->wd >= 0;

	if (deadline >= 0 && deadline - now < t)
		t = deadline - now;
	if (t < 0)
		t = 0;
	pfd.fd = r->ifd;
	pfd.events = POLLIN;
	pfd.revents = 0;
	rc = poll(&pfd, watching ? 1 : 0, (int)((t + 999999) / 1000000));
	if (rc < 0)
		return errno == EINTR ? -EINTR : 0;
	if (rc == 0)
		return 0;
	while ((n = read(r->ifd, buf, sizeof buf)) > 0) {
		for (k = 0; k + (ssize_t)sizeof *ev <= n; k += (ssize_t)(sizeof *ev + ev->len)) {
			ev = (const struct inotify_event *)(const void *)(buf + k);
			if (ev->mask & IN_Q_OVERFLOW) {
				r->fast_until = mono_ns() + FAST_POLL_FOR_NS;
				r->recheck = 1;
			}
			if (ev->mask & IN_IGNORED) {
				r->wd = -1; /* the directory is gone: poll fast until it is back */
				r->recheck = 1;
			}
			if (ev->mask & (IN_DELETE | IN_MOVED_FROM | IN_DELETE_SELF | IN_MOVE_SELF))
				r->recheck = 1;
			if (ev->len && strcmp(ev->name, "manifest") == 0)
				r->recheck = 1;
		}
	}
	return 0;
}

static int64_t poll_interval(filering_reader *r)
{
	if (r->ifd >= 0 && r->wd >= 0 && mono_ns() >= r->fast_until)
		return POLL_MS * 1000000ll;
	return FAST_POLL_MS * 1000000ll;
}

/* fol_next is filering_reader_next for a follower. */
static int fol_next(filering_reader *r, filering_record *rec, int timeout_ms)
{
	int64_t deadline = timeout_ms >= 0 ? mono_ns() + (int64_t)timeout_ms * 1000000 : -1, now;
	int rc;

	if (r->stash) {
		if (r->restarted) {
			r->restarted = 0;
			return FILERING_RESTART;
		}
		r->stash = 0;
		*rec = r->rec;
		return FILERING_RECORD;
	}
	if (r->skip_pending)
		skip_damaged(r);
	for (;;) {
		now = mono_ns();
		if (r->dirfd < 0) {
			rc = open_dir(r);
			if (rc == 0 && r->born_late && r->sel.last == 0 && !r->sel.has_since && r->sel.from == 0)
				r->sel.from = 1; /* every record the ring ever held is new to this follower */
			if (rc != 0 && rc != -ENOENT)
				return rerr(r, rc, NULL, -1, "open ring: %s", strerror(-rc));
			if (rc != 0) {
				if (deadline >= 0 && now >= deadline)
					return 0;
				r->poll_due = now + FAST_POLL_MS * 1000000ll;
				if ((rc = fol_wait(r, deadline)) != 0)
					return rc;
				continue;
			}
			r->poll_due = now + poll_interval(r);
		}
		if (!r->started) {
			r->next = r->sel.from;
			rc = snap_open(r);
			if (rc == FILERING_ENORING) {
				close_segs(r);
				r->next = r->sel.from > 1 ? r->sel.from : 1;
				r->started = 1;
			} else if (rc != 0) {
				close_segs(r);
				return rc; /* tried again at the next call */
			} else {
				r->started = r->in_snap = 1;
				r->end = 0; /* a follower goes on past the newest record */
			}
		}
		if (r->in_snap) {
			rc = snap_next(r, rec);
			if (rc == FILERING_RECORD) {
				if (r->next && r->filtered >= r->next)
					r->next = r->filtered + 1; /* left out by since: not lost */
				return deliver(r, rec);
			}
			if (rc != 0)
				return rc;
			end_snapshot(r);
			continue;
		}
		if (r->have_cur && !r->cur_done && (rc = fol_read(r, rec)) != 0)
			return rc;
		now = mono_ns();
		if (now >= r->poll_due) {
			r->recheck = 1;
			r->poll_due = now + poll_interval(r);
		}
		if (!r->have_cur || r->cur_done || r->recheck) {
			r->recheck = 0;
			rc = advance(r);
			if (rc < 0)
				return rc;
			if (rc > 0)
				continue;
		}
		if (r->pended)
			return emit_loss(r);
		if (deadline >= 0 && now >= deadline)
			return 0;
		if ((rc = fol_wait(r, deadline)) != 0)
			return rc;
	}
}

int filering_reader_next(filering_reader *r, filering_record *rec, int timeout_ms)
{
	int rc;

	if (!r || !rec)
		return -EINVAL;
	if (r->follow)
		return fol_next(r, rec, timeout_ms);
	if (r->ended)
		return 0;
	if (r->skip_pending)
		skip_damaged(r);
	if (!r->started) {
		r->started = 1;
		if ((rc = snap_open(r)) != 0) {
			r->ended = 1;
			close_segs(r);
			return rc;
		}
	}
	rc = snap_next(r, rec);
	if (rc == 0 || (rc < 0 && !filering_is_damage(rc) && rc != -ENOMEM)) {
		r->ended = 1;
		close_segs(r);
	}
	return rc;
}

int filering_reader_open(const char *dir, int flags, const filering_selection *sel, filering_reader **out)
{
	filering_reader *r;
	int rc;

	if (out)
		*out = NULL;
	if (!dir || !*dir || !out || (flags & ~FILERING_FOLLOW))
		return -EINVAL;
	crc_init();
	if (!(r = (filering_reader *)calloc(1, sizeof *r)))
		return -ENOMEM;
	r->dirfd = r->ifd = r->wd = -1;
	r->follow = (flags & FILERING_FOLLOW) != 0;
	if (sel)
		r->sel = *sel;
	r->err_off = -1;
	if (!(r->path = strdup(dir))) {
		free(r);
		return -ENOMEM;
	}
	rc = open_dir(r);
	if (rc == -ENOENT && r->follow) {
		r->born_late = 1;
	} else if (rc != 0) {
		filering_reader_close(r);
		return rc;
	}
	*out = r;
	return 0;
}

void filering_reader_loss(const filering_reader *r, uint64_t *from, uint64_t *to)
{
	if (from)
		*from = r->loss_from;
	if (to)
		*to = r->loss_to;
}

const char *filering_reader_error(const filering_reader *r) { return r->msg; }
const char *filering_reader_error_file(const filering_reader *r) { return r->has_file ? r->file : NULL; }
int64_t filering_reader_error_offset(const filering_reader *r) { return r->err_off; }
const char *filering_reader_error_kind(const filering_reader *r) { return r->kind; }
int filering_reader_fd(const filering_reader *r) { return r->follow && r->wd >= 0 ? r->ifd : -1; }

void filering_reader_close(filering_reader *r)
{
	if (!r)
		return;
	close_segs(r);
	close_cur(r);
	if (r->ifd >= 0)
		close(r->ifd);
	if (r->dirfd >= 0)
		close(r->dirfd);
	manifest_free(&r->m);
	manifest_free(&r->m2);
	free(r->segs);
	free(r->missing);
	free(r->mbuf);
	free(r->sc.buf);
	free(r->path);
	free(r);
}

/* ======================================================================================
 * 6. Output formats (docs/FORMAT.md, "Output formats of the command-line readers")
 * ==================================================================================== */

size_t filering_format_bound(size_t len, int format)
{
	switch (format) {
	case FILERING_FORMAT_LINES:
		return len < SIZE_MAX ? len + 1 : 0;
	case FILERING_FORMAT_RAW:
		return len <= SIZE_MAX - 4 ? len + 4 : 0;
	case FILERING_FORMAT_JSON:
		/* At most 6 bytes a payload byte (\u00XX; base64 takes fewer), plus the rest. */
		return len <= (SIZE_MAX - 128) / 6 ? 6 * len + 128 : 0;
	}
	return 0;
}

/* put_digits writes the n lowest decimal digits of v, zero-padded. */
static void put_digits(char *p, uint64_t v, int n)
{
	while (n-- > 0) {
		p[n] = (char)('0' + v % 10);
		v /= 10;
	}
}

size_t filering_format_time(int64_t t, char *buf)
{
	int64_t secs = t / 1000000000, ns = t % 1000000000, days, sod, z, era, doe, yoe, y, doy, mp, d, m;

	if (ns < 0) {
		ns += 1000000000;
		secs--;
	}
	days = secs / 86400;
	sod = secs % 86400;
	if (sod < 0) {
		sod += 86400;
		days--;
	}
	/* Civil date from days since 1970-01-01 (H. Hinnant's algorithm). */
	z = days + 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	y = yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	d = doy - (153 * mp + 2) / 5 + 1;
	m = mp < 10 ? mp + 3 : mp - 9;
	if (m <= 2)
		y++;
	put_digits(buf, (uint64_t)y, 4);
	buf[4] = '-';
	put_digits(buf + 5, (uint64_t)m, 2);
	buf[7] = '-';
	put_digits(buf + 8, (uint64_t)d, 2);
	buf[10] = 'T';
	put_digits(buf + 11, (uint64_t)(sod / 3600), 2);
	buf[13] = ':';
	put_digits(buf + 14, (uint64_t)(sod / 60 % 60), 2);
	buf[16] = ':';
	put_digits(buf + 17, (uint64_t)(sod % 60), 2);
	buf[19] = '.';
	put_digits(buf + 20, (uint64_t)ns, 9);
	buf[29] = 'Z';
	buf[30] = 0;
	return 30;
}

static char *put_str(char *p, const char *s)
{
	size_t n = strlen(s);

	memcpy(p, s, n);
	return p + n;
}

size_t filering_format(const filering_record *rec, int format, void *out)
{
	static const char hex[] = "0123456789abcdef";
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *p = (char *)out, num[24];
	const unsigned char *s = rec->data;
	size_t n = rec->len, i;
	unsigned c, v;

	switch (format) {
	case FILERING_FORMAT_LINES:
		if (n)
			memcpy(p, s, n);
		p[n] = '\n';
		return n + 1;
	case FILERING_FORMAT_RAW:
		st32((unsigned char *)p, (uint32_t)n);
		if (n)
			memcpy(p + 4, s, n);
		return n + 4;
	case FILERING_FORMAT_JSON:
		break;
	default:
		return 0;
	}
	p = put_str(p, "{\"seq\":");
	snprintf(num, sizeof num, "%llu", (unsigned long long)rec->seq);
	p = put_str(p, num);
	p = put_str(p, ",\"time\":\"");
	p += filering_format_time(rec->time_ns, p);
	if (filering_utf8_valid(s, n)) {
		p = put_str(p, "\",\"data\":\"");
		for (i = 0; i < n; i++) {
			c = s[i];
			if (c >= 0x20 && c != '"' && c != '\\') {
				*p++ = (char)c;
				continue;
			}
			*p++ = '\\';
			switch (c) {
			case '"': *p++ = '"'; break;
			case '\\': *p++ = '\\'; break;
			case '\n': *p++ = 'n'; break;
			case '\r': *p++ = 'r'; break;
			case '\t': *p++ = 't'; break;
			case '\b': *p++ = 'b'; break;
			case '\f': *p++ = 'f'; break;
			default:
				*p++ = 'u';
				*p++ = '0';
				*p++ = '0';
				*p++ = hex[c >> 4];
				*p++ = hex[c & 15];
			}
		}
	} else {
		p = put_str(p, "\",\"data_b64\":\"");
		for (i = 0; i + 2 < n; i += 3) {
			v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8 | s[i + 2];
			*p++ = b64[v >> 18];
			*p++ = b64[(v >> 12) & 63];
			*p++ = b64[(v >> 6) & 63];
			*p++ = b64[v & 63];
		}
		if (n - i == 1) {
			v = (unsigned)s[i] << 16;
			*p++ = b64[v >> 18];
			*p++ = b64[(v >> 12) & 63];
			*p++ = '=';
			*p++ = '=';
		} else if (n - i == 2) {
			v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8;
			*p++ = b64[v >> 18];
			*p++ = b64[(v >> 12) & 63];
			*p++ = b64[(v >> 6) & 63];
			*p++ = '=';
		}
	}
	p = put_str(p, "\"}\n");
	return (size_t)(p - (char *)out);
}
