/*
 * bench: what filering_append costs, next to the two ways of doing without it, in one run
 * and one process:
 *
 *   - filering_append of 64-byte and 4 KiB records, and filering_append_batch of 64-byte
 *     records in batches of 64 (2 MiB segments, 8 of them, on /dev/shm);
 *   - a roll: filering_append of records that fill a 64 KiB segment each (8 of them), so
 *     that every append starts a new segment;
 *   - a raw single-producer ring: one mapped 16 MiB file, each record a length word and
 *     the payload, published by one release store; no CRC, no clock, no files to roll;
 *   - rewriting a 64 KiB file and renaming it over the old one for every update, the
 *     simplest way to share "the latest value" through files.
 *
 *     bench [DIR]     (default: a fresh directory in /dev/shm, removed afterwards)
 *
 * It prints ns per record (median of 5 rounds) and the ratios. Each round runs every
 * measure once, one after the other, so that a ratio compares runs made under the same
 * load: the ratios printed are the medians of each round's. The writer reuses the files
 * of removed segments for new ones (docs/FORMAT.md, "Reusing a segment file");
 * FILERING_NO_REUSE=1 in the environment makes it allocate a new file for every segment,
 * for a side-by-side comparison.
 */
#define _GNU_SOURCE 1

#include "filering.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static char base[256];
static int runs_done;

static void die(const char *what, int err)
{
	fprintf(stderr, "bench: %s: %s\n", what, err < 0 ? filering_strerror(err) : strerror(errno));
	exit(1);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void remove_ring(const char *dir) { nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS); }

/* bench_append appends n records of size bytes (batch > 1: append_batch) to a new ring
 * of segsize-byte segments; returns ns per record. */
static double bench_append_in(uint64_t segsize, size_t size, long n, int batch)
{
	filering_options o;
	filering_writer *w;
	struct iovec iov[64];
	unsigned char *payload = (unsigned char *)malloc(size);
	char dir[300];
	double t0, t1;
	long i;
	int k, r;

	memset(payload, 'x', size);
	memset(&o, 0, sizeof o);
	o.segment_size = segsize;
	o.segments = 8;
	snprintf(dir, sizeof dir, "%s/ring%d", base, runs_done++);
	if ((r = filering_writer_open(dir, &o, &w)) != 0)
		die("open", r);
	/* Warm up: the first segments, the page tables, the CRC tables. */
	for (i = 0; i < 20000 && (uint64_t)i * size < 16 * segsize; i++)
		filering_append(w, payload, size, NULL);
	filering_writer_poll(w, NULL);
	for (k = 0; k < 64; k++) {
		iov[k].iov_base = payload;
		iov[k].iov_len = size;
	}
	t0 = now_ns();
	if (batch > 1) {
		for (i = 0; i < n; i += batch)
			if ((r = filering_append_batch(w, iov, (size_t)batch, NULL)) != 0)
				die("append_batch", r);
	} else {
		for (i = 0; i < n; i++)
			if ((r = filering_append(w, payload, size, NULL)) != 0)
				die("append", r);
	}
	filering_writer_flush(w);
	t1 = now_ns();
	filering_writer_close(w);
	remove_ring(dir);
	free(payload);
	return (t1 - t0) / (double)n;
}

static double bench_append(size_t size, long n, int batch) { return bench_append_in(2 << 20, size, n, batch); }

/* bench_raw: the same records into a raw mapped ring: [u32 length | payload] aligned to
 * 8, published with one release store of the length; the ring wraps at its end. */
static double bench_raw(size_t size, long n)
{
	const size_t ringsize = 16 << 20;
	unsigned char *payload = (unsigned char *)malloc(size), *b;
	char path[300];
	size_t off = 0, span = (8 + size + 7) & ~(size_t)7;
	double t0, t1;
	long i;
	int fd;

	memset(payload, 'x', size);
	snprintf(path, sizeof path, "%s/raw", base);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || fallocate(fd, 0, 0, (off_t)ringsize) != 0)
		die("raw ring", 0);
	b = (unsigned char *)mmap(NULL, ringsize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
	if (b == MAP_FAILED)
		die("mmap", 0);
	t0 = now_ns();
	for (i = 0; i < n; i++) {
		if (off + span > ringsize)
			off = 0;
		memcpy(b + off + 8, payload, size);
		__atomic_store_n((uint64_t *)(void *)(b + off), (uint64_t)size, __ATOMIC_RELEASE);
		off += span;
	}
	t1 = now_ns();
	munmap(b, ringsize);
	close(fd);
	unlink(path);
	free(payload);
	return (t1 - t0) / (double)n;
}

/* bench_rename: every update rewrites a 64 KiB file and renames it over the old one. */
static double bench_rename(long n)
{
	static unsigned char data[64 << 10];
	char tmp[300], dst[300];
	double t0, t1;
	long i;
	int fd;

	memset(data, 'x', sizeof data);
	snprintf(tmp, sizeof tmp, "%s/latest.tmp", base);
	snprintf(dst, sizeof dst, "%s/latest", base);
	t0 = now_ns();
	for (i = 0; i < n; i++) {
		fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0 || write(fd, data, sizeof data) != (ssize_t)sizeof data || close(fd) != 0 ||
		    rename(tmp, dst) != 0)
			die("rename", 0);
	}
	t1 = now_ns();
	unlink(dst);
	return (t1 - t0) / (double)n;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

#define ROUNDS 5

/* median returns the median of the n values v (reordered). */
static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof v[0], cmp);
	return v[n / 2];
}

/* ratio_median returns the median of a[k] / b[k]. */
static double ratio_median(const double *a, const double *b, int n)
{
	double r[ROUNDS];
	int k;

	for (k = 0; k < n; k++)
		r[k] = a[k] / b[k];
	return median(r, n);
}

int main(int argc, char **argv)
{
	double a64[ROUNDS], a4k[ROUNDS], b64[ROUNDS], r64[ROUNDS], r4k[ROUNDS], ren[ROUNDS], roll[ROUNDS];
	double ra64, ra4k, rb64, rn64, rn4k, m;
	const char *noreuse = getenv("FILERING_NO_REUSE");
	int own = argc < 2, k;

	if (own) {
		snprintf(base, sizeof base, "/dev/shm/filering-bench-XXXXXX");
		if (!mkdtemp(base)) {
			snprintf(base, sizeof base, "/tmp/filering-bench-XXXXXX");
			if (!mkdtemp(base))
				die("mkdtemp", 0);
		}
	} else {
		snprintf(base, sizeof base, "%s", argv[1]);
		mkdir(base, 0700);
	}
	for (k = 0; k < ROUNDS; k++) {
		a64[k] = bench_append(64, 2000000, 1);
		r64[k] = bench_raw(64, 2000000);
		a4k[k] = bench_append(4096, 200000, 1);
		r4k[k] = bench_raw(4096, 200000);
		b64[k] = bench_append(64, 2000000, 64);
		roll[k] = bench_append_in(65536, 65536 - 88, 20000, 1);
		ren[k] = bench_rename(5000);
	}
	ra64 = ratio_median(a64, r64, ROUNDS);
	ra4k = ratio_median(a4k, r4k, ROUNDS);
	rb64 = ratio_median(b64, r64, ROUNDS);
	rn64 = ratio_median(ren, a64, ROUNDS);
	rn4k = ratio_median(ren, a4k, ROUNDS);
	m = median(a64, ROUNDS);
	printf("segment files: %s\n", noreuse && noreuse[0] == '1' ? "a new one for every segment (FILERING_NO_REUSE=1)"
	                                                           : "reused (FILERING_NO_REUSE=1 turns that off)");
	printf("filering_append, 64 B records:           %8.1f ns/record  %6.2f M records/s\n", m, 1e3 / m);
	m = median(a4k, ROUNDS);
	printf("filering_append, 4 KiB records:          %8.1f ns/record  %6.2f M records/s  %6.0f MB/s\n", m,
	       1e3 / m, 4096e3 / m);
	m = median(b64, ROUNDS);
	printf("filering_append_batch (64), 64 B records: %7.1f ns/record  %6.2f M records/s\n", m, 1e3 / m);
	m = median(r64, ROUNDS);
	printf("raw mmap ring, 64 B records:             %8.1f ns/record  %6.2f M records/s\n", m, 1e3 / m);
	m = median(r4k, ROUNDS);
	printf("raw mmap ring, 4 KiB records:            %8.1f ns/record  %6.2f M records/s\n", m, 1e3 / m);
	m = median(ren, ROUNDS);
	printf("rewrite 64 KiB file + rename:            %8.1f ns/update  %6.3f M updates/s\n", m, 1e3 / m);
	printf("a roll, with a 64 KiB record (64 KiB segments): %5.1f us/roll\n", median(roll, ROUNDS) / 1e3);
	printf("ratios: append/raw 64 B %.2fx, append/raw 4 KiB %.2fx, batch/raw 64 B %.2fx; "
	       "rename/append 64 B %.0fx, rename/append 4 KiB %.0fx\n",
	       ra64, ra4k, rb64, rn64, rn4k);
	printf("as rates: append 64 B %.2fx the raw ring's, 4 KiB %.2fx, batch 64 B %.2fx\n", 1 / ra64, 1 / ra4k,
	       1 / rb64);
	if (own)
		remove_ring(base);
	return 0;
}
