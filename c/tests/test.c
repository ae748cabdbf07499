/*
 * The C library's tests: unit tests of its internals (it includes filering.c), of the
 * writer and the reader through the API, and the conformance corpus
 * (testdata/conformance/README.md), through the library (always) and through
 * filering-read (with --binary PATH). It prints one line per test and a closing line
 * "N passed, N failed"; the exit status is 1 when anything failed.
 *
 *     run [--corpus DIR] [--binary PATH-TO-filering-read] [--only SUBSTRING]
 */
#include "../filering.c"

#include <ftw.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "tjson.h"

static const char *cur_test;
static int test_failures, passed, failed;
static const char *corpus_dir, *binary, *only;
static char tmp_root[256];

#define CHECK(c)                                                                                      \
	do {                                                                                          \
		if (!(c)) {                                                                           \
			fprintf(stderr, "%s:%d: %s: check failed: %s\n", __FILE__, __LINE__, cur_test, #c); \
			test_failures++;                                                              \
		}                                                                                     \
	} while (0)

#define CHECK_EQ(a, b)                                                                                    \
	do {                                                                                              \
		long long a_ = (long long)(a), b_ = (long long)(b);                                        \
		if (a_ != b_) {                                                                           \
			fprintf(stderr, "%s:%d: %s: %s == %lld, want %s == %lld\n", __FILE__, __LINE__, cur_test, \
			        #a, a_, #b, b_);                                                          \
			test_failures++;                                                                  \
		}                                                                                         \
	} while (0)

#define CHECK_STR(a, b)                                                                                  \
	do {                                                                                             \
		const char *a_ = (a), *b_ = (b);                                                          \
		if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                                  \
			fprintf(stderr, "%s:%d: %s: %s is \"%s\", want \"%s\"\n", __FILE__, __LINE__, cur_test, #a, \
			        a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                 \
			test_failures++;                                                                 \
		}                                                                                        \
	} while (0)

static void run_test(const char *name, void (*fn)(void))
{
	if (only && !strstr(name, only))
		return;
	cur_test = name;
	test_failures = 0;
	fn();
	if (test_failures) {
		failed++;
		printf("FAIL %s\n", name);
	} else {
		passed++;
		printf("ok   %s\n", name);
	}
	fflush(stdout);
}

/* ---- helpers ---------------------------------------------------------------------------- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP || flag == FTW_D)
		chmod(path, 0700);
	remove(path);
	return 0;
}

static void rm_rf(const char *path)
{
	struct stat st;

	if (lstat(path, &st) != 0)
		return;
	chmod(path, 0700);
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* new_dir makes a fresh directory under the tests' root and returns its path (static
 * storage, one of a few). */
static char *new_dir(void)
{
	static char bufs[8][300];
	static int k;
	static int n;
	char *p = bufs[k++ % 8];

	snprintf(p, 300, "%s/t%d", tmp_root, n++);
	rm_rf(p);
	mkdir(p, 0700);
	return p;
}

/* ring_in returns DIR/ring for a fresh DIR. */
static char *ring_in(void)
{
	static char bufs[8][320];
	static int k;
	char *p = bufs[k++ % 8];

	snprintf(p, 320, "%s/ring", new_dir());
	return p;
}

static unsigned char *read_whole(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *b;
	long n;

	*len = 0;
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	b = (unsigned char *)malloc((size_t)n + 1);
	if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
		free(b);
		b = NULL;
	}
	fclose(f);
	if (b) {
		b[n] = 0;
		*len = (size_t)n;
	}
	return b;
}

static int write_whole(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	int ok;

	if (!f)
		return -1;
	ok = fwrite(p, 1, n, f) == n;
	return fclose(f) == 0 && ok ? 0 : -1;
}

static char logbuf[1 << 16];
static void tlog(void *arg, const char *msg)
{
	size_t n = strlen(logbuf);

	(void)arg;
	snprintf(logbuf + n, sizeof logbuf - n, "%s\n", msg);
}

static filering_options small_opts(uint64_t size, uint32_t segments)
{
	filering_options o;

	memset(&o, 0, sizeof o);
	o.segment_size = size;
	o.segments = segments;
	return o;
}

/* append_n appends records "K" for K from the writer's next sequence on. */
static int append_n(filering_writer *w, int n)
{
	char b[32];
	int i, r, len;

	for (i = 0; i < n; i++) {
		len = snprintf(b, sizeof b, "%llu", (unsigned long long)filering_writer_next_seq(w));
		if ((r = filering_append(w, b, (size_t)len, NULL)) != 0)
			return r;
	}
	return 0;
}

/* snapshot reads the ring at dir with sel and checks that every record holds its own
 * sequence number as text; it returns how many records it read, the first and the last
 * sequence, the number of errors, of records that are wrong or out of order (bad) and of
 * jumps in sequence numbers (gaps). */
struct snapres {
	uint64_t n, first, last;
	int errors, bad, gaps;
	int last_err;
};

/* dec_ok reports whether rec holds its own sequence number as text (append_n). */
static int dec_ok(const filering_record *rec)
{
	char b[32];

	snprintf(b, sizeof b, "%llu", (unsigned long long)rec->seq);
	return rec->len == strlen(b) && memcmp(rec->data, b, rec->len) == 0;
}

/* snapshot_check is snapshot with ok saying whether a record is right. */
static struct snapres snapshot_check(const char *dir, const filering_selection *sel,
                                     int (*ok)(const filering_record *))
{
	struct snapres s;
	filering_reader *r;
	filering_record rec;
	int rc;

	memset(&s, 0, sizeof s);
	if ((rc = filering_reader_open(dir, 0, sel, &r)) != 0) {
		s.errors = 1;
		s.last_err = rc;
		return s;
	}
	while ((rc = filering_reader_next(r, &rec, 0)) != 0) {
		if (rc < 0) {
			s.errors++;
			s.last_err = rc;
			continue;
		}
		if (!ok(&rec) || (s.n && rec.seq <= s.last))
			s.bad++;
		if (s.n && rec.seq > s.last + 1)
			s.gaps++;
		if (!s.n)
			s.first = rec.seq;
		s.last = rec.seq;
		s.n++;
	}
	filering_reader_close(r);
	return s;
}

static struct snapres snapshot(const char *dir, const filering_selection *sel)
{
	return snapshot_check(dir, sel, dec_ok);
}

static int count_names(const char *dir, const char *suffix, int dot);

/* ---- basics ------------------------------------------------------------------------------- */

/* test_writer_clock: record times come from the CPU's counter once its rate is measured
 * (where the kernel keeps time with it): every one lies between the wall clock read
 * before and after its append, across several 100 ms periods and recalibrations. */
static void test_writer_clock(void)
{
	enum { N = 400 };
	static int64_t before[N], after[N];
	char *dir = ring_in();
	filering_options o = small_opts(1 << 20, 4);
	filering_writer *w;
	filering_reader *r;
	filering_record rec;
	struct timespec pause = {0, 1000000};
	const int64_t slack = 100000; /* the wall clock may be slewed by NTP: 500 ppm of 100 ms */
	int i, bad = 0, rc;

	CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
	for (i = 0; i < N; i++) {
		before[i] = wall_ns();
		CHECK_EQ(filering_append(w, "t", 1, NULL), 0);
		after[i] = wall_ns();
		nanosleep(&pause, NULL);
	}
#ifdef TICKS_SOURCE
	if (ticks_usable())
		CHECK(w->tick_mult != 0);
#endif
	CHECK_EQ(filering_writer_close(w), 0);
	CHECK_EQ(filering_reader_open(dir, 0, NULL, &r), 0);
	for (i = 0; (rc = filering_reader_next(r, &rec, 0)) > 0; i++) {
		if (i >= N || rec.seq != (uint64_t)i + 1 || rec.time_ns < before[i] - slack || rec.time_ns > after[i] + slack) {
			if (bad++ < 3)
				fprintf(stderr, "  record %llu: time %lld, appended between %lld and %lld\n",
				        (unsigned long long)rec.seq, (long long)rec.time_ns,
				        (long long)(i < N ? before[i] : 0), (long long)(i < N ? after[i] : 0));
		}
	}
	CHECK_EQ(rc, 0);
	CHECK_EQ(i, N);
	CHECK_EQ(bad, 0);
	filering_reader_close(r);
}

static void test_crc(void)
{
	CHECK_EQ(filering_crc32(0, "123456789", 9), 0xCBF43926u);
	CHECK_EQ(filering_crc32(filering_crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
	CHECK_EQ(filering_crc32(0, "", 0), 0);
	CHECK_EQ(filering_crc32(0, "The quick brown fox jumps over the lazy dog", 43), 0x414FA339u);
	/* The hardware paths, where there is one, agree with the tables at every length and
	 * alignment. */
	{
		static unsigned char b[5000];
		size_t len, off, i;
		uint32_t hw, sw;
		int had = crc_hw;
		for (i = 0; i < sizeof b; i++)
			b[i] = (unsigned char)(i * 131 + (i >> 3));
		/* Every length to 1100 (with PCLMULQDQ: every number of 16-byte blocks alone and
		 * after any number of 64-byte steps, each with every tail of bytes), then lengths
		 * on to 5000, at every alignment. */
		for (off = 0; had && off < 9; off++)
			for (len = 0; len + off <= sizeof b; len += len < 1100 ? 1 : 37) {
				crc_hw = had;
				hw = filering_crc32(0x12345678u, b + off, len);
				crc_hw = 0;
				sw = filering_crc32(0x12345678u, b + off, len);
				if (hw != sw) {
					fprintf(stderr, "%s: crc of %lu bytes at %lu: %08x, tables say %08x\n", cur_test,
					        (unsigned long)len, (unsigned long)off, hw, sw);
					test_failures++;
					off = 9;
					break;
				}
			}
		crc_hw = had;
		printf("     crc: %s\n", had ? "hardware (and tables)" : "tables");
	}
}

static void test_time(void)
{
	char b[31];

	filering_format_time(0, b);
	CHECK_STR(b, "1970-01-01T00:00:00.000000000Z");
	filering_format_time(-1, b);
	CHECK_STR(b, "1969-12-31T23:59:59.999999999Z");
	filering_format_time(INT64_MIN, b);
	CHECK_STR(b, "1677-09-21T00:12:43.145224192Z");
	filering_format_time(INT64_MAX, b);
	CHECK_STR(b, "2262-04-11T23:47:16.854775807Z");
	filering_format_time(951782400000000000ll, b); /* a leap day */
	CHECK_STR(b, "2000-02-29T00:00:00.000000000Z");
	filering_format_time(1796314477012345678ll, b);
	CHECK_STR(b, "2026-12-03T16:14:37.012345678Z");
}

static void test_format(void)
{
	char out[256];
	filering_record r;
	size_t n;

	memset(&r, 0, sizeof r);
	r.seq = 7;
	r.time_ns = 0;
	r.data = (const unsigned char *)"a\"b\\c\n\x01/\x7f";
	r.len = 9;
	n = filering_format(&r, FILERING_FORMAT_JSON, out);
	out[n] = 0;
	CHECK_STR(out, "{\"seq\":7,\"time\":\"1970-01-01T00:00:00.000000000Z\",\"data\":\"a\\\"b\\\\c\\n\\u0001/\x7f\"}\n");
	r.data = (const unsigned char *)"\xff\x00\x01";
	r.len = 3;
	n = filering_format(&r, FILERING_FORMAT_JSON, out);
	out[n] = 0;
	CHECK_STR(out, "{\"seq\":7,\"time\":\"1970-01-01T00:00:00.000000000Z\",\"data_b64\":\"/wAB\"}\n");
	r.len = 1;
	n = filering_format(&r, FILERING_FORMAT_JSON, out);
	out[n] = 0;
	CHECK(strstr(out, "\"data_b64\":\"/w==\"") != NULL);
	r.len = 0;
	n = filering_format(&r, FILERING_FORMAT_JSON, out);
	out[n] = 0;
	CHECK(strstr(out, "\"data\":\"\"}") != NULL);
	r.data = (const unsigned char *)"hi";
	r.len = 2;
	CHECK_EQ(filering_format(&r, FILERING_FORMAT_RAW, out), 6);
	CHECK(memcmp(out, "\x02\x00\x00\x00hi", 6) == 0);
	CHECK_EQ(filering_format(&r, FILERING_FORMAT_LINES, out), 3);
	CHECK(memcmp(out, "hi\n", 3) == 0);
	CHECK(filering_format_bound(10, FILERING_FORMAT_JSON) >= 60 + 128);
	CHECK_EQ(filering_format_bound(SIZE_MAX, FILERING_FORMAT_JSON), 0);
}

static void test_utf8(void)
{
	CHECK(filering_utf8_valid("", 0));
	CHECK(filering_utf8_valid("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 15));
	CHECK(filering_utf8_valid("\xf4\x8f\xbf\xbf", 4));   /* U+10FFFF */
	CHECK(!filering_utf8_valid("\xf4\x90\x80\x80", 4));  /* above U+10FFFF */
	CHECK(!filering_utf8_valid("\xed\xa0\x80", 3));      /* a surrogate */
	CHECK(!filering_utf8_valid("\xc0\x80", 2));          /* overlong */
	CHECK(!filering_utf8_valid("\xe0\x80\x80", 3));      /* overlong */
	CHECK(!filering_utf8_valid("\xf0\x80\x80\x80", 4));  /* overlong */
	CHECK(!filering_utf8_valid("\xe2\x82", 2));          /* truncated */
	CHECK(!filering_utf8_valid("\x80", 1));
	CHECK(!filering_utf8_valid("\xff", 1));
}

static int parse(const char *text, struct manifest *m)
{
	char why[256];

	return manifest_parse((const unsigned char *)text, strlen(text), m, why, sizeof why);
}

static void test_manifest(void)
{
	static const char *const bad[] = {
		"",
		"   ",
		"[]",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":1}",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":1,\"segments\":[],\"x\":1}",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":1,\"generation\":1,\"segments\":[]}",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":-0,\"segments\":[]}",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":1.0,\"segments\":[]}",
		"{\"version\":1,\"segment_size\":4096e0,\"segments_max\":2,\"generation\":1,\"segments\":[]}",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":9223372036854775808,\"segments\":[]}",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":18446744073709551619,\"segments\":[]}",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":07,\"segments\":[]}",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":null,\"segments\":[]}",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":\"7\",\"segments\":[]}",
		"{\"version\":true,\"segment_size\":4096,\"segments_max\":2,\"generation\":1,\"segments\":[]}",
		"{\"version\":2,\"segment_size\":4096,\"segments_max\":2,\"generation\":1,\"segments\":[]}",
		"{\"version\":1,\"segment_size\":4097,\"segments_max\":2,\"generation\":1,\"segments\":[]}",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":1,\"generation\":1,\"segments\":[]}",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":1,\"segments\":null}",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":1,\"segments\":[]}{}",
		"\xef\xbb\xbf{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":1,\"segments\":[]}",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":1,\"segments\":[{\"name\":\"0000000000000001.seg\",\"first_seq\":1,\"last_seq\":0,\"sealed\":1}]}",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":1,\"segments\":[{\"name\":\"0000000000000001.seg\",\"first_seq\":1,\"last_seq\":0}]}",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":1,\"segments\":[{\"name\":\"0000000000000000.seg\",\"first_seq\":1,\"last_seq\":0,\"sealed\":false}]}",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":1,\"segments\":[{\"name\":\"0000000000000001.seg\",\"first_seq\":1,\"last_seq\":5,\"sealed\":false}]}",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":1,\"segments\":[{\"name\":\"0000000000000002.seg\",\"first_seq\":1,\"last_seq\":3,\"sealed\":true},{\"name\":\"0000000000000001.seg\",\"first_seq\":4,\"last_seq\":0,\"sealed\":false}]}",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":1,\"segments\":[{\"name\":\"0000000000000001.seg\",\"first_seq\":1,\"last_seq\":3,\"sealed\":true},{\"name\":\"0000000000000002.seg\",\"first_seq\":3,\"last_seq\":0,\"sealed\":false}]}",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":1,\"segments\":[{\"name\":\"0000000000000001.seg\",\"first_seq\":1,\"last_seq\":0,\"sealed\":false},{\"name\":\"0000000000000002.seg\",\"first_seq\":3,\"last_seq\":0,\"sealed\":false}]}",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":1,\"segments\":[{\"name\":\"0000000000000001.seg\",\"first_seq\":1,\"last_seq\":1,\"sealed\":true},{\"name\":\"0000000000000002.seg\",\"first_seq\":2,\"last_seq\":2,\"sealed\":true},{\"name\":\"0000000000000003.seg\",\"first_seq\":3,\"last_seq\":3,\"sealed\":true}]}",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":1,\"segments\":[{\"name\":\"../ring/0000000000000001.seg\",\"first_seq\":1,\"last_seq\":0,\"sealed\":false}]}",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":1,\"segments\":[{\"name\":\"0000000000000001.seg\",\"first_seq\":1,\"last_seq\":0,\"sealed\":truex}]}",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":1,\"segments\":[}",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":1,\"segments\":[],}",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":1,\"segments\":[] ",
		"{\"vers\\ion\":1}",
		"{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":1,\"segments\":[]}\n\x80",
	};
	struct manifest m;
	char *big, *enc;
	size_t i, n;

	memset(&m, 0, sizeof m);
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (parse(bad[i], &m) == 0) {
			fprintf(stderr, "%s: accepted bad manifest %lu: %s\n", cur_test, (unsigned long)i, bad[i]);
			test_failures++;
		}
	}
	CHECK(parse("{\"version\":1,\"segment_size\":1048576,\"segments_max\":16,\"generation\":42,\"segments\":["
	            "{\"name\":\"0000000000000007.seg\",\"first_seq\":6001,\"last_seq\":7000,\"sealed\":true},"
	            "{\"name\":\"0000000000000008.seg\",\"first_seq\":7001,\"last_seq\":0,\"sealed\":false}]}",
	            &m) == 0);
	CHECK_EQ(m.n, 2);
	CHECK_EQ(m.e[1].num, 8);
	CHECK_EQ(m.generation, 42);
	/* Other order, white space, escapes in keys and names, no final newline. */
	CHECK(parse(" {\r\n\t\"segments\" : [ { \"sealed\":false, \"last_seq\":0, \"first_seq\":1, \"name\":\"\\u0030000000000000001.seg\" } ],"
	            "\"gener\\u0061tion\":9223372036854775807, \"segments_max\":65536, \"segment_size\":4096, \"version\":1 }",
	            &m) == 0);
	CHECK_EQ(m.e[0].num, 1);
	CHECK_EQ(m.generation, 9223372036854775807ll);
	/* Encoding round trip. */
	enc = (char *)malloc(manifest_bound(m.n));
	n = manifest_encode(&m, enc);
	CHECK(parse(enc, &m) == 0);
	CHECK(n > 0 && enc[n - 1] == '\n');
	free(enc);
	/* Another version is refused as such, whatever else the manifest holds. */
	{
		char why[256];
		const char *v2 = "{\"future\":{\"a\":[1,2.5,\"x\\\"y\",null]},\"version\":2,\"segments\":[]}";
		CHECK(manifest_parse((const unsigned char *)v2, strlen(v2), &m, why, sizeof why) != 0);
		CHECK_STR(why, "manifest version 2, this reader knows 1");
	}
	/* The size limit: exactly 1 MiB is fine, one byte more is not. */
	big = (char *)malloc(FILERING_MAX_MANIFEST_SIZE + 2);
	n = (size_t)sprintf(big, "{\"version\":1,\"segment_size\":4096,\"segments_max\":2,\"generation\":1,\"segments\":[]");
	memset(big + n, ' ', FILERING_MAX_MANIFEST_SIZE - n - 1);
	big[FILERING_MAX_MANIFEST_SIZE - 1] = '}';
	{
		char why[256];
		CHECK(manifest_parse((unsigned char *)big, FILERING_MAX_MANIFEST_SIZE, &m, why, sizeof why) == 0);
		memmove(big + 1, big, FILERING_MAX_MANIFEST_SIZE);
		big[0] = ' ';
		CHECK(manifest_parse((unsigned char *)big, FILERING_MAX_MANIFEST_SIZE + 1, &m, why, sizeof why) != 0);
	}
	free(big);
	manifest_free(&m);
}

/* ---- segments and the scanner --------------------------------------------------------------- */

static void test_scanner(void)
{
	const uint64_t size = 4096;
	unsigned char *b = (unsigned char *)aligned_alloc(4096, size);
	struct scanner sc;
	struct seghdr h;
	struct mentry e;
	char why[160];
	int64_t off;
	uint64_t o = HDR, end;
	int i;

	memset(b, 0, size);
	put_header(b, size, 3, 100, 12345);
	memset(&e, 0, sizeof e);
	e.num = 3;
	e.first = 100;
	CHECK_EQ(check_header(b, size, 3, &e, &h, &off, why, sizeof why), 0);
	CHECK_EQ(h.first, 100);
	CHECK_EQ(check_header(b, size, 4, &e, &h, &off, why, sizeof why), FILERING_EHEADER);
	CHECK_EQ(off, 24);
	CHECK_EQ(check_header(b, 8192, 3, &e, &h, &off, why, sizeof why), FILERING_EHEADER);
	CHECK_EQ(off, 16);
	e.sealed = 1;
	CHECK_EQ(check_header(b, size, 3, &e, &h, &off, why, sizeof why), FILERING_ESEALED);
	CHECK_EQ(off, 48);
	e.sealed = 0;
	for (i = 0; i < 5; i++)
		o = put_record(b, o, 100 + (uint64_t)i, 7, "hello", (size_t)i);
	end = o;
	/* Hot, committed word lagging at 64: every record, then the end (not an error). */
	memset(&sc, 0, sizeof sc);
	scan_init(&sc, b, size, 100);
	for (i = 0; i < 5; i++) {
		CHECK_EQ(scan_next(&sc, SCAN_DELIVER), 1);
		CHECK_EQ(sc.seq, 100 + (uint64_t)i);
		CHECK_EQ(sc.len, (size_t)i);
		CHECK(memcmp(sc.data, "hello", (size_t)i) == 0);
	}
	CHECK_EQ(scan_next(&sc, SCAN_DELIVER), 0);
	CHECK(!sc.done);
	/* A torn record at the end of a hot segment is the end, not damage... */
	st64(b + end, (uint64_t)(RECHDR + 3) | (uint64_t)0xdeadbeef << 32);
	CHECK_EQ(scan_next(&sc, SCAN_DELIVER), 0);
	/* ...but below the committed word it is. */
	st64(b + OFF_COMMITTED, end + 32);
	CHECK_EQ(scan_next(&sc, SCAN_DELIVER), FILERING_ECHECKSUM);
	CHECK_EQ(sc.err_off, (int64_t)end);
	CHECK_EQ(scan_next(&sc, SCAN_DELIVER), FILERING_ECHECKSUM); /* sticky */
	/* Sealed at the end of the good records: done. */
	memset(b + end, 0, 8);
	seal(b, end);
	scan_init(&sc, b, size, 100);
	for (i = 0; i < 5; i++)
		CHECK_EQ(scan_next(&sc, SCAN_SKIP), 1);
	CHECK_EQ(scan_next(&sc, SCAN_SKIP), 0);
	CHECK(sc.done);
	/* A wrong sequence number. */
	scan_init(&sc, b, size, 101);
	CHECK_EQ(scan_next(&sc, SCAN_CHECK), FILERING_ESEQUENCE);
	CHECK_EQ(sc.err_off, 64);
	/* A size word that runs past the end, below the committed word. */
	st64(b + OFF_COMMITTED, size);
	st64(b + end, 0xffffffffu);
	scan_init(&sc, b, size, 100);
	for (i = 0; i < 5; i++)
		CHECK_EQ(scan_next(&sc, SCAN_CHECK), 1);
	CHECK_EQ(scan_next(&sc, SCAN_CHECK), FILERING_ERECSIZE);
	/* The recovery scan stops there without judging. */
	scan_init(&sc, b, size, 100);
	CHECK_EQ(scan_valid(&sc), 5);
	CHECK_EQ(sc.off, end);
	/* A committed word out of range. */
	st64(b + OFF_COMMITTED, 100);
	scan_init(&sc, b, size, 100);
	CHECK_EQ(scan_next(&sc, SCAN_CHECK), FILERING_ECOMMITTED);
	free(sc.buf);
	free(b);
}

/* ---- the writer ------------------------------------------------------------------------------ */

static void test_writer_basic(void)
{
	char *dir = ring_in(), path[400], id[40];
	filering_options o = small_opts(16384, 4);
	filering_writer *w;
	struct snapres s;
	struct stat st;
	unsigned char *m;
	size_t n;
	uint64_t seq;

	CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
	CHECK_EQ(filering_writer_next_seq(w), 1);
	CHECK_EQ(filering_writer_max_payload(w), 16384 - 88);
	CHECK_EQ(strlen(filering_writer_id(w)), 32);
	snprintf(id, sizeof id, "%s", filering_writer_id(w));
	CHECK_EQ(filering_append(w, "1", 1, &seq), 0);
	CHECK_EQ(seq, 1);
	CHECK_EQ(append_n(w, 999), 0);
	CHECK_EQ(filering_writer_close(w), 0);
	s = snapshot(dir, NULL);
	CHECK_EQ(s.errors, 0);
	CHECK_EQ(s.bad, 0);
	CHECK_EQ(s.last, 1000);
	CHECK_EQ(s.n, 1000);
	CHECK(stat(dir, &st) == 0 && (st.st_mode & 07777) == 0750);
	snprintf(path, sizeof path, "%s/manifest", dir);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0640);
	m = read_whole(path, &n);
	{
		const char *prefix = "{\"version\":1,\"segment_size\":16384,\"segments_max\":4,\"generation\":";
		CHECK(m && strncmp((char *)m, prefix, strlen(prefix)) == 0);
	}
	CHECK(m && strstr((char *)m, "\"last_seq\":1000,\"sealed\":true}]}\n") != NULL);
	free(m);
	/* Reopened: the sequence goes on, the identity stays, the retention is kept. */
	o.segments = 0;
	o.segment_size = 0;
	CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
	CHECK_EQ(filering_writer_next_seq(w), 1001);
	CHECK_STR(filering_writer_id(w), id);
	CHECK_EQ(append_n(w, 10), 0);
	CHECK_EQ(filering_writer_close(w), 0);
	s = snapshot(dir, NULL);
	CHECK_EQ(s.last, 1010);
	CHECK_EQ(s.errors, 0);
	/* An empty hot segment stays listed at a clean stop, and its number is not reused. */
	CHECK_EQ(filering_writer_open(dir, NULL, &w), 0);
	CHECK_EQ(filering_writer_close(w), 0);
	m = read_whole(path, &n);
	CHECK(m && strstr((char *)m, "\"last_seq\":0,\"sealed\":false}]}") != NULL);
	free(m);
	CHECK_EQ(filering_writer_open(dir, NULL, &w), 0);
	CHECK_EQ(append_n(w, 1), 0);
	CHECK_EQ(filering_writer_close(w), 0);
	s = snapshot(dir, NULL);
	CHECK_EQ(s.last, 1011);
	CHECK_EQ(s.errors, 0);
}

/* test_writer_group opens a ring two missing directories deep with a group: the ring
 * directory and both parents the writer creates get the directory mode and the group, the
 * files the file mode and the group; the directory that existed keeps its own. Root only
 * (a group the process is not in), unless FILERING_REQUIRE_ROOT=1 makes that a failure. */
static void test_writer_group(void)
{
	char *top = new_dir(), a[400], b[400], ring[400], path[460];
	filering_options o = small_opts(16384, 4);
	filering_writer *w;
	struct stat st;
	const char *const files[] = {"manifest", "lock", "0000000000000001.seg"};
	size_t i;

	if (geteuid() != 0) {
		const char *req = getenv("FILERING_REQUIRE_ROOT");
		CHECK(!(req && strcmp(req, "1") == 0));
		return;
	}
	snprintf(a, sizeof a, "%s/a", top);
	snprintf(b, sizeof b, "%s/a/b", top);
	snprintf(ring, sizeof ring, "%s/a/b/ring", top);
	o.dir_mode = 0750;
	o.file_mode = 0640;
	o.gid = 4242;
	CHECK_EQ(filering_writer_open(ring, &o, &w), 0);
	CHECK_EQ(append_n(w, 3), 0);
	CHECK_EQ(filering_writer_close(w), 0);
	CHECK(stat(a, &st) == 0 && (st.st_mode & 07777) == 0750 && st.st_gid == 4242);
	CHECK(stat(b, &st) == 0 && (st.st_mode & 07777) == 0750 && st.st_gid == 4242);
	CHECK(stat(ring, &st) == 0 && (st.st_mode & 07777) == 0750 && st.st_gid == 4242);
	for (i = 0; i < sizeof files / sizeof files[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", ring, files[i]);
		CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0640 && st.st_gid == 4242);
	}
	CHECK(stat(top, &st) == 0 && st.st_gid != 4242);
}

static void test_writer_errors(void)
{
	char *dir = ring_in(), path[400];
	filering_options o = small_opts(8192, 2);
	filering_writer *w, *w2;
	unsigned char big[8192];
	long pid = 0;
	int fd;

	/* Options out of range. */
	o.segment_size = 5000;
	CHECK_EQ(filering_writer_open(dir, &o, &w), -EINVAL);
	o = small_opts(8192, 1);
	CHECK_EQ(filering_writer_open(dir, &o, &w), -EINVAL);
	o = small_opts(8192, 2);
	o.file_mode = 0666;
	CHECK_EQ(filering_writer_open(dir, &o, &w), -EINVAL);
	o = small_opts(8192, 2);
	CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
	/* One producer at a time: the second learns the first's pid. */
	CHECK_EQ(filering_writer_open_ex(dir, NULL, NULL, NULL, &pid, &w2), FILERING_ELOCKED);
	CHECK_EQ(pid, getpid());
	CHECK_EQ(filering_producer_pid(dir, &pid), 1);
	CHECK_EQ(pid, getpid());
	/* Too large: nothing changes. */
	memset(big, 'x', sizeof big);
	CHECK_EQ(filering_append(w, big, 8192 - 87, NULL), FILERING_ETOOLARGE);
	CHECK_EQ(filering_append(w, big, 8192 - 88, NULL), 0);
	CHECK_EQ(filering_append(w, big, 8192 - 88, NULL), 0);
	CHECK_EQ(filering_writer_next_seq(w), 3);
	CHECK_EQ(filering_writer_close(w), 0);
	CHECK_EQ(filering_producer_pid(dir, &pid), 0);
	/* Another segment size. */
	o.segment_size = 16384;
	CHECK_EQ(filering_writer_open(dir, &o, &w), FILERING_EMISMATCH);
	/* A file others may write. */
	snprintf(path, sizeof path, "%s/stray", dir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	chmod(path, 0666);
	CHECK_EQ(filering_writer_open(dir, NULL, &w), FILERING_EUNSAFE);
	chmod(path, 0600);
	if (geteuid() == 0) {
		CHECK(chown(path, 1, 1) == 0);
		CHECK_EQ(filering_writer_open(dir, NULL, &w), FILERING_EUNSAFE);
	}
	unlink(path);
	chmod(dir, 0777);
	CHECK_EQ(filering_writer_open(dir, NULL, &w), FILERING_EUNSAFE);
	chmod(dir, 0750);
	CHECK_EQ(filering_writer_open(dir, NULL, &w), 0);
	filering_writer_close(w);
	/* A symbolic link as the ring directory. */
	snprintf(path, sizeof path, "%s-link", dir);
	CHECK(symlink(dir, path) == 0);
	CHECK_EQ(filering_writer_open(path, NULL, &w), -ELOOP);
	/* Segments without a manifest. */
	snprintf(path, sizeof path, "%s/manifest", dir);
	unlink(path);
	CHECK_EQ(filering_writer_open(dir, NULL, &w), FILERING_EORPHANED);
	/* A manifest a producer cannot read. */
	write_whole(path, "{}", 2);
	chmod(path, 0640);
	CHECK_EQ(filering_writer_open(dir, NULL, &w), FILERING_EMANIFEST);
	/* A malformed identity. */
	dir = ring_in();
	CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
	filering_writer_close(w);
	snprintf(path, sizeof path, "%s/id", dir);
	write_whole(path, "nothex\n", 7);
	chmod(path, 0640);
	CHECK_EQ(filering_writer_open(dir, NULL, &w), FILERING_EID);
	unlink(path);
	CHECK_EQ(filering_writer_open(dir, NULL, &w), 0); /* an older ring gets one */
	filering_writer_close(w);
	{
		size_t n;
		unsigned char *b = read_whole(path, &n);
		CHECK(b && n == 33 && b[32] == '\n');
		free(b);
	}
}

/* crash_child appends n records to the ring in dir from a child process, then kills
 * itself with SIGKILL (n < 0: appends until the parent kills it). */
static pid_t crash_child(const char *dir, const filering_options *o, int n)
{
	pid_t pid = fork();
	filering_writer *w;

	if (pid != 0)
		return pid;
	if (filering_writer_open(dir, o, &w) != 0)
		_exit(3);
	if (n >= 0) {
		append_n(w, n);
		kill(getpid(), SIGKILL);
	}
	for (;;)
		if (append_n(w, 1) != 0)
			_exit(4);
}

static int waitkilled(pid_t pid)
{
	int st = 0;

	waitpid(pid, &st, 0);
	return WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
}

static void test_writer_recovery(void)
{
	char *dir = ring_in(), path[400];
	filering_options o = small_opts(16384, 64);
	filering_writer *w;
	struct snapres s;
	unsigned char *b;
	uint64_t next = 1;
	int round, fd;
	size_t n;

	/* Killed at once after appending: the next producer seals and goes on. */
	CHECK(waitkilled(crash_child(dir, &o, 700)));
	logbuf[0] = 0;
	CHECK_EQ(filering_writer_open_ex(dir, NULL, tlog, NULL, NULL, &w), 0);
	CHECK_EQ(filering_writer_next_seq(w), 701);
	CHECK(strstr(logbuf, "after an unclean stop; next sequence 701") != NULL);
	CHECK_EQ(filering_writer_close(w), 0);
	/* Killed at random instants while appending: no number reused, nothing corrupt. */
	srand((unsigned)getpid());
	for (round = 0; round < 12; round++) {
		pid_t pid = crash_child(dir, &o, -1);
		struct timespec ts = {0, (long)(rand() % 20000) * 1000};
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		CHECK(waitkilled(pid));
	}
	CHECK_EQ(filering_writer_open(dir, NULL, &w), 0);
	next = filering_writer_next_seq(w);
	CHECK_EQ(append_n(w, 1), 0);
	CHECK_EQ(filering_writer_close(w), 0);
	s = snapshot(dir, NULL);
	CHECK_EQ(s.errors, 0);
	CHECK_EQ(s.bad, 0);
	CHECK_EQ(s.last, next);
	CHECK(s.n <= s.last);
	/* A torn last record (its CRC broken) is not part of the ring: the sequence goes on
	 * at its number. */
	dir = ring_in();
	o = small_opts(16384, 4);
	CHECK(waitkilled(crash_child(dir, &o, 10)));
	snprintf(path, sizeof path, "%s/0000000000000001.seg", dir);
	b = read_whole(path, &n);
	CHECK(b && n == 16384);
	if (b) {
		uint64_t off = HDR;
		int i;
		for (i = 0; i < 9; i++)
			off += align8(ld32(b + off));
		b[off + 24] ^= 1; /* the payload of record 10 */
		fd = open(path, O_WRONLY);
		CHECK(pwrite(fd, b + off + 24, 1, (off_t)off + 24) == 1);
		close(fd);
		free(b);
	}
	CHECK_EQ(filering_writer_open(dir, NULL, &w), 0);
	CHECK_EQ(filering_writer_next_seq(w), 10);
	filering_writer_close(w);
	s = snapshot(dir, NULL);
	CHECK_EQ(s.errors, 0);
	CHECK_EQ(s.last, 9);
	/* The hot segment's file gone: a taker claimed it (N.taken tells where it ended)... */
	dir = ring_in();
	CHECK(waitkilled(crash_child(dir, &o, 10)));
	{
		char to[400];
		snprintf(path, sizeof path, "%s/0000000000000001.seg", dir);
		snprintf(to, sizeof to, "%s/0000000000000001.taken", dir);
		CHECK(rename(path, to) == 0);
	}
	CHECK_EQ(filering_writer_open(dir, NULL, &w), 0);
	CHECK_EQ(filering_writer_next_seq(w), 11);
	filering_writer_close(w);
	/* ...or nobody knows: every number it could have used is skipped. */
	dir = ring_in();
	CHECK(waitkilled(crash_child(dir, &o, 10)));
	snprintf(path, sizeof path, "%s/0000000000000001.seg", dir);
	unlink(path);
	logbuf[0] = 0;
	CHECK_EQ(filering_writer_open_ex(dir, NULL, tlog, NULL, NULL, &w), 0);
	CHECK_EQ(filering_writer_next_seq(w), 1 + (16384 - 64) / 24);
	CHECK(strstr(logbuf, "hot segment missing") != NULL);
	CHECK_EQ(append_n(w, 1), 0);
	filering_writer_close(w);
	s = snapshot(dir, NULL);
	CHECK_EQ(s.errors, 0);
	CHECK_EQ(s.n, 1);
	CHECK_EQ(s.first, 1 + (16384 - 64) / 24);
	/* Temporary files and unlisted segments a crash left are removed; numbers are not
	 * reused. */
	snprintf(path, sizeof path, "%s/.0000000000000009.seg.new-abc", dir);
	write_whole(path, "x", 1);
	chmod(path, 0600);
	snprintf(path, sizeof path, "%s/0000000000000007.seg", dir);
	write_whole(path, "x", 1);
	chmod(path, 0600);
	CHECK_EQ(filering_writer_open(dir, NULL, &w), 0);
	CHECK(access(path, F_OK) != 0);
	snprintf(path, sizeof path, "%s/.0000000000000009.seg.new-abc", dir);
	CHECK(access(path, F_OK) != 0);
	snprintf(path, sizeof path, "%s/0000000000000008.seg", dir);
	CHECK(access(path, F_OK) == 0);
	filering_writer_close(w);
}

static void test_writer_retention(void)
{
	char *dir = ring_in(), path[400];
	filering_options o = small_opts(8192, 8);
	filering_writer *w;
	struct manifest m;
	unsigned char *b;
	size_t n;
	char why[256];

	CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
	CHECK_EQ(append_n(w, 3000), 0);
	CHECK_EQ(filering_writer_close(w), 0);
	o.segments = 3;
	o.segment_size = 0;
	logbuf[0] = 0;
	CHECK_EQ(filering_writer_open_ex(dir, &o, tlog, NULL, NULL, &w), 0);
	CHECK(strstr(logbuf, "retention lowered from 8 to 3 segments") != NULL);
	CHECK(strstr(logbuf, "dropping the 6 oldest segments") != NULL);
	CHECK_EQ(filering_writer_close(w), 0);
	snprintf(path, sizeof path, "%s/manifest", dir);
	b = read_whole(path, &n);
	memset(&m, 0, sizeof m);
	CHECK(b && manifest_parse(b, n, &m, why, sizeof why) == 0);
	CHECK_EQ(m.segments_max, 3);
	CHECK_EQ(m.n, 3);
	free(b);
	manifest_free(&m);
}

static void test_writer_seal_after_and_wake(void)
{
	char *dir = ring_in(), path[400];
	filering_options o = small_opts(65536, 4);
	filering_writer *w;
	unsigned char word[8];
	struct timespec ts = {0, 60000000};
	int timeout = 0, fd;
	uint64_t i;

	o.seal_after_ns = 50000000;
	CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
	CHECK_EQ(filering_writer_poll(w, &timeout), 0);
	CHECK_EQ(timeout, -1); /* nothing to seal yet */
	CHECK_EQ(filering_append(w, "a", 1, NULL), 0);
	/* The first record after a pause is announced at once. */
	snprintf(path, sizeof path, "%s/0000000000000001.seg", dir);
	fd = open(path, O_RDONLY);
	CHECK(pread(fd, word, 8, 56) == 8 && ld64(word) == 64 + 32);
	/* A burst: announced by the flush at the latest. */
	for (i = 0; i < 100; i++)
		CHECK_EQ(filering_append(w, "b", 1, NULL), 0);
	CHECK_EQ(filering_writer_flush(w), 0);
	CHECK(pread(fd, word, 8, 56) == 8 && ld64(word) == 64 + 101 * 32);
	close(fd);
	CHECK_EQ(filering_writer_poll(w, &timeout), 0);
	CHECK(timeout > 0 && timeout <= 50);
	nanosleep(&ts, NULL);
	CHECK_EQ(filering_writer_poll(w, &timeout), 0);
	CHECK_EQ(timeout, -1);
	{
		size_t n;
		unsigned char *b;
		snprintf(path, sizeof path, "%s/manifest", dir);
		b = read_whole(path, &n);
		CHECK(b && strstr((char *)b, "\"first_seq\":1,\"last_seq\":101,\"sealed\":true") != NULL);
		CHECK(b && strstr((char *)b, "\"first_seq\":102,\"last_seq\":0,\"sealed\":false") != NULL);
		free(b);
	}
	/* poll prepared the next segment ahead of need. */
	CHECK_EQ(filering_writer_close(w), 0);
}

/* test_writer_full_fs runs a ring on a tmpfs too small for it (it mounts one; skipped
 * where mounting is not allowed): the producer drops its oldest sealed segments to make
 * room, says which, never faults, fails an append with -ENOSPC only when nothing is left
 * to drop, and goes on once room frees. */
static void test_writer_full_fs(void)
{
	char *mnt = new_dir(), dir[400], filler[400];
	filering_options o = small_opts(16384, 8);
	filering_writer *w;
	struct snapres s;
	struct stat st;
	ino_t inos[512];
	char chunk[4096];
	int i, r = 0, fd, timeout, reused = 0;
	size_t k, nino = 0;

	if (mount("tmpfs", mnt, "tmpfs", 0, "size=96k") != 0) {
		printf("skip %s: cannot mount a tmpfs here (%s)\n", cur_test, strerror(errno));
		return;
	}
	snprintf(dir, sizeof dir, "%s/ring", mnt);
	logbuf[0] = 0;
	CHECK_EQ(filering_writer_open_ex(dir, &o, tlog, NULL, NULL, &w), 0);
	for (i = 0; i < 20000 && r == 0; i++) {
		uint64_t hot = w->hot.num;
		r = append_n(w, 1);
		if (i % 1000 == 0)
			filering_writer_poll(w, &timeout); /* spare segments too */
		if (w->hot.num != hot && fstat(w->hot.fd, &st) == 0) {
			/* A dropped segment's file serves the next segment: it needs no room. */
			for (k = 0; k < nino && inos[k] != st.st_ino; k++)
				;
			reused += k < nino;
			if (nino < sizeof inos / sizeof inos[0])
				inos[nino++] = st.st_ino;
		}
	}
	CHECK_EQ(r, 0);
	CHECK(filering_writer_lost(w) > 0);
	CHECK(strstr(logbuf, "file system full: dropped segment") != NULL);
	CHECK(reused > 10);
	s = snapshot(dir, NULL);
	CHECK_EQ(s.errors, 0);
	CHECK_EQ(s.bad, 0);
	CHECK_EQ(s.last, filering_writer_next_seq(w) - 1);
	CHECK_EQ(filering_writer_close(w), 0);
	CHECK_EQ(count_names(dir, "", 1), 0); /* no file kept for reuse is left */
	rm_rf(dir);
	/* A segment larger than the room left: once the hot segment is full, appends fail
	 * and change nothing; the writer stays usable and goes on once room frees. */
	o = small_opts(32768, 8);
	CHECK_EQ(filering_writer_open_ex(dir, &o, tlog, NULL, NULL, &w), 0);
	snprintf(filler, sizeof filler, "%s/filler", mnt);
	fd = open(filler, O_CREAT | O_WRONLY, 0600);
	memset(chunk, 'f', sizeof chunk);
	while (write(fd, chunk, sizeof chunk) == (ssize_t)sizeof chunk)
		;
	for (i = 0, r = 0; i < 20000 && r == 0; i++)
		r = append_n(w, 1);
	CHECK_EQ(r, -ENOSPC);
	{
		uint64_t next = filering_writer_next_seq(w);
		CHECK_EQ(append_n(w, 1), -ENOSPC);
		CHECK_EQ(filering_writer_next_seq(w), next);
	}
	close(fd);
	unlink(filler);
	CHECK_EQ(append_n(w, 2000), 0);
	CHECK_EQ(filering_writer_close(w), 0);
	s = snapshot(dir, NULL);
	CHECK_EQ(s.errors, 0);
	CHECK_EQ(s.bad, 0);
	CHECK(s.n > 0);
	umount2(mnt, MNT_DETACH);
}

/* ---- the reader -------------------------------------------------------------------------------- */

static void test_reader_selection(void)
{
	char *dir = ring_in();
	filering_options o = small_opts(8192, 64);
	filering_selection sel;
	filering_writer *w;
	struct snapres s;
	filering_reader *r;

	CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
	CHECK_EQ(append_n(w, 1000), 0);
	memset(&sel, 0, sizeof sel);
	s = snapshot(dir, &sel); /* the hot segment too, while the producer runs */
	CHECK_EQ(s.n, 1000);
	CHECK_EQ(s.first, 1);
	CHECK_EQ(s.last, 1000);
	sel.last = 5;
	s = snapshot(dir, &sel);
	CHECK_EQ(s.n, 5);
	CHECK_EQ(s.first, 996);
	sel.last = 300; /* across segments */
	s = snapshot(dir, &sel);
	CHECK_EQ(s.n, 300);
	CHECK_EQ(s.first, 701);
	sel.last = 0;
	sel.from = 990;
	s = snapshot(dir, &sel);
	CHECK_EQ(s.n, 11);
	sel.last = 3;
	sel.from = 50;
	s = snapshot(dir, &sel);
	CHECK_EQ(s.first, 998);
	sel.from = 0;
	sel.last = 0;
	sel.has_since = 1;
	sel.since_ns = wall_ns() + 3600000000000ll;
	s = snapshot(dir, &sel);
	CHECK_EQ(s.n, 0);
	CHECK_EQ(s.errors, 0);
	sel.since_ns = wall_ns() - 3600000000000ll;
	sel.last = 7;
	s = snapshot(dir, &sel);
	CHECK_EQ(s.n, 7);
	CHECK_EQ(s.first, 994);
	CHECK_EQ(filering_writer_close(w), 0);
	/* No ring; no directory. */
	dir = new_dir();
	CHECK_EQ(filering_reader_open(dir, 0, NULL, &r), 0);
	{
		filering_record rec;
		CHECK_EQ(filering_reader_next(r, &rec, 0), FILERING_ENORING);
		CHECK_STR(filering_reader_error_kind(r), "no-ring");
		CHECK(filering_reader_error_file(r) == NULL);
		CHECK_EQ(filering_reader_next(r, &rec, 0), 0);
	}
	filering_reader_close(r);
	CHECK_EQ(filering_reader_open("/nonexistent/filering", 0, NULL, &r), -ENOENT);
}

/* follow_until reads events from a follower until it has n records or times out; it
 * checks that records are in order and hold their numbers, and counts losses. */
struct follow_res {
	uint64_t until; /* stop once this sequence number is delivered (0: after n records) */
	uint64_t records, first, last, lost_from, lost_to;
	int losses, restarts, errors, bad;
};

static void follow_until(filering_reader *r, uint64_t n, struct follow_res *f)
{
	filering_record rec;
	char b[32];
	int rc, idle = 0;

	while (f->records < n && (!f->until || f->last < f->until) && idle < 40) {
		rc = filering_reader_next(r, &rec, 50);
		if (rc == 0) {
			idle++;
			continue;
		}
		idle = 0;
		if (rc == FILERING_RECORD) {
			snprintf(b, sizeof b, "%llu", (unsigned long long)rec.seq);
			if (rec.len != strlen(b) || memcmp(rec.data, b, rec.len) != 0 || (f->last && rec.seq <= f->last))
				f->bad++;
			if (!f->records)
				f->first = rec.seq;
			f->last = rec.seq;
			f->records++;
		} else if (rc == FILERING_LOSS) {
			filering_reader_loss(r, &f->lost_from, &f->lost_to);
			f->losses++;
		} else if (rc == FILERING_RESTART) {
			f->restarts++;
			f->last = 0;
		} else {
			f->errors++;
		}
	}
}

static void test_reader_follow(void)
{
	char *dir = ring_in();
	filering_options o = small_opts(8192, 3);
	filering_writer *w;
	filering_reader *r;
	struct follow_res f;
	filering_record rec;

	/* Started before the ring exists: every record from 1 on. */
	CHECK_EQ(filering_reader_open(dir, FILERING_FOLLOW, NULL, &r), 0);
	CHECK_EQ(filering_reader_next(r, &rec, 0), 0);
	CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
	CHECK_EQ(append_n(w, 100), 0);
	filering_writer_flush(w);
	memset(&f, 0, sizeof f);
	follow_until(r, 100, &f);
	CHECK_EQ(f.records, 100);
	CHECK_EQ(f.first, 1);
	CHECK_EQ(f.bad, 0);
	CHECK_EQ(f.losses, 0);
	/* The ring overwrites what the follower has not read: an exact loss. */
	CHECK_EQ(append_n(w, 2000), 0); /* 3 segments of 8 KiB hold about 700 */
	filering_writer_flush(w);
	memset(&f, 0, sizeof f);
	f.until = 2100;
	follow_until(r, 100000, &f);
	/* It reads to the end of the segment it holds open, then learns of the loss. */
	CHECK_EQ(f.losses, 1);
	CHECK_EQ(f.first, 101);
	CHECK(f.lost_from > 101 && f.lost_to >= f.lost_from);
	CHECK_EQ(f.records + (f.lost_to - f.lost_from + 1), 2000);
	CHECK_EQ(f.last, 2100);
	CHECK_EQ(f.bad, 0);
	CHECK_EQ(f.errors, 0);
	/* A producer restarted on the same ring: the follower goes on. */
	CHECK_EQ(filering_writer_close(w), 0);
	CHECK_EQ(filering_writer_open(dir, NULL, &w), 0);
	CHECK_EQ(append_n(w, 10), 0);
	filering_writer_flush(w);
	memset(&f, 0, sizeof f);
	follow_until(r, 10, &f);
	CHECK_EQ(f.records, 10);
	CHECK_EQ(f.first, 2101);
	CHECK_EQ(f.losses + f.restarts + f.errors + f.bad, 0);
	CHECK_EQ(filering_writer_close(w), 0);
	/* The ring created anew: the follower says so and starts from its first record. */
	rm_rf(dir);
	CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
	CHECK_EQ(append_n(w, 5), 0);
	filering_writer_flush(w);
	memset(&f, 0, sizeof f);
	follow_until(r, 5, &f);
	CHECK_EQ(f.restarts, 1);
	CHECK_EQ(f.records, 5);
	CHECK_EQ(f.first, 1);
	CHECK_EQ(f.bad + f.errors, 0);
	CHECK_EQ(filering_writer_close(w), 0);
	filering_reader_close(r);

	/* Without inotify a follower polls every 100 ms, and misses nothing. */
	no_inotify = 1;
	dir = ring_in();
	CHECK_EQ(filering_reader_open(dir, FILERING_FOLLOW, NULL, &r), 0);
	CHECK_EQ(filering_reader_fd(r), -1);
	CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
	CHECK_EQ(append_n(w, 1000), 0);
	memset(&f, 0, sizeof f);
	f.until = 1000;
	follow_until(r, 100000, &f);
	CHECK_EQ(f.last, 1000);
	CHECK_EQ(f.records + (f.losses ? f.lost_to - f.lost_from + 1 : 0), 1000);
	CHECK_EQ(f.bad + f.errors, 0);
	CHECK_EQ(filering_writer_close(w), 0);
	filering_reader_close(r);
	no_inotify = 0;
}

/* ---- windows: at most 64 segment files open (docs/FORMAT.md, reading step 2) ------------- */

/* many_ring writes a ring of more than 300 sealed segments of 4 KiB (records "K", about
 * 126 a segment, none retired) and loads its manifest into m. Returns how many records
 * it holds. */
static uint64_t many_ring(const char *dir, struct manifest *m)
{
	filering_options o = small_opts(4096, 400);
	filering_writer *w;
	unsigned char *buf = NULL;
	size_t cap = 0;
	char why[300];
	uint64_t n = 0;
	int fd, notreg;

	memset(m, 0, sizeof *m);
	CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
	if (test_failures)
		return 0;
	CHECK_EQ(append_n(w, 38000), 0);
	n = filering_writer_next_seq(w) - 1;
	CHECK_EQ(filering_writer_close(w), 0);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	CHECK(fd >= 0);
	CHECK_EQ(read_manifest(fd, m, &buf, &cap, &notreg, why, sizeof why), 0);
	close(fd);
	free(buf);
	CHECK(m->n > 300);
	CHECK_EQ(n, 38000);
	return n;
}

/* seg_fds counts this process's descriptors open on a *.seg file. */
static int seg_fds(void)
{
	char path[300], target[PATH_MAX];
	struct dirent *d;
	DIR *dp = opendir("/proc/self/fd");
	ssize_t k;
	int n = 0;

	if (!dp)
		return -1;
	while ((d = readdir(dp)) != NULL) {
		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "/proc/self/fd/%s", d->d_name);
		k = readlink(path, target, sizeof target - 1);
		if (k >= 4 && memcmp(target + k - 4, ".seg", 4) == 0)
			n++;
	}
	closedir(dp);
	return n;
}

/* read_all reads events from r (a snapshot to its end, or a follower until it delivers
 * until or waits idle for a second), checking that records are in order and hold their
 * numbers, and noting gaps in sequence numbers, losses, errors and (count_fds) the most
 * segment files open after any event. */
struct readres {
	uint64_t n, first, last, gap_from, gap_to, lost_from, lost_to;
	int gaps, losses, errors, bad, maxfds;
	const char *err_kind;
	char err_file[32];
};

static void read_all(filering_reader *r, uint64_t until, int count_fds, struct readres *s)
{
	filering_record rec;
	char b[32];
	int rc, idle = 0, k;

	memset(s, 0, sizeof *s);
	while (idle < 20 && (!until || s->last < until)) {
		rc = filering_reader_next(r, &rec, until ? 50 : 0);
		if (count_fds && (k = seg_fds()) > s->maxfds)
			s->maxfds = k;
		if (rc == 0) {
			if (!until)
				break;
			idle++;
			continue;
		}
		idle = 0;
		if (rc == FILERING_LOSS) {
			filering_reader_loss(r, &s->lost_from, &s->lost_to);
			s->losses++;
		} else if (rc == FILERING_RECORD) {
			snprintf(b, sizeof b, "%llu", (unsigned long long)rec.seq);
			if (rec.len != strlen(b) || memcmp(rec.data, b, rec.len) != 0 || (s->n && rec.seq <= s->last))
				s->bad++;
			if (s->n && rec.seq > s->last + 1) {
				s->gaps++;
				s->gap_from = s->last + 1;
				s->gap_to = rec.seq - 1;
			}
			if (!s->n)
				s->first = rec.seq;
			s->last = rec.seq;
			s->n++;
		} else {
			s->errors++;
			s->err_kind = filering_reader_error_kind(r);
			snprintf(s->err_file, sizeof s->err_file, "%s",
			         filering_reader_error_file(r) ? filering_reader_error_file(r) : "");
			if (rc > 0 || (!filering_is_damage(rc) && (!until || s->errors > 20)))
				break;
		}
	}
}

/* in_child runs fn(arg) in a child process whose RLIMIT_NOFILE soft limit is nofile, so
 * that the other tests keep theirs; returns whether every check in it passed. */
static int in_child(rlim_t nofile, void (*fn)(void *), void *arg)
{
	struct rlimit rl;
	pid_t pid;
	int st;

	fflush(stdout);
	fflush(stderr);
	if ((pid = fork()) < 0)
		return 0;
	if (pid == 0) {
		if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
			_exit(2);
		rl.rlim_cur = nofile;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			_exit(2);
		test_failures = 0;
		fn(arg);
		fflush(stderr);
		_exit(test_failures ? 1 : 0);
	}
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

struct many {
	const char *dir;
	uint64_t n;
};

static void read_many_limited(void *arg)
{
	const struct many *a = (const struct many *)arg;
	filering_selection sel;
	filering_reader *r;
	struct readres s;

	/* Everything, in order, none missing. */
	CHECK_EQ(filering_reader_open(a->dir, 0, NULL, &r), 0);
	read_all(r, 0, 0, &s);
	filering_reader_close(r);
	CHECK_EQ(s.n, a->n);
	CHECK_EQ(s.first, 1);
	CHECK_EQ(s.last, a->n);
	CHECK_EQ(s.gaps + s.bad + s.errors, 0);
	/* The last N, newest first, more than 64 segments' worth; from a sequence number;
	 * last with since (a counting pass over every window). */
	memset(&sel, 0, sizeof sel);
	sel.last = 30000;
	CHECK_EQ(filering_reader_open(a->dir, 0, &sel, &r), 0);
	read_all(r, 0, 1, &s);
	filering_reader_close(r);
	CHECK_EQ(s.n, 30000);
	CHECK_EQ(s.first, a->n - 29999);
	CHECK_EQ(s.last, a->n);
	CHECK_EQ(s.gaps + s.bad + s.errors, 0);
	CHECK(s.maxfds <= 64);
	memset(&sel, 0, sizeof sel);
	sel.from = 1000;
	CHECK_EQ(filering_reader_open(a->dir, 0, &sel, &r), 0);
	read_all(r, 0, 0, &s);
	filering_reader_close(r);
	CHECK_EQ(s.n, a->n - 999);
	CHECK_EQ(s.gaps + s.bad + s.errors, 0);
	memset(&sel, 0, sizeof sel);
	sel.has_since = 1;
	sel.since_ns = wall_ns() - 3600000000000ll;
	sel.last = 30000;
	CHECK_EQ(filering_reader_open(a->dir, 0, &sel, &r), 0);
	read_all(r, 0, 1, &s);
	filering_reader_close(r);
	CHECK_EQ(s.n, 30000);
	CHECK_EQ(s.first, a->n - 29999);
	CHECK_EQ(s.gaps + s.bad + s.errors, 0);
	CHECK(s.maxfds <= 64);
	/* A follower from the oldest record. */
	memset(&sel, 0, sizeof sel);
	sel.from = 1;
	CHECK_EQ(filering_reader_open(a->dir, FILERING_FOLLOW, &sel, &r), 0);
	read_all(r, a->n, 0, &s);
	filering_reader_close(r);
	CHECK_EQ(s.n, a->n);
	CHECK_EQ(s.last, a->n);
	CHECK_EQ(s.gaps + s.bad + s.errors + s.losses, 0);
}

/* test_reader_windows_limit: a ring of over 300 segments read whole by a process allowed
 * 80 descriptors (room for a window of 64 and a few more): every record, in order. */
static void test_reader_windows_limit(void)
{
	struct manifest m;
	struct many a;

	a.dir = ring_in();
	a.n = many_ring(a.dir, &m);
	manifest_free(&m);
	if (test_failures)
		return;
	CHECK(in_child(80, read_many_limited, &a));
}

/* test_reader_windows_open: reading such a ring, never more than 64 segment files are
 * open at once, for a snapshot or for a follower. */
static void test_reader_windows_open(void)
{
	const char *dir = ring_in();
	filering_selection sel;
	filering_reader *r;
	struct manifest m;
	struct readres s;
	uint64_t n = many_ring(dir, &m);

	manifest_free(&m);
	if (test_failures)
		return;
	CHECK_EQ(filering_reader_open(dir, 0, NULL, &r), 0);
	read_all(r, 0, 1, &s);
	filering_reader_close(r);
	CHECK_EQ(s.n, n);
	CHECK_EQ(s.gaps + s.bad + s.errors, 0);
	CHECK(s.maxfds > 0 && s.maxfds <= 64);
	memset(&sel, 0, sizeof sel);
	sel.from = 1;
	CHECK_EQ(filering_reader_open(dir, FILERING_FOLLOW, &sel, &r), 0);
	read_all(r, n, 1, &s);
	filering_reader_close(r);
	CHECK_EQ(s.n, n);
	CHECK_EQ(s.gaps + s.bad + s.errors + s.losses, 0);
	CHECK(s.maxfds > 0 && s.maxfds <= 64);
	CHECK_EQ(seg_fds(), 0);
}

/* unlink_entry removes the segment file of manifest entry e of the ring in dir. */
static void unlink_entry(const char *dir, const struct mentry *e)
{
	char path[400], name[32];

	seg_name(name, sizeof name, e->num, ".seg");
	snprintf(path, sizeof path, "%s/%s", dir, name);
	CHECK_EQ(unlink(path), 0);
}

/* test_reader_windows_gone: a segment of a later window removed after the first window
 * was opened and partly read is skipped silently, and the read goes on after it;
 * damage to a segment of a later window is reported as ever, and costs only it. */
static void test_reader_windows_gone(void)
{
	const char *dir = ring_in();
	filering_reader *r;
	filering_record rec;
	struct manifest m;
	struct readres s;
	char path[400], name[32];
	uint64_t n = many_ring(dir, &m), gone, bad;
	int i, fd;

	if (test_failures) {
		manifest_free(&m);
		return;
	}
	gone = m.e[150].last - m.e[150].first + 1;
	bad = m.e[250].last - m.e[250].first + 1;
	/* Damage the header of a segment of a later window. */
	seg_name(name, sizeof name, m.e[250].num, ".seg");
	snprintf(path, sizeof path, "%s/%s", dir, name);
	fd = open(path, O_WRONLY);
	CHECK(fd >= 0);
	CHECK_EQ(pwrite(fd, "XXXX", 4, 0), 4);
	close(fd);
	CHECK_EQ(filering_reader_open(dir, 0, NULL, &r), 0);
	for (i = 0; i < 10; i++)
		CHECK_EQ(filering_reader_next(r, &rec, 0), FILERING_RECORD);
	unlink_entry(dir, &m.e[150]);
	read_all(r, 0, 0, &s);
	filering_reader_close(r);
	CHECK_EQ(s.n + 10, n - gone - bad);
	CHECK_EQ(s.last, n);
	CHECK_EQ(s.bad, 0);
	CHECK_EQ(s.gaps, 2);
	CHECK_EQ(s.gap_from, m.e[250].first);
	CHECK_EQ(s.gap_to, m.e[250].last);
	CHECK_EQ(s.errors, 1);
	CHECK_STR(s.err_kind, "header");
	CHECK_STR(s.err_file, name);
	/* Read again: the segment is gone at the start, before the first window. */
	CHECK_EQ(filering_reader_open(dir, 0, NULL, &r), 0);
	read_all(r, 0, 0, &s);
	filering_reader_close(r);
	CHECK_EQ(s.n, n - gone - bad);
	CHECK_EQ(s.errors, 1);
	manifest_free(&m);
}

/* test_reader_windows_follow_loss: a follower started from the oldest record reports
 * the records of a segment removed before it reached it as lost, exactly. */
static void test_reader_windows_follow_loss(void)
{
	const char *dir = ring_in();
	filering_selection sel;
	filering_reader *r;
	filering_record rec;
	struct manifest m;
	struct readres s;
	uint64_t n = many_ring(dir, &m), gone;
	int i;

	if (test_failures) {
		manifest_free(&m);
		return;
	}
	gone = m.e[200].last - m.e[200].first + 1;
	memset(&sel, 0, sizeof sel);
	sel.from = 1;
	CHECK_EQ(filering_reader_open(dir, FILERING_FOLLOW, &sel, &r), 0);
	for (i = 0; i < 10; i++)
		CHECK_EQ(filering_reader_next(r, &rec, 1000), FILERING_RECORD);
	unlink_entry(dir, &m.e[200]);
	read_all(r, n, 1, &s);
	filering_reader_close(r);
	CHECK_EQ(s.n + 10, n - gone);
	CHECK_EQ(s.last, n);
	CHECK_EQ(s.bad + s.errors, 0);
	CHECK_EQ(s.losses, 1);
	CHECK_EQ(s.lost_from, m.e[200].first);
	CHECK_EQ(s.lost_to, m.e[200].last);
	CHECK_EQ(s.gaps, 1);
	CHECK(s.maxfds <= 64);
	manifest_free(&m);
}

/* ---- the segment index (docs/FORMAT.md, "The segment index") ------------------------------ */

#define TEST_MIB (1u << 20)

/* file_in writes DIR/NNNNNNNNNNNNNNNN<suffix> into buf. */
static char *file_in(char *buf, size_t cap, const char *dir, uint64_t num, const char *suffix)
{
	size_t d = strlen(dir);

	buf[0] = 0;
	if (d + 2 > cap)
		return buf;
	memcpy(buf, dir, d);
	buf[d] = '/';
	seg_name(buf + d + 1, cap - d - 1, num, suffix);
	return buf;
}

/* load_manifest reads the manifest of the ring in dir into m (zeroed first). */
static void load_manifest(const char *dir, struct manifest *m)
{
	unsigned char *buf = NULL;
	size_t cap = 0;
	char why[300];
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), notreg;

	memset(m, 0, sizeof *m);
	CHECK(fd >= 0);
	CHECK_EQ(read_manifest(fd, m, &buf, &cap, &notreg, why, sizeof why), 0);
	close(fd);
	free(buf);
}

/* count_names counts the names in dir that end with suffix and (dot) start with a dot
 * or (!dot) do not. */
static int count_names(const char *dir, const char *suffix, int dot)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t n, sl = strlen(suffix);
	int c = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)) != NULL) {
		n = strlen(de->d_name);
		if (n >= sl && strcmp(de->d_name + n - sl, suffix) == 0 && (de->d_name[0] == '.') == dot &&
		    strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			c++;
	}
	closedir(d);
	return c;
}

/* count_containing counts the names in dir that contain part. */
static int count_containing(const char *dir, const char *part)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int c = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (strstr(de->d_name, part))
			c++;
	closedir(d);
	return c;
}

/* expect_index checks DIR/N.idx against DIR/N.seg as the writer must make it: its size,
 * its header, and every entry k: the offset and index of the first record at or after
 * k * 65536, or 0 where no record is. Returns 1 when it matches. */
static int expect_index(const char *dir, uint64_t num, uint64_t size)
{
	char path[400];
	uint64_t nk = (size - 1) / 65536, k, off = HDR, index = 0, want, got, w, block = 0;
	unsigned char *seg, *idx;
	size_t sn = 0, in = 0;
	int ok = 1;

	seg = read_whole(file_in(path, sizeof path, dir, num, ".seg"), &sn);
	idx = read_whole(file_in(path, sizeof path, dir, num, ".idx"), &in);
	CHECK(seg && sn == size);
	CHECK(idx && in == 64 + 8 * nk);
	if (!seg || !idx || sn != size || in != 64 + 8 * nk) {
		free(seg);
		free(idx);
		return 0;
	}
	CHECK(memcmp(idx, "FILERIDX", 8) == 0);
	CHECK_EQ(ld32(idx + 8), 1);
	CHECK_EQ(ld32(idx + 12), filering_crc32(0, idx + 16, 24));
	CHECK_EQ(ld64(idx + 16), num);
	CHECK_EQ(ld64(idx + 24), size);
	CHECK_EQ(ld32(idx + 32), 65536);
	CHECK_EQ(ld32(idx + 36), nk);
	for (k = 40; k < 64; k++)
		CHECK_EQ(idx[k], 0);
	CHECK_EQ(idx_parse(idx, in, num, size, &block), nk);
	for (k = 1; k <= nk && ok; k++) {
		while (off + 8 <= size && (w = ld64(seg + off)) != 0 && (uint32_t)w >= RECHDR && off < k * 65536) {
			off += align8((uint32_t)w);
			index++;
		}
		want = off + 8 <= size && ld64(seg + off) != 0 ? off | index << 32 : 0;
		got = ld64(idx + 64 + 8 * (k - 1));
		if (got != want) {
			fprintf(stderr, "%s: %016llu.idx entry %llu is %#llx, want %#llx\n", cur_test,
			        (unsigned long long)num, (unsigned long long)k, (unsigned long long)got,
			        (unsigned long long)want);
			test_failures++;
			ok = 0;
		}
	}
	free(seg);
	free(idx);
	return ok;
}

/* test_index_check: the index's own checks, on memory: its header, finding the entry a
 * read starts at, and checking it against the segment, including an entry that points at
 * a valid record beyond the committed word of a sealed segment. */
static void test_index_check(void)
{
	const uint64_t size = 16384, block = 4096;
	unsigned char *b = (unsigned char *)aligned_alloc(4096, size), x[64 + 3 * 8], src[5000];
	uint64_t offs[32], o = HDR, bs = 0, e = 0, k, want;
	int n = 0, i;

	memset(b, 0, size);
	memset(src, 's', sizeof src);
	put_header(b, size, 5, 100, 0);
	/* Records of 1000 bytes, and one of 5000 that covers a whole block. */
	while (o + (n == 3 ? 5024u : 1024u) <= size) {
		offs[n] = o;
		o = put_record(b, o, 100 + (uint64_t)n, 0, src, n == 3 ? 5000 : 1000);
		n++;
	}
	CHECK_EQ(n, 12);
	idx_put_header(x, 5, size, (uint32_t)block);
	CHECK_EQ(idx_parse(x, sizeof x, 5, size, &bs), 3);
	CHECK_EQ(bs, block);
	CHECK_EQ(idx_parse(x, sizeof x - 8, 5, size, &bs), 0);
	CHECK_EQ(idx_parse(x, sizeof x, 6, size, &bs), 0);
	CHECK_EQ(idx_parse(x, sizeof x, 5, size + 4096, &bs), 0);
	/* Entries as the writer stores them: the first record at or after k * block. */
	for (k = 1; k <= 3; k++) {
		for (i = 0; i < n && offs[i] < k * block; i++)
			;
		st64(x + 64 + 8 * (k - 1), i < n ? offs[i] | (uint64_t)i << 32 : 0);
	}
	/* The largest k whose index is at most i. */
	CHECK_EQ(idx_find(x, 3, 0, &e), 0);
	k = idx_find(x, 3, UINT64_MAX, &e);
	CHECK_EQ(k, 3);
	CHECK_EQ(idx_find(x, 3, (ld64(x + 64 + 16) >> 32) - 1, &e), 2);
	CHECK_EQ(idx_find(x, 3, 1000, &e), 3);
	for (k = 1; k <= 3; k++)
		CHECK_EQ(idx_check(b, size, 100, k, block, ld64(x + 64 + 8 * (k - 1))), 1);
	e = ld64(x + 64 + 16); /* entry 3 */
	CHECK_EQ(idx_check(b, size, 100, 3, block, e + 8), 0);               /* mid-record */
	CHECK_EQ(idx_check(b, size, 100, 3, block, e + (1ull << 32)), 0);    /* wrong index */
	CHECK_EQ(idx_check(b, size, 100, 3, block, e - (1ull << 32)), 0);
	CHECK_EQ(idx_check(b, size, 101, 3, block, e), 0);                   /* another first sequence */
	CHECK_EQ(idx_check(b, size, 100, 3, block, ld64(x + 64 + 8)), 0);    /* below k * block */
	CHECK_EQ(idx_check(b, size, 100, 3, block, (e & ~0xffffffffull) | size), 0); /* beyond the end */
	CHECK_EQ(idx_check(b, size, 100, 3, block, (e & 0xffffffffull) | 1000ull << 32), 0); /* index too big */
	CHECK_EQ(idx_check(b, size, 100, 3, block, (uint64_t)o | (uint64_t)n << 32), 0); /* no record there */
	/* Sealed before the record entry 3 points at: it is beyond the committed word. A hot
	 * segment's committed word only lags, and says nothing against it. */
	want = e & 0xffffffffu;
	seal(b, want);
	CHECK_EQ(idx_check(b, size, 100, 3, block, e), 0);
	CHECK_EQ(idx_check(b, size, 100, 2, block, ld64(x + 64 + 8)), 1);
	st64(b + OFF_SEALED, 0);
	CHECK_EQ(idx_check(b, size, 100, 3, block, e), 1);
	free(b);
}

/* test_index_writer: segments of 1 MiB or more get an index, exactly as FORMAT.md says,
 * through records of every size (longer than a block, across several, one starting on a
 * block boundary), while the segment is hot and once it is sealed, for segments made at a
 * roll and prepared ahead by poll; smaller segments get none. */
static void test_index_writer(void)
{
	static unsigned char big[300000];
	char *dir = ring_in(), path[400];
	filering_options o = small_opts(TEST_MIB, 8);
	filering_writer *w;
	struct manifest m;
	size_t len, i;
	int timeout, boundary = 0;

	memset(big, 'b', sizeof big);
	CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
	if (test_failures)
		return;
	srand(7);
	for (i = 0; i < 30000 && !test_failures; i++) {
		if (i % 3000 == 1000)
			len = 70000;
		else if (i % 7000 == 2000)
			len = 200000;
		else
			len = (size_t)(rand() % 300);
		if (i == 5000) {
			/* A record that ends where a block begins: the next one starts on it. */
			uint64_t to = (w->hot.off / 65536 + 1) * 65536;
			if (to - w->hot.off >= RECHDR && to <= TEST_MIB) {
				len = (size_t)(to - w->hot.off - RECHDR);
				boundary = 1;
			}
		}
		CHECK_EQ(filering_append(w, big, len, NULL), 0);
		if (i % 10000 == 0) {
			/* A segment prepared ahead comes with its index. */
			CHECK_EQ(filering_writer_poll(w, &timeout), 0);
			CHECK(w->have_spare && w->spare.idx.b != NULL);
			CHECK_EQ(count_names(dir, ".idx", 1), 1);
		}
	}
	CHECK(boundary);
	/* The hot segment's entries are stored as its records are published. */
	load_manifest(dir, &m);
	CHECK(m.n >= 5);
	for (i = 0; i < m.n; i++)
		expect_index(dir, m.e[i].num, TEST_MIB);
	manifest_free(&m);
	CHECK_EQ(filering_writer_close(w), 0);
	load_manifest(dir, &m);
	for (i = 0; i < m.n; i++)
		expect_index(dir, m.e[i].num, TEST_MIB);
	CHECK_EQ(count_names(dir, ".idx", 0), (int)m.n);
	CHECK_EQ(count_names(dir, ".seg", 0), (int)m.n);
	CHECK_EQ(count_names(dir, "", 1), 0); /* no temporary file left */
	manifest_free(&m);
	/* Reopened: the new hot segment has one too, and the sealed ones keep theirs. */
	CHECK_EQ(filering_writer_open(dir, NULL, &w), 0);
	CHECK_EQ(append_n(w, 5000), 0);
	load_manifest(dir, &m);
	expect_index(dir, m.e[m.n - 1].num, TEST_MIB);
	CHECK_EQ(count_names(dir, ".idx", 0), (int)m.n);
	manifest_free(&m);
	CHECK_EQ(filering_writer_close(w), 0);
	/* Below 1 MiB, no index. */
	dir = ring_in();
	o = small_opts(TEST_MIB - 4096, 4);
	CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
	CHECK_EQ(filering_writer_poll(w, &timeout), 0);
	CHECK_EQ(append_n(w, 200000), 0);
	CHECK_EQ(filering_writer_close(w), 0);
	CHECK_EQ(count_names(dir, ".idx", 0) + count_names(dir, ".idx", 1), 0);
	CHECK(access(file_in(path, sizeof path, dir, 1, ".seg"), F_OK) != 0); /* retired: it rolled */
}

/* test_index_retention: an index goes with its segment, when retention drops it (after
 * its N.seg, even when a taker claimed that), when a lower retention drops it at open,
 * and when a full file system drops it; recovery removes indexes the manifest does not
 * list. */
static void test_index_retention(void)
{
	char *dir = ring_in(), *mnt, path[400], to[400], ring[400];
	filering_options o = small_opts(TEST_MIB, 4);
	filering_writer *w;
	struct manifest m;
	uint64_t taken;
	size_t i;
	int r = 0;

	CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
	if (test_failures)
		return;
	CHECK_EQ(append_n(w, 100000), 0); /* 32 bytes a record: some 3 segments */
	load_manifest(dir, &m);
	CHECK(m.n >= 3 && m.e[0].sealed);
	taken = m.e[0].num;
	manifest_free(&m);
	/* A taker claims the oldest; the index stays until retention drops the number. */
	CHECK_EQ(rename(file_in(path, sizeof path, dir, taken, ".seg"), file_in(to, sizeof to, dir, taken, ".taken")), 0);
	CHECK_EQ(access(file_in(path, sizeof path, dir, taken, ".idx"), F_OK), 0);
	CHECK_EQ(append_n(w, 200000), 0);
	CHECK(access(file_in(path, sizeof path, dir, taken, ".idx"), F_OK) != 0);
	CHECK_EQ(access(file_in(path, sizeof path, dir, taken, ".taken"), F_OK), 0);
	load_manifest(dir, &m);
	CHECK_EQ(m.n, 4);
	for (i = 0; i < m.n; i++)
		CHECK_EQ(access(file_in(path, sizeof path, dir, m.e[i].num, ".idx"), F_OK), 0);
	CHECK_EQ(count_names(dir, ".idx", 0), (int)m.n);
	CHECK_EQ(count_names(dir, ".seg", 0), (int)m.n);
	for (i = 0; i < m.n; i++)
		CHECK(expect_index(dir, m.e[i].num, TEST_MIB));
	/* The files of removed segments' indexes serve the new ones: the writer holds
	 * one free (the last removed), under a temporary name, and none once closed; and
	 * so it does with the last removed segment's file, kept for reuse. */
	CHECK_EQ(count_containing(dir, ".idx-free-"), 1);
	CHECK_EQ(count_containing(dir, ".seg.free-"), 1);
	CHECK_EQ(count_names(dir, "", 1), 2);
	manifest_free(&m);
	CHECK_EQ(filering_writer_close(w), 0);
	CHECK_EQ(count_names(dir, "", 1), 0);
	/* A lower retention at open drops the oldest, indexes too; an index of a retired
	 * number found at open goes after the new manifest. */
	CHECK_EQ(write_whole(file_in(path, sizeof path, dir, 1, ".idx"), "stale", 5), 0);
	chmod(path, 0600);
	o = small_opts(0, 2);
	CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
	CHECK(access(path, F_OK) != 0);
	load_manifest(dir, &m);
	CHECK_EQ(m.n, 2);
	CHECK_EQ(count_names(dir, ".idx", 0), 2);
	CHECK_EQ(count_names(dir, ".seg", 0), 2);
	manifest_free(&m);
	CHECK_EQ(filering_writer_close(w), 0);
	/* A full file system: every segment dropped for room takes its index along. */
	mnt = new_dir();
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=4200k") != 0) {
		printf("skip %s (full file system): cannot mount a tmpfs here (%s)\n", cur_test, strerror(errno));
		return;
	}
	snprintf(ring, sizeof ring, "%s/ring", mnt);
	o = small_opts(TEST_MIB, 8);
	logbuf[0] = 0;
	CHECK_EQ(filering_writer_open_ex(ring, &o, tlog, NULL, NULL, &w), 0);
	for (i = 0; i < 400000 && r == 0; i++) {
		r = append_n(w, 1);
		if (i % 20000 == 0)
			filering_writer_poll(w, NULL);
	}
	CHECK_EQ(r, 0);
	CHECK(strstr(logbuf, "file system full: dropped segment") != NULL);
	load_manifest(ring, &m);
	CHECK_EQ(count_names(ring, ".seg", 0), (int)m.n);
	for (i = 0; i < m.n; i++)
		CHECK_EQ(access(file_in(path, sizeof path, ring, m.e[i].num, ".seg"), F_OK), 0);
	CHECK(count_names(ring, ".idx", 0) <= (int)m.n);
	CHECK(count_names(ring, ".idx", 0) >= (int)m.n - 1); /* the last one may have found no room */
	manifest_free(&m);
	CHECK_EQ(filering_writer_close(w), 0);
	umount2(mnt, MNT_DETACH);
}

/* hide_indexes renames every N.idx of dir to a name readers ignore (.N.idx.hidden), or
 * back: a reader then reads as one that knows no index. */
static void hide_indexes(const char *dir, int hide)
{
	char names[64][64], to[80];
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0, i;

	if (!d)
		return;
	while ((de = readdir(d)) != NULL && n < 64) {
		size_t len = strlen(de->d_name);
		if (len < sizeof names[0] && (hide ? parse_name(de->d_name, len, ".idx") != 0
		                                   : len > 8 && de->d_name[0] == '.' &&
		                                         strcmp(de->d_name + len - 7, ".hidden") == 0))
			memcpy(names[n++], de->d_name, len + 1);
	}
	for (i = 0; i < n; i++) {
		if (hide)
			snprintf(to, sizeof to, ".%s.hidden", names[i]);
		else
			snprintf(to, sizeof to, "%.*s", (int)strlen(names[i]) - 8, names[i] + 1);
		CHECK_EQ(renameat(dirfd(d), names[i], dirfd(d), to), 0);
	}
	closedir(d);
}

/* What a snapshot read gives: its records' sequence numbers (each record holds its own as
 * text), its errors, and whether it started inside its first segment at an index entry. */
struct outcome {
	uint64_t *seqs;
	size_t n, cap;
	int nerr, bad, used;
	int code[4];
	int64_t off[4];
	char file[4][32];
};

static void outcome_read(const char *dir, const filering_selection *sel, struct outcome *o)
{
	filering_reader *r;
	filering_record rec;
	char b[32];
	int rc;

	free(o->seqs);
	memset(o, 0, sizeof *o);
	rc = filering_reader_open(dir, 0, sel, &r);
	CHECK_EQ(rc, 0);
	if (rc != 0)
		return;
	while ((rc = filering_reader_next(r, &rec, 0)) != 0) {
		if (rc == FILERING_RECORD) {
			if (o->n == 0 && r->si < r->nsegs)
				o->used = r->segs[r->si].ioff != 0;
			snprintf(b, sizeof b, "%llu", (unsigned long long)rec.seq);
			if (rec.len != strlen(b) || memcmp(rec.data, b, rec.len) != 0)
				o->bad++;
			push_u64(&o->seqs, &o->n, &o->cap, rec.seq);
			continue;
		}
		if (o->nerr < 4) {
			o->code[o->nerr] = rc;
			o->off[o->nerr] = filering_reader_error_offset(r);
			snprintf(o->file[o->nerr], sizeof o->file[0], "%s",
			         filering_reader_error_file(r) ? filering_reader_error_file(r) : "");
		}
		o->nerr++;
		if (rc > 0)
			break;
	}
	filering_reader_close(r);
}

static int same_outcome(const struct outcome *a, const struct outcome *b)
{
	int i;

	if (a->n != b->n || a->nerr != b->nerr || a->bad || b->bad ||
	    (a->n && memcmp(a->seqs, b->seqs, a->n * sizeof *a->seqs) != 0))
		return 0;
	for (i = 0; i < a->nerr && i < 4; i++)
		if (a->code[i] != b->code[i] || a->off[i] != b->off[i] || strcmp(a->file[i], b->file[i]) != 0)
			return 0;
	return 1;
}

/* compare_read reads dir with sel through its indexes (into *with) and without them, and
 * reports whether both give the same. */
static int compare_read(const char *dir, const filering_selection *sel, struct outcome *with)
{
	struct outcome without;
	int same;

	memset(&without, 0, sizeof without);
	outcome_read(dir, sel, with);
	hide_indexes(dir, 1);
	outcome_read(dir, sel, &without);
	hide_indexes(dir, 0);
	CHECK(!without.used);
	same = same_outcome(with, &without);
	if (getenv("TEST_VERBOSE"))
		fprintf(stderr, "  last %llu from %llu: %lu records and %d errors through the index, %lu and %d without\n",
		        (unsigned long long)sel->last, (unsigned long long)sel->from, (unsigned long)with->n, with->nerr,
		        (unsigned long)without.n, without.nerr);
	free(without.seqs);
	return same;
}

/* rec_off returns the offset of the record with sequence seq in segment num of dir. */
static uint64_t rec_off(const char *dir, uint64_t num, uint64_t seq)
{
	char path[400];
	size_t n = 0;
	unsigned char *b = read_whole(file_in(path, sizeof path, dir, num, ".seg"), &n);
	uint64_t off = HDR, s;

	CHECK(b && n > HDR);
	if (!b)
		return 0;
	for (s = ld64(b + 32); s < seq && off + 8 <= n && (uint32_t)ld64(b + off) >= RECHDR; s++)
		off += align8((uint32_t)ld64(b + off));
	CHECK_EQ(ld64(b + off + 8), seq);
	free(b);
	return off;
}

/* flip inverts the first payload byte of the record at off of segment num: damage, or
 * its repair. */
static void flip(const char *dir, uint64_t num, uint64_t off)
{
	char path[400];
	unsigned char c;
	int fd = open(file_in(path, sizeof path, dir, num, ".seg"), O_RDWR);

	CHECK(fd >= 0);
	CHECK(pread(fd, &c, 1, (off_t)off + RECHDR) == 1);
	c ^= 0xff;
	CHECK(pwrite(fd, &c, 1, (off_t)off + RECHDR) == 1);
	close(fd);
}

/* index_reads checks the reads of the ring in dir (1 MiB segments, records "K", the
 * newest of them newest; its newest segment, hot or sealed, holds some 20000 of them)
 * that may start at an index entry: through the index they give what they give without
 * it, start at an entry, and only damage before that entry makes a difference. */
static void index_reads(const char *dir, uint64_t newest)
{
	filering_selection sel;
	struct outcome o;
	struct manifest m;
	const struct mentry *l, *p;
	uint64_t off, s;

	memset(&o, 0, sizeof o);
	load_manifest(dir, &m);
	CHECK(m.n >= 3);
	if (test_failures) {
		manifest_free(&m);
		return;
	}
	l = &m.e[m.n - 1];
	p = &m.e[m.n - 2];
	CHECK(newest - l->first > 15000);
	memset(&sel, 0, sizeof sel);
	/* Healthy. */
	sel.last = 1000;
	CHECK(compare_read(dir, &sel, &o));
	CHECK(o.used);
	CHECK_EQ(o.n, 1000);
	CHECK_EQ(o.seqs[0], newest - 999);
	sel.last = 1;
	CHECK(compare_read(dir, &sel, &o));
	CHECK(o.used);
	sel.last = newest - l->first + 1 + 5000; /* starts in the segment before */
	CHECK(compare_read(dir, &sel, &o));
	CHECK(o.used);
	CHECK_EQ(o.seqs[0], l->first - 5000);
	sel.last = newest - l->first + 1; /* starts at the first record of the newest */
	CHECK(compare_read(dir, &sel, &o));
	CHECK(!o.used);
	CHECK_EQ(o.seqs[0], l->first);
	sel.last = 0;
	sel.from = l->first + 15000;
	CHECK(compare_read(dir, &sel, &o));
	CHECK(o.used);
	CHECK_EQ(o.n, newest - sel.from + 1);
	sel.from = p->first + 20000; /* in an older segment: read on through the newer ones */
	CHECK(compare_read(dir, &sel, &o));
	CHECK(o.used);
	CHECK_EQ(o.n, newest - sel.from + 1);
	sel.from = l->first + 15000;
	sel.last = 100;
	CHECK(compare_read(dir, &sel, &o));
	CHECK(o.used);
	CHECK_EQ(o.n, 100);
	sel.from = newest + 10; /* nothing */
	sel.last = 0;
	CHECK(compare_read(dir, &sel, &o));
	CHECK_EQ(o.n, 0);
	memset(&sel, 0, sizeof sel); /* a whole read never uses one */
	CHECK(compare_read(dir, &sel, &o));
	CHECK(!o.used);
	CHECK_EQ(o.n, newest);
	/* Damage before the entry the read starts at: not read, not reported, and it stops
	 * nothing; a whole read reports it. */
	s = l->first + 100;
	off = rec_off(dir, l->num, s);
	flip(dir, l->num, off);
	outcome_read(dir, &sel, &o);
	CHECK_EQ(o.nerr, 1);
	CHECK_EQ(o.code[0], FILERING_ECHECKSUM);
	CHECK_EQ(o.off[0], (int64_t)off);
	sel.last = 1000;
	CHECK(!compare_read(dir, &sel, &o));
	CHECK(o.used);
	CHECK_EQ(o.nerr, 0);
	CHECK_EQ(o.n, 1000);
	CHECK_EQ(o.seqs[0], newest - 999);
	sel.last = 0;
	sel.from = l->first + 15000;
	CHECK(!compare_read(dir, &sel, &o));
	CHECK(o.used);
	CHECK_EQ(o.nerr, 0);
	CHECK_EQ(o.n, newest - sel.from + 1);
	flip(dir, l->num, off);
	/* Damage after the entry: read as without an index. */
	s = newest - 500;
	off = rec_off(dir, l->num, s);
	flip(dir, l->num, off);
	memset(&sel, 0, sizeof sel);
	sel.last = 1000;
	CHECK(compare_read(dir, &sel, &o));
	CHECK_EQ(o.nerr, 1);
	CHECK_EQ(o.off[0], (int64_t)off);
	sel.last = 0;
	sel.from = l->first + 15000;
	CHECK(compare_read(dir, &sel, &o));
	CHECK_EQ(o.nerr, 1);
	sel.from = newest - 450; /* after the damage, which lies after the entry */
	CHECK(compare_read(dir, &sel, &o));
	CHECK_EQ(o.nerr, 1);
	sel.from = 0;
	sel.last = newest - l->first + 1 + 5000;
	CHECK(compare_read(dir, &sel, &o));
	CHECK_EQ(o.nerr, 1);
	flip(dir, l->num, off);
	/* Close to the end: the records before the damage start earlier than the entry a
	 * read of the last 1000 would use; it must not be used. */
	off = rec_off(dir, l->num, newest - 10);
	flip(dir, l->num, off);
	memset(&sel, 0, sizeof sel);
	sel.last = 1000;
	CHECK(compare_read(dir, &sel, &o));
	CHECK(!o.used);
	CHECK_EQ(o.n, 1000);
	CHECK_EQ(o.nerr, 1);
	flip(dir, l->num, off);
	/* Damage after the entry of an older segment a read starts in. */
	s = p->last - 10;
	off = rec_off(dir, p->num, s);
	flip(dir, p->num, off);
	memset(&sel, 0, sizeof sel);
	sel.last = newest - l->first + 1 + 5000;
	CHECK(compare_read(dir, &sel, &o));
	CHECK_EQ(o.nerr, 1);
	sel.last = 0;
	sel.from = p->first + 20000;
	CHECK(compare_read(dir, &sel, &o));
	CHECK_EQ(o.nerr, 1);
	flip(dir, p->num, off);
	free(o.seqs);
	manifest_free(&m);
}

/* test_index_reader: last N and from S through indexes, on a ring whose newest segment is
 * hot (the writer holds it) and then sealed. */
static void test_index_reader(void)
{
	char *dir = ring_in();
	filering_options o = small_opts(TEST_MIB, 8);
	filering_writer *w;
	filering_selection sel;
	struct outcome out;

	CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
	if (test_failures)
		return;
	CHECK_EQ(append_n(w, 118000), 0); /* 3 segments of 32766 records, and 19702 */
	CHECK_EQ(filering_writer_flush(w), 0);
	index_reads(dir, 118000);
	/* A hot segment holding fewer records than the read needs is read whole. */
	CHECK_EQ(append_n(w, 20000), 0); /* rolls: the hot one holds some 6000 */
	CHECK_EQ(filering_writer_flush(w), 0);
	memset(&sel, 0, sizeof sel);
	memset(&out, 0, sizeof out);
	sel.last = 8000;
	CHECK(compare_read(dir, &sel, &out));
	CHECK(out.used);
	CHECK_EQ(out.n, 8000);
	CHECK_EQ(out.seqs[7999], 138000);
	free(out.seqs);
	CHECK_EQ(append_n(w, 12000), 0);
	CHECK_EQ(filering_writer_close(w), 0);
	index_reads(dir, 150000);
}

/* test_index_hostile: indexes that are wrong in every way a reader checks change nothing
 * and report nothing. The ring has damage before the entry a valid index would start the
 * reads at, so that a read that used one would differ from one without. */
static void test_index_hostile(void)
{
	enum { SHORT, LONG, EMPTY, MAGIC, VERSION, CRC, NUMBER, SIZE, BLOCK, BLOCK_ODD, COUNT, ZERO, MID_RECORD,
	       INDEX_UP, INDEX_DOWN, BELOW_BLOCK, BEYOND, SYMLINK, FIFO, DIRECTORY, NV };
	static const char *const names[] = {"short", "long", "empty", "magic", "version", "crc", "number", "size",
	                                    "block", "block-odd", "count", "zero", "mid-record", "index-up",
	                                    "index-down", "below-block", "beyond", "symlink", "fifo", "directory"};
	char *dir = ring_in(), path[400], good_path[400];
	filering_options o = small_opts(TEST_MIB, 8);
	filering_selection last, from;
	filering_writer *w;
	struct outcome base_last, base_from, got;
	struct manifest m;
	unsigned char *good, *b;
	size_t n = 0, k;
	uint64_t num, e;
	int v, fd;

	memset(&base_last, 0, sizeof base_last);
	memset(&base_from, 0, sizeof base_from);
	memset(&got, 0, sizeof got);
	CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
	if (test_failures)
		return;
	CHECK_EQ(append_n(w, 50000), 0);
	CHECK_EQ(filering_writer_close(w), 0);
	load_manifest(dir, &m);
	num = m.e[m.n - 1].num;
	flip(dir, num, rec_off(dir, num, m.e[m.n - 1].first + 100));
	memset(&last, 0, sizeof last);
	memset(&from, 0, sizeof from);
	last.last = 1000;
	from.from = m.e[m.n - 1].first + 15000;
	/* A valid index changes these reads; without it they report the damage. */
	CHECK(!compare_read(dir, &last, &got));
	CHECK(got.used && got.nerr == 0);
	CHECK(!compare_read(dir, &from, &got));
	CHECK(got.used && got.nerr == 0);
	hide_indexes(dir, 1);
	outcome_read(dir, &last, &base_last);
	outcome_read(dir, &from, &base_from);
	hide_indexes(dir, 0);
	CHECK_EQ(base_last.nerr, 1);
	CHECK_EQ(base_from.nerr, 1);
	file_in(path, sizeof path, dir, num, ".idx");
	good = read_whole(path, &n);
	CHECK(good && n == 64 + 8 * 15);
	snprintf(good_path, sizeof good_path, "%s/../good.idx", dir);
	CHECK_EQ(write_whole(good_path, good, n), 0);
	for (v = 0; v < NV && good && !test_failures; v++) {
		b = (unsigned char *)malloc(n + 8);
		memcpy(b, good, n);
		memset(b + n, 0, 8);
		unlink(path);
		switch (v) {
		case MAGIC: b[3] = 'X'; break;
		case VERSION: st32(b + 8, 2); break;
		case CRC: b[20] ^= 1; break;
		case NUMBER: st64(b + 16, num + 1); break;
		case SIZE: st64(b + 24, 2 * TEST_MIB); break;
		case BLOCK: st32(b + 32, 32768); break;
		case BLOCK_ODD: st32(b + 32, 65535); break;
		case COUNT: st32(b + 36, 16); break;
		}
		if (v >= NUMBER && v <= COUNT)
			st32(b + 12, filering_crc32(0, b + 16, 24));
		for (k = 15; k >= 1; k--) {
			e = ld64(b + 64 + 8 * (k - 1));
			if (!e)
				continue;
			switch (v) {
			case ZERO: e = 0; break;
			case MID_RECORD: e += 8; break;
			case INDEX_UP: e += 1ull << 32; break;
			case INDEX_DOWN: e -= 1ull << 32; break;
			case BELOW_BLOCK: e = k > 1 ? ld64(b + 64 + 8 * (k - 2)) : e; break;
			case BEYOND: e |= 0xfffffff8u; break;
			}
			st64(b + 64 + 8 * (k - 1), e);
		}
		if (v == SYMLINK)
			CHECK_EQ(symlink("../good.idx", path), 0);
		else if (v == FIFO)
			CHECK_EQ(mkfifo(path, 0600), 0);
		else if (v == DIRECTORY)
			CHECK_EQ(mkdir(path, 0700), 0);
		else
			CHECK_EQ(write_whole(path, b, v == SHORT ? n - 8 : v == LONG ? n + 8 : v == EMPTY ? 0 : n), 0);
		free(b);
		outcome_read(dir, &last, &got);
		if (!same_outcome(&got, &base_last)) {
			fprintf(stderr, "%s: %s index: last 1000 differs: %lu records, %d errors, used %d; want %lu, %d\n", cur_test,
			        names[v], (unsigned long)got.n, got.nerr, got.used, (unsigned long)base_last.n, base_last.nerr);
			test_failures++;
		}
		outcome_read(dir, &from, &got);
		if (!same_outcome(&got, &base_from)) {
			fprintf(stderr, "%s: %s index: from %llu differs\n", cur_test, names[v],
			        (unsigned long long)from.from);
			test_failures++;
		}
		if (v == DIRECTORY)
			rmdir(path);
	}
	/* A FIFO named N.idx never blocks a reader (it would hang above), and neither does
	 * one a writer holds open for writing. */
	unlink(path);
	CHECK_EQ(mkfifo(path, 0600), 0);
	fd = open(path, O_RDWR | O_NONBLOCK);
	CHECK(fd >= 0);
	outcome_read(dir, &last, &got);
	CHECK(same_outcome(&got, &base_last));
	close(fd);
	unlink(path);
	unlink(good_path);
	free(good);
	free(got.seqs);
	free(base_last.seqs);
	free(base_from.seqs);
	manifest_free(&m);
}

/* test_index_recovery: the hot segment a killed producer left keeps its index, which
 * readers use; indexes of numbers the manifest does not list are removed after the new
 * manifest, temporary ones at once, and a stray index's number is never used again. */
static void test_index_recovery(void)
{
	char *dir = ring_in(), path[400], tmp[400];
	filering_options o = small_opts(TEST_MIB, 8);
	filering_selection sel;
	filering_writer *w;
	struct outcome out;
	struct manifest m;

	memset(&out, 0, sizeof out);
	CHECK(waitkilled(crash_child(dir, &o, 50000))); /* segment 1 sealed, 2 hot */
	CHECK_EQ(access(file_in(path, sizeof path, dir, 2, ".idx"), F_OK), 0);
	CHECK_EQ(filering_writer_open(dir, NULL, &w), 0);
	if (test_failures)
		return;
	CHECK_EQ(filering_writer_next_seq(w), 50001);
	CHECK_EQ(access(path, F_OK), 0);
	expect_index(dir, 2, TEST_MIB);
	memset(&sel, 0, sizeof sel);
	sel.last = 100;
	CHECK(compare_read(dir, &sel, &out));
	CHECK(out.used);
	CHECK_EQ(out.n, 100);
	CHECK_EQ(filering_writer_close(w), 0);
	/* Leftovers: an unlisted index above every number, a temporary one. */
	CHECK_EQ(write_whole(file_in(path, sizeof path, dir, 40, ".idx"), "stray", 5), 0);
	chmod(path, 0600);
	snprintf(tmp, sizeof tmp, "%s/.0000000000000041.new-abcdef.idx", dir);
	CHECK_EQ(write_whole(tmp, "tmp", 3), 0);
	chmod(tmp, 0600);
	CHECK_EQ(filering_writer_open(dir, NULL, &w), 0);
	CHECK(access(path, F_OK) != 0);
	CHECK(access(tmp, F_OK) != 0);
	load_manifest(dir, &m);
	CHECK_EQ(m.e[m.n - 1].num, 41);
	CHECK_EQ(count_names(dir, ".idx", 0), (int)m.n);
	manifest_free(&m);
	CHECK_EQ(append_n(w, 10), 0);
	expect_index(dir, 41, TEST_MIB);
	CHECK_EQ(filering_writer_close(w), 0);
	free(out.seqs);
}

/* ---- reusing segment files (docs/FORMAT.md, "Reusing a segment file") -------------------- */

/* var_payload writes the payload of record seq of the reuse tests into buf (300 bytes):
 * its number in decimal, then 0 to 240 bytes of a letter, both chosen by seq, so that
 * segments written at different times lay their records out differently and a reused
 * file holds old records at offsets the new ones do not start at. Returns its length. */
static size_t var_payload(uint64_t seq, unsigned char *buf)
{
	int k = snprintf((char *)buf, 32, "%llu", (unsigned long long)seq);
	size_t len = (size_t)k + (size_t)(seq * 7919 % 241);

	memset(buf + k, 'a' + (int)(seq % 26), len - (size_t)k);
	return len;
}

static int var_ok(const filering_record *rec)
{
	unsigned char want[300];
	size_t n = var_payload(rec->seq, want);

	return rec->len == n && memcmp(rec->data, want, n) == 0;
}

/* An inolog notes the inode of every segment's file when the segment becomes hot. On
 * tmpfs an inode number is not given to a new file again, so an equal number is the same
 * file. */
#define INOLOG_MAX 2048
struct inolog {
	uint64_t num[INOLOG_MAX];
	ino_t ino[INOLOG_MAX];
	size_t n;
};

static void note_hot(filering_writer *w, struct inolog *l)
{
	struct stat st;

	if (!w->have_hot || (l->n && l->num[l->n - 1] == w->hot.num) || l->n == INOLOG_MAX)
		return;
	if (fstat(w->hot.fd, &st) == 0) {
		l->num[l->n] = w->hot.num;
		l->ino[l->n] = st.st_ino;
		l->n++;
	}
}

/* reused counts the segments of l whose file was an earlier segment's. */
static int reused(const struct inolog *l)
{
	size_t i, j;
	int c = 0;

	for (i = 1; i < l->n; i++)
		for (j = 0; j < i; j++)
			if (l->ino[j] == l->ino[i]) {
				c++;
				break;
			}
	return c;
}

/* ino_after reports whether ino is the file of a segment of l numbered above num. */
static int ino_after(const struct inolog *l, ino_t ino, uint64_t num)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (l->num[i] > num && l->ino[i] == ino)
			return 1;
	return 0;
}

/* nonzero_next counts the appends after which the 8 bytes where the hot segment's next
 * record goes were not zero (docs/FORMAT.md, "Segment files"). */
static int nonzero_next;

/* append_var appends n records of var_payload, calling poll after every poll_every
 * records (0: never) and noting every new hot segment in l. After each append it checks
 * that the word where the next record goes is zero (nonzero_next). */
static int append_var(filering_writer *w, int n, int poll_every, struct inolog *l)
{
	unsigned char b[300];
	int i, r;

	note_hot(w, l);
	for (i = 0; i < n; i++) {
		if ((r = filering_append(w, b, var_payload(filering_writer_next_seq(w), b), NULL)) != 0)
			return r;
		if (w->hot.off + 8 <= w->segment_size && ld64(w->hot.b + w->hot.off) != 0)
			nonzero_next++;
		note_hot(w, l);
		if (poll_every && i % poll_every == poll_every - 1)
			filering_writer_poll(w, NULL);
	}
	return 0;
}

/* What drain read from a follower. */
struct drained {
	uint64_t records, first, last, lost;
	int losses, errors, bad;
	const char *kind; /* of the last error */
};

/* drain reads from a follower what it has now (until it has nothing within wait_ms),
 * checking records with ok, in order, and adding up the records reported lost. */
static void drain(filering_reader *r, int wait_ms, int (*ok)(const filering_record *), struct drained *d)
{
	filering_record rec;
	uint64_t a, b;
	long k;
	int rc;

	for (k = 0; k < 10000000 && (rc = filering_reader_next(r, &rec, wait_ms)) != 0; k++) {
		if (rc == FILERING_RECORD) {
			if (!ok(&rec) || (d->last && rec.seq <= d->last))
				d->bad++;
			if (!d->records)
				d->first = rec.seq;
			d->last = rec.seq;
			d->records++;
		} else if (rc == FILERING_LOSS) {
			filering_reader_loss(r, &a, &b);
			d->losses++;
			d->lost += b - a + 1;
		} else {
			d->errors++;
			d->kind = filering_reader_error_kind(r);
			if (!filering_is_damage(rc))
				break;
		}
	}
}

/* seg_end returns where the records of the segment file at b (size bytes) end: the end of
 * the last valid one, as recovery finds it. */
static uint64_t seg_end(const unsigned char *b, uint64_t size)
{
	struct scanner sc;

	memset(&sc, 0, sizeof sc);
	scan_init(&sc, b, size, ld64(b + 32));
	scan_valid(&sc);
	free(sc.buf);
	return sc.off;
}

/* old_record_after reports whether the segment file of ring dir numbered num holds, past
 * the end of its records, a whole old record (size and CRC right) whose sequence number
 * is below the segment's first: a record of the file's use for an earlier segment. */
static int old_record_after(const char *dir, uint64_t num)
{
	char path[400];
	size_t n = 0;
	unsigned char *b = read_whole(file_in(path, sizeof path, dir, num, ".seg"), &n);
	uint64_t o, w, first;
	uint32_t size;
	int found = 0;

	if (!b || n < HDR) {
		free(b);
		return 0;
	}
	first = ld64(b + 32);
	for (o = seg_end(b, n); o + RECHDR <= n && !found; o += 8) {
		w = ld64(b + o);
		size = (uint32_t)w;
		found = size >= RECHDR && o + align8(size) <= n &&
		        filering_crc32(0, b + o + 8, size - 8) == (uint32_t)(w >> 32) && ld64(b + o + 8) < first;
	}
	free(b);
	return found;
}

/* test_reuse_happens: with a ring of 3 segments of 64 KiB rolled some 20 times, removed
 * segments' files come back under later segments' names, the writer keeps at most
 * KEEP_MAX of them, and readers read every record right with no damage reported: a
 * follower that keeps up as the ring rolls, snapshots, and sealed and hot segments whose
 * files hold old records past their end. */
static void test_reuse_happens(void)
{
	static struct inolog l;
	char *dir = ring_in();
	filering_options o = small_opts(65536, 3);
	filering_selection sel;
	filering_writer *w;
	filering_reader *f;
	struct drained d;
	struct snapres s;
	struct manifest m;
	uint64_t total;
	int round;

	memset(&l, 0, sizeof l);
	memset(&d, 0, sizeof d);
	nonzero_next = 0;
	CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
	if (test_failures)
		return;
	CHECK_EQ(filering_reader_open(dir, FILERING_FOLLOW, NULL, &f), 0);
	for (round = 0; round < 20; round++) {
		/* About 150 bytes a record: some 400 a segment. */
		CHECK_EQ(append_var(w, 500, 100, &l), 0);
		CHECK(w->nkept <= KEEP_MAX);
		drain(f, 0, var_ok, &d);
	}
	CHECK(reused(&l) >= 10);
	/* The hot segment stops in its middle: past its records, its file holds the old
	 * segment's. Then it is sealed there by close. */
	CHECK_EQ(append_var(w, 200, 0, &l), 0);
	total = filering_writer_next_seq(w) - 1;
	CHECK(old_record_after(dir, w->hot.num));
	s = snapshot_check(dir, NULL, var_ok);
	CHECK_EQ(s.errors + s.bad + s.gaps, 0);
	CHECK_EQ(s.last, total);
	CHECK(s.n > 800);
	drain(f, 0, var_ok, &d);
	CHECK_EQ(filering_writer_close(w), 0);
	CHECK_EQ(count_containing(dir, ".free-"), 0);
	/* Every record reached the follower or was reported lost, exactly. */
	drain(f, 100, var_ok, &d);
	CHECK_EQ(d.errors + d.bad, 0);
	CHECK_EQ(d.first, 1);
	CHECK_EQ(d.last, total);
	CHECK_EQ(d.records + d.lost, total);
	filering_reader_close(f);
	load_manifest(dir, &m);
	CHECK_EQ(m.n, 3);
	CHECK(m.n == 3 && m.e[2].sealed && old_record_after(dir, m.e[2].num)); /* sealed by close */
	manifest_free(&m);
	s = snapshot_check(dir, NULL, var_ok);
	CHECK_EQ(s.errors + s.bad + s.gaps, 0);
	CHECK_EQ(s.last, total);
	memset(&sel, 0, sizeof sel);
	sel.last = 300;
	s = snapshot_check(dir, &sel, var_ok);
	CHECK_EQ(s.errors + s.bad + s.gaps, 0);
	CHECK_EQ(s.n, 300);
	CHECK_EQ(s.last, total);
	/* A producer opened again goes on; the files it removes come back too. */
	memset(&l, 0, sizeof l);
	CHECK_EQ(filering_writer_open(dir, NULL, &w), 0);
	CHECK_EQ(append_var(w, 2000, 0, &l), 0);
	CHECK(reused(&l) >= 1);
	CHECK_EQ(nonzero_next, 0);
	CHECK_EQ(filering_writer_close(w), 0);
	s = snapshot_check(dir, NULL, var_ok);
	CHECK_EQ(s.errors + s.bad + s.gaps, 0);
	CHECK_EQ(s.last, total + 2000);
}

/* test_reuse_seal_after: a roll made by poll (seal_after) leaves a new hot segment with
 * no record, in a reused file: the word where its first record goes is zero already (a
 * spinning follower watches it), not the old record the file held there. */
static void test_reuse_seal_after(void)
{
	static struct inolog l;
	char *dir = ring_in();
	filering_options o = small_opts(65536, 3);
	struct timespec pause = {0, 3000000};
	filering_writer *w;
	struct snapres s;
	int i, empty = 0, bad = 0;

	memset(&l, 0, sizeof l);
	o.seal_after_ns = 2000000;
	CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
	if (test_failures)
		return;
	for (i = 0; i < 12; i++) {
		CHECK_EQ(append_var(w, 300, 0, &l), 0);
		nanosleep(&pause, NULL);
		CHECK_EQ(filering_writer_poll(w, NULL), 0);
		note_hot(w, &l);
		if (w->hot.count == 0) {
			empty++;
			bad += ld64(w->hot.b + HDR) != 0;
		}
	}
	CHECK(empty >= 10);
	CHECK_EQ(bad, 0);
	CHECK(reused(&l) >= 8);
	CHECK_EQ(filering_writer_close(w), 0);
	s = snapshot_check(dir, NULL, var_ok);
	CHECK_EQ(s.errors + s.bad + s.gaps, 0);
	CHECK(s.n >= 600);
}

/* held_num reports whether the writer holds the file of sealed segment num. */
static int held_num(const filering_writer *w, uint64_t num)
{
	size_t i;

	for (i = 0; i < w->nheld; i++)
		if (w->held[i].num == num)
			return 1;
	return 0;
}

/* test_reuse_taken: the writer holds the files of sealed segments (descriptor and
 * mapping) to keep them for reuse; one that a taker claims and removes is released at
 * the next roll, so that its memory goes back at once, and retention later finds its name
 * gone and keeps nothing. */
static void test_reuse_taken(void)
{
	static struct inolog l;
	char *dir = ring_in(), path[400], to[400];
	filering_options o = small_opts(65536, 4);
	filering_writer *w;
	struct snapres s;

	memset(&l, 0, sizeof l);
	CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
	if (test_failures)
		return;
	while (w->hot.num < 3)
		CHECK_EQ(append_var(w, 1, 0, &l), 0);
	CHECK(held_num(w, 1) && held_num(w, 2));
	/* A taker takes segment 1 and is done with it. */
	CHECK_EQ(rename(file_in(path, sizeof path, dir, 1, ".seg"), file_in(to, sizeof to, dir, 1, ".taken")), 0);
	CHECK_EQ(unlink(to), 0);
	while (w->hot.num < 4)
		CHECK_EQ(append_var(w, 1, 0, &l), 0);
	CHECK(!held_num(w, 1));
	CHECK(held_num(w, 2) && held_num(w, 3));
	/* Retention drops 1 (nothing to keep), then 2 (kept, then reused). */
	while (w->hot.num < 7)
		CHECK_EQ(append_var(w, 1, 0, &l), 0);
	CHECK(reused(&l) >= 1);
	CHECK_EQ(filering_writer_close(w), 0);
	s = snapshot_check(dir, NULL, var_ok);
	CHECK_EQ(s.errors + s.bad + s.gaps, 0);
	CHECK(s.n > 0);
}

/* test_reuse_replaced: the writer holds sealed segment 1's file; a taker claims it
 * (N.taken, and dies there) and another file appears as N.seg (a copy, made by someone
 * who may write the ring). When retention removes segment 1, the writer keeps neither:
 * the name no longer names the file it holds, which it must not write into (it is the
 * taker's), and the other file goes. Every later segment is written where readers find
 * it. */
static void test_reuse_replaced(void)
{
	static struct inolog l;
	char *dir = ring_in(), path[400], taken[400], copy[400];
	filering_options o = small_opts(65536, 3);
	filering_writer *w;
	struct snapres s;
	struct stat st, tk;
	unsigned char *b, *after;
	size_t n, n2;

	memset(&l, 0, sizeof l);
	CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
	if (test_failures)
		return;
	while (w->hot.num < 2)
		CHECK_EQ(append_var(w, 1, 0, &l), 0);
	CHECK(held_num(w, 1));
	b = read_whole(file_in(path, sizeof path, dir, 1, ".seg"), &n);
	CHECK_EQ(rename(path, file_in(taken, sizeof taken, dir, 1, ".taken")), 0);
	snprintf(copy, sizeof copy, "%s/copy", dir);
	CHECK(b && write_whole(copy, b, n) == 0 && chmod(copy, 0640) == 0 && stat(copy, &st) == 0);
	CHECK_EQ(rename(copy, path), 0);
	CHECK_EQ(append_var(w, 5000, 0, &l), 0); /* some 11 rolls */
	CHECK(reused(&l) >= 5);
	CHECK(!ino_after(&l, st.st_ino, 0));
	/* The taker's file is as the taker left it. */
	after = read_whole(taken, &n2);
	CHECK(b && after && n2 == n && memcmp(after, b, n) == 0);
	CHECK(stat(taken, &tk) == 0 && !ino_after(&l, tk.st_ino, 1));
	free(b);
	free(after);
	s = snapshot_check(dir, NULL, var_ok);
	CHECK_EQ(s.errors + s.bad + s.gaps, 0);
	CHECK_EQ(s.last, filering_writer_next_seq(w) - 1);
	CHECK(s.n > 800);
	CHECK_EQ(filering_writer_close(w), 0);
	s = snapshot_check(dir, NULL, var_ok);
	CHECK_EQ(s.errors + s.bad + s.gaps, 0);
}

/* test_reuse_held: a file another open file description holds (a descriptor, or a
 * mapping whose descriptor is closed) is never reused: the lease is refused, the file is
 * unlinked, its inode never comes back, and the holder reads the old segment's records,
 * unchanged. The other files are reused all the same. */
static void test_reuse_held(void)
{
	static const char *const how[] = {"descriptor", "mapping"};
	static struct inolog l;
	unsigned char *copy, *p = NULL, *now;
	char *dir, path[400];
	filering_options o = small_opts(65536, 3);
	filering_writer *w;
	struct snapres s;
	struct scanner sc;
	struct stat st;
	struct dirent *de;
	DIR *dp;
	size_t n, k;
	int fd, named, recs;

	for (k = 0; k < sizeof how / sizeof how[0]; k++) {
		memset(&l, 0, sizeof l);
		dir = ring_in();
		CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
		if (test_failures)
			return;
		while (w->hot.num < 2 && append_var(w, 1, 0, &l) == 0)
			;
		fd = open(file_in(path, sizeof path, dir, 1, ".seg"), O_RDONLY | O_CLOEXEC);
		CHECK(fd >= 0 && fstat(fd, &st) == 0);
		copy = read_whole(path, &n);
		CHECK(copy && n == 65536);
		if (k == 1) {
			p = (unsigned char *)mmap(NULL, 65536, PROT_READ, MAP_SHARED, fd, 0);
			CHECK(p != MAP_FAILED);
			close(fd);
			fd = -1;
		}
		CHECK_EQ(append_var(w, 10000, 50, &l), 0); /* some 25 rolls */
		if (reused(&l) < 5 || ino_after(&l, st.st_ino, 1))
			fprintf(stderr, "%s: held by a %s: %d segments reused\n", cur_test, how[k], reused(&l));
		CHECK(reused(&l) >= 5);
		CHECK(!ino_after(&l, st.st_ino, 1));
		/* Given back, not kept: no name is left for it. */
		named = 0;
		if ((dp = opendir(dir)) != NULL) {
			while ((de = readdir(dp)) != NULL)
				named += de->d_ino == st.st_ino;
			closedir(dp);
		}
		CHECK_EQ(named, 0);
		/* The holder's bytes are the old segment's records. */
		now = (unsigned char *)malloc(65536);
		if (k == 0)
			CHECK(pread(fd, now, 65536, 0) == 65536);
		else if (p != MAP_FAILED)
			memcpy(now, p, 65536);
		CHECK(copy && memcmp(now, copy, 65536) == 0);
		memset(&sc, 0, sizeof sc);
		scan_init(&sc, now, 65536, 1);
		for (recs = 0; scan_next(&sc, SCAN_DELIVER) == 1; recs++) {
			filering_record rec;
			rec.seq = sc.seq;
			rec.data = sc.data;
			rec.len = sc.len;
			if (!var_ok(&rec))
				break;
		}
		CHECK(sc.done && !sc.err && recs > 300);
		free(sc.buf);
		free(now);
		free(copy);
		if (k == 0)
			close(fd);
		else if (p != MAP_FAILED)
			munmap(p, 65536);
		CHECK_EQ(filering_writer_close(w), 0);
		s = snapshot_check(dir, NULL, var_ok);
		CHECK_EQ(s.errors + s.bad + s.gaps, 0);
		CHECK(s.n > 0);
	}
}

/* The ways segment files are not reused, for test_reuse_off. */
static int hook_calls, hook_blocked;

/* break_lease plays a reader that opens a kept file while the writer holds its lease: the
 * open, non-blocking, fails with EWOULDBLOCK and breaks the lease, so the writer's check
 * finds it no longer held. */
static void break_lease(filering_writer *w, const struct kept *k)
{
	int fd = openat(w->dirfd, k->tmp, O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	hook_calls++;
	if (fd < 0 && errno == EWOULDBLOCK)
		hook_blocked++;
	if (fd >= 0)
		close(fd);
}

/* no_reuse_run writes a ring of 3 segments of 64 KiB, rolling some 25 times, and checks
 * that no file comes back under another name, that no file is kept when arg is not NULL
 * (*(int *)arg set), and that every record reads right. */
static void no_reuse_run(void *arg)
{
	static struct inolog l;
	char *dir = ring_in();
	filering_options o = small_opts(65536, 3);
	filering_writer *w;
	struct snapres s;
	int i;

	memset(&l, 0, sizeof l);
	CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
	if (test_failures)
		return;
	for (i = 0; i < 25; i++) {
		CHECK_EQ(append_var(w, 400, 0, &l), 0);
		if (arg)
			CHECK_EQ(count_containing(dir, ".free-"), 0);
	}
	CHECK(l.n > 20);
	CHECK_EQ(reused(&l), 0);
	CHECK_EQ(filering_writer_close(w), 0);
	CHECK_EQ(count_containing(dir, ".free-"), 0);
	s = snapshot_check(dir, NULL, var_ok);
	CHECK_EQ(s.errors + s.bad + s.gaps, 0);
	CHECK(s.n > 800);
}

/* no_reuse_env runs no_reuse_run as a new process does with FILERING_NO_REUSE=1. */
static void no_reuse_env(void *arg)
{
	(void)arg;
	reuse_state = 0;
	setenv("FILERING_NO_REUSE", "1", 1);
	no_reuse_run(&reuse_state);
}

/* test_reuse_off: new files for every segment with FILERING_NO_REUSE=1 (read in a child
 * process, as the switch is read once), and when the lease is broken before its check. */
static void test_reuse_off(void)
{
	struct rlimit rl;

	CHECK(reuse_on());
	CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	CHECK(in_child(rl.rlim_cur, no_reuse_env, NULL));
	CHECK(reuse_on());
	hook_calls = hook_blocked = 0;
	reuse_hook = break_lease;
	no_reuse_run(NULL);
	reuse_hook = NULL;
	CHECK(hook_calls > 15);
	CHECK_EQ(hook_blocked, hook_calls);
}

/* test_reuse_close: retention lowered at open drops many segments at once: the writer
 * keeps KEEP_MAX of their files, unlinks the others, reuses the kept ones for the next
 * segments, and leaves no kept file behind at close. */
static void test_reuse_close(void)
{
	static struct inolog l;
	char *dir = ring_in();
	filering_options o = small_opts(65536, 8);
	filering_writer *w;
	struct snapres s;
	struct dirent *de;
	ino_t kept[KEEP_MAX + 1];
	DIR *dp;
	size_t nk = 0, i;
	int found = 0;

	memset(&l, 0, sizeof l);
	CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
	if (test_failures)
		return;
	while (w->hot.num < 10) /* 2 segments removed: the first one's file reused, the second's kept */
		CHECK_EQ(append_var(w, 1, 0, &l), 0);
	CHECK_EQ(w->nkept, 1);
	CHECK_EQ(reused(&l), 1);
	CHECK_EQ(count_containing(dir, ".seg.free-"), 1);
	CHECK_EQ(filering_writer_close(w), 0);
	CHECK_EQ(count_names(dir, "", 1), 0);
	o = small_opts(0, 3);
	CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
	CHECK_EQ(w->nkept, KEEP_MAX);
	CHECK_EQ(count_containing(dir, ".seg.free-"), KEEP_MAX);
	CHECK_EQ(count_names(dir, ".seg", 0), 3);
	if ((dp = opendir(dir)) != NULL) {
		while ((de = readdir(dp)) != NULL)
			if (strstr(de->d_name, ".seg.free-") && nk <= KEEP_MAX)
				kept[nk++] = de->d_ino;
		closedir(dp);
	}
	memset(&l, 0, sizeof l);
	CHECK_EQ(append_var(w, 1000, 0, &l), 0); /* two rolls or more */
	CHECK(l.n >= 3);
	for (i = 0; i < nk; i++)
		found += ino_after(&l, kept[i], 0);
	CHECK_EQ(found, KEEP_MAX);
	CHECK_EQ(filering_writer_close(w), 0);
	CHECK_EQ(count_names(dir, "", 1), 0);
	s = snapshot_check(dir, NULL, var_ok);
	CHECK_EQ(s.errors + s.bad + s.gaps, 0);
}

/* test_reuse_recovery: a producer killed while its hot segment is a reused file, whose
 * bytes past the last record hold old records of lower sequence numbers. Recovery seals
 * it at its last record and the sequence goes on; readers read every record. The crash
 * state is made by hand from a real one: old records (valid, of an older segment) copied
 * right after the last record, or after a zero word, or copied torn. */
static void test_reuse_recovery(void)
{
	static const struct {
		const char *name;
		uint64_t at;  /* where the old records go, from the end of the last record */
		int torn;     /* a byte of the first one changed */
	} cases[] = {
		{"old record after the last", 0, 0},
		{"zero word, then old records", 8, 0},
		{"torn old record after the last", 0, 1},
	};
	const int n = 14000; /* 32 bytes a record: some 7 segments, the last ones reused */
	filering_options o = small_opts(65536, 3);
	unsigned char *hot, *old;
	char *dir, path[400], opath[400];
	filering_writer *w;
	struct snapres s;
	struct manifest m;
	uint64_t end, hn, len;
	size_t i, hs, os;
	int fd;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		dir = ring_in();
		CHECK(waitkilled(crash_child(dir, &o, n)));
		load_manifest(dir, &m);
		CHECK(m.n == 3 && !m.e[2].sealed && m.e[2].num >= 5);
		if (m.n != 3) {
			manifest_free(&m);
			return;
		}
		hn = m.e[2].num;
		hot = read_whole(file_in(path, sizeof path, dir, hn, ".seg"), &hs);
		old = read_whole(file_in(opath, sizeof opath, dir, m.e[0].num, ".seg"), &os);
		CHECK(hot && old && hs == 65536 && os == 65536);
		if (!hot || !old || hs != 65536 || os != 65536) {
			free(hot);
			free(old);
			manifest_free(&m);
			return;
		}
		end = seg_end(hot, hs);
		CHECK_EQ(ld64(hot + end), 0); /* the word after the last record is zero */
		len = 2048;
		if (end + cases[i].at + len > hs)
			len = hs - end - cases[i].at;
		memcpy(hot + end + cases[i].at, old + HDR, (size_t)len);
		if (cases[i].torn)
			hot[end + cases[i].at + 30] ^= 0x40;
		fd = open(path, O_WRONLY);
		CHECK(fd >= 0 && pwrite(fd, hot + end, (size_t)(cases[i].at + len), (off_t)end) == (ssize_t)(cases[i].at + len));
		close(fd);
		CHECK_EQ(seg_end(hot, hs), end);
		logbuf[0] = 0;
		CHECK_EQ(filering_writer_open_ex(dir, NULL, tlog, NULL, NULL, &w), 0);
		if (test_failures) {
			fprintf(stderr, "%s: %s\n", cur_test, cases[i].name);
			free(hot);
			free(old);
			manifest_free(&m);
			return;
		}
		CHECK_EQ(filering_writer_next_seq(w), (uint64_t)n + 1);
		CHECK(strstr(logbuf, "after an unclean stop") != NULL);
		CHECK_EQ(append_n(w, 10), 0);
		CHECK_EQ(filering_writer_close(w), 0);
		free(hot);
		hot = read_whole(path, &hs);
		CHECK(hot && ld64(hot + OFF_SEALED) == 1 && ld64(hot + OFF_COMMITTED) == end);
		s = snapshot(dir, NULL);
		CHECK_EQ(s.errors + s.bad + s.gaps, 0);
		CHECK_EQ(s.last, (uint64_t)n + 10);
		if (test_failures)
			fprintf(stderr, "%s: %s\n", cur_test, cases[i].name);
		free(hot);
		free(old);
		manifest_free(&m);
	}
}

/* test_reuse_concurrent: a producer in another process writes a small ring at full speed
 * for a second, reusing files, while this one reads it with snapshots and a follower:
 * no damage is ever reported, every record read is right, and the follower gets every
 * record or reports it lost. */
static void test_reuse_concurrent(void)
{
	static struct inolog l;
	char *dir = ring_in(), path[400];
	filering_options o = small_opts(65536, 3);
	filering_selection sel;
	filering_reader *f = NULL;
	filering_writer *w;
	struct drained d;
	struct snapres s;
	int64_t until;
	int st = 0, snaps = 0, snap_errors = 0, snap_bad = 0;
	pid_t pid;

	memset(&d, 0, sizeof d);
	fflush(stdout);
	fflush(stderr);
	if ((pid = fork()) == 0) {
		struct timespec pause = {0, 20000};
		int k;
		memset(&l, 0, sizeof l);
		if (filering_writer_open(dir, &o, &w) != 0)
			_exit(3);
		until = mono_ns() + 1000000000ll;
		for (k = 0; mono_ns() < until; k++) {
			if (append_var(w, 100, 64, &l) != 0)
				_exit(4);
			if (k % 4 == 0)
				nanosleep(&pause, NULL);
		}
		filering_writer_close(w);
		_exit(reused(&l) > 0 ? 0 : 5);
	}
	CHECK(pid > 0);
	snprintf(path, sizeof path, "%s/manifest", dir);
	until = mono_ns() + 5000000000ll;
	while (access(path, F_OK) != 0 && mono_ns() < until)
		usleep(1000);
	memset(&sel, 0, sizeof sel);
	sel.from = 1; /* records overwritten before its first read are reported lost too */
	CHECK_EQ(filering_reader_open(dir, FILERING_FOLLOW, &sel, &f), 0);
	while (f && waitpid(pid, &st, WNOHANG) == 0) {
		s = snapshot_check(dir, NULL, var_ok);
		snaps++;
		snap_errors += s.errors;
		snap_bad += s.bad;
		drain(f, 0, var_ok, &d);
	}
	if (!f)
		waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK(snaps > 10);
	CHECK_EQ(snap_errors, 0);
	CHECK_EQ(snap_bad, 0);
	if (f) {
		drain(f, 200, var_ok, &d);
		s = snapshot_check(dir, NULL, var_ok);
		CHECK_EQ(s.errors + s.bad + s.gaps, 0);
		CHECK_EQ(d.errors + d.bad, 0);
		CHECK_EQ(d.last, s.last);
		CHECK_EQ(d.records + d.lost, s.last);
		CHECK(d.records > 1000);
		filering_reader_close(f);
	}
}

/* ---- readers and reused files: missing, not damaged ----------------------------------------- */

/* The hook of test_reader_moved: when the reader opens hook_name, it plays the producer
 * reusing that file for another segment (the reader looked the name up before the file
 * was renamed away): the file gets segment 9's header, hot, and then the name is gone
 * (hook_how 0), names another file (1), or still names it (2: damage). */
static const char *hook_name;
static int hook_how, hook_fired;

static void reuse_under_reader(int dirfd, const char *name, int fd)
{
	unsigned char hdr[HDR];
	int wfd;

	(void)fd;
	if (!hook_name || strcmp(name, hook_name) != 0 || hook_fired)
		return;
	hook_fired = 1;
	put_header(hdr, 16384, 9, 1000000, 0);
	wfd = openat(dirfd, name, O_WRONLY | O_CLOEXEC);
	if (wfd < 0 || pwrite(wfd, hdr, HDR, 0) != HDR)
		test_failures++;
	if (wfd >= 0)
		close(wfd);
	if (hook_how == 0 && renameat(dirfd, name, dirfd, ".moved") != 0)
		test_failures++;
	if (hook_how == 1) {
		wfd = openat(dirfd, ".other", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		if (wfd < 0 || renameat(dirfd, ".other", dirfd, name) != 0)
			test_failures++;
		if (wfd >= 0)
			close(wfd);
	}
}

/* test_reader_moved: a segment whose checks fail is missing when its name no longer
 * names the file the reader opened (gone, or another file), and damaged when it still
 * does, for a snapshot and for a follower moving on to it; and name_moved, the decision,
 * on its own. */
static void test_reader_moved(void)
{
	static const char *const how[] = {"name gone", "name names another file", "name still names it"};
	filering_options o = small_opts(16384, 8);
	char *dir, path[400], other[400];
	filering_writer *w;
	filering_reader *f;
	struct snapres s;
	struct drained d;
	struct stat st;
	struct manifest m;
	uint64_t first2 = 0, last2 = 0;
	int k, follower, dirfd, fd;

	/* The decision. */
	dir = new_dir();
	snprintf(path, sizeof path, "%s/a", dir);
	snprintf(other, sizeof other, "%s/b", dir);
	CHECK_EQ(write_whole(path, "a", 1), 0);
	CHECK_EQ(write_whole(other, "b", 1), 0);
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0 && fstat(fd, &st) == 0);
	CHECK_EQ(name_moved(dirfd, "a", &st), 0);
	CHECK_EQ(rename(other, path), 0);
	CHECK_EQ(name_moved(dirfd, "a", &st), 1);
	CHECK_EQ(unlink(path), 0);
	CHECK_EQ(name_moved(dirfd, "a", &st), 1);
	CHECK_EQ(symlink("b", path), 0);
	CHECK_EQ(name_moved(dirfd, "a", &st), 1);
	close(fd);
	close(dirfd);

	seg_open_hook = reuse_under_reader;
	hook_name = "0000000000000002.seg";
	for (follower = 0; follower < 2; follower++) {
		for (k = 0; k < 3; k++) {
			dir = ring_in();
			hook_how = k;
			hook_fired = 0;
			memset(&d, 0, sizeof d);
			f = NULL;
			CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
			if (test_failures)
				break;
			CHECK_EQ(append_n(w, 100), 0);
			if (follower) {
				/* Following segment 1 while it is hot: it moves on to 2 by name. */
				CHECK_EQ(filering_reader_open(dir, FILERING_FOLLOW, NULL, &f), 0);
				drain(f, 0, dec_ok, &d);
				CHECK_EQ(d.records, 100);
			}
			while (w->hot.num < 4)
				CHECK_EQ(append_n(w, 1), 0);
			CHECK_EQ(filering_writer_close(w), 0);
			load_manifest(dir, &m);
			CHECK(m.n == 4 && m.e[1].num == 2);
			if (m.n == 4) {
				first2 = m.e[1].first;
				last2 = m.e[1].last;
			}
			manifest_free(&m);
			if (follower) {
				drain(f, 100, dec_ok, &d);
				filering_reader_close(f);
				CHECK(hook_fired);
				CHECK_EQ(d.bad, 0);
				CHECK_EQ(d.errors, k == 2);
				if (k == 2)
					CHECK_STR(d.kind, "header");
				/* Segment 2's records are lost, either way; the follower goes on. */
				CHECK_EQ(d.losses, 1);
				CHECK_EQ(d.lost, last2 - first2 + 1);
				CHECK_EQ(d.records + d.lost, d.last);
				CHECK(d.last > last2);
			} else {
				s = snapshot(dir, NULL);
				CHECK(hook_fired);
				CHECK_EQ(s.bad, 0);
				CHECK_EQ(s.errors, k == 2);
				if (k == 2)
					CHECK_EQ(s.last_err, FILERING_EHEADER);
				CHECK_EQ(s.gaps, 1);
				CHECK_EQ(s.n, s.last - (last2 - first2 + 1));
			}
			if (test_failures) {
				fprintf(stderr, "%s: %s, %s\n", cur_test, follower ? "follower" : "snapshot", how[k]);
				break;
			}
		}
	}
	seg_open_hook = NULL;
	hook_name = NULL;
}

/* test_reader_eagain: an open that fails with EWOULDBLOCK, as while the producer holds a
 * lease on a file it reuses, is a missing segment, for the segment opener itself, a
 * snapshot (all, and the last N across it), and a follower, which reports its records
 * lost. This process plays the producer: it takes the write lease on a sealed segment. */
static void test_reader_eagain(void)
{
	char *dir = ring_in(), path[400];
	filering_options o = small_opts(16384, 8);
	filering_selection sel;
	filering_writer *w;
	filering_reader *f;
	struct snapres s;
	struct drained d;
	struct manifest m;
	struct seg sg;
	uint64_t n3 = 0, total;
	int fd, dirfd;

	CHECK_EQ(filering_writer_open(dir, &o, &w), 0);
	if (test_failures)
		return;
	while (w->hot.num < 6)
		CHECK_EQ(append_n(w, 1), 0);
	total = filering_writer_next_seq(w) - 1;
	CHECK_EQ(filering_writer_close(w), 0); /* it holds sealed segments' files: no lease then */
	load_manifest(dir, &m);
	CHECK(m.n == 6 && m.e[2].num == 3 && m.e[2].sealed);
	if (m.n == 6)
		n3 = m.e[2].last - m.e[2].first + 1;
	fd = open(file_in(path, sizeof path, dir, 3, ".seg"), O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0);
	CHECK_EQ(fcntl(fd, F_SETSIG, SIGURG), 0);
	if (fcntl(fd, F_SETLEASE, F_WRLCK) != 0) {
		CHECK(errno != EAGAIN); /* nobody else may hold it open */
		printf("skip %s: no write lease here (%s)\n", cur_test, strerror(errno));
		close(fd);
		manifest_free(&m);
		return;
	}
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	CHECK_EQ(seg_open(dirfd, &m.e[2], 16384, &sg), 1);
	CHECK_EQ(open(path, O_RDONLY | O_NONBLOCK), -1);
	CHECK_EQ(errno, EWOULDBLOCK);
	close(dirfd);
	s = snapshot(dir, NULL);
	CHECK_EQ(s.errors + s.bad, 0);
	CHECK_EQ(s.gaps, 1);
	CHECK_EQ(s.n, total - n3);
	CHECK_EQ(s.last, total);
	memset(&sel, 0, sizeof sel);
	sel.last = total - n3 - 20; /* across segment 3: all but the first 20 */
	s = snapshot(dir, &sel);
	CHECK_EQ(s.errors + s.bad, 0);
	CHECK_EQ(s.gaps, 1);
	CHECK_EQ(s.n, sel.last);
	CHECK_EQ(s.first, 21);
	memset(&d, 0, sizeof d);
	CHECK_EQ(filering_reader_open(dir, FILERING_FOLLOW, NULL, &f), 0);
	drain(f, 0, dec_ok, &d);
	CHECK_EQ(d.errors + d.bad, 0);
	CHECK_EQ(d.losses, 1);
	CHECK_EQ(d.lost, n3);
	CHECK_EQ(d.records + d.lost, total);
	filering_reader_close(f);
	/* Released: all of it again. */
	CHECK_EQ(fcntl(fd, F_SETLEASE, F_UNLCK), 0);
	close(fd);
	s = snapshot(dir, NULL);
	CHECK_EQ(s.errors + s.bad + s.gaps, 0);
	CHECK_EQ(s.n, total);
	manifest_free(&m);
}

/* test_write_record: a record is written in full over whatever the bytes held (a reused
 * file holds old records): zero padding, and a zero word after it while it is inside the
 * segment; a reader then finds every record and the end, never an old record. Payloads
 * of every length modulo 8, and a record that ends exactly at the end of the segment. */
static void test_write_record(void)
{
	const uint64_t size = 4096;
	unsigned char *b = (unsigned char *)malloc(size), payload[400];
	struct scanner sc;
	uint64_t off = HDR, next, o;
	size_t len;
	int i, n = 0, bad = 0;

	memset(b, 0xa5, size); /* old bytes everywhere */
	put_header(b, size, 1, 1, 0);
	memset(payload, 'p', sizeof payload);
	for (i = 0;; i++) {
		len = (size_t)(i * 13 % 67);
		if (off + align8(RECHDR + len) > size - 200)
			break;
		next = write_record(b, size, off, 1 + (uint64_t)i, 5, payload, len);
		CHECK_EQ(next, off + align8(RECHDR + len));
		for (o = off + RECHDR + len; o < next; o++)
			bad += b[o] != 0; /* padding */
		bad += ld64(b + next) != 0;
		bad += b[next + 8] != 0xa5; /* nothing written beyond */
		off = next;
		n++;
	}
	CHECK_EQ(bad, 0);
	/* The last record fills the segment: no word after it to zero, nothing written past
	 * the end (the buffer is exactly the segment: the sanitizers see to it). */
	len = (size_t)(size - off - RECHDR);
	CHECK(len <= sizeof payload);
	CHECK_EQ(write_record(b, size, off, 1 + (uint64_t)n, 5, payload, len), size);
	memset(&sc, 0, sizeof sc);
	scan_init(&sc, b, size, 1);
	for (i = 0; scan_next(&sc, SCAN_DELIVER) == 1; i++)
		;
	CHECK_EQ(i, n + 1);
	CHECK_EQ(sc.err, 0);
	CHECK_EQ(sc.off, size);
	free(sc.buf);
	free(b);
}

/* ---- the conformance corpus ---------------------------------------------------------------- */

static int copy_file(const char *from, const char *to)
{
	size_t n;
	unsigned char *b = read_whole(from, &n);
	int r;

	if (!b)
		return -1;
	r = write_whole(to, b, n);
	free(b);
	return r;
}

/* materialize copies the case's ring/ to dst and applies its setup steps. */
static int materialize(const char *casedir, const tj *spec, const char *dst)
{
	char src[700], a[1000], b[1000];
	const tj *setup = tj_get(spec, "setup"), *st;
	struct dirent *de;
	DIR *d;
	size_t i;

	if (mkdir(dst, 0755) != 0)
		return -1;
	snprintf(src, sizeof src, "%s/ring", casedir);
	if ((d = opendir(src)) != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2])))
				continue;
			snprintf(a, sizeof a, "%s/%s", src, de->d_name);
			snprintf(b, sizeof b, "%s/%s", dst, de->d_name);
			if (copy_file(a, b) != 0 || chmod(b, 0644) != 0) {
				closedir(d);
				return -1;
			}
		}
		closedir(d);
	}
	for (i = 0; setup && i < setup->n; i++) {
		const char *op, *path;
		st = setup->items[i];
		op = tj_get(st, "op")->str;
		path = tj_get(st, "path")->str;
		snprintf(b, sizeof b, "%s/%s", dst, path);
		if (strcmp(op, "mkfifo") == 0 && mkfifo(b, 0644) != 0)
			return -1;
		if (strcmp(op, "mkdir") == 0 && mkdir(b, 0755) != 0)
			return -1;
		if (strcmp(op, "symlink") == 0 && symlink(tj_get(st, "target")->str, b) != 0)
			return -1;
		if (strcmp(op, "chmod") == 0 && chmod(strcmp(path, ".") ? b : dst,
		                                      (mode_t)strtoul(tj_get(st, "mode")->str, NULL, 8)) != 0)
			return -1;
	}
	return 0;
}

static void unmaterialize(const char *dst)
{
	chmod(dst, 0755);
	rm_rf(dst);
}

/* A growable byte buffer. */
struct buf {
	unsigned char *p;
	size_t n, cap;
};

static void buf_add(struct buf *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 64;
		b->p = (unsigned char *)realloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void selection_of(const tj *args, filering_selection *sel, int *format)
{
	size_t i;

	memset(sel, 0, sizeof *sel);
	*format = FILERING_FORMAT_LINES;
	for (i = 0; args && i + 1 < args->n; i += 2) {
		const char *k = args->items[i]->str, *v = args->items[i + 1]->str;
		if (strcmp(k, "--last") == 0)
			sel->last = strtoull(v, NULL, 10);
		else if (strcmp(k, "--from") == 0)
			sel->from = strtoull(v, NULL, 10);
		else if (strcmp(k, "--format") == 0)
			*format = strcmp(v, "json") == 0 ? FILERING_FORMAT_JSON
			          : strcmp(v, "raw") == 0 ? FILERING_FORMAT_RAW : FILERING_FORMAT_LINES;
	}
}

/* same_errors compares the errors the library reported with the ones expected: in order,
 * the file, the offset when one is expected, and the kind. */
static int error_matches(const tj *want, const char *file, int64_t off, const char *kind)
{
	const tj *wf = tj_get(want, "file"), *wo = tj_get(want, "offset");

	if (wf->type == TJ_NULL ? file != NULL : (!file || strcmp(file, wf->str) != 0))
		return 0;
	if (wo->type != TJ_NULL && off != (int64_t)wo->num)
		return 0;
	return kind && strcmp(kind, tj_get(want, "kind")->str) == 0;
}

static int conform_library(const char *dir, const tj *run, const unsigned char *want, size_t wantn, char *why,
                           size_t whycap)
{
	const tj *errors = tj_get(run, "errors");
	filering_selection sel;
	filering_reader *r;
	filering_record rec;
	struct buf out = {NULL, 0, 0};
	size_t nerr = 0, bound;
	int format, rc, ok = 1;
	unsigned char *tmp;

	selection_of(tj_get(run, "args"), &sel, &format);
	if ((rc = filering_reader_open(dir, 0, &sel, &r)) != 0) {
		snprintf(why, whycap, "open: %s", filering_strerror(rc));
		return 0;
	}
	while ((rc = filering_reader_next(r, &rec, 0)) != 0) {
		if (rc == FILERING_RECORD) {
			bound = filering_format_bound(rec.len, format);
			tmp = (unsigned char *)malloc(bound);
			buf_add(&out, tmp, filering_format(&rec, format, tmp));
			free(tmp);
			continue;
		}
		if (nerr >= errors->n || !error_matches(errors->items[nerr], filering_reader_error_file(r),
		                                        filering_reader_error_offset(r), filering_reader_error_kind(r))) {
			snprintf(why, whycap, "unexpected error %lu (kind %.20s): %.400s", (unsigned long)nerr,
			         filering_reader_error_kind(r) ? filering_reader_error_kind(r) : "none", filering_reader_error(r));
			ok = 0;
		}
		nerr++;
	}
	filering_reader_close(r);
	if (ok && nerr != errors->n) {
		snprintf(why, whycap, "%lu errors, want %lu", (unsigned long)nerr, (unsigned long)errors->n);
		ok = 0;
	}
	if (ok && (out.n != wantn || (wantn && memcmp(out.p, want, wantn) != 0))) {
		snprintf(why, whycap, "records differ: %lu bytes, want %lu", (unsigned long)out.n, (unsigned long)wantn);
		ok = 0;
	}
	free(out.p);
	return ok;
}

/* contains_name reports whether line names path: path followed by the end of the line
 * or a character that cannot continue a path. */
static int contains_name(const char *line, const char *path)
{
	const char *p = line;
	size_t n = strlen(path);
	char c;

	while ((p = strstr(p, path)) != NULL) {
		c = p[n];
		if (!c || !(c == '/' || c == '.' || c == '-' || c == '_' || (c >= '0' && c <= '9') ||
		            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
			return 1;
		p += n;
	}
	return 0;
}

static int is_word(char c) { return c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* has_offset reports whether line holds "offset N" as whole words. */
static int has_offset(const char *line, long long off)
{
	char want[40];
	const char *p = line;
	size_t n;

	n = (size_t)snprintf(want, sizeof want, "offset %lld", off);
	while ((p = strstr(p, want)) != NULL) {
		if ((p == line || !is_word(p[-1])) && !is_word(p[n]))
			return 1;
		p++;
	}
	return 0;
}

static int check_stderr(char *text, const char *dir, const tj *errors, char *why, size_t whycap)
{
	char *lines[256], name[700], *s;
	int used[256], nl = 0, i;
	size_t k;

	if (errors->n == 0) {
		if (*text) {
			snprintf(why, whycap, "no error expected, stderr is \"%.200s\"", text);
			return 0;
		}
		return 1;
	}
	for (s = strtok(text, "\n"); s && nl < 256; s = strtok(NULL, "\n"))
		lines[nl++] = s;
	memset(used, 0, sizeof used);
	for (k = 0; k < errors->n; k++) {
		const tj *f = tj_get(errors->items[k], "file"), *o = tj_get(errors->items[k], "offset");
		int found = 0;
		if (f->type == TJ_NULL)
			snprintf(name, sizeof name, "%s", dir);
		else
			snprintf(name, sizeof name, "%s/%s", dir, f->str);
		for (i = 0; i < nl && !found; i++) {
			if (used[i] || !contains_name(lines[i], name) ||
			    (o->type != TJ_NULL && !has_offset(lines[i], (long long)o->num)))
				continue;
			used[i] = found = 1;
		}
		if (!found) {
			snprintf(why, whycap, "no line of stderr names %.500s%s", name, o->type != TJ_NULL ? " with its offset" : "");
			return 0;
		}
	}
	snprintf(name, sizeof name, "%s/", dir);
	for (i = 0; i < nl; i++)
		if (!used[i] && strstr(lines[i], name)) {
			snprintf(why, whycap, "unexpected error: \"%.300s\"", lines[i]);
			return 0;
		}
	return 1;
}

static int conform_binary(const char *dir, const tj *run, const unsigned char *want, size_t wantn, char *why,
                          size_t whycap)
{
	const tj *args = tj_get(run, "args");
	char outp[400], errp[400], *argv[32];
	unsigned char *out, *err;
	size_t outn, errn, i;
	int argc = 0, st = 0, waited, ok = 1, fd;
	pid_t pid;

	snprintf(outp, sizeof outp, "%s/stdout", tmp_root);
	snprintf(errp, sizeof errp, "%s/stderr", tmp_root);
	argv[argc++] = (char *)binary;
	for (i = 0; i < args->n && argc < 30; i++)
		argv[argc++] = args->items[i]->str;
	argv[argc++] = (char *)dir;
	argv[argc] = NULL;
	pid = fork();
	if (pid == 0) {
		fd = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(fd, 1);
		fd = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(fd, 2);
		execv(binary, argv);
		_exit(127);
	}
	for (waited = 0; waited < 2000; waited++) { /* 20 s: a reader blocked on a FIFO fails */
		if (waitpid(pid, &st, WNOHANG) == pid)
			break;
		usleep(10000);
	}
	if (waited == 2000) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		snprintf(why, whycap, "did not finish within 20 s");
		return 0;
	}
	out = read_whole(outp, &outn);
	err = read_whole(errp, &errn);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != (int)tj_get(run, "exit")->num) {
		snprintf(why, whycap, "exit status %d, want %d; stderr: %.300s", WIFEXITED(st) ? WEXITSTATUS(st) : -1,
		         (int)tj_get(run, "exit")->num, err ? (char *)err : "");
		ok = 0;
	} else if (!out || outn != wantn || (wantn && memcmp(out, want, wantn) != 0)) {
		snprintf(why, whycap, "stdout differs: %lu bytes, want %lu", (unsigned long)outn, (unsigned long)wantn);
		ok = 0;
	} else if (!err || !check_stderr((char *)err, dir, tj_get(run, "errors"), why, whycap)) {
		ok = 0;
	}
	free(out);
	free(err);
	return ok;
}

/* run_corpus runs every case of the corpus, each run through the library and, with
 * --binary, through filering-read. Each run counts as a test. */
static void run_corpus(void)
{
	struct dirent **names;
	char casedir[600], path[700], dst[400], why[600], label[700];
	int n, i;
	size_t k, len, wantn;

	n = scandir(corpus_dir, &names, NULL, alphasort);
	if (n < 0) {
		fprintf(stderr, "corpus %s: %s\n", corpus_dir, strerror(errno));
		failed++;
		return;
	}
	for (i = 0; i < n; i++) {
		unsigned char *text;
		tj *spec, *runs;
		snprintf(casedir, sizeof casedir, "%s/%s", corpus_dir, names[i]->d_name);
		snprintf(path, sizeof path, "%s/case.json", casedir);
		if (names[i]->d_name[0] == '.' || !(text = read_whole(path, &len))) {
			free(names[i]);
			continue;
		}
		spec = tj_parse((char *)text);
		runs = tj_get(spec, "runs");
		for (k = 0; runs && k < runs->n; k++) {
			const tj *run = runs->items[k], *args = tj_get(run, "args");
			unsigned char *want;
			size_t a;
			int mode;
			snprintf(label, sizeof label, "conformance/%s/", names[i]->d_name);
			for (a = 0; args && a < args->n; a++)
				snprintf(label + strlen(label), sizeof label - strlen(label), "%s%s", a ? " " : "",
				         args->items[a]->str);
			if (!args || !args->n)
				strcat(label, "cat");
			if (only && !strstr(label, only))
				continue;
			snprintf(path, sizeof path, "%s/%s", casedir, tj_get(run, "stdout")->str);
			want = read_whole(path, &wantn);
			for (mode = 0; mode < (binary ? 2 : 1); mode++) {
				int ok;
				snprintf(dst, sizeof dst, "%s/case", tmp_root);
				unmaterialize(dst);
				why[0] = 0;
				if (materialize(casedir, spec, dst) != 0) {
					snprintf(why, sizeof why, "setup failed: %s", strerror(errno));
					ok = 0;
				} else if (mode == 0) {
					ok = conform_library(dst, run, want, wantn, why, sizeof why);
				} else {
					ok = conform_binary(dst, run, want, wantn, why, sizeof why);
				}
				unmaterialize(dst);
				if (ok) {
					passed++;
				} else {
					failed++;
					printf("FAIL %s (%s): %s\n", label, mode ? "binary" : "library", why);
				}
			}
			free(want);
		}
		tj_free(spec);
		free(text);
		free(names[i]);
	}
	free(names);
	printf("ok   conformance corpus (%s)\n", binary ? "library and binary" : "library");
}

int main(int argc, char **argv)
{
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--corpus") == 0 && i + 1 < argc)
			corpus_dir = argv[++i];
		else if (strcmp(argv[i], "--binary") == 0 && i + 1 < argc)
			binary = argv[++i];
		else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
			only = argv[++i];
		else {
			fprintf(stderr, "usage: run [--corpus DIR] [--binary filering-read] [--only SUBSTRING]\n");
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	snprintf(tmp_root, sizeof tmp_root, "%s/filering-ctest-XXXXXX", base);
	if (!mkdtemp(tmp_root)) {
		perror("mkdtemp");
		return 1;
	}
	run_test("crc", test_crc);
	run_test("time", test_time);
	run_test("format", test_format);
	run_test("utf8", test_utf8);
	run_test("manifest", test_manifest);
	run_test("scanner", test_scanner);
	run_test("writer/basic", test_writer_basic);
	run_test("writer/clock", test_writer_clock);
	run_test("writer/errors", test_writer_errors);
	run_test("writer/group", test_writer_group);
	run_test("writer/recovery", test_writer_recovery);
	run_test("writer/retention", test_writer_retention);
	run_test("writer/seal-after-and-wake", test_writer_seal_after_and_wake);
	run_test("writer/full-fs", test_writer_full_fs);
	run_test("reader/selection", test_reader_selection);
	run_test("reader/follow", test_reader_follow);
	run_test("reader/windows-limit", test_reader_windows_limit);
	run_test("reader/windows-open", test_reader_windows_open);
	run_test("reader/windows-gone", test_reader_windows_gone);
	run_test("reader/windows-follow-loss", test_reader_windows_follow_loss);
	run_test("index/check", test_index_check);
	run_test("index/writer", test_index_writer);
	run_test("index/retention", test_index_retention);
	run_test("index/recovery", test_index_recovery);
	run_test("index/reader", test_index_reader);
	run_test("index/hostile", test_index_hostile);
	run_test("reuse/write-record", test_write_record);
	run_test("reuse/happens", test_reuse_happens);
	run_test("reuse/seal-after", test_reuse_seal_after);
	run_test("reuse/held", test_reuse_held);
	run_test("reuse/taken", test_reuse_taken);
	run_test("reuse/replaced", test_reuse_replaced);
	run_test("reuse/off", test_reuse_off);
	run_test("reuse/close", test_reuse_close);
	run_test("reuse/recovery", test_reuse_recovery);
	run_test("reuse/concurrent", test_reuse_concurrent);
	run_test("reuse/reader-moved", test_reader_moved);
	run_test("reuse/reader-eagain", test_reader_eagain);
	if (corpus_dir)
		run_corpus();
	rm_rf(tmp_root);
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
