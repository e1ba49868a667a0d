/*
 * test_optdoc - proves the option table (config_options(), src/config.c) and what
 * documents it never drift apart: the OPTIONS entries of doc/iscsifs.1 and the options
 * table of README.md are exactly what the table generates, and the bash completion
 * offers every option and every value of every enum option.
 *
 *   test_optdoc SRCDIR            check (the meson test); prints a diff-like report
 *   test_optdoc SRCDIR --update   rewrite the generated parts of both documents
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsifs/config.h"

static int failures;

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0;

	if (!f) {
		fprintf(stderr, "test_optdoc: cannot open %s: %s\n", path, strerror(errno));
		exit(1);
	}
	FILE *m = open_memstream(&buf, &len);
	int c;
	while ((c = fgetc(f)) != EOF)
		fputc(c, m);
	fclose(m);
	fclose(f);
	return buf;
}

static char *generate(enum config_doc_format fmt)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);

	config_write_options_doc(m, fmt);
	fclose(m);
	return buf;
}

/* The text between the line holding `begin` and the line holding `end`. */
static int section(const char *text, const char *begin, const char *end, size_t *from, size_t *to)
{
	const char *b = strstr(text, begin), *e;

	if (!b)
		return -1;
	b = strchr(b, '\n');
	if (!b)
		return -1;
	b++;
	e = strstr(b, end);
	if (!e)
		return -1;
	while (e > b && e[-1] != '\n')
		e--;
	*from = (size_t)(b - text);
	*to = (size_t)(e - text);
	return 0;
}

/* Print the first differing line of `want` and `got`. */
static void first_difference(const char *what, const char *want, const char *got)
{
	int line = 1;

	while (*want && *want == *got) {
		if (*want == '\n')
			line++;
		want++;
		got++;
	}
	fprintf(stderr,
		"FAIL: %s differs from the option table at generated line %d:\n"
		"  want: %.*s\n  got:  %.*s\n",
		what, line, (int)strcspn(want, "\n"), want, (int)strcspn(got, "\n"), got);
}

static void check_or_update(const char *path, const char *begin, const char *end,
			    enum config_doc_format fmt, bool update)
{
	char *text = slurp(path), *gen = generate(fmt);
	size_t from, to;

	if (section(text, begin, end, &from, &to) < 0) {
		fprintf(stderr, "FAIL: %s has no \"%s\" ... \"%s\" markers\n", path, begin, end);
		failures++;
	} else if (update) {
		FILE *f = fopen(path, "w");
		if (!f || fprintf(f, "%.*s%s%s", (int)from, text, gen, text + to) < 0 ||
		    fclose(f)) {
			fprintf(stderr, "cannot rewrite %s\n", path);
			failures++;
		} else {
			printf("rewrote the generated part of %s\n", path);
		}
	} else if (strlen(gen) != to - from || memcmp(gen, text + from, to - from) != 0) {
		char *got = strndup(text + from, to - from);
		first_difference(path, gen, got);
		fprintf(stderr, "  run: build/tests/unit/test_optdoc %s --update\n", "SRCDIR");
		free(got);
		failures++;
	} else {
		printf("ok: %s matches the option table\n", path);
	}
	free(text);
	free(gen);
}

/* Every option name and every enum value appears as a word in the completion. */
static void check_completion(const char *path)
{
	char *text = slurp(path);
	size_t n;
	const struct config_option *o = config_options(&n);

	for (size_t i = 0; i < n; i++) {
		char word[96];

		snprintf(word, sizeof word, "%s%s", o[i].name,
			 o[i].kind == CONFIG_OPT_IGNORED && o[i].metavar ? "" :
			 (o[i].metavar || o[i].has_value)                ? "=" :
									   "");
		if (!strstr(text, word)) {
			fprintf(stderr, "FAIL: %s does not offer option \"%s\"\n", path, word);
			failures++;
		}
		for (const struct config_enum_value *e = o[i].values; e && e->text; e++)
			if (!strstr(text, e->text)) {
				fprintf(stderr, "FAIL: %s does not offer %s=%s\n", path, o[i].name,
					e->text);
				failures++;
			}
	}
	if (!failures)
		printf("ok: %s offers every option and value\n", path);
	free(text);
}

int main(int argc, char **argv)
{
	char path[4096];
	bool update = argc > 2 && strcmp(argv[2], "--update") == 0;

	if (argc < 2) {
		fprintf(stderr, "usage: test_optdoc SRCDIR [--update]\n");
		return 2;
	}
	snprintf(path, sizeof path, "%s/doc/iscsifs.1", argv[1]);
	check_or_update(path, ".\\\" BEGIN OPTIONS", ".\\\" END OPTIONS", CONFIG_DOC_MAN, update);
	snprintf(path, sizeof path, "%s/README.md", argv[1]);
	check_or_update(path, "<!-- BEGIN OPTIONS", "<!-- END OPTIONS", CONFIG_DOC_README, update);
	snprintf(path, sizeof path, "%s/contrib/bash-completion/iscsifs", argv[1]);
	check_completion(path);
	printf("test_optdoc: %d failed\n", failures);
	return failures ? 1 : 0;
}
