/*
 * tjson.h: a small JSON reader for the test runner (case.json of the conformance
 * corpus). It reads trusted files only; the library's manifest parser is in filering.c.
 */
#ifndef TJSON_H
#define TJSON_H

#include <stdlib.h>
#include <string.h>

enum { TJ_NULL, TJ_BOOL, TJ_NUM, TJ_STR, TJ_ARR, TJ_OBJ };

typedef struct tj {
	int type;
	int b;
	double num;
	char *str;          /* TJ_STR: the decoded string */
	struct tj **items;  /* TJ_ARR, TJ_OBJ: values */
	char **keys;        /* TJ_OBJ: keys */
	size_t n;
} tj;

static void tj_free(tj *v)
{
	size_t i;

	if (!v)
		return;
	for (i = 0; i < v->n; i++) {
		tj_free(v->items[i]);
		if (v->keys)
			free(v->keys[i]);
	}
	free(v->items);
	free(v->keys);
	free(v->str);
	free(v);
}

static void tj_ws(const char **p)
{
	while (**p == ' ' || **p == '\n' || **p == '\r' || **p == '\t')
		(*p)++;
}

static char *tj_string(const char **p)
{
	size_t cap = 16, n = 0;
	char *s = (char *)malloc(cap);
	unsigned c;

	(*p)++; /* the quote */
	while (**p && **p != '"') {
		c = (unsigned char)*(*p)++;
		if (c == '\\') {
			c = (unsigned char)*(*p)++;
			switch (c) {
			case 'n': c = '\n'; break;
			case 't': c = '\t'; break;
			case 'r': c = '\r'; break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'u': {
				char hex[5] = {0};
				memcpy(hex, *p, 4);
				*p += 4;
				c = (unsigned)strtoul(hex, NULL, 16);
				if (c >= 0x80) { /* UTF-8, no surrogate pairs in the corpus's case.json */
					if (n + 4 >= cap)
						s = (char *)realloc(s, cap *= 2);
					if (c < 0x800) {
						s[n++] = (char)(0xC0 | c >> 6);
					} else {
						s[n++] = (char)(0xE0 | c >> 12);
						s[n++] = (char)(0x80 | ((c >> 6) & 0x3F));
					}
					c = 0x80 | (c & 0x3F);
				}
				break;
			}
			default: break;
			}
		}
		if (n + 2 >= cap)
			s = (char *)realloc(s, cap *= 2);
		s[n++] = (char)c;
	}
	if (**p == '"')
		(*p)++;
	s[n] = 0;
	return s;
}

static tj *tj_value(const char **p)
{
	tj *v = (tj *)calloc(1, sizeof *v);
	size_t cap = 0;

	tj_ws(p);
	if (**p == '{' || **p == '[') {
		int obj = **p == '{';
		v->type = obj ? TJ_OBJ : TJ_ARR;
		(*p)++;
		tj_ws(p);
		while (**p && **p != (obj ? '}' : ']')) {
			if (v->n == cap) {
				cap = cap ? 2 * cap : 8;
				v->items = (tj **)realloc(v->items, cap * sizeof *v->items);
				if (obj)
					v->keys = (char **)realloc(v->keys, cap * sizeof *v->keys);
			}
			if (obj) {
				tj_ws(p);
				v->keys[v->n] = tj_string(p);
				tj_ws(p);
				if (**p == ':')
					(*p)++;
			}
			v->items[v->n++] = tj_value(p);
			tj_ws(p);
			if (**p == ',')
				(*p)++;
			tj_ws(p);
		}
		if (**p)
			(*p)++;
	} else if (**p == '"') {
		v->type = TJ_STR;
		v->str = tj_string(p);
	} else if (strncmp(*p, "true", 4) == 0 || strncmp(*p, "false", 5) == 0) {
		v->type = TJ_BOOL;
		v->b = **p == 't';
		*p += v->b ? 4 : 5;
	} else if (strncmp(*p, "null", 4) == 0) {
		v->type = TJ_NULL;
		*p += 4;
	} else {
		char *end;
		v->type = TJ_NUM;
		v->num = strtod(*p, &end);
		*p = end == *p ? *p + 1 : end;
	}
	return v;
}

static tj *tj_parse(const char *text) { return tj_value(&text); }

/* tj_get returns the value of key in object v, or NULL. */
static tj *tj_get(const tj *v, const char *key)
{
	size_t i;

	if (!v || v->type != TJ_OBJ)
		return NULL;
	for (i = 0; i < v->n; i++)
		if (strcmp(v->keys[i], key) == 0)
			return v->items[i];
	return NULL;
}

#endif
