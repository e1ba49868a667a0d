/*
 * mount.c - `iscsifs URL MOUNTPOINT`: builds the stack for each LUN (session -> lun ->
 * cache) before anything is mounted, so every bad input ends with one clear line on
 * stderr and a non-zero exit, and never with a half-mounted directory; then serves it
 * (fs_run) and takes it down, writing back what is dirty.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "iscsifs/cache.h"
#include "iscsifs/commands.h"
#include "iscsifs/daemon.h"
#include "iscsifs/exitcode.h"
#include "iscsifs/fs.h"
#include "iscsifs/live.h"
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

/* ---------- the stack of a LUN, the targets ---------- */

struct fs_lun *mount_lun_build(struct fs_model *m, struct fs_target *t,
			       const struct lun_info *info, char *err, size_t errlen)
{
	const struct config *cfg = m->cfg;
	struct fs_lun *l = calloc(1, sizeof(*l));
	if (!l) {
		snprintf(err, errlen, "out of memory");
		errno = ENOMEM;
		return NULL;
	}
	l->target = t;
	l->info = *info;
	/* one writer per LUN per host: before anything reads, writes or mounts */
	int r = lunlock_take(t->name, &l->info, !cfg->read_only && !l->info.write_protected,
			     cfg->url_text, cfg->mountpoint, err, errlen);
	if (r < 0) {
		free(l);
		errno = -r;
		return NULL;
	}
	snprintf(l->name, sizeof(l->name), "lun%s", LUNSTR(info->lun));
	for (int s = 0; s < t->nsess; s++) {
		/* a new disk at the address of one that left (a rescan) is checked as itself */
		session_clear_identity(t->sess[s], l->info.lun);
		if (l->info.vpd83_len)
			session_set_identity(t->sess[s], l->info.lun, 0x83, l->info.vpd83,
					     l->info.vpd83_len);
		if (l->info.vpd80_len)
			session_set_identity(t->sess[s], l->info.lun, 0x80, l->info.vpd80,
					     l->info.vpd80_len);
		/* and its block size: the same disk re-exported with other blocks would
		 * put every queued write elsewhere on it */
		uint8_t bs[4] = { (uint8_t)(l->info.block_size >> 24),
				  (uint8_t)(l->info.block_size >> 16),
				  (uint8_t)(l->info.block_size >> 8), (uint8_t)l->info.block_size };
		session_set_identity(t->sess[s], l->info.lun, SESSION_IDENT_BLOCK_SIZE, bs, 4);
	}
	l->lundev = lun_create(t->sess, t->nsess, t->name, &l->info, cfg->read_only);
	if (!l->lundev) {
		r = errno;
		snprintf(err, errlen, "cannot set up %s LUN %s: %s", t->name, LUNSTR(info->lun),
			 strerror(r));
		free(l);
		errno = r;
		return NULL;
	}
	char name[CONFIG_NAME_MAX + 16];
	snprintf(name, sizeof(name), "%s LUN %s", t->name, LUNSTR(l->info.lun));
	if (cfg->cache_mode != CONFIG_CACHE_NONE && l->info.block_size > cfg->cache_block) {
		snprintf(err, errlen, "%s has %u-byte blocks, larger than cache_block=%" PRIu64
			 ": mount with -o cache_block=%u or larger",
			 name, l->info.block_size, cfg->cache_block, l->info.block_size);
		l->lundev->ops->destroy(l->lundev);
		free(l);
		errno = EINVAL;
		return NULL;
	}
	struct cache_config cc = cache_config_for(cfg, m->pool, &l->info, name);
	l->cache = cache_create(&cc, l->lundev);
	if (!l->cache) {
		snprintf(err, errlen, "cannot set up the cache for %s: %s", name, strerror(errno));
		l->lundev->ops->destroy(l->lundev);
		free(l);
		errno = EINVAL;
		return NULL;
	}
	/* capacity changes, unit attentions: the live namespace follows (live.c) */
	lun_set_event_handler(l->lundev, live_lun_event, m);
	/* through the cache, which bounds its memory (one budget for all LUNs) */
	if (probe_blkdev(l->cache, true, &l->probe) < 0)
		log_warn("%s: could not read the partition table; no partition files", name);
	else
		probe_log(name, &l->probe);
	return l;
}

void mount_lun_free(struct fs_model *m, struct fs_lun *l)
{
	(void)m;
	lun_set_event_handler(l->lundev, NULL, NULL);
	cache_stop(l->cache);
	l->cache->ops->destroy(l->cache);
	l->lundev->ops->destroy(l->lundev); /* freed once its last request completes */
	free(l);
}

/* Append to the model's lists (under its lock). 0 or -ENOMEM. */
static int model_add_target(struct fs_model *m, struct fs_target *t)
{
	pthread_mutex_lock(&m->lock);
	struct fs_target **nv = realloc(m->targets, sizeof(*nv) * (size_t)(m->ntargets + 1));
	if (nv) {
		m->targets = nv;
		m->targets[m->ntargets++] = t;
	}
	pthread_mutex_unlock(&m->lock);
	return nv ? 0 : -ENOMEM;
}

int mount_model_add_lun(struct fs_model *m, struct fs_lun *l)
{
	pthread_mutex_lock(&m->lock);
	struct fs_lun **nv = realloc(m->luns, sizeof(*nv) * (size_t)(m->nluns + 1));
	if (nv) {
		m->luns = nv;
		m->luns[m->nluns++] = l;
		l->refs = 1; /* the list's */
	}
	pthread_mutex_unlock(&m->lock);
	return nv ? 0 : -ENOMEM;
}

struct fs_target *mount_target_add(struct fs_model *m, const struct fs_target *src, char *err,
				   size_t errlen)
{
	struct fs_target *t = malloc(sizeof(*t));
	if (!t) {
		snprintf(err, errlen, "out of memory");
		errno = ENOMEM;
		return NULL;
	}
	*t = *src;
	t->nsess = 0;
	t->dir_ino = 0;
	int r = target_open_sessions(m->cfg, t, m->cfg->sessions, err, errlen);
	if (r == 0)
		r = model_add_target(m, t);
	if (r < 0) {
		for (int i = 0; i < t->nsess; i++)
			session_destroy(t->sess[i]);
		free(t);
		errno = -r; /* the login's: the exit status says why (exitcode.h) */
		return NULL;
	}
	/* a re-login may find the target changed (issue 11): rescan then */
	for (int i = 0; i < t->nsess; i++)
		session_set_relogin_handler(t->sess[i], live_relogin, m);
	return t;
}

/* ---------- mount ---------- */

static int build_model(struct config *cfg, struct fs_model *m, char *err, size_t errlen)
{
	struct target_list tl = { 0 };
	int r = target_find(cfg, &tl, err, errlen);
	if (r < 0)
		return r;
	m->cfg = cfg;
	m->pool = pool_for(cfg, err, errlen);
	if (!m->pool) {
		free(tl.v);
		return -EINVAL;
	}
	m->target_dirs = cfg->url.target[0] == 0;
	m->rescan_run = live_rescan;
	m->rescan_opaque = m;
	for (int i = 0; i < tl.n; i++) {
		struct fs_target *t = mount_target_add(m, &tl.v[i], err, errlen);
		if (!t) {
			free(tl.v);
			return -errno;
		}
		struct lun_info *infos;
		int n;
		r = target_probe_luns(cfg, t, false, &infos, &n, err, errlen);
		if (r < 0) {
			free(tl.v);
			return r;
		}
		for (int k = 0; k < n; k++) {
			struct fs_lun *l = mount_lun_build(m, t, &infos[k], err, errlen);
			r = l ? mount_model_add_lun(m, l) : -errno;
			if (r < 0) {
				if (l)
					mount_lun_free(m, l);
				free(infos);
				free(tl.v);
				return r;
			}
		}
		free(infos);
	}
	if (m->nluns == 0) {
		snprintf(err, errlen, "no disk LUNs behind %s (see: iscsifs ls %s)", cfg->url_text,
			 cfg->url_text);
		free(tl.v);
		return -ENOENT;
	}
	/* one disk behind two files (two targets, one designator) is refused */
	for (int i = 0; i < m->nluns; i++)
		for (int j = 0; j < i; j++)
			if (m->luns[i]->info.wwn[0] &&
			    strcmp(m->luns[i]->info.wwn, m->luns[j]->info.wwn) == 0) {
				snprintf(err, errlen, "%s LUN %s and %s LUN %s report the same "
					 "identifier %s (VPD page 0x83): one disk seen twice, and "
					 "writes through two caches would corrupt it; refusing to "
					 "mount (mount one of them by its URL .../IQN/LUN)",
					 m->luns[j]->target->name, LUNSTR(m->luns[j]->info.lun),
					 m->luns[i]->target->name, LUNSTR(m->luns[i]->info.lun),
					 m->luns[i]->info.wwn);
				free(tl.v);
				return -EEXIST;
			}
	/* logged once the work succeeded, so that an error stays the only line */
	target_log_port_notices(cfg, &tl);
	free(tl.v);
	return 0;
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

/* SIGTERM / SIGINT after the FUSE loop ended (libfuse's handlers are gone then, and the
 * default action would kill the daemon in its final write-back: no final line, no exit
 * status 6, the lock notes left in the runtime directory). Caught from then on until
 * exit: during the final write-back, the dirty data not yet written is given up at once
 * (cache_abandon: counted, logged) and the exit goes on as usual; later, the signal is
 * only noted (what is left of the exit is bounded). The handler only writes the signal
 * number into a pipe; a thread of teardown() acts on it.
 * Thread model: term_main runs from before the final write-back until it ended; it only
 * calls cache_abandon (thread-safe) on caches teardown() keeps until it has joined it. */
static int term_pipe[2] = { -1, -1 };

static void on_term_late(int sig)
{
	char c = (char)sig;
	ssize_t r = write(term_pipe[1], &c, 1); /* non-blocking: a full pipe drops it */
	(void)r;
}

struct term_watch {
	struct fs_lun **all; /* immutable while the thread runs */
	size_t n;
	pthread_t thread;
	bool started;
};

static void *term_main(void *arg)
{
	struct term_watch *tw = arg;
	char c;
	for (;;) {
		ssize_t r = read(term_pipe[0], &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r != 1 || c == 0) /* 0: the final write-back ended */
			break;
		log_warn("%s during the final write-back: giving up the dirty data not written "
			 "yet",
			 c == SIGINT ? "SIGINT" : "SIGTERM");
		for (size_t i = 0; i < tw->n; i++)
			cache_abandon(tw->all[i]->cache);
	}
	return NULL;
}

static void term_watch_start(struct term_watch *tw)
{
	if (term_pipe[0] < 0) {
		if (pipe2(term_pipe, O_CLOEXEC) != 0)
			return;
		fcntl(term_pipe[1], F_SETFL, O_NONBLOCK);
	}
	struct sigaction sa = { .sa_handler = on_term_late, .sa_flags = SA_RESTART };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	tw->started = pthread_create(&tw->thread, NULL, term_main, tw) == 0;
}

static void term_watch_stop(struct term_watch *tw)
{
	char c = 0;
	if (!tw->started)
		return;
	while (write(term_pipe[1], &c, 1) < 0 && errno == EINTR)
		;
	pthread_join(tw->thread, NULL);
	tw->started = false;
}

/* Returns the number of LUNs whose dirty data could not all be written at exit (data
 * lost earlier - past the end of a shrunken LUN, of a LUN that left - was reported
 * then). Order: write back every LUN at once (bounded by the session budget), then
 * stop the sessions (every command still in flight - a read nobody waits for any more
 * - is completed), then free the caches, the LUNs and the pool. */
static int teardown(struct fs_model *m)
{
	struct stagewatch w = { 0 };
	struct term_watch tw = { 0 };
	int lost = 0;
	size_t n = 0;
	struct fs_lun **all = calloc((size_t)m->nluns + 1, sizeof(*all));
	uint64_t *before = calloc((size_t)m->nluns + 1, sizeof(*before));
	for (int i = 0; all && before && i < m->nluns; i++)
		all[n++] = m->luns[i];
	tw.all = all;
	tw.n = n;
	term_watch_start(&tw); /* SIGTERM now: give up the write-back, exit as usual */
	daemon_stopping(); /* STOPPING=1; logs the dirty MiB left every few seconds */
	for (size_t i = 0; i < n; i++) {
		struct cache_stats cs;
		cache_get_stats(all[i]->cache, &cs);
		before[i] = cs.lost_bytes;
		cache_stop_begin(all[i]->cache); /* every LUN writes back at once */
	}
	for (size_t i = 0; i < n; i++)
		lost += cache_stop(all[i]->cache) > before[i];
	for (struct fs_lun *l = m->gone; l; l = l->gone_next)
		cache_stop(l->cache); /* nothing dirty: dropped when it left */
	/* a signal from now on is only noted: the rest of the exit is bounded */
	term_watch_stop(&tw);
	daemon_stopped(lost);
	stage(&w, "closing the sessions");
	for (int t = 0; t < m->ntargets; t++)
		for (int i = 0; i < m->targets[t]->nsess; i++)
			session_destroy(m->targets[t]->sess[i]);
	stage(&w, "freeing the caches");
	for (size_t i = 0; i < n; i++)
		mount_lun_free(m, all[i]);
	while (m->gone) {
		struct fs_lun *l = m->gone;
		m->gone = l->gone_next;
		mount_lun_free(m, l);
	}
	if (m->pool)
		cache_pool_destroy(m->pool);
	m->pool = NULL;
	stage(&w, NULL);
	for (int t = 0; t < m->ntargets; t++)
		free(m->targets[t]);
	free(m->targets);
	free(m->luns);
	free(all);
	free(before);
	m->luns = NULL;
	m->nluns = 0;
	m->targets = NULL;
	m->ntargets = 0;
	return lost;
}

/* Daemon mode: fork now; the parent returns only to exit with the child's verdict. */
int mount_main(struct config *cfg)
{
	char err[CONFIG_ERRLEN] = "";
	struct fs_model m = { .start_ms = util_now_ms() };
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
	pthread_mutex_init(&m.lock, NULL);
	int r = build_model(cfg, &m, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "iscsifs: %s\n", err[0] ? err : strerror(-r));
		teardown(&m);
		pthread_mutex_destroy(&m.lock);
		lunlock_release_all();
		config_wipe_secrets(cfg);
		return exitcode_from_errno(r);
	}
	r = fs_run(&m, ready_fd);
	int lost = teardown(&m);
	pthread_mutex_destroy(&m.lock);
	lunlock_release_all(); /* after the last write-back */
	config_wipe_secrets(cfg);
	if (lost)
		log_err("exiting with an error: dirty data of %d LUN%s could not be written (see "
			"above)", lost, lost == 1 ? "" : "s");
	return lost ? EXITCODE_UNWRITTEN : r < 0 ? EXITCODE_RUNTIME : EXITCODE_OK;
}
