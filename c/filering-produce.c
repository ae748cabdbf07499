/*
 * filering-produce: append records read from standard input to a filering ring, creating
 * it if absent, as `filering produce` does.
 *
 *     filering-produce [--input lines|frames] [--segment-size SIZE] [--segments N]
 *                      [--seal-after DURATION] [--mode MODE] DIR
 *
 * lines: one record per line, without its newline (a last line without one is a record
 * too). frames: a 4-byte little-endian length, then that many bytes. SIGINT and SIGTERM
 * seal the hot segment and end the program with status 0; so does the end of the input.
 * On a full file system it keeps running: records that cannot be stored are dropped and
 * counted, and the count is reported once room frees. Status 1: an error; 2: bad
 * arguments.
 */
#define _GNU_SOURCE 1

#include "filering.h"
#include "cli.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static const char *dir;
static filering_writer *w;
static uint64_t dropped;

#define USAGE "usage: filering-produce [--input lines|frames] [--segment-size SIZE] [--segments N] " \
              "[--seal-after DURATION] [--mode MODE] DIR\n"

static void usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "filering: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n" USAGE);
	exit(2);
}

static void help(void)
{
	printf("filering-produce appends each line (or frame) of standard input to the ring in DIR as\n"
	       "a record, as `filering produce` does, through the C library.\n\n" USAGE "\n"
	       "  --input lines|frames  lines: one record per line, without its newline (default);\n"
	       "                        frames: a 4-byte little-endian length, then that many bytes\n"
	       "  --segment-size SIZE   segment size of a new ring, a multiple of 4KiB (default 2MiB)\n"
	       "  --segments N          segments the ring keeps, 2 to 8192 (default 8)\n"
	       "  --seal-after DURATION seal the hot segment once it is this old (default 0: never)\n"
	       "  --mode MODE           file mode of a new ring's files, such as 0640 (default 0640)\n"
	       "  --help, -h            show this help\n");
	exit(0);
}

static void logline(void *arg, const char *msg)
{
	(void)arg;
	fprintf(stderr, "filering: %s\n", msg);
}
/* parse_size reads "4096", "64KiB", "2M", "1GiB" (binary units, any case). */
static int parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0, unit = 1;
	const char *u;

	if (*s < '0' || *s > '9')
		return -1;
	while (*s >= '0' && *s <= '9') {
		if (v > (1ull << 40))
			return -1;
		v = v * 10 + (uint64_t)(*s++ - '0');
	}
	u = s;
	if (!*u || strcasecmp(u, "b") == 0)
		unit = 1;
	else if (strcasecmp(u, "k") == 0 || strcasecmp(u, "kib") == 0)
		unit = 1ull << 10;
	else if (strcasecmp(u, "m") == 0 || strcasecmp(u, "mib") == 0)
		unit = 1ull << 20;
	else if (strcasecmp(u, "g") == 0 || strcasecmp(u, "gib") == 0)
		unit = 1ull << 30;
	else
		return -1;
	*out = v * unit;
	return 0;
}

/* put appends records; on a full file system it drops them instead, counting them, and
 * says so once, and again with the count when room frees. Returns 0 or exits. */
static void put(const struct iovec *recs, size_t n)
{
	uint64_t first = 0, done;
	int rc = filering_append_batch(w, recs, n, &first);

	done = filering_writer_next_seq(w) - first;
	if (rc == FILERING_ETOOLARGE)
		done = 0;
	if (done > 0 && dropped > 0) {
		fprintf(stderr, "filering: %s: room again: appending from sequence %llu on; %llu records read meanwhile were dropped (never appended, so never numbered)\n",
		        dir, (unsigned long long)first, (unsigned long long)dropped);
		dropped = 0;
	}
	if (rc == 0)
		return;
	if (rc != -ENOSPC) {
		fprintf(stderr, "filering: %s: append: %s\n", dir, filering_strerror(rc));
		filering_writer_close(w);
		exit(1);
	}
	if (dropped == 0)
		fprintf(stderr, "filering: %s: no space for a new segment; dropping records read until there is room\n", dir);
	dropped += n - done;
}

/* wait_input waits until standard input is readable, doing the writer's idle work
 * (wake-ups, seal-after, spare segments) first. */
static void wait_input(void)
{
	struct pollfd p;
	int timeout;

	p.fd = 0;
	p.events = POLLIN;
	if (poll(&p, 1, 0) > 0)
		return;
	for (;;) {
		filering_writer_poll(w, &timeout);
		if (stop)
			return;
		if (poll(&p, 1, timeout) != 0)
			return; /* readable, the end of the input, or a signal */
	}
}

static ssize_t read_in(unsigned char *buf, size_t n)
{
	ssize_t k;

	for (;;) {
		wait_input();
		if (stop)
			return 0;
		k = read(0, buf, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			fprintf(stderr, "filering: read standard input: %s\n", strerror(errno));
			filering_writer_close(w);
			exit(1);
		}
		return k;
	}
}

static void lines(void)
{
	size_t cap = 256 << 10, have = 0, start, i, nrec, caprec = 1024;
	unsigned char *buf = (unsigned char *)malloc(cap), *nl;
	struct iovec *recs = (struct iovec *)malloc(caprec * sizeof *recs);
	ssize_t k;

	if (!buf || !recs)
		exit(1);
	for (;;) {
		k = read_in(buf + have, cap - have);
		have += (size_t)k;
		nrec = 0;
		start = 0;
		while ((nl = (unsigned char *)memchr(buf + start, '\n', have - start)) != NULL) {
			i = (size_t)(nl - buf);
			if (nrec == caprec) {
				caprec *= 2;
				if (!(recs = (struct iovec *)realloc(recs, caprec * sizeof *recs)))
					exit(1);
			}
			recs[nrec].iov_base = buf + start;
			recs[nrec].iov_len = i - start;
			nrec++;
			start = i + 1;
		}
		if (nrec)
			put(recs, nrec);
		memmove(buf, buf + start, have - start);
		have -= start;
		if (have == cap) {
			/* One line longer than the buffer: make room for the rest of it. */
			cap *= 2;
			if (!(buf = (unsigned char *)realloc(buf, cap)))
				exit(1);
		}
		if (k == 0) {
			if (have > 0 && !stop) {
				recs[0].iov_base = buf;
				recs[0].iov_len = have;
				put(recs, 1);
			}
			break;
		}
	}
	free(buf);
	free(recs);
}

/* read_full reads exactly n bytes; returns n, or fewer at the end of the input. */
static size_t read_full(unsigned char *p, size_t n)
{
	size_t got = 0;
	ssize_t k;

	while (got < n && !stop) {
		if ((k = read_in(p + got, n - got)) == 0)
			break;
		got += (size_t)k;
	}
	return got;
}

static void frames(void)
{
	size_t limit = filering_writer_max_payload(w), cap = 0, n, got;
	unsigned char hdr[4], *buf = NULL;
	unsigned long long off = 0;
	struct iovec rec;

	for (;;) {
		got = read_full(hdr, 4);
		if (got == 0 || stop)
			break;
		if (got < 4) {
			fprintf(stderr, "filering: standard input: truncated frame header at byte offset %llu\n", off);
			goto fail;
		}
		n = (size_t)hdr[0] | (size_t)hdr[1] << 8 | (size_t)hdr[2] << 16 | (size_t)hdr[3] << 24;
		if (n > limit) {
			fprintf(stderr, "filering: standard input: frame at byte offset %llu has length %lu, more than the %lu bytes a segment holds\n",
			        off, (unsigned long)n, (unsigned long)limit);
			goto fail;
		}
		if (cap < n) {
			free(buf);
			cap = n;
			if (!(buf = (unsigned char *)malloc(cap)))
				exit(1);
		}
		if (read_full(buf, n) < n) {
			if (stop)
				break;
			fprintf(stderr, "filering: standard input: truncated frame at byte offset %llu: want %lu bytes\n", off,
			        (unsigned long)n);
			goto fail;
		}
		rec.iov_base = buf;
		rec.iov_len = n;
		put(&rec, 1);
		off += 4 + n;
	}
	free(buf);
	return;
fail:
	free(buf);
	filering_writer_close(w);
	exit(1);
}

int main(int argc, char **argv)
{
	filering_options opt;
	const char *val, *input = "lines";
	char *name;
	struct sigaction sa;
	long holder = 0;
	int64_t d;
	uint64_t v;
	char *end;
	int i, rc;

	memset(&opt, 0, sizeof opt);
	for (i = 1; i < argc; i++) {
		name = argv[i];
		if (name[0] != '-' || name[1] == 0) {
			if (dir)
				usage("want exactly one ring directory, got another: %s", name);
			dir = name;
			continue;
		}
		name += name[1] == '-' ? 2 : 1;
		if (strcmp(name, "help") == 0 || strcmp(name, "h") == 0)
			help();
		val = cli_value(name, argc, argv, &i);
		if (!val)
			usage("flag needs an argument: --%s", name);
		if (strcmp(name, "input") == 0) {
			if (strcmp(val, "lines") != 0 && strcmp(val, "frames") != 0)
				usage("--input \"%s\": want lines or frames", val);
			input = val;
		} else if (strcmp(name, "segment-size") == 0) {
			if (parse_size(val, &v) || v < 4096 || v > (1u << 30) || v % 4096)
				usage("--segment-size %s: want a multiple of 4KiB from 4KiB to 1GiB", val);
			opt.segment_size = v;
		} else if (strcmp(name, "segments") == 0) {
			errno = 0;
			v = strtoull(val, &end, 10);
			if (errno || *end || v < FILERING_MIN_SEGMENTS || v > FILERING_MAX_SEGMENTS)
				usage("--segments %s: want 2 to 8192", val);
			opt.segments = (uint32_t)v;
		} else if (strcmp(name, "seal-after") == 0) {
			if (cli_duration(val, &d) || d < 0)
				usage("--seal-after %s: want a duration such as 1s or 500ms, not negative", val);
			opt.seal_after_ns = d;
		} else if (strcmp(name, "mode") == 0) {
			errno = 0;
			v = strtoull(val, &end, 8);
			if (errno || *end || v > 0777 || (v & 0600) != 0600 || (v & 022))
				usage("--mode \"%s\": want an octal mode such as 0640 that lets the owner read and write, and nobody else write", val);
			opt.file_mode = (uint32_t)v;
			opt.dir_mode = (uint32_t)(v | 0700 | (v & 040 ? 010 : 0) | (v & 04 ? 01 : 0));
		} else {
			usage("flag provided but not defined: -%s", name);
		}
	}
	if (!dir)
		usage("%s", "want exactly one ring directory, got 0 arguments");
	signal(SIGPIPE, SIG_IGN);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL); /* no SA_RESTART: a blocked read or poll returns EINTR */
	sigaction(SIGTERM, &sa, NULL);

	rc = filering_writer_open_ex(dir, &opt, logline, NULL, &holder, &w);
	if (rc != 0) {
		if (rc == FILERING_ELOCKED && holder)
			fprintf(stderr, "filering: %s: ring is in use by another producer, pid %ld\n", dir, holder);
		else
			fprintf(stderr, "filering: open ring %s: %s\n", dir, filering_strerror(rc));
		return 1;
	}
	if (strcmp(input, "lines") == 0)
		lines();
	else
		frames();
	if (dropped > 0)
		fprintf(stderr, "filering: %s: %llu records read at the end were dropped for want of room\n", dir,
		        (unsigned long long)dropped);
	rc = filering_writer_close(w);
	if (rc != 0) {
		fprintf(stderr, "filering: %s: close: %s\n", dir, filering_strerror(rc));
		return 1;
	}
	return 0;
}
