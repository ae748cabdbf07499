/*
 * sensor: a small sensor simulator for filering examples.
 *
 *     ./sensor RATE [COUNT]
 *
 * prints one reading per line on standard output, RATE lines a second (1 to 1000000),
 * forever or COUNT lines. A reading is a temperature-like value with three decimals,
 * e.g. "21.734": a slow sine wave plus a little noise. Each line is written as soon as
 * it is made (line-buffered stdout), so a consumer such as
 *
 *     ./sensor 100 | filering produce /run/ring/sensor
 *
 * gets it at once. The pace comes from an absolute monotonic clock, so it does not
 * drift with the time spent writing. When the reader goes away (EPIPE) the program
 * exits with status 0; on other write errors it exits with status 1.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TWO_PI 6.283185307179586

static void usage(void)
{
	fprintf(stderr, "usage: sensor RATE [COUNT]\n"
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

/* write_failed reports a failed write and exits; EPIPE means the reader went away. */
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
	struct timespec next;
	long long period_ns;

	if (argc < 2 || argc > 3 || parse(argv[1], 1000000, &rate) ||
	    (argc == 3 && parse(argv[2], ~0ull, &count)))
		usage();

	/* A closed pipe makes write fail with EPIPE instead of killing us silently. */
	signal(SIGPIPE, SIG_IGN);
	if (setvbuf(stdout, NULL, _IOLBF, 0) != 0) {
		fprintf(stderr, "sensor: setvbuf failed\n");
		return 1;
	}

	period_ns = 1000000000LL / (long long)rate;
	if (clock_gettime(CLOCK_MONOTONIC, &next) != 0) {
		perror("sensor: clock_gettime");
		return 1;
	}
	for (i = 0; count == 0 || i < count; i++) {
		double t = (double)i / (double)rate;
		double value = 21.0 + 4.0 * sin(t * TWO_PI / 60.0) + 0.05 * noise();

		if (printf("%.3f\n", value) < 0 || fflush(stdout) == EOF)
			write_failed();

		next.tv_nsec += period_ns;
		while (next.tv_nsec >= 1000000000L) {
			next.tv_nsec -= 1000000000L;
			next.tv_sec++;
		}
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
			;
	}
	return 0;
}
