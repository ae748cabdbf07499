/*
 * sensor: a small sensor simulator for filering examples, written as a real producer
 * is: it appends its readings to a filering ring itself, through the C library
 * (c/filering.h), with no process in between.
 *
 *     ./sensor DIR RATE [COUNT]          append to the ring in DIR (created if absent)
 *     ./sensor --stdout RATE [COUNT]     print the readings instead, one a line
 *
 * A reading is a temperature-like value with three decimals, e.g. "21.734": a slow sine
 * wave plus a little noise. RATE readings a second (1 to 1000000), forever or COUNT of
 * them. The pace comes from an absolute monotonic clock, so it does not drift with the
 * time spent writing.
 *
 * Into a ring, each reading is one record, visible to every reader (`filering cat DIR`,
 * `filering watch DIR`, the live graph in ../cgi, your own code) as soon as
 * filering_append returns; before each sleep the program calls filering_writer_poll, as
 * the library's contract asks of a producer that waits, so that followers are woken for
 * the last reading at once. SIGINT and SIGTERM seal the ring and end the program with
 * status 0. Another producer running on DIR is refused (status 1, naming its pid).
 *
 * With --stdout, each line is written as soon as it is made (line-buffered stdout), so
 *
 *     ./sensor --stdout 100 | filering produce /run/ring/sensor
 *
 * does the same through `filering produce`. When the reader goes away (EPIPE) the
 * program exits with status 0; on other write errors, with status 1.
 */
#define _POSIX_C_SOURCE 200809L

#include "filering.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TWO_PI 6.283185307179586

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static void usage(void)
{
	fprintf(stderr, "usage: sensor DIR RATE [COUNT]\n"
	                "       sensor --stdout RATE [COUNT]\n"
	                "  DIR    the ring to append to (created if absent)\n"
	                "  RATE   readings a second, 1 to 1000000\n"
	                "  COUNT  stop after COUNT readings (default: never)\n");
	exit(2);
}

static int parse(const char *s, unsigned long long max, unsigned long long *out)
{
	char *end;
	unsigned long long v;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < 1 || v > max)
		return -1;
	*out = v;
	return 0;
}

/* write_failed reports a failed write to stdout and exits; EPIPE means the reader went
 * away. */
static void write_failed(void)
{
	if (errno == EPIPE)
		exit(0);
	fprintf(stderr, "sensor: write: %s\n", strerror(errno));
	exit(1);
}

/* noise returns a pseudo-random number in [-1, 1) (xorshift64). */
static double noise(void)
{
	static uint64_t x = 88172645463325252ull;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return (double)(x >> 11) / 4503599627370496.0 - 1.0; /* 2^52 */
}

int main(int argc, char **argv)
{
	unsigned long long rate, count = 0, i;
	const char *dir = NULL;
	filering_writer *w = NULL;
	struct sigaction sa;
	struct timespec next;
	long long period_ns;
	long holder = 0;
	char line[32];
	int n, rc;

	if (argc < 3 || argc > 4 || parse(argv[2], 1000000, &rate) ||
	    (argc == 4 && parse(argv[3], ~0ull, &count)))
		usage();
	if (strcmp(argv[1], "--stdout") != 0)
		dir = argv[1];

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	if (dir) {
		/* No SA_RESTART: the sleep returns at once, and the ring is sealed. */
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		rc = filering_writer_open_ex(dir, NULL, NULL, NULL, &holder, &w);
		if (rc == FILERING_ELOCKED) {
			fprintf(stderr, "sensor: %s: ring is in use by another producer, pid %ld\n", dir, holder);
			return 1;
		}
		if (rc != 0) {
			fprintf(stderr, "sensor: open ring %s: %s\n", dir, filering_strerror(rc));
			return 1;
		}
	} else {
		/* A closed pipe makes write fail with EPIPE instead of killing us silently. */
		signal(SIGPIPE, SIG_IGN);
		if (setvbuf(stdout, NULL, _IOLBF, 0) != 0) {
			fprintf(stderr, "sensor: setvbuf failed\n");
			return 1;
		}
	}

	period_ns = 1000000000LL / (long long)rate;
	if (clock_gettime(CLOCK_MONOTONIC, &next) != 0) {
		perror("sensor: clock_gettime");
		return 1;
	}
	for (i = 0; (count == 0 || i < count) && !stop; i++) {
		double t = (double)i / (double)rate;
		double value = 21.0 + 4.0 * sin(t * TWO_PI / 60.0) + 0.05 * noise();

		if (w) {
			n = snprintf(line, sizeof line, "%.3f", value);
			rc = filering_append(w, line, (size_t)n, NULL);
			if (rc == -ENOSPC) {
				/* A full file system with nothing left to drop: this reading is lost,
				 * the next one tries again. */
				fprintf(stderr, "sensor: %s: %s; reading dropped\n", dir, filering_strerror(rc));
			} else if (rc != 0) {
				fprintf(stderr, "sensor: %s: append: %s\n", dir, filering_strerror(rc));
				filering_writer_close(w);
				return 1;
			}
			/* About to sleep: wake followers for this reading, seal what is due. */
			filering_writer_poll(w, NULL);
		} else if (printf("%.3f\n", value) < 0 || fflush(stdout) == EOF) {
			write_failed();
		}

		next.tv_nsec += period_ns;
		while (next.tv_nsec >= 1000000000L) {
			next.tv_nsec -= 1000000000L;
			next.tv_sec++;
		}
		while (!stop && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
			;
	}
	if (w && (rc = filering_writer_close(w)) != 0) {
		fprintf(stderr, "sensor: %s: close: %s\n", dir, filering_strerror(rc));
		return 1;
	}
	return 0;
}
