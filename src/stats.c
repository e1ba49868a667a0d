/*
 * stats.c - the counters of a mounted iscsifs as JSON (.iscsifs/stats.json, and
 * `iscsifs stat`) and Prometheus text (.iscsifs/metrics). Never contains a secret.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsifs/cache.h"
#include "iscsifs/fs.h"
#include "iscsifs/util.h"

char *stats_render(const struct fs_model *m, bool prom, size_t *len)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);
	if (!f)
		return NULL;
	uint64_t now = util_now_ms();
	if (!prom) {
		fprintf(f, "{\n  \"version\": \"%s\",\n  \"uptime_s\": %.1f,\n  \"sessions\": [",
			"0.1.0", (double)(now - m->start_ms) / 1000.0);
		bool first = true;
		for (int t = 0; t < m->ntargets; t++) {
			for (int i = 0; i < m->targets[t].nsess; i++) {
				struct session_info si;
				session_get_info(m->targets[t].sess[i], &si);
				fprintf(f, "%s\n    {\"target\": \"%s\", \"portal\": \"%s\", \"index\": %d, "
					"\"state\": \"%s\", \"reconnects\": %" PRIu64 ", \"timeouts\": %" PRIu64
					", \"nop_timeouts\": %" PRIu64 ", \"commands\": %" PRIu64
					", \"down_for_s\": %.1f}",
					first ? "" : ",", m->targets[t].name, m->targets[t].portal, i, si.state,
					si.reconnects, si.timeouts, si.nop_timeouts, si.commands,
					si.down_since_ms ? (double)(now - si.down_since_ms) / 1000.0 : 0.0);
				first = false;
			}
		}
		fprintf(f, "\n  ],\n  \"luns\": [");
		for (int i = 0; i < m->nluns; i++) {
			const struct fs_lun *l = &m->luns[i];
			struct cache_stats cs;
			struct lun_stats ls;
			cache_get_stats(l->cache, &cs);
			lun_get_stats(l->lundev, &ls);
			fprintf(f, "%s\n    {\"target\": \"%s\", \"lun\": %d, \"lun_address\": \"0x%016" PRIx64 "\", \"file\": \"%s\", "
				"\"size\": %" PRIu64 ", \"block_size\": %u,\n     \"cache\": {\"hits\": %" PRIu64
				", \"misses\": %" PRIu64 ", \"read_ops\": %" PRIu64 ", \"write_ops\": %" PRIu64
				", \"read_bytes\": %" PRIu64 ", \"write_bytes\": %" PRIu64
				", \"fetch_ops\": %" PRIu64 ", \"fetch_bytes\": %" PRIu64
				", \"readahead_bytes\": %" PRIu64 ", \"writeback_ops\": %" PRIu64
				", \"writeback_bytes\": %" PRIu64 ", \"write_errors\": %" PRIu64
				", \"evictions\": %" PRIu64 ", \"cached_bytes\": %" PRIu64
				", \"dirty_bytes\": %" PRIu64 "},\n     \"scsi\": {\"reads\": %" PRIu64
				", \"writes\": %" PRIu64 ", \"read_bytes\": %" PRIu64 ", \"write_bytes\": %" PRIu64
				", \"retries\": %" PRIu64 ", \"errors\": %" PRIu64
				", \"read_latency_us_avg\": %.1f, \"write_latency_us_avg\": %.1f}}",
				i ? "," : "", l->target->name, lunaddr_number(l->info.lun), l->info.lun, l->name,
				l->info.nblocks * l->info.block_size, l->info.block_size, cs.hits, cs.misses,
				cs.read_ops, cs.write_ops, cs.read_bytes, cs.write_bytes, cs.fetch_ops,
				cs.fetch_bytes, cs.readahead_bytes, cs.writeback_ops, cs.writeback_bytes,
				cs.write_errors, cs.evictions, cs.cached_bytes, cs.dirty_bytes, ls.reads,
				ls.writes, ls.read_bytes, ls.write_bytes, ls.retries, ls.errors,
				ls.reads ? (double)ls.read_lat_us / (double)ls.reads : 0.0,
				ls.writes ? (double)ls.write_lat_us / (double)ls.writes : 0.0);
		}
		fprintf(f, "\n  ]\n}\n");
	} else {
		fprintf(f, "# HELP iscsifs_uptime_seconds Time since mount.\n# TYPE iscsifs_uptime_seconds gauge\n"
			   "iscsifs_uptime_seconds %.1f\n", (double)(now - m->start_ms) / 1000.0);
		fprintf(f, "# TYPE iscsifs_session_up gauge\n# TYPE iscsifs_session_reconnects_total counter\n"
			   "# TYPE iscsifs_session_timeouts_total counter\n");
		for (int t = 0; t < m->ntargets; t++)
			for (int i = 0; i < m->targets[t].nsess; i++) {
				struct session_info si;
				session_get_info(m->targets[t].sess[i], &si);
				const char *n = m->targets[t].name;
				fprintf(f, "iscsifs_session_up{target=\"%s\",session=\"%d\"} %d\n", n, i,
					strcmp(si.state, "logged-in") == 0);
				fprintf(f, "iscsifs_session_reconnects_total{target=\"%s\",session=\"%d\"} %" PRIu64 "\n",
					n, i, si.reconnects);
				fprintf(f, "iscsifs_session_timeouts_total{target=\"%s\",session=\"%d\"} %" PRIu64 "\n",
					n, i, si.timeouts + si.nop_timeouts);
			}
		static const char *const names[] = { "cache_hits_total", "cache_misses_total",
			"read_bytes_total", "write_bytes_total", "fetch_bytes_total", "readahead_bytes_total",
			"writeback_bytes_total", "write_errors_total", "evictions_total", "cached_bytes",
			"dirty_bytes", "scsi_retries_total", "scsi_errors_total" };
		/* one snapshot per LUN, so every metric of a LUN is from the same moment */
		uint64_t (*v)[ARRAY_SIZE(names)] = calloc((size_t)m->nluns + 1, sizeof(*v));
		for (int i = 0; v && i < m->nluns; i++) {
			struct cache_stats cs;
			struct lun_stats ls;
			cache_get_stats(m->luns[i].cache, &cs);
			lun_get_stats(m->luns[i].lundev, &ls);
			uint64_t row[] = { cs.hits, cs.misses, cs.read_bytes, cs.write_bytes, cs.fetch_bytes,
					   cs.readahead_bytes, cs.writeback_bytes, cs.write_errors, cs.evictions,
					   cs.cached_bytes, cs.dirty_bytes, ls.retries, ls.errors };
			memcpy(v[i], row, sizeof(row));
		}
		for (size_t k = 0; v && k < ARRAY_SIZE(names); k++) {
			fprintf(f, "# TYPE iscsifs_%s %s\n", names[k], strstr(names[k], "_total") ? "counter" : "gauge");
			for (int i = 0; i < m->nluns; i++)
				fprintf(f, "iscsifs_%s{target=\"%s\",lun=\"%s\"} %" PRIu64 "\n", names[k],
					m->luns[i].target->name, LUNSTR(m->luns[i].info.lun), v[i][k]);
		}
		free(v);
	}
	fclose(f);
	*len = size;
	return buf;
}
