/*
 * main.c - the command line: mount (default), ls, stat. Builds the stack for each LUN
 * (session -> lun -> cache) before anything is mounted, so every bad input ends with
 * one clear line on stderr and a non-zero exit, and never with a half-mounted
 * directory. Only main exits.
 *
 * NOTES ON THE THREAD MODEL
 *   Daemon mode forks first, before any thread exists (session and cache threads would
 *   not survive a fork); the parent waits on a pipe until the child has mounted (exit
 *   0) or failed (exit with the child's status; the child printed the reason).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "iscsifs-config.h"
#include "iscsifs/cache.h"
#include "iscsifs/config.h"
#include "iscsifs/discovery.h"
#include "iscsifs/fs.h"
#include "iscsifs/log.h"
#include "iscsifs/lun.h"
#include "iscsifs/lunaddr.h"
#include "iscsifs/probe.h"
#include "iscsifs/session.h"
#include "iscsifs/util.h"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

static struct config cfg; /* read-only once sessions exist */

static void die_msg(const char *msg)
{
	fprintf(stderr, "iscsifs: %s\n", msg);
}

/* ---------- targets ---------- */

struct target_list {
	struct fs_target *v;
	int n;
};

static void strip_tpgt(char *portal)
{
	char *comma = strrchr(portal, ',');
	if (comma)
		*comma = 0;
}

static int port_of(const char *portal)
{
	const char *colon = strrchr(portal, ':');
	const char *bracket = strrchr(portal, ']');
	if (!colon || (bracket && colon < bracket))
		return CONFIG_DEFAULT_PORT;
	return atoi(colon + 1);
}

static void add_discovered(const char *target, const char *portal, void *opaque)
{
	struct target_list *tl = opaque;
	for (int i = 0; i < tl->n; i++)
		if (strcmp(tl->v[i].name, target) == 0)
			return; /* first portal of each target */
	struct fs_target *nv = realloc(tl->v, sizeof(*nv) * (size_t)(tl->n + 1));
	if (!nv)
		return;
	tl->v = nv;
	struct fs_target *t = &tl->v[tl->n++];
	memset(t, 0, sizeof(*t));
	snprintf(t->name, sizeof(t->name), "%s", target);
	snprintf(t->portal, sizeof(t->portal), "%s", portal);
	strip_tpgt(t->portal);
}

/* A port other than 3260 is worth one notice (860 in particular is the iSCSI *system*
 * port: whoever reads the log should see where it came from). Logged once the work
 * succeeded, so that an error stays the only line on stderr. */
static void log_port_notices(const struct target_list *tl)
{
	if (cfg.url.target[0]) {
		if (cfg.url.port != CONFIG_DEFAULT_PORT)
			log_notice("connected to %s: port %d instead of 3260 (from the URL)",
				   cfg.url.portal, cfg.url.port);
		return;
	}
	if (cfg.url.port != CONFIG_DEFAULT_PORT)
		log_notice("discovery at %s: port %d instead of 3260 (from the URL)", cfg.url.portal,
			   cfg.url.port);
	for (int i = 0; i < tl->n; i++)
		if (port_of(tl->v[i].portal) != CONFIG_DEFAULT_PORT)
			log_notice("target %s: port %d of portal %s instead of 3260 (from SendTargets)",
				   tl->v[i].name, port_of(tl->v[i].portal), tl->v[i].portal);
}

static int find_targets(struct target_list *tl, char *err, size_t errlen)
{
	if (cfg.url.target[0]) {
		tl->v = calloc(1, sizeof(*tl->v));
		if (!tl->v)
			return -ENOMEM;
		tl->n = 1;
		snprintf(tl->v[0].name, sizeof(tl->v[0].name), "%s", cfg.url.target);
		snprintf(tl->v[0].portal, sizeof(tl->v[0].portal), "%s", cfg.url.portal);
		return 0;
	}
	int r = session_discover(&cfg, cfg.url.portal, add_discovered, tl, err, errlen);
	if (r < 0)
		return r;
	if (tl->n == 0) {
		snprintf(err, errlen, "no targets at %s (SendTargets returned none visible to "
				      "initiator %s)", cfg.url.portal, cfg.initiator);
		return -ENOENT;
	}
	return 0;
}

static int open_sessions(struct fs_target *t, int n, char *err, size_t errlen)
{
	for (int i = 0; i < n; i++) {
		struct session_params p = { .cfg = &cfg, .portal = t->portal, .target = t->name,
					    .index = i };
		int r = session_create(&p, &t->sess[i], err, errlen);
		if (r < 0)
			return r;
		t->nsess++;
	}
	return 0;
}

static void close_sessions(struct target_list *tl)
{
	for (int i = 0; i < tl->n; i++)
		for (int j = 0; j < tl->v[i].nsess; j++)
			session_destroy(tl->v[i].sess[j]);
}

static void list_luns_text(const uint64_t *luns, int n, char *buf, size_t len)
{
	size_t k = 0;
	buf[0] = 0;
	for (int i = 0; i < n && k + LUNADDR_STRLEN + 2 < len; i++)
		k += (size_t)snprintf(buf + k, len - k, "%s%s", i ? ", " : "", LUNSTR(luns[i]));
}

/* The LUNs of a target that become files (or, for ls, all of them). */
static int probe_target(struct fs_target *t, bool all, struct lun_info **out, int *nout,
			char *err, size_t errlen)
{
	uint64_t *luns = NULL;
	int n = discovery_report_luns(t->sess[0], t->name, &luns, err, errlen);
	if (n < 0)
		return n;
	struct lun_info *infos = calloc((size_t)n + 1, sizeof(*infos));
	int k = 0, r = 0;
	if (!infos) {
		free(luns);
		return -ENOMEM;
	}
	if (cfg.url.lun >= 0 && !all) {
		/* the URL's LUN is a number: the LUN the target reports under that number */
		uint64_t addr = UINT64_MAX;
		for (int i = 0; i < n; i++)
			if (lunaddr_number(luns[i]) == cfg.url.lun)
				addr = luns[i];
		if (addr == UINT64_MAX) {
			char list[256];
			list_luns_text(luns, n, list, sizeof(list));
			snprintf(err, errlen, "target %s has no LUN %d (its LUNs: %s)", t->name,
				 cfg.url.lun, list);
			r = -ENOENT;
			goto out;
		}
		r = discovery_probe_lun(t->sess[0], t->name, addr, &infos[0], err, errlen);
		if (r < 0)
			goto out;
		if (infos[0].devtype != 0 || infos[0].qualifier != 0) {
			snprintf(err, errlen, "LUN %d of %s is a %s (type 0x%02x), not a disk; only "
				 "disk LUNs can be mounted", cfg.url.lun, t->name,
				 discovery_devtype_name(infos[0].devtype), infos[0].devtype);
			r = -ENODEV;
			goto out;
		}
		k = 1;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		r = discovery_probe_lun(t->sess[0], t->name, luns[i], &infos[k], err, errlen);
		if (r < 0)
			goto out;
		if (all || (infos[k].devtype == 0 && infos[k].qualifier == 0))
			k++;
	}
out:
	free(luns);
	if (r < 0) {
		free(infos);
		return r;
	}
	*out = infos;
	*nout = k;
	return 0;
}

static struct cache_config cache_config_for(const struct lun_info *info, const char *name)
{
	struct cache_config cc = {
		.mode = cfg.cache_mode,
		.cache_size = cfg.cache_size,
		.cache_block = MAX(cfg.cache_block, info->block_size),
		.dirty_max = cfg.dirty_max,
		.dirty_expire_ms = cfg.dirty_expire_ms,
		.readahead_max = cfg.readahead_max,
		.max_write = 1u << 20,
		.name = name,
	};
	if (info->max_xfer_blocks)
		cc.max_write = (uint32_t)MIN((uint64_t)cc.max_write,
					     MAX((uint64_t)info->max_xfer_blocks * info->block_size,
						 cc.cache_block));
	return cc;
}

/* ---------- mount ---------- */

static int build_model(struct fs_model *m, struct target_list *tl, char *err, size_t errlen)
{
	int r = find_targets(tl, err, errlen);
	if (r < 0)
		return r;
	m->cfg = &cfg;
	m->targets = tl->v;
	m->ntargets = tl->n;
	m->target_dirs = cfg.url.target[0] == 0;
	for (int t = 0; t < tl->n; t++) {
		r = open_sessions(&tl->v[t], cfg.sessions, err, errlen);
		if (r < 0)
			return r;
		struct lun_info *infos;
		int n;
		r = probe_target(&tl->v[t], false, &infos, &n, err, errlen);
		if (r < 0)
			return r;
		struct fs_lun *nl = n ? realloc(m->luns, sizeof(*nl) * (size_t)(m->nluns + n))
				      : m->luns;
		if (!nl && n) {
			free(infos);
			return -ENOMEM;
		}
		m->luns = nl;
		for (int i = 0; i < n; i++) {
			struct fs_lun *l = &m->luns[m->nluns];
			memset(l, 0, sizeof(*l));
			l->target = &tl->v[t];
			l->info = infos[i];
			snprintf(l->name, sizeof(l->name), "lun%s", LUNSTR(infos[i].lun));
			for (int s = 0; s < tl->v[t].nsess; s++)
			{
				if (l->info.vpd83_len)
					session_set_identity(tl->v[t].sess[s], l->info.lun, 0x83,
							     l->info.vpd83, l->info.vpd83_len);
				if (l->info.vpd80_len)
					session_set_identity(tl->v[t].sess[s], l->info.lun, 0x80,
							     l->info.vpd80, l->info.vpd80_len);
			}
			l->lundev = lun_create(tl->v[t].sess, tl->v[t].nsess, tl->v[t].name, &l->info,
					       cfg.read_only);
			if (!l->lundev) {
				free(infos);
				return -errno;
			}
			char name[CONFIG_NAME_MAX + 16];
			snprintf(name, sizeof(name), "%s LUN %s", tl->v[t].name, LUNSTR(l->info.lun));
			struct cache_config cc = cache_config_for(&l->info, name);
			l->cache = cache_create(&cc, l->lundev);
			if (!l->cache) {
				snprintf(err, errlen, "cannot set up the cache for %s: %s", name,
					 strerror(errno));
				l->lundev->ops->destroy(l->lundev);
				free(infos);
				return -EINVAL;
			}
			pthread_rwlock_init(&l->rmw, NULL);
			m->nluns++;
			if (probe_blkdev(l->cache, true, &l->probe) < 0)
				log_warn("%s: could not read the partition table; no partition files",
					 name);
		}
		free(infos);
	}
	if (m->nluns == 0) {
		snprintf(err, errlen, "no disk LUNs behind %s (see: iscsifs ls %s)", cfg.url_text,
			 cfg.url_text);
		return -ENOENT;
	}
	return 0;
}

/* Returns the number of LUNs whose dirty data could not all be written. */
static int teardown(struct fs_model *m, struct target_list *tl)
{
	int lost = 0;
	for (int i = 0; i < m->nluns; i++)
		lost += cache_stop(m->luns[i].cache) > 0; /* in parallel would be faster; rare */
	for (int i = 0; i < m->nluns; i++) {
		/* the cache writes back what it holds, bounded by the session timeouts */
		m->luns[i].cache->ops->destroy(m->luns[i].cache);
		m->luns[i].lundev->ops->destroy(m->luns[i].lundev);
		pthread_rwlock_destroy(&m->luns[i].rmw);
	}
	free(m->luns);
	close_sessions(tl);
	free(tl->v);
	return lost;
}

/* Daemon mode: fork now; the parent returns only to exit with the child's verdict. */
static int daemonize_early(void)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0) {
		perror("iscsifs: pipe");
		exit(1);
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("iscsifs: fork");
		exit(1);
	}
	if (pid > 0) {
		char ok;
		/* the parent only waits for the verdict: it has no use for the secrets */
		config_wipe_secrets(&cfg);
		close(p[1]);
		if (read(p[0], &ok, 1) == 1)
			exit(0);
		int st = 0;
		waitpid(pid, &st, 0);
		exit(WIFEXITED(st) && WEXITSTATUS(st) ? WEXITSTATUS(st) : 1);
	}
	close(p[0]);
	setsid();
	if (chdir("/") != 0) { /* do not pin the caller's directory */
	}
	return p[1];
}

static int do_mount(void)
{
	char err[CONFIG_ERRLEN] = "";
	struct fs_model m = { .start_ms = util_now_ms() };
	struct target_list tl = { 0 };
	int ready_fd = -1;

	if (config_load_secrets(&cfg, err, sizeof(err)) < 0 ||
	    config_resolve_initiator(&cfg, NULL, err, sizeof(err)) < 0) {
		config_wipe_secrets(&cfg);
		die_msg(err);
		return 1;
	}
	/* From here on cfg.secrets stay set while mounted: every re-login after a lost
	 * connection builds a new libiscsi context from them (session.c new_context). */
	if (!cfg.foreground)
		ready_fd = daemonize_early();
	/* A daemon that serves block I/O must not wait on its own memory reclaim. */
	if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) != 0)
		log_debug("PR_SET_IO_FLUSHER not permitted (%m); continuing without it");
	int r = build_model(&m, &tl, err, sizeof(err));
	if (r < 0) {
		die_msg(err[0] ? err : strerror(-r));
		teardown(&m, &tl);
		config_wipe_secrets(&cfg);
		return 1;
	}
	log_port_notices(&tl);
	r = fs_run(&m, ready_fd);
	int lost = teardown(&m, &tl);
	config_wipe_secrets(&cfg);
	if (lost)
		log_err("exiting with an error: dirty data of %d LUN%s could not be written (see "
			"above)", lost, lost == 1 ? "" : "s");
	return r < 0 || lost ? 1 : 0;
}

/* ---------- ls ---------- */

static void human_size(uint64_t b, char *buf, size_t len)
{
	const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	int i = 0;
	double v = (double)b;
	while (v >= 1024 && i < 5) {
		v /= 1024;
		i++;
	}
	snprintf(buf, len, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

static int do_ls(void)
{
	char err[CONFIG_ERRLEN] = "";
	struct target_list tl = { 0 };
	int status = 0;

	if (config_load_secrets(&cfg, err, sizeof(err)) < 0 ||
	    config_resolve_initiator(&cfg, NULL, err, sizeof(err)) < 0 ||
	    find_targets(&tl, err, sizeof(err)) < 0) {
		config_wipe_secrets(&cfg);
		die_msg(err);
		free(tl.v);
		return 1;
	}
	for (int t = 0; t < tl.n; t++) {
		struct fs_target *tg = &tl.v[t];
		printf("%s  %s\n", tg->name, tg->portal);
		struct lun_info *infos = NULL;
		int n = 0;
		if (open_sessions(tg, 1, err, sizeof(err)) < 0 ||
		    probe_target(tg, true, &infos, &n, err, sizeof(err)) < 0) {
			fflush(stdout);
			die_msg(err);
			status = 1;
			continue;
		}
		if (cfg.url.lun >= 0) { /* the URL names one LUN: list just that one */
			int k = 0;
			for (int i = 0; i < n; i++)
				if (lunaddr_number(infos[i].lun) == cfg.url.lun)
					infos[k++] = infos[i];
			if (k == 0) {
				fflush(stdout);
				fprintf(stderr, "iscsifs: target %s has no LUN %d\n", tg->name,
					cfg.url.lun);
				status = 1;
			}
			n = k;
		}
		printf("  %-4s %-10s %10s %6s %-3s %-8s %-16s %-24s %s\n", "LUN", "TYPE", "SIZE",
		       "BLOCK", "RO", "VENDOR", "PRODUCT", "WWN", "CONTENT");
		for (int i = 0; i < n; i++) {
			struct lun_info *li = &infos[i];
			char size[32] = "-", content[96] = "-";
			bool disk = li->devtype == 0 && li->qualifier == 0;
			if (disk) {
				human_size(li->nblocks * li->block_size, size, sizeof(size));
				struct blkdev *d = lun_create(tg->sess, 1, tg->name, li, true);
				struct probe_result *pr = malloc(sizeof(*pr));
				if (d && pr && probe_blkdev(d, true, pr) == 0) {
					if (pr->pttype[0])
						snprintf(content, sizeof(content), "%s, %d partition%s",
							 pr->pttype, pr->nparts, pr->nparts == 1 ? "" : "s");
					else if (pr->content.type[0])
						snprintf(content, sizeof(content), "%s%s%s", pr->content.type,
							 pr->content.label[0] ? " " : "", pr->content.label);
					else
						snprintf(content, sizeof(content), "unknown");
				}
				free(pr);
				if (d)
					d->ops->destroy(d);
			}
			printf("  %-4s %-10s %10s %6u %-3s %-8s %-16s %-24s %s\n", LUNSTR(li->lun),
			       discovery_devtype_name(li->devtype), size, disk ? li->block_size : 0,
			       disk ? (li->write_protected ? "yes" : "no") : "-",
			       li->vendor[0] ? li->vendor : "-", li->product[0] ? li->product : "-",
			       li->wwn[0] ? li->wwn : (li->serial[0] ? li->serial : "-"), content);
		}
		free(infos);
	}
	if (status == 0)
		log_port_notices(&tl);
	close_sessions(&tl);
	free(tl.v);
	config_wipe_secrets(&cfg);
	return status;
}

/* ---------- stat ---------- */

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

static void print_stats(const struct metric *v, int n, const struct metric *prev, int np,
			double dt)
{
	printf("iscsifs on %s, up %.0f s\n\n", cfg.mountpoint,
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

static int do_stat(void)
{
	char path[4200];
	struct metric *prev = NULL;
	int np = 0;
	uint64_t prev_ms = 0;

	snprintf(path, sizeof(path), "%s/.iscsifs/metrics", cfg.mountpoint);
	for (;;) {
		struct metric *v = NULL;
		int n = read_metrics(path, &v);
		if (n < 0) {
			fprintf(stderr, "iscsifs: %s is not an iscsifs mount (cannot read %s: %s)\n",
				cfg.mountpoint, path, strerror(-n));
			free(prev);
			return 1;
		}
		uint64_t now = util_now_ms();
		if (cfg.watch)
			printf("\033[H\033[2J");
		print_stats(v, n, prev, np, prev ? (double)(now - prev_ms) / 1000.0 : 0);
		fflush(stdout);
		free(prev);
		if (!cfg.watch) {
			free(v);
			return 0;
		}
		prev = v;
		np = n;
		prev_ms = now;
		sleep(1);
	}
}

int main(int argc, char **argv)
{
	char err[CONFIG_ERRLEN] = "";

	/* Keep freed cache-sized buffers from piling up in per-thread arenas: the byte
	 * budget must bound the daemon's RSS. */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	mallopt(M_ARENA_MAX, 2);
	signal(SIGPIPE, SIG_IGN);

	config_init(&cfg);
	if (config_parse_args(&cfg, argc, argv, err, sizeof(err)) < 0) {
		die_msg(err);
		return 2;
	}
	log_init(cfg.debug);
	switch (cfg.command) {
	case CONFIG_CMD_HELP:
		fputs(config_usage(), stdout);
		return 0;
	case CONFIG_CMD_VERSION:
		printf("iscsifs %s (libiscsi data digest: %s)\n", ISCSIFS_VERSION,
		       HAVE_ISCSI_SET_DATA_DIGEST ? "yes" : "no");
		return 0;
	case CONFIG_CMD_STAT:
		return do_stat();
	case CONFIG_CMD_LS:
		return do_ls();
	case CONFIG_CMD_MOUNT:
		return do_mount();
	}
	return 1;
}
