/*
 * cli.h: the command-line parsing filering-produce and filering-read share, in the
 * conventions of the Go `filering` command (flags before or after the directory,
 * --name value or --name=value, Go durations). Not part of the library.
 */
#ifndef FILERING_CLI_H
#define FILERING_CLI_H

#include <stdint.h>
#include <string.h>

/* cli_value returns the value of the flag whose name (dashes removed) starts at name,
 * which points into argv[*i]: what follows '=' in it (name is cut there), else the next
 * argument (*i moves past it), else NULL. */
static const char *cli_value(char *name, int argc, char **argv, int *i)
{
	char *eq = strchr(name, '=');

	if (eq) {
		*eq = 0;
		return eq + 1;
	}
	if (*i + 1 < argc)
		return argv[++*i];
	return NULL;
}

/* cli_duration reads a Go duration ("1h30m", "1.5s", "300ms", "0") into ns. Returns 0
 * or -1. */
static int cli_duration(const char *s, int64_t *out)
{
	static const struct { const char *u; double ns; } units[] = {
		{"ns", 1}, {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"\xce\xbcs", 1e3}, {"ms", 1e6},
		{"s", 1e9}, {"m", 6e10}, {"h", 3.6e12}};
	const size_t nu = sizeof units / sizeof units[0];
	double total = 0, v, f;
	size_t i, best;
	int neg = 0, digits;

	if (*s == '-' || *s == '+')
		neg = *s++ == '-';
	if (strcmp(s, "0") == 0) {
		*out = 0;
		return 0;
	}
	if (!*s)
		return -1;
	while (*s) {
		v = 0;
		digits = 0;
		while (*s >= '0' && *s <= '9') {
			v = v * 10 + (*s++ - '0');
			digits++;
		}
		if (*s == '.')
			for (s++, f = 0.1; *s >= '0' && *s <= '9'; f /= 10, digits++)
				v += f * (*s++ - '0');
		if (!digits)
			return -1;
		for (best = nu, i = 0; i < nu; i++)
			if (strncmp(s, units[i].u, strlen(units[i].u)) == 0 &&
			    (best == nu || strlen(units[i].u) > strlen(units[best].u)))
				best = i;
		if (best == nu)
			return -1;
		s += strlen(units[best].u);
		total += v * units[best].ns;
	}
	if (total > 9.2e18)
		return -1;
	*out = (int64_t)(neg ? -total : total);
	return 0;
}

#endif
