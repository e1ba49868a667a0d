/*
 * fs.h - the mounted namespace: what main builds (targets, sessions, LUNs with their
 * cache stacks) and hands to fs_run(), which serves it over FUSE until unmounted.
 */
#ifndef ISCSIFS_FS_H
#define ISCSIFS_FS_H

#include <pthread.h>

#include "iscsifs/blkdev.h"
#include "iscsifs/cache.h"
#include "iscsifs/config.h"
#include "iscsifs/lun.h"
#include "iscsifs/probe.h"
#include "iscsifs/session.h"

#define FS_MAX_SESSIONS 16

struct fs_target {
	char name[CONFIG_NAME_MAX];
	char portal[300];
	struct session *sess[FS_MAX_SESSIONS];
	int nsess;
};

struct fs_lun {
	struct fs_target *target;
	struct lun_info info;
	struct blkdev *lundev;        /* lun.c */
	struct blkdev *cache;         /* cache.c over lundev: every I/O goes here */
	char name[32];                /* "lun1" */
	struct probe_result probe;    /* at mount time */
};

struct fs_model {
	const struct config *cfg;
	struct fs_target *targets;
	int ntargets;
	struct fs_lun *luns;
	int nluns;
	struct cache_pool *pool;      /* the memory budget of every LUN's cache */
	bool target_dirs;             /* the URL named a portal: one directory per target */
	uint64_t start_ms;
};

/* Mount cfg->mountpoint and serve until unmounted or SIGTERM/SIGINT/SIGHUP. When
 * `ready_fd` >= 0, one byte is written to it once the mount is live (the parent of a
 * daemonized iscsifs exits then) and it is closed. Dirty data is written back before
 * returning. Returns 0, or -errno when mounting failed (message already printed). */
int fs_run(struct fs_model *m, int ready_fd);

/* Render the counters: JSON (prometheus=false) or Prometheus text. malloc'ed. */
char *stats_render(const struct fs_model *m, bool prometheus, size_t *len);

#endif
