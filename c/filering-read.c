/*
 * filering-read: print the records of a filering ring, as `filering cat` and
 * `filering watch` do, byte for byte (docs/FORMAT.md, "Output formats").
 *
 *     filering-read [--follow] [--last N] [--from SEQ] [--since DURATION]
 *                   [--format lines|json|raw] DIR
 *
 * Without --follow it prints the selected records and exits: status 0, or 1 after
 * printing everything readable when damage was reported (each error on standard error,
 * naming the file and the offset). With --follow it then waits for new records until
 * SIGINT or SIGTERM (status 0), reporting lost records on standard error as
 * "filering: DIR: lost N records (A to B)". Status 2: bad arguments.
 */
#define _GNU_SOURCE 1

#include "filering.h"
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

#define USAGE "usage: filering-read [--follow] [--last N] [--from SEQ] [--since DURATION] " \
              "[--format lines|json|raw] DIR\n"

static void usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "filering: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n" USAGE);
	exit(2);
}

static void help(void)
{
	printf("filering-read prints the records of the ring in DIR, as `filering cat` does (and,\n"
	       "with --follow, goes on printing new ones), through the C library.\n\n" USAGE "\n"
	       "  --follow, -f          after the records selected, print new ones as they come\n"
	       "  --last N              only the last N records\n"
	       "  --from SEQ            only records from sequence number SEQ on\n"
	       "  --since DURATION      only records of the last DURATION, such as 10s or 1h30m\n"
	       "  --format FORMAT       lines (default), json or raw\n"
	       "  --help, -h            show this help\n");
	exit(0);
}
static int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno || *end ? -1 : 0;
}

/* Output: a buffer written out with write(2), so that a reader that went away (EPIPE)
 * ends the program quietly. */
static char *obuf;
static size_t olen, ocap;

static void oflush(void)
{
	size_t done = 0;
	ssize_t k;

	while (done < olen) {
		k = write(1, obuf + done, olen - done);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			if (errno == EPIPE)
				exit(0); /* the reader went away, as in `filering-read --follow DIR | head` */
			fprintf(stderr, "filering: write standard output: %s\n", strerror(errno));
			exit(1);
		}
		done += (size_t)k;
	}
	olen = 0;
}

static void orecord(const filering_record *rec, int format)
{
	size_t need = filering_format_bound(rec->len, format);

	if (need == 0) {
		fprintf(stderr, "filering: record %llu too large to print\n", (unsigned long long)rec->seq);
		exit(1);
	}
	if (ocap - olen < need) {
		oflush();
		if (ocap < need) {
			free(obuf);
			ocap = need;
			if (!(obuf = (char *)malloc(ocap))) {
				fprintf(stderr, "filering: out of memory\n");
				exit(1);
			}
		}
	}
	olen += filering_format(rec, format, obuf + olen);
}

int main(int argc, char **argv)
{
	filering_selection sel;
	filering_reader *r;
	filering_record rec;
	const char *dir = NULL, *val;
	char *name;
	int follow = 0, format = FILERING_FORMAT_LINES, damaged = 0, waiting, rc, i;
	int64_t last = 0, since = 0;
	uint64_t from = 0, a, b;
	struct sigaction sa;
	struct stat st;

	memset(&sel, 0, sizeof sel);
	for (i = 1; i < argc; i++) {
		name = argv[i];
		if (strcmp(name, "--") == 0) {
			if (i + 1 < argc && !dir)
				dir = argv[++i];
			if (i + 1 < argc)
				usage("want exactly one ring directory, got %s more", "arguments");
			break;
		}
		if (name[0] != '-' || name[1] == 0) {
			if (dir)
				usage("want exactly one ring directory, got another: %s", name);
			dir = name;
			continue;
		}
		name += name[1] == '-' ? 2 : 1;
		if (strcmp(name, "follow") == 0 || strcmp(name, "f") == 0) {
			follow = 1;
			continue;
		}
		if (strcmp(name, "help") == 0 || strcmp(name, "h") == 0)
			help();
		val = cli_value(name, argc, argv, &i);
		if (strcmp(name, "last") == 0 || strcmp(name, "from") == 0 || strcmp(name, "since") == 0 ||
		    strcmp(name, "format") == 0) {
			if (!val)
				usage("flag needs an argument: --%s", name);
		} else {
			usage("flag provided but not defined: -%s", name);
		}
		if (strcmp(name, "last") == 0) {
			char *end;
			errno = 0;
			last = strtoll(val, &end, 10);
			if (errno || *end || !*val)
				usage("invalid value \"%s\" for flag --last", val);
			if (last < 0)
				usage("--last %s: must not be negative", val);
		} else if (strcmp(name, "from") == 0) {
			if (parse_u64(val, &from))
				usage("invalid value \"%s\" for flag --from", val);
		} else if (strcmp(name, "since") == 0) {
			if (cli_duration(val, &since))
				usage("invalid value \"%s\" for flag --since", val);
			if (since < 0)
				usage("--since %s: must not be negative", val);
		} else if (strcmp(val, "lines") == 0) {
			format = FILERING_FORMAT_LINES;
		} else if (strcmp(val, "json") == 0) {
			format = FILERING_FORMAT_JSON;
		} else if (strcmp(val, "raw") == 0) {
			format = FILERING_FORMAT_RAW;
		} else {
			usage("--format \"%s\": want lines, json or raw", val);
		}
	}
	if (!dir)
		usage("%s", "want exactly one ring directory, got 0 arguments");
	sel.last = (uint64_t)last;
	sel.from = from;
	if (since) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		sel.since_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec - since;
		sel.has_since = 1;
	}
	/* A snapshot holds every segment it reads open at once (docs/FORMAT.md, reading
	 * step 2): a ring may list thousands. Allow as many descriptors as the system lets
	 * this process have. */
	{
		struct rlimit rl;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	ocap = 64 << 10;
	if (!(obuf = (char *)malloc(ocap)))
		return 1;
	signal(SIGPIPE, SIG_IGN);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL); /* no SA_RESTART: a wait returns -EINTR */
	sigaction(SIGTERM, &sa, NULL);

	waiting = follow && lstat(dir, &st) != 0 && errno == ENOENT;
	if (waiting)
		fprintf(stderr, "filering: %s: no ring yet; waiting for it to be created\n", dir);
	rc = filering_reader_open(dir, follow ? FILERING_FOLLOW : 0, &sel, &r);
	if (rc != 0) {
		fprintf(stderr, "filering: open ring %s: %s\n", dir,
		        rc == -ELOOP ? "is a symbolic link; name the real directory" : filering_strerror(rc));
		return 1;
	}
	if (follow && !waiting) {
		char *path = (char *)malloc(strlen(dir) + 16);
		if (path) {
			sprintf(path, "%s/manifest", dir);
			if (lstat(path, &st) != 0 && errno == ENOENT)
				fprintf(stderr, "filering: %s: no ring yet; waiting for it to be created\n", dir);
			free(path);
		}
	}
	for (;;) {
		if (stop)
			break;
		/* Print what is there without waiting; flush before any wait. */
		rc = filering_reader_next(r, &rec, 0);
		if (rc == 0 && follow && !stop) {
			oflush();
			rc = filering_reader_next(r, &rec, 250);
		}
		if (rc == FILERING_RECORD) {
			orecord(&rec, format);
			continue;
		}
		if (rc == 0) {
			if (!follow)
				break;
			continue;
		}
		if (rc == -EINTR)
			continue;
		oflush();
		if (rc == FILERING_LOSS) {
			filering_reader_loss(r, &a, &b);
			fprintf(stderr, "filering: %s: lost %llu records (%llu to %llu)\n", dir,
			        (unsigned long long)(b - a + 1), (unsigned long long)a, (unsigned long long)b);
			continue;
		}
		if (rc == FILERING_RESTART) {
			fprintf(stderr, "filering: %s: the ring was created anew; following it from its first record\n", dir);
			continue;
		}
		fprintf(stderr, "filering: %s\n", filering_reader_error(r));
		if (filering_is_damage(rc)) {
			damaged = 1;
			continue;
		}
		oflush();
		filering_reader_close(r);
		return 1;
	}
	oflush();
	filering_reader_close(r);
	return damaged ? 1 : 0;
}
