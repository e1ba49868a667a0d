/*
 * mount.c - `iscsifs URL MOUNTPOINT`: builds the stack for each LUN (session -> lun ->
 * cache) before anything is mounted, so every bad input ends with one clear line on
 * stderr and a non-zero exit, and never with a half-mounted directory; then serves it
 * (fs_run) and takes it down, writing back what is dirty.
 */
#include <errno.h>
#include <malloc.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "iscsifs/cache.h"
#include "iscsifs/commands.h"
#include "iscsifs/daemon.h"
#include "iscsifs/exitcode.h"
#include "iscsifs/fs.h"
#include "iscsifs/log.h"
#include "iscsifs/lun.h"
#include "iscsifs/lunaddr.h"
#include "iscsifs/lunlock.h"
#include "iscsifs/probe.h"
#include "iscsifs/target.h"
#include "iscsifs/util.h"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

/* One budget for the whole mount (DESIGN.md 4): cache_size and dirty_max are totals
 * for every LUN, shared by use (cache_pool.c). */
static struct cache_pool *pool_for(const struct config *cfg, char *err, size_t errlen)
{
	struct cache_pool_config pc = {
		.cache_size = cfg->cache_mode == CONFIG_CACHE_NONE ? 8 * cfg->cache_block
								   : cfg->cache_size,
		.cache_block = cfg->cache_block,
		.dirty_max = cfg->dirty_max,
		.dirty_expire_ms = cfg->dirty_expire_ms,
		.flushers = 2,
	};
	struct cache_pool *p = cache_pool_create(&pc);
	if (!p)
		snprintf(err, errlen, "cannot set up the cache (cache_size=%" PRIu64
			 ", cache_block=%" PRIu64 "): %s%s",
			 cfg->cache_size, cfg->cache_block, strerror(errno),
			 errno == EINVAL ? "; cache_size must hold at least 8 cache blocks" : "");
	return p;
}

static struct cache_config cache_config_for(const struct config *cfg, struct cache_pool *pool,
					    const struct lun_info *info, const char *name)
{
	struct cache_config cc = {
		.mode = cfg->cache_mode,
		.pool = pool,
		.readahead_max = cfg->readahead_max,
		.max_write = 1u << 20,
		/* at unmount, failed write-back is retried for as long as one request may
		 * take (the session's budget), then given up */
		.stop_budget_ms = (uint32_t)MAX(5, cfg->replacement_timeout + cfg->cmd_timeout) * 1000u,
		.name = name,
	};
	if (info->max_xfer_blocks)
		cc.max_write = (uint32_t)MIN((uint64_t)cc.max_write,
					     MAX((uint64_t)info->max_xfer_blocks * info->block_size,
						 cfg->cache_block));
	return cc;
}

/* What the probe found, for the log: its cost (debug), and a LUN holding data where
 * libblkid recognises nothing (notice, once per LUN at mount). */
static void probe_log(const char *name, const struct probe_result *pr)
{
	log_debug("%s: probe read %" PRIu64 " bytes: %s%s%s, %d partition%s", name,
		  pr->bytes_read, pr->pttype[0] ? pr->pttype : "no partition table",
		  pr->content.type[0] ? ", " : "", pr->content.type, pr->nparts,
		  pr->nparts == 1 ? "" : "s");
	if (!pr->blank && !pr->pttype[0] && !pr->content.type[0])
		log_notice("%s: not blank (data at byte %" PRIu64 ") but libblkid recognises no "
			   "partition table or filesystem on it, so there are no partition files "
			   "(check with blkid -p or partx on the disk image)",
			   name, pr->first_data);
}

/* ---------- mount ---------- */

static int build_model(struct config *cfg, struct fs_model *m, struct target_list *tl,
		       char *err, size_t errlen)
{
	int r = target_find(cfg, tl, err, errlen);
	if (r < 0)
		return r;
	m->cfg = cfg;
	m->pool = pool_for(cfg, err, errlen);
	if (!m->pool)
		return -EINVAL;
	m->targets = tl->v;
	m->ntargets = tl->n;
	m->target_dirs = cfg->url.target[0] == 0;
	for (int t = 0; t < tl->n; t++) {
		r = target_open_sessions(cfg, &tl->v[t], cfg->sessions, err, errlen);
		if (r < 0)
			return r;
		struct lun_info *infos;
		int n;
		r = target_probe_luns(cfg, &tl->v[t], false, &infos, &n, err, errlen);
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
			/* one writer per LUN per host: before anything reads, writes or mounts */
			r = lunlock_take(tl->v[t].name, &l->info,
					 !cfg->read_only && !l->info.write_protected, cfg->url_text,
					 cfg->mountpoint, err, errlen);
			if (r < 0) {
				free(infos);
				return r;
			}
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
					       cfg->read_only);
			if (!l->lundev) {
				free(infos);
				return -errno;
			}
			char name[CONFIG_NAME_MAX + 16];
			snprintf(name, sizeof(name), "%s LUN %s", tl->v[t].name, LUNSTR(l->info.lun));
			if (cfg->cache_mode != CONFIG_CACHE_NONE && l->info.block_size > cfg->cache_block) {
				snprintf(err, errlen, "%s has %u-byte blocks, larger than cache_block=%" PRIu64
					 ": mount with -o cache_block=%u or larger",
					 name, l->info.block_size, cfg->cache_block, l->info.block_size);
				l->lundev->ops->destroy(l->lundev);
				free(infos);
				return -EINVAL;
			}
			struct cache_config cc = cache_config_for(cfg, m->pool, &l->info, name);
			l->cache = cache_create(&cc, l->lundev);
			if (!l->cache) {
				snprintf(err, errlen, "cannot set up the cache for %s: %s", name,
					 strerror(errno));
				l->lundev->ops->destroy(l->lundev);
				free(infos);
				return -EINVAL;
			}
			m->nluns++;
			/* through the cache, which bounds its memory (one budget for all LUNs) */
			if (probe_blkdev(l->cache, true, &l->probe) < 0)
				log_warn("%s: could not read the partition table; no partition files",
					 name);
			else
				probe_log(name, &l->probe);
		}
		free(infos);
	}
	if (m->nluns == 0) {
		snprintf(err, errlen, "no disk LUNs behind %s (see: iscsifs ls %s)", cfg->url_text,
			 cfg->url_text);
		return -ENOENT;
	}
	/* one disk behind two files (two targets, one designator) is refused */
	return target_check_identities(m->luns, m->nluns, err, errlen);
}

/* A thread that says every SHUTDOWN_NOTE_S seconds which step of the shutdown is still
 * going on: unmount may wait for write-back to a target that does not answer (bounded by
 * the session budget), and the log should say so rather than look hung. */
#define SHUTDOWN_NOTE_S 10

struct stagewatch {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	const char *stage;            /* lock; NULL: done */
	uint64_t since;               /* lock */
	pthread_t thread;
	bool started;
};

static void *stagewatch_main(void *arg)
{
	struct stagewatch *w = arg;
	pthread_mutex_lock(&w->lock);
	while (w->stage) {
		struct timespec dl = util_deadline_ms(SHUTDOWN_NOTE_S * 1000);
		if (pthread_cond_timedwait(&w->cond, &w->lock, &dl) == ETIMEDOUT && w->stage)
			log_notice("unmount: still %s (for %" PRIu64 " s)", w->stage,
				   (util_now_ms() - w->since) / 1000);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static void stage(struct stagewatch *w, const char *what)
{
	if (!w->started) {
		pthread_mutex_init(&w->lock, NULL);
		util_cond_init(&w->cond);
		w->stage = what;
		w->since = util_now_ms();
		w->started = pthread_create(&w->thread, NULL, stagewatch_main, w) == 0;
		return;
	}
	pthread_mutex_lock(&w->lock);
	w->stage = what;
	w->since = util_now_ms();
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	if (!what) {
		pthread_join(w->thread, NULL);
		pthread_mutex_destroy(&w->lock);
		pthread_cond_destroy(&w->cond);
	}
}

/* Returns the number of LUNs whose dirty data could not all be written.
 * Order: write back every LUN at once (bounded by the session budget), then stop the
 * sessions (every command still in flight - a read nobody waits for any more - is
 * completed), then free the caches, the LUNs and the pool. */
static int teardown(struct fs_model *m, struct target_list *tl)
{
	struct stagewatch w = { 0 };
	int lost = 0;
	daemon_stopping(); /* STOPPING=1; logs the dirty MiB left every few seconds */
	for (int i = 0; i < m->nluns; i++)
		cache_stop_begin(m->luns[i].cache); /* every LUN writes back at once */
	for (int i = 0; i < m->nluns; i++)
		lost += cache_stop(m->luns[i].cache) > 0;
	daemon_stopped(lost);
	stage(&w, "closing the sessions");
	target_close_sessions(tl);
	stage(&w, "freeing the caches");
	for (int i = 0; i < m->nluns; i++) {
		m->luns[i].cache->ops->destroy(m->luns[i].cache);
		m->luns[i].lundev->ops->destroy(m->luns[i].lundev);
	}
	cache_pool_destroy(m->pool);
	m->pool = NULL;
	stage(&w, NULL);
	free(m->luns);
	free(tl->v);
	return lost;
}

/* Daemon mode: fork now; the parent returns only to exit with the child's verdict. */
int mount_main(struct config *cfg)
{
	char err[CONFIG_ERRLEN] = "";
	struct fs_model m = { .start_ms = util_now_ms() };
	struct target_list tl = { 0 };
	int ready_fd = -1;

	if (config_load_secrets(cfg, err, sizeof(err)) < 0 ||
	    config_resolve_initiator(cfg, NULL, err, sizeof(err)) < 0) {
		config_wipe_secrets(cfg);
		fprintf(stderr, "iscsifs: %s\n", err);
		return EXITCODE_USAGE;
	}
	/* From here on cfg->secrets stay set while mounted: every re-login after a lost
	 * connection builds a new libiscsi context from them (session.c new_context). */
	if (!cfg->foreground)
		ready_fd = daemon_fork(cfg);
	/* Memory stays within cache_size plus a bounded amount for any number of LUNs
	 * (cache_pool.c). glibc raises its mmap threshold after every large free, up to 32
	 * MiB, so buffers of up to that size then come from - and stay in - the heap arenas
	 * of whichever threads freed them; a fixed threshold keeps large buffers mapped and
	 * gives them back when freed (the cache keeps the few it reuses on a list). */
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);
	/* A daemon that serves block I/O must not wait on its own memory reclaim. */
	if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) != 0)
		log_debug("PR_SET_IO_FLUSHER not permitted (%m); continuing without it");
	int r = build_model(cfg, &m, &tl, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "iscsifs: %s\n", err[0] ? err : strerror(-r));
		teardown(&m, &tl);
		lunlock_release_all();
		config_wipe_secrets(cfg);
		return exitcode_from_errno(r);
	}
	target_log_port_notices(cfg, &tl);
	r = fs_run(&m, ready_fd);
	int lost = teardown(&m, &tl);
	lunlock_release_all(); /* after the last write-back */
	config_wipe_secrets(cfg);
	if (lost)
		log_err("exiting with an error: dirty data of %d LUN%s could not be written (see "
			"above)", lost, lost == 1 ? "" : "s");
	return lost ? EXITCODE_UNWRITTEN : r < 0 ? EXITCODE_RUNTIME : EXITCODE_OK;
}
