/*
 * statcmd.c - `iscsifs stat MOUNTPOINT [--watch]`: the counters of a mounted iscsifs
 * as a table, from its .iscsifs/metrics.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "iscsifs/commands.h"
#include "iscsifs/util.h"

/* One line of .iscsifs/metrics: name{target="...",lun|session="N"} value */
struct metric {
	char name[64];
	char target[CONFIG_NAME_MAX];
	int id;            /* lun or session number, -1 when absent */
	double value;
};

static int read_metrics(const char *path, struct metric **out)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	struct metric *v = NULL;
	int n = 0, cap = 0;
	char line[1024];
	while (fgets(line, sizeof(line), f)) {
		if (line[0] == '#' || line[0] == '\n')
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			struct metric *nv = realloc(v, sizeof(*v) * (size_t)cap);
			if (!nv)
				break;
			v = nv;
		}
		struct metric *m = &v[n];
		memset(m, 0, sizeof(*m));
		m->id = -1;
		char *brace = strchr(line, '{'), *space = strrchr(line, ' ');
		if (!space)
			continue;
		size_t nl = (size_t)((brace && brace < space ? brace : space) - line);
		snprintf(m->name, sizeof(m->name), "%.*s", (int)MIN(nl, sizeof(m->name) - 1), line);
		if (brace && brace < space) {
			char *t = strstr(brace, "target=\"");
			if (t) {
				t += 8;
				char *e = strchr(t, '"');
				if (e)
					snprintf(m->target, sizeof(m->target), "%.*s", (int)(e - t), t);
			}
			char *l = strstr(brace, "lun=\"");
			char *se = strstr(brace, "session=\"");
			if (l)
				m->id = atoi(l + 5);
			else if (se)
				m->id = atoi(se + 9);
		}
		m->value = strtod(space + 1, NULL);
		n++;
	}
	fclose(f);
	*out = v;
	return n;
}

static double metric(const struct metric *v, int n, const char *name, const char *target, int id)
{
	for (int i = 0; i < n; i++)
		if (strcmp(v[i].name, name) == 0 && strcmp(v[i].target, target) == 0 && v[i].id == id)
			return v[i].value;
	return 0;
}

static void print_stats(const struct config *cfg, const struct metric *v, int n,
			const struct metric *prev, int np, double dt)
{
	printf("iscsifs on %s, up %.0f s\n\n", cfg->mountpoint,
	       metric(v, n, "iscsifs_uptime_seconds", "", -1));
	printf("%-44s %4s %-10s %10s %8s\n", "TARGET", "SESS", "STATE", "RECONNECTS", "TIMEOUTS");
	for (int i = 0; i < n; i++) {
		if (strcmp(v[i].name, "iscsifs_session_up"))
			continue;
		printf("%-44s %4d %-10s %10.0f %8.0f\n", v[i].target, v[i].id,
		       v[i].value ? "up" : "DOWN",
		       metric(v, n, "iscsifs_session_reconnects_total", v[i].target, v[i].id),
		       metric(v, n, "iscsifs_session_timeouts_total", v[i].target, v[i].id));
	}
	bool rates = prev && dt > 0;
	printf("\n%-44s %4s %6s %11s %11s %9s %9s %6s\n", "TARGET", "LUN", "HIT%",
	       rates ? "READ MB/s" : "READ MB", rates ? "WRITE MB/s" : "WRITE MB", "CACHED MB",
	       "DIRTY MB", "WERR");
	for (int i = 0; i < n; i++) {
		if (strcmp(v[i].name, "iscsifs_cache_hits_total"))
			continue;
		const char *t = v[i].target;
		int l = v[i].id;
		double h = v[i].value, m = metric(v, n, "iscsifs_cache_misses_total", t, l);
		double rb = metric(v, n, "iscsifs_read_bytes_total", t, l);
		double wb = metric(v, n, "iscsifs_write_bytes_total", t, l);
		if (rates) {
			h -= metric(prev, np, "iscsifs_cache_hits_total", t, l);
			m -= metric(prev, np, "iscsifs_cache_misses_total", t, l);
			rb = (rb - metric(prev, np, "iscsifs_read_bytes_total", t, l)) / dt;
			wb = (wb - metric(prev, np, "iscsifs_write_bytes_total", t, l)) / dt;
		}
		char hit[16] = "-";
		if (h + m > 0)
			snprintf(hit, sizeof(hit), "%.1f", 100.0 * h / (h + m));
		printf("%-44s %4d %6s %11.1f %11.1f %9.1f %9.1f %6.0f\n", t, l, hit, rb / 1048576.0,
		       wb / 1048576.0, metric(v, n, "iscsifs_cached_bytes", t, l) / 1048576.0,
		       metric(v, n, "iscsifs_dirty_bytes", t, l) / 1048576.0,
		       metric(v, n, "iscsifs_write_errors_total", t, l));
	}
}

int stat_main(const struct config *cfg)
{
	char path[4200];
	struct metric *prev = NULL;
	int np = 0;
	uint64_t prev_ms = 0;

	snprintf(path, sizeof(path), "%s/.iscsifs/metrics", cfg->mountpoint);
	for (;;) {
		struct metric *v = NULL;
		int n = read_metrics(path, &v);
		if (n < 0) {
			fprintf(stderr, "iscsifs: %s is not an iscsifs mount (cannot read %s: %s)\n",
				cfg->mountpoint, path, strerror(-n));
			free(prev);
			return 1;
		}
		uint64_t now = util_now_ms();
		if (cfg->watch)
			printf("\033[H\033[2J");
		print_stats(cfg, v, n, prev, np, prev ? (double)(now - prev_ms) / 1000.0 : 0);
		fflush(stdout);
		free(prev);
		if (!cfg->watch) {
			free(v);
			return 0;
		}
		prev = v;
		np = n;
		prev_ms = now;
		sleep(1);
	}
}
