/*
 * stats.c - the counters of a mounted iscsifs as JSON (.iscsifs/stats.json, read by
 * `iscsifs stat`) and as Prometheus text (.iscsifs/metrics). Never contains a secret.
 *
 * One table per kind of counter (session_metrics, lun_metrics) names each counter
 * once: its stats.json key, its Prometheus family, type and help. Both renderings walk
 * the same table over one snapshot per LUN / session, so they cannot disagree. SCSI
 * latency (lun.h, struct lun_latency) is a histogram per op in both.
 *
 * stats.json schema (version STATS_SCHEMA; documented in iscsifs(1), JSON OUTPUT):
 *   { "schema", "version", "mountpoint", "url", "uptime_s",
 *     "latency_buckets_us": [upper bounds],
 *     "sessions": [ {target, portal, index, state, reconnects, timeouts,
 *                    nop_timeouts, commands, down_for_s} ],
 *     "luns": [ {target, lun, lun_address, file, size, block_size,
 *                "cache": {...}, "scsi": {..., "latency": {"read"|"write"|"flush":
 *                {count, sum_us, buckets: [cumulative count per bound, then +Inf]}}}} ] }
 * The Prometheus text groups every family (HELP, TYPE, then all its samples) and
 * passes `promtool check metrics` (tests/integration/test_eco_metrics.sh).
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "iscsifs-config.h"
#include "iscsifs/cache.h"
#include "iscsifs/fs.h"
#include "iscsifs/stats.h"
#include "iscsifs/util.h"


static const uint64_t lat_bounds_us[LUN_LAT_NBOUNDS] = LUN_LAT_BOUNDS_US;

/* ---- the tables ------------------------------------------------------------------ */

/* One moment of one LUN: every counter of its row comes from here. */
struct lun_snap {
	struct cache_stats cs;
	struct lun_stats ls;
	struct lun_latency lat[3]; /* read, write, flush */
};

static const char *const lat_ops[3] = { "read", "write", "flush" };

enum mtype { COUNTER, GAUGE };

struct metric {
	const char *group; /* stats.json object inside the row ("" = the row itself) */
	const char *key;   /* stats.json key */
	const char *prom;  /* Prometheus family without "iscsifs_"; NULL: JSON only */
	enum mtype type;
	const char *help;
	size_t off; /* uint64_t in the snapshot */
};

#define C(f) offsetof(struct lun_snap, cs.f)
#define L(f) offsetof(struct lun_snap, ls.f)
static const struct metric lun_metrics[] = {
	{ "cache", "hits", "cache_hits_total", COUNTER, "Cache blocks found valid when read.",
	  C(hits) },
	{ "cache", "misses", "cache_misses_total", COUNTER,
	  "Cache blocks that needed a fetch from the target when read.", C(misses) },
	{ "cache", "read_ops", "read_requests_total", COUNTER, "Read requests served by the cache.",
	  C(read_ops) },
	{ "cache", "write_ops", "write_requests_total", COUNTER,
	  "Write requests served by the cache.", C(write_ops) },
	{ "cache", "read_bytes", "read_bytes_total", COUNTER, "Bytes read by applications.",
	  C(read_bytes) },
	{ "cache", "write_bytes", "write_bytes_total", COUNTER, "Bytes written by applications.",
	  C(write_bytes) },
	{ "cache", "fetch_ops", "fetch_requests_total", COUNTER,
	  "READs the cache issued to the LUN, read-ahead included.", C(fetch_ops) },
	{ "cache", "fetch_bytes", "fetch_bytes_total", COUNTER,
	  "Bytes the cache read from the LUN, read-ahead included.", C(fetch_bytes) },
	{ "cache", "readahead_bytes", "readahead_bytes_total", COUNTER,
	  "Bytes of fetch_bytes issued by read-ahead.", C(readahead_bytes) },
	{ "cache", "writeback_ops", "writeback_requests_total", COUNTER,
	  "WRITEs the cache issued to the LUN.", C(writeback_ops) },
	{ "cache", "writeback_bytes", "writeback_bytes_total", COUNTER,
	  "Bytes the cache wrote to the LUN.", C(writeback_bytes) },
	{ "cache", "write_errors", "write_errors_total", COUNTER, "WRITEs to the LUN that failed.",
	  C(write_errors) },
	{ "cache", "writeback_errors", "writeback_errors_total", COUNTER,
	  "Background write-backs that failed (reported at the next fsync or close).",
	  C(writeback_errors) },
	{ "cache", "evictions", "evictions_total", COUNTER, "Cache blocks evicted.", C(evictions) },
	{ "cache", "cached_bytes", "cached_bytes", GAUGE, "Bytes held in the cache now.",
	  C(cached_bytes) },
	{ "cache", "dirty_bytes", "dirty_bytes", GAUGE,
	  "Bytes in the cache not yet written to the LUN.", C(dirty_bytes) },
	{ "cache", "lost_bytes", "lost_bytes_total", COUNTER,
	  "Dirty bytes given up: the target kept refusing them at shutdown, or they lay past "
	  "the end of a LUN that shrank.",
	  C(lost_bytes) },
	{ "scsi", "reads", "scsi_reads_total", COUNTER, "SCSI READ commands completed.", L(reads) },
	{ "scsi", "writes", "scsi_writes_total", COUNTER, "SCSI WRITE commands completed.",
	  L(writes) },
	{ "scsi", "read_bytes", "scsi_read_bytes_total", COUNTER,
	  "Bytes read by SCSI READ commands.", L(read_bytes) },
	{ "scsi", "write_bytes", "scsi_write_bytes_total", COUNTER,
	  "Bytes written by SCSI WRITE commands.", L(write_bytes) },
	{ "scsi", "retries", "scsi_retries_total", COUNTER,
	  "SCSI commands retried (BUSY, UNIT ATTENTION, ...).", L(retries) },
	{ "scsi", "errors", "scsi_errors_total", COUNTER, "SCSI commands that failed for good.",
	  L(errors) },
	{ "scsi", "capacity_changes", "capacity_changes_total", COUNTER,
	  "Times the LUN's capacity changed while mounted (READ CAPACITY after a unit "
	  "attention, a re-login or a rescan).", L(capacity_changes) },
	{ "scsi", "identity_checks", "identity_checks_total", COUNTER,
	  "Identity checks (VPD 0x83/0x80) on the live session: unit attentions 3F/xx, "
	  "rescans.", L(identity_checks) },
};
#undef C
#undef L

/* Session counters: offsets into struct session_info. */
#define S(f) offsetof(struct session_info, f)
static const struct metric session_metrics[] = {
	{ "", "reconnects", "session_reconnects_total", COUNTER,
	  "Times the session was lost and logged in again.", S(reconnects) },
	{ "", "timeouts", "session_timeouts_total", COUNTER,
	  "SCSI commands that timed out (cmd_timeout) on this session.", S(timeouts) },
	{ "", "nop_timeouts", "session_nop_timeouts_total", COUNTER,
	  "Keepalives (NOP-Out) not answered within noop_timeout.", S(nop_timeouts) },
	{ "", "commands", "session_commands_total", COUNTER, "SCSI commands sent on this session.",
	  S(commands) },
};
#undef S

/* The live namespace (issue 11), for the whole mount: offsets into fs_live_stats. */
#define V(f) offsetof(struct fs_live_stats, f)
static const struct metric live_metrics[] = {
	{ "live", "rescans", "rescans_total", COUNTER,
	  "Rescans that read the targets again (rescan command, SIGHUP, unit attentions, "
	  "re-logins, rescan_interval).", V(rescans) },
	{ "live", "rescan_failures", "rescan_failures_total", COUNTER,
	  "Of those, rescans in which a target could not be read (its files stayed).",
	  V(rescan_failures) },
	{ "live", "luns_added", "luns_added_total", COUNTER, "LUN files that appeared.",
	  V(luns_added) },
	{ "live", "luns_removed", "luns_removed_total", COUNTER,
	  "LUN files that disappeared (LUN gone, no longer a disk, or another disk).",
	  V(luns_removed) },
	{ "live", "luns_resized", "luns_resized_total", COUNTER,
	  "LUN files whose size followed their LUN.", V(luns_resized) },
	{ "live", "parts_added", "partitions_added_total", COUNTER,
	  "Partition files that appeared while mounted.", V(parts_added) },
	{ "live", "parts_removed", "partitions_removed_total", COUNTER,
	  "Partition files that disappeared while mounted.", V(parts_removed) },
	{ "live", "parts_resized", "partitions_resized_total", COUNTER,
	  "Partition files whose size changed while mounted.", V(parts_resized) },
	{ "live", "targets_added", "targets_added_total", COUNTER,
	  "Target directories that appeared (portal mounts, SendTargets).", V(targets_added) },
	{ "live", "reprobes", "reprobes_total", COUNTER,
	  "Partition tables read again after a write touched them.", V(reprobes) },
};
#undef V

/* A snapshot of the live counters (atomic loads). */
static void snap_live(const struct fs_model *m, struct fs_live_stats *out)
{
	for (size_t k = 0; k < ARRAY_SIZE(live_metrics); k++) {
		const uint64_t *p = (const uint64_t *)((const char *)&m->live + live_metrics[k].off);
		uint64_t v = __atomic_load_n(p, __ATOMIC_RELAXED);
		memcpy((char *)out + live_metrics[k].off, &v, sizeof v);
	}
}

static uint64_t field_u64(const void *base, size_t off)
{
	uint64_t v;
	memcpy(&v, (const char *)base + off, sizeof v);
	return v;
}

static void snap_lun(const struct fs_lun *l, struct lun_snap *s)
{
	memset(s, 0, sizeof *s);
	cache_get_stats(l->cache, &s->cs);
	lun_get_stats(l->lundev, &s->ls);
	s->lat[0] = s->ls.lat_read;
	s->lat[1] = s->ls.lat_write;
	s->lat[2] = s->ls.lat_flush;
}

/* ---- JSON ------------------------------------------------------------------------ */

static json_object *u64(uint64_t v)
{
	return json_object_new_uint64(v);
}

static json_object *latency_json(const struct lun_latency *lat)
{
	json_object *o = json_object_new_object(), *b = json_object_new_array();
	uint64_t cum = 0;

	for (int i = 0; i < LUN_LAT_BUCKETS; i++) {
		cum += lat->bucket[i];
		json_object_array_add(b, u64(cum));
	}
	json_object_object_add(o, "count", u64(lat->count));
	json_object_object_add(o, "sum_us", u64(lat->sum_us));
	json_object_object_add(o, "buckets", b);
	return o;
}

static char *render_json(const struct fs_model *m, size_t *len)
{
	json_object *root = json_object_new_object(), *arr, *bounds;
	uint64_t now = util_now_ms();
	char addr[32];

	json_object_object_add(root, "schema", json_object_new_int(STATS_SCHEMA));
	json_object_object_add(root, "version", json_object_new_string(ISCSIFS_VERSION));
	json_object_object_add(root, "mountpoint", json_object_new_string(m->cfg->mountpoint));
	json_object_object_add(root, "url", json_object_new_string(m->cfg->url_text));
	json_object_object_add(root, "uptime_s",
			       json_object_new_double((double)(now - m->start_ms) / 1000.0));
	bounds = json_object_new_array();
	for (int i = 0; i < LUN_LAT_NBOUNDS; i++)
		json_object_array_add(bounds, u64(lat_bounds_us[i]));
	json_object_object_add(root, "latency_buckets_us", bounds);

	arr = json_object_new_array();
	for (int t = 0; t < m->ntargets; t++)
		for (int i = 0; i < m->targets[t]->nsess; i++) {
			struct session_info si;
			json_object *s = json_object_new_object();

			session_get_info(m->targets[t]->sess[i], &si);
			json_object_object_add(s, "target",
					       json_object_new_string(m->targets[t]->name));
			json_object_object_add(s, "portal",
					       json_object_new_string(m->targets[t]->portal));
			json_object_object_add(s, "index", json_object_new_int(i));
			json_object_object_add(s, "state", json_object_new_string(si.state));
			for (size_t k = 0; k < ARRAY_SIZE(session_metrics); k++)
				json_object_object_add(s, session_metrics[k].key,
						       u64(field_u64(&si, session_metrics[k].off)));
			json_object_object_add(
				s, "down_for_s",
				json_object_new_double(si.down_since_ms ?
							       (double)(now - si.down_since_ms) /
								       1000.0 :
							       0.0));
			json_object_array_add(arr, s);
		}
	json_object_object_add(root, "sessions", arr);

	arr = json_object_new_array();
	for (int i = 0; i < m->nluns; i++) {
		const struct fs_lun *l = m->luns[i];
		json_object *o = json_object_new_object(), *cache = json_object_new_object();
		json_object *scsi = json_object_new_object(), *lat = json_object_new_object();
		struct lun_snap s;

		snap_lun(l, &s);
		snprintf(addr, sizeof addr, "0x%016" PRIx64, l->info.lun);
		json_object_object_add(o, "target", json_object_new_string(l->target->name));
		json_object_object_add(o, "lun", json_object_new_int(lunaddr_number(l->info.lun)));
		json_object_object_add(o, "lun_address", json_object_new_string(addr));
		json_object_object_add(o, "file", json_object_new_string(l->name));
		json_object_object_add(o, "size", u64(l->cache->size));
		json_object_object_add(o, "block_size", u64(l->info.block_size));
		for (size_t k = 0; k < ARRAY_SIZE(lun_metrics); k++)
			json_object_object_add(
				strcmp(lun_metrics[k].group, "cache") == 0 ? cache : scsi,
				lun_metrics[k].key, u64(field_u64(&s, lun_metrics[k].off)));
		json_object_object_add(
			scsi, "read_latency_us_avg",
			json_object_new_double(
				s.ls.reads ? (double)s.ls.read_lat_us / (double)s.ls.reads : 0.0));
		json_object_object_add(scsi, "write_latency_us_avg",
				       json_object_new_double(s.ls.writes ?
								      (double)s.ls.write_lat_us /
									      (double)s.ls.writes :
								      0.0));
		for (int op = 0; op < 3; op++)
			json_object_object_add(lat, lat_ops[op], latency_json(&s.lat[op]));
		json_object_object_add(scsi, "latency", lat);
		json_object_object_add(o, "cache", cache);
		json_object_object_add(o, "scsi", scsi);
		json_object_array_add(arr, o);
	}
	json_object_object_add(root, "luns", arr);

	struct fs_live_stats lv;
	json_object *live = json_object_new_object();
	snap_live(m, &lv);
	for (size_t k = 0; k < ARRAY_SIZE(live_metrics); k++)
		json_object_object_add(live, live_metrics[k].key,
				       u64(field_u64(&lv, live_metrics[k].off)));
	json_object_object_add(root, "live", live);

	const char *text = json_object_to_json_string_ext(
		root,
		JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
	size_t n = strlen(text);
	char *out = malloc(n + 2);
	if (out) {
		memcpy(out, text, n);
		out[n] = '\n';
		out[n + 1] = '\0';
		*len = n + 1;
	}
	json_object_put(root);
	return out;
}

/* ---- Prometheus text ------------------------------------------------------------- */

/* A label value: backslash, double quote and newline escaped (exposition format). */
static void label(FILE *f, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fputc('\\', f);
		if (*v == '\n') {
			fputs("\\n", f);
			continue;
		}
		fputc(*v, f);
	}
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP iscsifs_%s %s\n# TYPE iscsifs_%s %s\n", name, help, name, type);
}

static void lun_labels(FILE *f, const struct fs_lun *l)
{
	fputs("{target=\"", f);
	label(f, l->target->name);
	fprintf(f, "\",lun=\"%s\"", LUNSTR(l->info.lun));
}

static char *render_prom(const struct fs_model *m, size_t *len)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);
	struct lun_snap *snap;
	struct session_info *si;
	int nsess = 0, k;

	if (!f)
		return NULL;
	for (int t = 0; t < m->ntargets; t++)
		nsess += m->targets[t]->nsess;
	snap = calloc((size_t)m->nluns + 1, sizeof *snap);
	si = calloc((size_t)nsess + 1, sizeof *si);
	if (!snap || !si) {
		fclose(f);
		free(buf);
		free(snap);
		free(si);
		return NULL;
	}
	/* one snapshot per LUN and session: every family shows the same moment */
	for (int i = 0; i < m->nluns; i++)
		snap_lun(m->luns[i], &snap[i]);
	k = 0;
	for (int t = 0; t < m->ntargets; t++)
		for (int i = 0; i < m->targets[t]->nsess; i++)
			session_get_info(m->targets[t]->sess[i], &si[k++]);

	family(f, "build_info", "gauge", "The version of the iscsifs serving this mount.");
	fprintf(f, "iscsifs_build_info{version=\"%s\"} 1\n", ISCSIFS_VERSION);
	family(f, "uptime_seconds", "gauge", "Time since the mount.");
	fprintf(f, "iscsifs_uptime_seconds %.3f\n", (double)(util_now_ms() - m->start_ms) / 1000.0);

	/* sessions: state, then one family per counter of the table */
	family(f, "session_up", "gauge", "1 when the iSCSI session is logged in, else 0.");
	for (int t = 0, k2 = 0; t < m->ntargets; t++)
		for (int i = 0; i < m->targets[t]->nsess; i++, k2++) {
			fputs("iscsifs_session_up{target=\"", f);
			label(f, m->targets[t]->name);
			fprintf(f, "\",session=\"%d\"} %d\n", i,
				strcmp(si[k2].state, "logged-in") == 0);
		}
	for (size_t c = 0; c < ARRAY_SIZE(session_metrics); c++) {
		const struct metric *mt = &session_metrics[c];

		family(f, mt->prom, mt->type == COUNTER ? "counter" : "gauge", mt->help);
		for (int t = 0, k2 = 0; t < m->ntargets; t++)
			for (int i = 0; i < m->targets[t]->nsess; i++, k2++) {
				fprintf(f, "iscsifs_%s{target=\"", mt->prom);
				label(f, m->targets[t]->name);
				fprintf(f, "\",session=\"%d\"} %" PRIu64 "\n", i,
					field_u64(&si[k2], mt->off));
			}
	}

	/* LUNs */
	family(f, "lun_size_bytes", "gauge", "Size of the LUN.");
	for (int i = 0; i < m->nluns; i++) {
		fputs("iscsifs_lun_size_bytes", f);
		lun_labels(f, m->luns[i]);
		fprintf(f, "} %" PRIu64 "\n", m->luns[i]->cache->size);
	}
	for (size_t c = 0; c < ARRAY_SIZE(lun_metrics); c++) {
		const struct metric *mt = &lun_metrics[c];

		family(f, mt->prom, mt->type == COUNTER ? "counter" : "gauge", mt->help);
		for (int i = 0; i < m->nluns; i++) {
			fprintf(f, "iscsifs_%s", mt->prom);
			lun_labels(f, m->luns[i]);
			fprintf(f, "} %" PRIu64 "\n", field_u64(&snap[i], mt->off));
		}
	}
	struct fs_live_stats lv;
	snap_live(m, &lv);
	for (size_t c = 0; c < ARRAY_SIZE(live_metrics); c++) {
		const struct metric *mt = &live_metrics[c];
		family(f, mt->prom, "counter", mt->help);
		fprintf(f, "iscsifs_%s %" PRIu64 "\n", mt->prom, field_u64(&lv, mt->off));
	}
	family(f, "scsi_latency_seconds", "histogram",
	       "SCSI command latency per operation, from first submission to completion "
	       "(retries and re-issues included).");
	for (int i = 0; i < m->nluns; i++)
		for (int op = 0; op < 3; op++) {
			const struct lun_latency *lat = &snap[i].lat[op];
			uint64_t cum = 0;

			for (int b = 0; b < LUN_LAT_BUCKETS; b++) {
				cum += lat->bucket[b];
				fputs("iscsifs_scsi_latency_seconds_bucket", f);
				lun_labels(f, m->luns[i]);
				if (b < LUN_LAT_NBOUNDS)
					fprintf(f, ",op=\"%s\",le=\"%g\"} %" PRIu64 "\n",
						lat_ops[op], (double)lat_bounds_us[b] / 1e6, cum);
				else
					fprintf(f, ",op=\"%s\",le=\"+Inf\"} %" PRIu64 "\n",
						lat_ops[op], cum);
			}
			fputs("iscsifs_scsi_latency_seconds_sum", f);
			lun_labels(f, m->luns[i]);
			fprintf(f, ",op=\"%s\"} %.6f\n", lat_ops[op], (double)lat->sum_us / 1e6);
			fputs("iscsifs_scsi_latency_seconds_count", f);
			lun_labels(f, m->luns[i]);
			fprintf(f, ",op=\"%s\"} %" PRIu64 "\n", lat_ops[op], lat->count);
		}
	free(snap);
	free(si);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	*len = size;
	return buf;
}

char *stats_render(const struct fs_model *m, bool prom, size_t *len)
{
	/* the lists change while mounted (issue 11): one consistent view under the lock */
	pthread_mutex_lock((pthread_mutex_t *)&m->lock);
	char *out = prom ? render_prom(m, len) : render_json(m, len);
	pthread_mutex_unlock((pthread_mutex_t *)&m->lock);
	return out;
}
