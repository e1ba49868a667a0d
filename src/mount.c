/*
 * mount.c - `iscsifs URL MOUNTPOINT`: builds the stack for each LUN (session -> lun ->
 * cache) before anything is mounted, so every bad input ends with one clear line on
 * stderr and a non-zero exit, and never with a half-mounted directory; then serves it
 * (fs_run) and takes it down, writing back what is dirty.
 */
#include <errno.h>
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

static struct cache_config cache_config_for(const struct config *cfg,
					    const struct lun_info *info, const char *name)
{
	struct cache_config cc = {
		.mode = cfg->cache_mode,
		.cache_size = cfg->cache_size,
		.cache_block = MAX(cfg->cache_block, info->block_size),
		.dirty_max = cfg->dirty_max,
		.dirty_expire_ms = cfg->dirty_expire_ms,
		.readahead_max = cfg->readahead_max,
		.max_write = 1u << 20,
		.name = name,
	};
	if (info->max_xfer_blocks)
		cc.max_write = (uint32_t)MIN((uint64_t)cc.max_write,
					     MAX((uint64_t)info->max_xfer_blocks * info->block_size,
						 cc.cache_block));
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
			struct cache_config cc = cache_config_for(cfg, &l->info, name);
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

/* Returns the number of LUNs whose dirty data could not all be written. */
static int teardown(struct fs_model *m, struct target_list *tl)
{
	int lost = 0;
	daemon_stopping(); /* STOPPING=1; logs the dirty MiB left every few seconds */
	for (int i = 0; i < m->nluns; i++)
		lost += cache_stop(m->luns[i].cache) > 0; /* in parallel would be faster; rare */
	daemon_stopped(lost);
	for (int i = 0; i < m->nluns; i++) {
		/* the cache writes back what it holds, bounded by the session timeouts */
		m->luns[i].cache->ops->destroy(m->luns[i].cache);
		m->luns[i].lundev->ops->destroy(m->luns[i].lundev);
		pthread_rwlock_destroy(&m->luns[i].rmw);
	}
	free(m->luns);
	target_close_sessions(tl);
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
