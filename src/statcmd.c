/*
 * statcmd.c - `iscsifs stat MOUNTPOINT [--watch] [--json]`: the counters of a mounted
 * iscsifs from its .iscsifs/stats.json (schema in stats.c), as a table, or the JSON
 * document itself (--watch --json: one document per line). With --watch the table refreshes every second and shows rates; a
 * closed output (`stat --watch | head`) ends it: SIGPIPE is ignored (main.c), so a
 * failed write (EPIPE) is the signal to stop.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "iscsifs/commands.h"
#include "iscsifs/exitcode.h"
#include "iscsifs/stats.h"
#include "iscsifs/util.h"

/* stats.json of the mount, parsed; NULL with errno-style code in *rc. */
static json_object *read_stats(const char *path, int *rc)
{
	json_object *o = json_object_from_file(path);

	if (!o) {
		FILE *f = fopen(path, "r");
		*rc = f ? -EBADMSG : -errno;
		if (f)
			fclose(f);
	}
	return o;
}

static json_object *get(json_object *o, const char *key)
{
	json_object *v = NULL;
	return o && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

/* o.group.key as a number, 0 when absent */
static double num(json_object *o, const char *group, const char *key)
{
	json_object *g = group ? get(o, group) : o;
	return json_object_get_double(get(g, key));
}

static const char *str(json_object *o, const char *key)
{
	const char *s = json_object_get_string(get(o, key));
	return s ? s : "";
}

/* The LUN row of `prev` with the same target and lun as `l`. */
static json_object *same_lun(json_object *prev, json_object *l)
{
	json_object *luns = get(prev, "luns");
	size_t n = luns ? json_object_array_length(luns) : 0;

	for (size_t i = 0; i < n; i++) {
		json_object *p = json_object_array_get_idx(luns, i);
		if (strcmp(str(p, "target"), str(l, "target")) == 0 &&
		    num(p, NULL, "lun") == num(l, NULL, "lun"))
			return p;
	}
	return NULL;
}

static void print_table(const struct config *cfg, json_object *d, json_object *prev, double dt)
{
	json_object *sess = get(d, "sessions"), *luns = get(d, "luns");
	size_t ns = sess ? json_object_array_length(sess) : 0;
	size_t nl = luns ? json_object_array_length(luns) : 0;
	bool rates = prev && dt > 0;

	printf("iscsifs on %s, up %.0f s\n\n", cfg->mountpoint, num(d, NULL, "uptime_s"));
	printf("%-44s %4s %-10s %10s %8s\n", "TARGET", "SESS", "STATE", "RECONNECTS", "TIMEOUTS");
	for (size_t i = 0; i < ns; i++) {
		json_object *s = json_object_array_get_idx(sess, i);
		printf("%-44s %4.0f %-10s %10.0f %8.0f\n", str(s, "target"), num(s, NULL, "index"),
		       strcmp(str(s, "state"), "logged-in") == 0 ? "up" : "DOWN",
		       num(s, NULL, "reconnects"),
		       num(s, NULL, "timeouts") + num(s, NULL, "nop_timeouts"));
	}
	printf("\n%-44s %4s %6s %11s %11s %9s %9s %6s\n", "TARGET", "LUN", "HIT%",
	       rates ? "READ MB/s" : "READ MB", rates ? "WRITE MB/s" : "WRITE MB", "CACHED MB",
	       "DIRTY MB", "WERR");
	for (size_t i = 0; i < nl; i++) {
		json_object *l = json_object_array_get_idx(luns, i),
			    *p = rates ? same_lun(prev, l) : NULL;
		double h = num(l, "cache", "hits"), m = num(l, "cache", "misses");
		double rb = num(l, "cache", "read_bytes"), wb = num(l, "cache", "write_bytes");
		char hit[16] = "-";

		if (rates) {
			h -= num(p, "cache", "hits");
			m -= num(p, "cache", "misses");
			rb = (rb - num(p, "cache", "read_bytes")) / dt;
			wb = (wb - num(p, "cache", "write_bytes")) / dt;
		}
		if (h + m > 0)
			snprintf(hit, sizeof(hit), "%.1f", 100.0 * h / (h + m));
		printf("%-44s %4.0f %6s %11.1f %11.1f %9.1f %9.1f %6.0f\n", str(l, "target"),
		       num(l, NULL, "lun"), hit, rb / 1048576.0, wb / 1048576.0,
		       num(l, "cache", "cached_bytes") / 1048576.0,
		       num(l, "cache", "dirty_bytes") / 1048576.0, num(l, "cache", "write_errors"));
	}
}

int stat_main(const struct config *cfg)
{
	char path[4200];
	json_object *prev = NULL;
	uint64_t prev_ms = 0;

	snprintf(path, sizeof(path), "%s/.iscsifs/stats.json", cfg->mountpoint);
	for (;;) {
		int rc = 0;
		json_object *d = read_stats(path, &rc);
		uint64_t now = util_now_ms();

		if (!d) {
			fprintf(stderr,
				"iscsifs: %s is not an iscsifs mount (cannot read %s: %s)\n",
				cfg->mountpoint, path,
				rc == -EBADMSG ? "not the JSON iscsifs writes" : strerror(-rc));
			json_object_put(prev);
			/* a path that is no iscsifs mount is a usage error, as for rescan */
			return rc == -ENOENT || rc == -ENOTDIR ? EXITCODE_USAGE : EXITCODE_RUNTIME;
		}
		if (json_object_get_int(get(d, "schema")) != STATS_SCHEMA)
			fprintf(stderr,
				"iscsifs: %s has stats schema %d, this iscsifs reads %d: "
				"some columns may be empty\n",
				path, json_object_get_int(get(d, "schema")), STATS_SCHEMA);
		if (cfg->json) {
			/* --watch --json: one document per line (JSON Lines) */
			puts(json_object_to_json_string_ext(
				d,
				(cfg->watch ? JSON_C_TO_STRING_PLAIN :
					      JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED) |
					JSON_C_TO_STRING_NOSLASHESCAPE));
		} else {
			if (cfg->watch)
				printf("\033[H\033[2J");
			print_table(cfg, d, prev, prev ? (double)(now - prev_ms) / 1000.0 : 0);
		}
		json_object_put(prev);
		prev = d;
		prev_ms = now;
		/* the reader went away (EPIPE; SIGPIPE is ignored) or stdout failed */
		if (fflush(stdout) != 0 || ferror(stdout)) {
			json_object_put(prev);
			return errno == EPIPE ? EXITCODE_OK : EXITCODE_RUNTIME;
		}
		if (!cfg->watch) {
			json_object_put(prev);
			return EXITCODE_OK;
		}
		sleep(1);
	}
}
