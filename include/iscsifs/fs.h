/*
 * fs.h - the mounted namespace: what mount.c builds (targets, sessions, LUNs with their
 * cache stacks) and hands to fs_run(), which serves it over FUSE until unmounted.
 *
 * The namespace is live (issue 11): while mounted, LUNs, their sizes and their
 * partitions follow the targets. mount.c decides what changed (a rescan, on the rescan
 * thread that fs_run starts) and changes the model and the files through the fs_live_*
 * calls below; fs.c keeps the nodes (ns.h) and tells the kernel.
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
	uint64_t dir_ino;             /* fs: the inode of its directory (the root without
	                                 target directories); 0 before it has one */
};

struct fs_lun {
	struct fs_target *target;
	struct lun_info info;         /* as probed when it became a file (immutable) */
	struct blkdev *lundev;        /* lun.c */
	struct blkdev *cache;         /* cache.c over lundev: every I/O goes here */
	char name[32];                /* "lun1" */
	struct probe_result probe;    /* the last probe; once served, under fs's probe_lock */

	/* the live namespace (issue 11) */
	int refs;                     /* atomic: one for the model's list, one per node */
	bool removed;                 /* atomic: left the namespace; I/O fails with ENODEV */
	bool pt_dirty;                /* atomic: a write touched bytes the probe read */
	bool reprobe;                 /* atomic: re-probe at the next rescan */
	bool reprobe_deferred;        /* atomic: a partition change waits for its file to
	                                 be closed */
	uint64_t probe_writes;        /* cache write_ops at the last probe; fs's probe_lock */
	/* fs, on the rescan thread (or before serving): the LUN's linked nodes */
	struct ns_node *node;                        /* lunN */
	struct ns_node *part_nodes[PROBE_MAX_PARTS]; /* lunN-partM */
	int nparts_nodes;
	struct fs_lun *gone_next;     /* in fs_model.gone (model lock) */
};

/* Counters of the live namespace, for stats.json and metrics (atomic). */
struct fs_live_stats {
	uint64_t rescans;             /* rescans that read the targets again */
	uint64_t rescan_failures;     /* of those, ones where a target could not be read */
	uint64_t luns_added, luns_removed, luns_resized;
	uint64_t parts_added, parts_removed, parts_resized;
	uint64_t targets_added;
	uint64_t reprobes;            /* partition tables read again after a write */
};

struct fs;
struct rescan;

struct fs_model {
	const struct config *cfg;
	pthread_mutex_t lock;         /* protects the lists below (their entries and counts),
	                                 not what the entries point to */
	struct fs_target **targets;
	int ntargets;
	struct fs_lun **luns;         /* the LUNs that are files now */
	int nluns;
	struct fs_lun *gone;          /* removed LUNs not yet freed (gone_next); freed once
	                                 refs is 0: no node refers to them any more */
	struct cache_pool *pool;      /* the memory budget of every LUN's cache */
	bool target_dirs;             /* the URL named a portal: one directory per target */
	uint64_t start_ms;

	/* set by mount.c before fs_run: what a rescan does (rescan.h), on the rescan
	 * thread fs_run starts once the mount is live and stops before unmounting */
	int (*rescan_run)(void *opaque, unsigned reasons, char *report, size_t len);
	void *rescan_opaque;
	struct rescan *rescan;        /* while served (atomic pointer); NULL otherwise */
	bool stopping;                /* atomic: fs_run is ending; a rescan stops early */
	struct fs *fs;                /* while served (atomic pointer); NULL otherwise */
	struct fs_live_stats live;
};

/* Mount cfg->mountpoint and serve until unmounted or SIGTERM/SIGINT. SIGHUP rescans.
 * When `ready_fd` >= 0, one byte is written to it once the mount is live (the parent
 * of a daemonized iscsifs exits then) and it is closed. Returns 0, or -errno when
 * mounting failed (message already printed). */
int fs_run(struct fs_model *m, int ready_fd);

/*
 * ---------- the live namespace: called on the rescan thread only ----------
 *
 * Each call changes the files and tells the kernel (fuse_lowlevel_notify_*), never
 * while holding a lock a FUSE handler takes.
 */

/* The LUN became a file: lunN and its partition files (from l->probe) appear. l is in
 * the model's list already; each node takes a reference (fs_lun_put drops it).
 * Appends a line per file to report. 0, or -errno (EEXIST: the name is taken). */
int fs_live_add_lun(struct fs *fs, struct fs_lun *l, char *report, size_t len);

/* The LUN left the namespace (its fs_lun.removed is set): its files are gone at once,
 * the kernel drops what it cached of them; handles still open on them get ENODEV. */
void fs_live_remove_lun(struct fs *fs, struct fs_lun *l);

/* The LUN's size is now `size` (the cache follows first, mount.c): lunN shows it, the
 * kernel drops what it cached past the end. Partition files follow at the re-probe. */
void fs_live_resize_lun(struct fs *fs, struct fs_lun *l, uint64_t old_size, uint64_t size);

/* Read the partition table again and make the partition files follow (appear, change
 * size, disappear; one that is open keeps its window until closed). Appends one line
 * per change to report. Returns the number of changes, or -errno when the probe
 * failed (nothing changes). */
int fs_live_reprobe(struct fs *fs, struct fs_lun *l, char *report, size_t len);

/* A target directory (portal mounts). */
int fs_live_add_target(struct fs *fs, struct fs_target *t);

/* Drop a reference of `l`; when the last one goes, a removed LUN is freed by mount.c
 * on the rescan thread (RESCAN_REAP), or at unmount. */
void fs_lun_put(struct fs_model *m, struct fs_lun *l);

/* Render the counters: JSON (prometheus=false) or Prometheus text. malloc'ed. */
char *stats_render(const struct fs_model *m, bool prometheus, size_t *len);

#endif
