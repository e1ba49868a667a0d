/*
 * fs.c - the FUSE namespace: targets, LUN files, partition files, .iscsifs/ counters;
 * byte ranges to block ranges; errno to FUSE.
 *
 * The namespace is live (issue 11): LUN files, partition files and target directories
 * appear, change size and disappear while mounted. Its nodes are ns.h's (inode numbers
 * never reused; a node lives while linked, looked up by the kernel, or open); the
 * rescan thread (rescan.h, started by fs_run) changes them through the fs_live_* calls
 * as mount.c/live.c decide, and tells the kernel. Every LUN or partition file is a
 * window [off, off+size) onto its LUN's cache blkdev; all I/O goes through the cache
 * (cache=none makes it a pass-through). A file whose LUN left the namespace answers
 * ENODEV to everything but close and getattr.
 *
 * NOTES ON THE THREAD MODEL
 *   fs_run() runs libfuse's multi-threaded loop: up to FS_MAX_THREADS worker threads
 *   call the op_* handlers concurrently. The data handlers (read, write, flush, fsync,
 *   fallocate) never wait: they hand a byte range to the cache (cache.h) and return;
 *   the request is answered from the cache's callback, which runs in the worker itself
 *   (a hit, a write absorbed by the write-back cache) or later on a session's event
 *   thread or a write-back thread (fuse_reply_* may be called from any thread). So the
 *   number of requests in flight is bounded by the kernel (max_background) and the
 *   sessions' command windows, not by the number of threads. No lock of ours is held
 *   across I/O: the cache does read-modify-write of partial logical blocks itself.
 *   A request still waiting in the cache can be withdrawn by FUSE INTERRUPT (a killed
 *   reader must not wait for a dead target). A node's name, parent, LUN and window
 *   start never change; its size is atomic; which nodes exist is ns.c's (its lock).
 *   A LUN's probe result is protected by `probe_lock`. lseek (GET LBA STATUS) and the
 *   blkid re-probe of getxattr are synchronous in the worker; the re-probe that
 *   changes partition files, and every kernel notification, run on the rescan thread,
 *   which holds no lock a handler takes while it notifies. Handlers that must wait for
 *   the rescan thread (a write of .iscsifs/rescan, the close or fsync after a write to
 *   the partition table) are answered from it: no worker waits.
 */
#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/falloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "iscsifs/cache.h"
#include "iscsifs/daemon.h"
#include "iscsifs/fs.h"
#include "iscsifs/fuseext.h"
#include "iscsifs/log.h"
#include "iscsifs/ns.h"
#include "iscsifs/rescan.h"
#include "iscsifs/util.h"

/* Workers only dispatch (requests are answered from the cache's callbacks), so a few
 * suffice. Idle workers are never ended: with asynchronous handlers a worker is idle
 * most of the time, and a limit on idle workers made libfuse end and start threads
 * thousands of times a second (measured: 1350 clone3 in 5 s at 5.5k IOPS), so the
 * loop keeps libfuse's default (max_idle_threads -1: never end one). */
#define FS_MAX_THREADS 2

/* A node of the namespace is a struct ns_node (ns.h): NS_LUN and NS_PART nodes have
 * their struct fs_lun as obj (a reference), NS_PART its partition number in `part`
 * and its window in off/size; NS_CTL (.iscsifs/ files) their enum ctl in `part`. */
enum ctl { CTL_STATS = 1, CTL_METRICS, CTL_RESCAN };

/* Every open file's handle is on a list, so what the kernel never released (files
 * still open at unmount or SIGTERM) is freed when fs_run ends. */
struct fh_link {
	struct fh_link *prev, *next;   /* fs->fh_lock */
	bool lun;                      /* a struct lun_fh, else a struct meta_fh */
	struct ns_node *node;          /* the file it is open on (ns_open counted it) */
};

struct fs {
	struct fs_model *m;
	struct ns *ns;               /* the nodes (ns.h has the lifetime rules) */
	struct fuse_session *se;     /* for the kernel notifications of the live namespace */
	uint64_t meta_ino;           /* .iscsifs */
	time_t mount_time;
	pthread_mutex_t probe_lock;  /* protects lun->probe and lun->probe_writes after mount */
	int outstanding;             /* atomic: requests handed to the cache, not answered */
	pthread_mutex_t idle_lock;   /* with idle: fs_run waits for outstanding == 0 */
	pthread_cond_t idle;
	pthread_mutex_t fh_lock;
	struct fh_link fhs;          /* list head of open files' handles; fh_lock */
};

static struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct ns_node *node_get(struct fs *fs, fuse_ino_t ino)
{
	return ns_get(fs->ns, ino);
}

/* The LUN a file shows, or NULL (directories, .iscsifs files). */
static struct fs_lun *node_lun(const struct ns_node *n)
{
	return n && (n->kind == NS_LUN || n->kind == NS_PART) ? n->obj : NULL;
}

static bool is_dir(const struct ns_node *n)
{
	return n->kind == NS_ROOT || n->kind == NS_DIR;
}

static bool is_ctl(const struct ns_node *n, enum ctl which)
{
	return n->kind == NS_CTL && n->part == (int)which;
}

static bool lun_removed(const struct fs_lun *l)
{
	return __atomic_load_n(&l->removed, __ATOMIC_ACQUIRE);
}

static bool node_ro(struct fs *fs, const struct ns_node *n)
{
	struct fs_lun *l = node_lun(n);
	return fs->m->cfg->read_only || (l && l->cache->read_only);
}

/* The bytes of a LUN or partition file: its window, ending at its LUN's current end.
 * A partition file held open keeps its window until its last close (the re-probe waits
 * for it), but its LUN may shrink below that meanwhile: then reads end at the LUN's end
 * and writes past it fail with ENOSPC, as on the LUN's own file (issue 11). */
static uint64_t node_size(const struct ns_node *n)
{
	struct fs_lun *l = node_lun(n);
	uint64_t size = ns_get_size(n);
	if (!l || lun_removed(l))
		return size; /* a removed LUN's handles get ENODEV, not an empty file */
	uint64_t lun_end = __atomic_load_n(&l->cache->size, __ATOMIC_RELAXED);
	return n->off >= lun_end ? 0 : MIN(size, lun_end - n->off);
}
static void fill_attr(struct fs *fs, const struct ns_node *n, struct stat *st)
{
	const struct config *cfg = fs->m->cfg;
	memset(st, 0, sizeof(*st));
	st->st_ino = n->ino;
	st->st_uid = cfg->uid;
	st->st_gid = cfg->gid;
	st->st_atime = st->st_mtime = st->st_ctime = fs->mount_time;
	st->st_blksize = 4096;
	if (is_dir(n)) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return;
	}
	st->st_nlink = 1;
	if (n->kind == NS_CTL) {
		/* generated on open; read with direct I/O. rescan: only the mounting user
		 * (or root) may write it, i.e. ask for a rescan */
		st->st_mode = S_IFREG | (n->part == CTL_RESCAN ? 0600 : 0444);
		st->st_size = 0;
		return;
	}
	struct fs_lun *l = node_lun(n);
	uint64_t size = node_size(n);
	st->st_mode = S_IFREG | (node_ro(fs, n) ? 0400 : 0600);
	st->st_size = (off_t)size;
	st->st_blksize = (blksize_t)MAX(l->info.block_size, 512u);
	st->st_blocks = (blkcnt_t)(size / 512);
	if (!ns_linked(fs->ns, n))
		st->st_nlink = 0; /* removed while open, as an unlinked file */
}

/* Sizes, names and modes change only when the target does (a rescan tells the kernel
 * at once: fuse_lowlevel_notify_inval_*), so the kernel may cache them long; the
 * timeout only bounds a notification lost to a kernel too old to take it. */
static double attr_timeout(void)
{
	return 60.0;
}

/* ---------- namespace ---------- */

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct ns_node *n = ns_lookup(fs->ns, parent, name); /* counts the kernel's reference */
	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	struct fuse_entry_param e = { .ino = n->ino };
	fill_attr(fs, n, &e.attr);
	e.attr_timeout = e.entry_timeout = attr_timeout();
	if (fuse_reply_entry(req, &e) != 0)
		ns_forget(fs->ns, n->ino, 1); /* the kernel did not get it */
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	ns_forget(fs_of(req)->ns, ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct fs *fs = fs_of(req);
	for (size_t i = 0; i < count; i++)
		ns_forget(fs->ns, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct ns_node *n = node_get(fs, ino);
	struct stat st;
	(void)fi;
	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fill_attr(fs, n, &st);
	fuse_reply_attr(req, &st, attr_timeout());
}

static int rewrite_truncate(struct ns_node *n, struct fuse_file_info *fi, uint64_t size);

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct ns_node *n = node_get(fs, ino);
	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		/* A LUN's size is fixed, as a block device's. Truncating to the current size
		 * succeeds and does nothing (tools that set the size they are about to write
		 * keep working); ftruncate of a file opened with O_TRUNC marks the end of the
		 * image being written (see "O_TRUNC" below); any other size fails with EPERM,
		 * the errno of a size change on a sealed memfd (F_SEAL_GROW, F_SEAL_SHRINK):
		 * this file's size may not change. EINVAL, a block device's answer, would
		 * say the argument is malformed. */
		int r = is_dir(n) ? -EISDIR : rewrite_truncate(n, fi, (uint64_t)attr->st_size);
		if (r < 0) {
			fuse_reply_err(req, -r);
			return;
		}
	}
	/* times: accepted and ignored (touch works) */
	op_getattr(req, ino, NULL);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ns_node *n = node_get(fs_of(req), ino);
	if (!n || !is_dir(n)) {
		fuse_reply_err(req, n ? ENOTDIR : ENOENT);
		return;
	}
	fuse_reply_open(req, fi);
}

struct dirbuf {
	fuse_req_t req;
	char *buf;
	size_t size, pos;
};

/* Offsets: "." is 1, ".." 2, a child its inode number + 2 (inode numbers are never
 * reused and children are listed in their order: a directory read while it changes
 * never repeats or skips an entry that stayed). */
static int dir_add(struct dirbuf *d, const char *name, fuse_ino_t ino, bool dir, off_t next)
{
	struct stat st = { .st_ino = ino, .st_mode = dir ? S_IFDIR : S_IFREG };
	size_t need = fuse_add_direntry(d->req, d->buf + d->pos, d->size - d->pos, name, &st, next);
	if (need > d->size - d->pos)
		return 1;
	d->pos += need;
	return 0;
}

static int dir_child(void *opaque, const struct ns_node *c)
{
	return dir_add(opaque, c->name, c->ino, is_dir(c), (off_t)(c->ino + 2));
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct ns_node *n = node_get(fs, ino);
	struct dirbuf d = { .req = req, .buf = calloc(1, size), .size = size };
	(void)fi;
	if (!d.buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	int r = 0;
	if (off < 1 && dir_add(&d, ".", ino, true, 1))
		goto reply;
	if (off < 2 && dir_add(&d, "..", n && ino != FUSE_ROOT_ID ? n->parent : ino, true, 2))
		goto reply;
	r = ns_readdir(fs->ns, ino, off > 2 ? (uint64_t)off - 2 : 0, dir_child, &d);
reply:
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_buf(req, d.buf, d.pos);
	free(d.buf);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = fs_of(req);
	struct statvfs sv = { 0 };
	uint64_t total = 0, alive, linked;
	(void)ino;
	pthread_mutex_lock(&fs->m->lock);
	for (int i = 0; i < fs->m->nluns; i++)
		total += fs->m->luns[i]->cache->size;
	pthread_mutex_unlock(&fs->m->lock);
	ns_counts(fs->ns, &alive, &linked);
	sv.f_bsize = 4096;
	sv.f_frsize = 4096;
	sv.f_blocks = total / 4096;
	sv.f_files = linked;
	sv.f_namemax = 255;
	if (fs->m->cfg->read_only)
		sv.f_flag |= ST_RDONLY;
	fuse_reply_statfs(req, &sv);
}

/* ---------- open / close ---------- */

static void fh_track(struct fs *fs, struct fh_link *l, bool lun, struct ns_node *n)
{
	l->lun = lun;
	l->node = n;
	ns_open(fs->ns, n); /* the node lives while this handle does */
	pthread_mutex_lock(&fs->fh_lock);
	l->prev = &fs->fhs;
	l->next = fs->fhs.next;
	fs->fhs.next->prev = l;
	fs->fhs.next = l;
	pthread_mutex_unlock(&fs->fh_lock);
}

static void fh_untrack(struct fs *fs, struct fh_link *l)
{
	pthread_mutex_lock(&fs->fh_lock);
	l->prev->next = l->next;
	l->next->prev = l->prev;
	pthread_mutex_unlock(&fs->fh_lock);
}

struct meta_fh {
	struct fh_link link;         /* first */
	pthread_mutex_t lock;        /* data and len: a rescan's report replaces them while
	                                another thread of the program may read the handle */
	char *data;                  /* lock */
	size_t len;                  /* lock */
};

/* An open LUN or partition file. */
struct lun_fh {
	struct fh_link link;         /* first */
	bool write;                  /* opened for writing */
	uint64_t errors_seen;        /* cache write_errors when last reported to this file;
	                                atomic (flush and fsync may race on one file) */
	struct rewrite *rw;          /* opened for writing with O_TRUNC; else NULL */
};

/* ---------- O_TRUNC: writing an image from offset 0 ----------
 *
 * dd of=lunN (without conv=notrunc), cp, `cat img > lunN` and `pv img > lunN` open the
 * file with O_TRUNC. A LUN cannot be emptied: as a block device does, the file keeps its
 * size and the writes land from offset 0 (FUSE_CAP_ATOMIC_O_TRUNC, set in op_init, makes
 * O_TRUNC arrive here as a flag of open instead of as a truncate to 0, which fails).
 * A regular file would also read as zeroes where the writer skipped bytes, and writers
 * rely on that: cp and dd conv=sparse seek over the holes of a sparse image, and cp
 * calls ftruncate(fd, image size) when the image ends in a hole. So a file opened for
 * writing with O_TRUNC remembers the byte ranges written through it and the image's end
 * (the highest byte written, or the size it was ftruncated to, whichever is larger); at
 * that ftruncate and at close (flush), every byte before the end not written through
 * it is zeroed (WRITE SAME, or UNMAP on a thin LUN that reads unmapped blocks as
 * zeroes). The LUN then reads as the image from 0 to its end; the bytes after the end
 * and the size are unchanged. Writing to the file while it is being ftruncated or
 * closed (from another thread) is a race the writer owns: the zeroes and the write
 * may land in either order.
 */
#define REWRITE_MAX_RANGES 65536 /* then the first gap is zeroed at once */

struct wrange {
	uint64_t start, end;
};

struct rewrite {
	pthread_mutex_t lock;
	struct wrange *done;         /* written through the file: sorted, disjoint; lock */
	size_t n, cap;               /* lock */
	uint64_t end;                /* the image's end; lock */
	bool given_up;               /* a write could not be recorded: zero nothing; lock */
};

/* Make [abs, abs+len) of the LUN read as zeroes and wait (a worker thread only: never
 * in a cache callback, which may run on the thread that would complete it). */
static int zero_range(struct fs_lun *l, uint64_t abs, uint64_t len, bool punch)
{
	struct blkdev_waiter w;
	blkdev_waiter_init(&w);
	cache_zero(l->cache, abs, len, punch && l->cache->discard_zeroes, blkdev_waiter_cb, &w,
		   NULL);
	return blkdev_waiter_wait(&w);
}

static void settle_gap_done(void *opaque, int ret);

static struct rewrite *rewrite_new(void)
{
	struct rewrite *rw = calloc(1, sizeof(*rw));
	if (rw)
		pthread_mutex_init(&rw->lock, NULL);
	return rw;
}

static void rewrite_free(struct rewrite *rw)
{
	if (!rw)
		return;
	pthread_mutex_destroy(&rw->lock);
	free(rw->done);
	free(rw);
}

/* Add [start, end) to rw->done, merging; caller holds rw->lock. 0 or -ENOMEM. */
static int rewrite_add(struct rewrite *rw, uint64_t start, uint64_t end)
{
	size_t i = 0, j;
	while (i < rw->n && rw->done[i].end < start)
		i++;
	for (j = i; j < rw->n && rw->done[j].start <= end; j++) {
		start = MIN(start, rw->done[j].start);
		end = MAX(end, rw->done[j].end);
	}
	if (j == i) {
		if (rw->n == rw->cap) {
			size_t cap = rw->cap ? 2 * rw->cap : 16;
			struct wrange *nv = realloc(rw->done, cap * sizeof(*nv));
			if (!nv)
				return -ENOMEM;
			rw->done = nv;
			rw->cap = cap;
		}
		memmove(&rw->done[i + 1], &rw->done[i], (rw->n - i) * sizeof(*rw->done));
		rw->n++;
	} else if (j > i + 1) {
		memmove(&rw->done[i + 1], &rw->done[j], (rw->n - j) * sizeof(*rw->done));
		rw->n -= j - i - 1;
	}
	rw->done[i] = (struct wrange){ start, end };
	return 0;
}

/* Zero every byte of [0, upto) of node n not written through rw, and count it written.
 * 0 or -errno. */
static int rewrite_settle(struct ns_node *n, struct rewrite *rw, uint64_t upto)
{
	struct wrange *gaps = NULL;
	size_t ngaps = 0;
	uint64_t pos = 0;
	int r = 0;
	pthread_mutex_lock(&rw->lock);
	if (rw->given_up) {
		pthread_mutex_unlock(&rw->lock);
		return 0;
	}
	gaps = malloc((rw->n + 1) * sizeof(*gaps));
	for (size_t i = 0; gaps && i <= rw->n && pos < upto; i++) {
		uint64_t gap_end = i < rw->n ? MIN(rw->done[i].start, upto) : upto;
		if (pos < gap_end)
			gaps[ngaps++] = (struct wrange){ pos, gap_end };
		if (i < rw->n)
			pos = MAX(pos, rw->done[i].end);
	}
	pthread_mutex_unlock(&rw->lock);
	if (!gaps)
		return -ENOMEM;
	for (size_t i = 0; i < ngaps && r == 0; i++) {
		r = zero_range(node_lun(n), n->off + gaps[i].start, gaps[i].end - gaps[i].start,
			       node_lun(n)->cache->can_discard);
		if (r == 0) {
			pthread_mutex_lock(&rw->lock);
			r = rewrite_add(rw, gaps[i].start, gaps[i].end);
			pthread_mutex_unlock(&rw->lock);
		}
	}
	free(gaps);
	return r;
}

/* A gap of an O_TRUNC writer zeroed without waiting (see rewrite_note). */
struct settle_gap {
	struct ns_node *n;
	struct rewrite *rw;
	uint64_t start, end;
};

static void settle_gap_done(void *opaque, int ret)
{
	struct settle_gap *g = opaque;
	if (ret == 0) {
		pthread_mutex_lock(&g->rw->lock);
		if (rewrite_add(g->rw, g->start, g->end) < 0)
			g->rw->given_up = true;
		pthread_mutex_unlock(&g->rw->lock);
	} else {
		log_err("%s %s: cannot zero the bytes skipped before offset %" PRIu64
			" of a file opened with O_TRUNC: %s",
			node_lun(g->n)->target->name, g->n->name, g->end, strerror(-ret));
	}
	free(g);
}

/* write_done's hook: [off, off+len) of node n was written through h. It may run on a
 * session thread (the cache's callback), so it never waits for I/O. */
static void rewrite_note(struct ns_node *n, struct lun_fh *h, uint64_t off, uint64_t len)
{
	struct rewrite *rw = h->rw;
	struct settle_gap *g = NULL;
	if (!rw)
		return;
	pthread_mutex_lock(&rw->lock);
	rw->end = MAX(rw->end, off + len);
	if (rewrite_add(rw, off, off + len) < 0) {
		/* zeroing "unwritten" bytes could now destroy this write: stop zeroing */
		if (!rw->given_up)
			log_err("%s %s: out of memory: the holes skipped by the writer of a file "
				"opened with O_TRUNC keep their old content",
				node_lun(n)->target->name, n->name);
		rw->given_up = true;
	} else if (rw->n > REWRITE_MAX_RANGES && rw->done[0].start == 0 &&
		   (g = malloc(sizeof(*g)))) {
		/* Too many ranges (a writer that skips around a lot): zero the first gap now
		 * rather than keep it; it is recorded when the zeroes are there. */
		*g = (struct settle_gap){ n, rw, rw->done[0].end, rw->done[1].start };
	}
	pthread_mutex_unlock(&rw->lock);
	if (g)
		cache_zero(node_lun(n)->cache, n->off + g->start, g->end - g->start,
			   node_lun(n)->cache->can_discard && node_lun(n)->cache->discard_zeroes, settle_gap_done,
			   g, NULL);
}

/* op_setattr's size change of node n (fi: the open file, when ftruncate). */
static int rewrite_truncate(struct ns_node *n, struct fuse_file_info *fi, uint64_t size)
{
	struct lun_fh *h = fi && node_lun(n) ? (struct lun_fh *)(uintptr_t)fi->fh : NULL;
	if (h && h->rw && size <= ns_get_size(n)) {
		pthread_mutex_lock(&h->rw->lock);
		h->rw->end = MAX(h->rw->end, size);
		pthread_mutex_unlock(&h->rw->lock);
		return rewrite_settle(n, h->rw, size);
	}
	return size == ns_get_size(n) ? 0 : -EPERM;
}

/* At close (flush): zero what the image skipped. 0 or -errno. */
static int rewrite_close(struct ns_node *n, struct lun_fh *h)
{
	uint64_t end;
	if (!h->rw)
		return 0;
	pthread_mutex_lock(&h->rw->lock);
	end = h->rw->end;
	pthread_mutex_unlock(&h->rw->lock);
	return rewrite_settle(n, h->rw, end);
}

/* What a file reports once at its next flush or fsync, if it moved since it last
 * did: write-back failures, and dirty data given up (issue 11: past the end of a LUN
 * that shrank, or of one removed) - the same data failing and then dropped counts
 * once (flush_errors). */
static uint64_t write_errors(struct fs_lun *l)
{
	struct cache_stats cs;
	cache_get_stats(l->cache, &cs);
	return cs.flush_errors;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct ns_node *n = node_get(fs, ino);
	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (is_dir(n)) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if (n->kind == NS_CTL) {
		/* stats.json, metrics: a snapshot per open; rescan: written to rescan, then
		 * read for the report (see op_write) */
		if ((fi->flags & O_ACCMODE) != O_RDONLY && n->part != CTL_RESCAN) {
			fuse_reply_err(req, EACCES);
			return;
		}
		struct meta_fh *h = calloc(1, sizeof(*h));
		if (h)
			pthread_mutex_init(&h->lock, NULL);
		if (h && n->part != CTL_RESCAN &&
		    !(h->data = stats_render(fs->m, n->part == CTL_METRICS, &h->len))) {
			free(h);
			h = NULL;
		}
		if (!h) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		fh_track(fs, &h->link, false, n);
		fi->fh = (uint64_t)(uintptr_t)h;
		fi->direct_io = 1;
		fuse_reply_open(req, fi);
		return;
	}
	struct fs_lun *lun = node_lun(n);
	if (lun_removed(lun)) {
		fuse_reply_err(req, ENODEV); /* its LUN left the target: the file is gone */
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY && node_ro(fs, n)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	struct lun_fh *h = calloc(1, sizeof(*h));
	if (h && (fi->flags & O_ACCMODE) != O_RDONLY) {
		h->write = true; /* flush() does not get the flags */
		/* O_TRUNC: write from offset 0, keep the size (see "O_TRUNC" above) */
		if ((fi->flags & O_TRUNC) && !(h->rw = rewrite_new())) {
			free(h);
			h = NULL;
		}
	}
	if (!h) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	h->errors_seen = write_errors(lun);
	fh_track(fs, &h->link, true, n);
	fi->fh = (uint64_t)(uintptr_t)h;
	if (fs->m->cfg->cache_mode == CONFIG_CACHE_NONE) {
		static bool told; /* atomic */
		fi->direct_io = 1; /* shared LUN: no page cache either */
		/* The kernel refuses a shared mmap of a direct-I/O file unless the daemon
		 * asked for FUSE_DIRECT_IO_ALLOW_MMAP (kernel 6.6+; fuseext.c asks for it,
		 * as libfuse 3.14 cannot); and mmap sends nothing to the daemon, so when
		 * the kernel lacks it this is the last moment to say it. */
		if (!fuseext_dio_mmap() && !__atomic_exchange_n(&told, true, __ATOMIC_RELAXED))
			log_notice("cache=none: LUN files are opened for direct I/O, so mmap(MAP_SHARED) "
				   "of them fails with ENODEV (libfuse 3.14 cannot ask the kernel for "
				   "FUSE_DIRECT_IO_ALLOW_MMAP): use cache=writethrough for programs "
				   "that map files shared");
	} else if (fi->flags & O_DIRECT) {
		/* O_DIRECT bypasses the page cache anyway; with FOPEN_DIRECT_IO a synchronous
		 * O_DIRECT read or write is an ordinary FUSE request, which the kernel
		 * interrupts when the process is killed, instead of a background request of
		 * the page cache's direct_IO path that it waits for uninterruptibly (a reader
		 * blocked on a dead target then ignores SIGKILL). Asynchronous ones (libaio,
		 * io_uring) are background requests either way. */
		fi->direct_io = 1;
	} else if (__atomic_load_n(&lun->probe.nparts, __ATOMIC_RELAXED) == 0) {
		fi->keep_cache = 1; /* only we change the data: keep the kernel's pages */
	}
	/* else: lunN and its lunN-partM files show the same bytes through separate kernel
	 * page caches, so a write through one leaves stale pages in the other; without
	 * keep_cache every open drops the file's pages (close-to-open coherence across
	 * the aliases, as for close() flushing). Files open at the same time are not kept
	 * coherent, as with /dev/sda and /dev/sda1. */
	fuse_reply_open(req, fi);
}

static void fh_free(struct fh_link *l)
{
	if (l->lun) {
		struct lun_fh *h = (struct lun_fh *)l;
		rewrite_free(h->rw);
		free(h);
	} else {
		struct meta_fh *h = (struct meta_fh *)l;
		pthread_mutex_destroy(&h->lock);
		free(h->data);
		free(h);
	}
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fh_link *l = (struct fh_link *)(uintptr_t)fi->fh;
	(void)ino;
	if (l) {
		struct ns_node *n = l->node;
		struct fs_lun *lun = node_lun(n);
		fh_untrack(fs, l);
		fh_free(l);
		/* a partition change that waited for this file to be closed */
		if (lun && __atomic_load_n(&lun->reprobe_deferred, __ATOMIC_ACQUIRE) &&
		    ns_open_count(fs->ns, n) == 1) {
			__atomic_store_n(&lun->reprobe, true, __ATOMIC_RELEASE);
			rescan_request(__atomic_load_n(&fs->m->rescan, __ATOMIC_ACQUIRE), RESCAN_PROBE);
		}
		ns_release(fs->ns, n); /* may free the node: last */
	}
	fuse_reply_err(req, 0);
}

/* A write-back failure since this file's last flush/fsync is reported to it once,
 * whichever open file it came through (like the kernel's errseq for page cache
 * write-back errors), even if a retry has written the data meanwhile. */
static int report_errors(struct fs_lun *l, struct lun_fh *h, int r)
{
	uint64_t now = write_errors(l);
	uint64_t seen = __atomic_exchange_n(&h->errors_seen, now, __ATOMIC_ACQ_REL);
	return r == 0 && now != seen ? -EIO : r;
}

/* ---------- data ---------- */

/* A FUSE request handed to the cache: answered by its callback, or by on_interrupt
 * when FUSE INTERRUPT withdraws it while it waits. */
struct fs_req {
	fuse_req_t req;
	struct fs *fs;
	struct blkdev *dev;
	struct cache_ticket ticket;
	size_t size;                 /* write: the byte count to report */
	struct ns_node *node;           /* write: the file, for O_TRUNC bookkeeping */
	uint64_t off;                /* write: where, in the file */
	struct fs_lun *lun;          /* flush, fsync: per-file error reporting */
	struct lun_fh *fh;           /* write, flush, fsync */
	bool reprobe;                /* flush, fsync: re-probe if the partition table
	                                was written (issue 11) */
	struct meta_fh *meta;        /* write of .iscsifs/rescan: where its report goes */
	int ret;                     /* flush, fsync: the result, while the re-probe runs */
};

static void rescan_write(fuse_req_t req, struct fs *fs, struct meta_fh *h, size_t size);

static struct fs_req *fs_req_new(fuse_req_t req, struct blkdev *dev)
{
	struct fs_req *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->req = req;
	r->fs = fs_of(req);
	r->dev = dev;
	r->ticket = (struct cache_ticket)CACHE_TICKET_INIT;
	__atomic_add_fetch(&r->fs->outstanding, 1, __ATOMIC_ACQ_REL);
	return r;
}

static void fs_req_free(struct fs_req *r)
{
	struct fs *fs = r->fs;
	free(r);
	if (__atomic_sub_fetch(&fs->outstanding, 1, __ATOMIC_ACQ_REL) == 0) {
		pthread_mutex_lock(&fs->idle_lock);
		pthread_cond_broadcast(&fs->idle);
		pthread_mutex_unlock(&fs->idle_lock);
	}
}

/* Runs in a worker with the request's interrupt lock held (libfuse). Withdrawn
 * requests are answered here; otherwise the callback answers soon. */
static void on_interrupt(fuse_req_t req, void *data)
{
	struct fs_req *r = data;
	if (cache_cancel(r->dev, &r->ticket) == 0) {
		fuse_reply_err(req, EINTR);
		fs_req_free(r);
	}
}

/* The first thing every callback does: after it, on_interrupt is neither running nor
 * will it run for this request (libfuse takes the request's lock). */
static void detach_interrupt(struct fs_req *r)
{
	fuse_req_interrupt_func(r->req, NULL, NULL);
}

/* Where a LUN or partition file lies on its device. */
/* Where a LUN or partition file lies on its device: 0; `notlun` when n is no LUN file;
 * -ENODEV when its LUN left the namespace (a handle still open on a removed LUN gets
 * errors, never data - not even what the cache still holds of it). */
static int node_window(const struct ns_node *n, int notlun, struct blkdev **dev,
		       uint64_t *base, uint64_t *size)
{
	struct fs_lun *l = node_lun(n);
	if (!l)
		return notlun;
	if (lun_removed(l))
		return -ENODEV;
	*dev = l->cache;
	*base = n->off;
	*size = node_size(n);
	return 0;
}

/* A write to [off, off+len) of the LUN: if it touches bytes the last probe read (the
 * partition table, a superblock), the partition files may have to change: re-probe
 * at the next close or fsync of a file that wrote (issue 11). */
static void note_probed_write(struct fs *fs, struct fs_lun *l, uint64_t off, uint64_t len)
{
	if (__atomic_load_n(&l->pt_dirty, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&fs->probe_lock);
	bool hit = l->probe.nread == 0; /* unknown: any write may change it */
	for (int i = 0; i < l->probe.nread && !hit; i++)
		hit = l->probe.read[i].start < off + len && off < l->probe.read[i].end;
	pthread_mutex_unlock(&fs->probe_lock);
	if (hit)
		__atomic_store_n(&l->pt_dirty, true, __ATOMIC_RELEASE);
}

static void read_done(void *opaque, int ret, const struct cache_seg *seg, int nseg)
{
	struct fs_req *r = opaque;
	detach_interrupt(r);
	if (ret < 0) {
		fuse_reply_err(r->req, -ret);
	} else if (nseg == 1) {
		fuse_reply_buf(r->req, seg[0].data, seg[0].len);
	} else {
		/* Several pieces of the cache's blocks, no copy: libfuse 3.14 copies a
		 * multi-buffer fuse_bufvec into one buffer first, fuse_reply_iov does not. */
		struct iovec local[64], *iov = nseg <= 64 ? local : malloc(nseg * sizeof(*iov));
		if (!iov) {
			fuse_reply_err(r->req, ENOMEM);
		} else {
			for (int i = 0; i < nseg; i++)
				iov[i] = (struct iovec){ (void *)seg[i].data, seg[i].len };
			fuse_reply_iov(r->req, iov, nseg);
			if (iov != local)
				free(iov);
		}
	}
	fs_req_free(r);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct ns_node *n = node_get(fs, ino);
	struct blkdev *dev;
	uint64_t base, nsize;
	if (n->kind == NS_CTL) {
		/* A copy of the slice, replied from and freed here: the report may be
		 * replaced meanwhile, and the handle released as soon as the reply is
		 * delivered (sanitizers check a writev's buffer after it returned). */
		struct meta_fh *h = (struct meta_fh *)(uintptr_t)fi->fh;
		char *slice = NULL;
		size_t n_out = 0;
		pthread_mutex_lock(&h->lock);
		if (h->data && off >= 0 && (uint64_t)off < h->len) {
			n_out = MIN(size, h->len - (size_t)off);
			slice = malloc(n_out);
			if (slice)
				memcpy(slice, h->data + off, n_out);
		}
		pthread_mutex_unlock(&h->lock);
		if (n_out && !slice)
			fuse_reply_err(req, ENOMEM);
		else
			fuse_reply_buf(req, slice, n_out);
		free(slice);
		return;
	}
	int e = node_window(n, -EISDIR, &dev, &base, &nsize);
	if (e < 0) {
		fuse_reply_err(req, -e);
		return;
	}
	if (off < 0 || (uint64_t)off >= nsize || size == 0) {
		fuse_reply_buf(req, NULL, 0); /* at or past the end: EOF */
		return;
	}
	size = (size_t)MIN((uint64_t)size, nsize - (uint64_t)off);
	struct fs_req *r = fs_req_new(req, dev);
	if (!r) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fuse_req_interrupt_func(req, on_interrupt, r);
	cache_read(dev, base + (uint64_t)off, size, read_done, r, &r->ticket);
}

static void write_done(void *opaque, int ret)
{
	struct fs_req *r = opaque;
	detach_interrupt(r);
	if (ret == 0) /* before the reply: the writer's close() may follow at once */
		rewrite_note(r->node, r->fh, r->off, r->size);
	if (ret < 0)
		fuse_reply_err(r->req, -ret);
	else
		fuse_reply_write(r->req, r->size);
	fs_req_free(r);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *data, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct ns_node *n = node_get(fs, ino);
	struct blkdev *dev;
	uint64_t base, nsize;
	if (is_ctl(n, CTL_RESCAN)) {
		rescan_write(req, fs, (struct meta_fh *)(uintptr_t)fi->fh, size);
		return;
	}
	int e = node_window(n, -EACCES, &dev, &base, &nsize);
	if (e < 0) {
		fuse_reply_err(req, -e);
		return;
	}
	if (node_ro(fs, n)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (size == 0) {
		fuse_reply_write(req, 0);
		return;
	}
	if (off < 0 || (uint64_t)off >= nsize) {
		fuse_reply_err(req, ENOSPC); /* a LUN does not grow */
		return;
	}
	size = (size_t)MIN((uint64_t)size, nsize - (uint64_t)off); /* short write at the end */
	note_probed_write(fs, node_lun(n), base + (uint64_t)off, size);
	struct fs_req *r = fs_req_new(req, dev);
	if (!r) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	r->size = size;
	r->node = n;
	r->fh = (struct lun_fh *)(uintptr_t)fi->fh;
	r->off = (uint64_t)off;
	fuse_req_interrupt_func(req, on_interrupt, r);
	/* `data` is libfuse's buffer, valid until we return: the cache copies it. */
	cache_write(dev, base + (uint64_t)off, size, data, write_done, r, &r->ticket);
}

/* The re-probe a close or fsync waited for is done: answer it (rescan thread). */
static void flush_reprobed(void *opaque, int result, const char *report)
{
	struct fs_req *r = opaque;
	(void)result; /* a failed re-probe changes no file and is logged; the data is safe */
	(void)report;
	fuse_reply_err(r->req, -r->ret);
	fs_req_free(r);
}

static void flush_done(void *opaque, int ret)
{
	struct fs_req *r = opaque;
	detach_interrupt(r);
	ret = report_errors(r->lun, r->fh, ret);
	/* A write touched the partition table (or what else the probe read): re-probe
	 * before close/fsync returns, so `sgdisk lunN && ls` shows the new partition
	 * files. On the rescan thread: it may read, and tells the kernel. */
	if (r->reprobe && __atomic_exchange_n(&r->lun->pt_dirty, false, __ATOMIC_ACQ_REL)) {
		__atomic_store_n(&r->lun->reprobe, true, __ATOMIC_RELEASE);
		r->ret = ret;
		struct rescan *rs = __atomic_load_n(&r->fs->m->rescan, __ATOMIC_ACQUIRE);
		if (rs && rescan_run_async(rs, RESCAN_PROBE, flush_reprobed, r) == 0)
			return;
	}
	fuse_reply_err(r->req, -ret);
	fs_req_free(r);
}

static void start_flush(fuse_req_t req, struct ns_node *n, struct lun_fh *h, bool sync_target)
{
	struct fs_lun *l = node_lun(n);
	if (lun_removed(l)) {
		fuse_reply_err(req, ENODEV);
		return;
	}
	struct fs_req *r = fs_req_new(req, l->cache);
	if (!r) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	r->lun = l;
	r->fh = h;
	r->reprobe = sync_target || h->write; /* fsync, or the close of a file that wrote */
	fuse_req_interrupt_func(req, on_interrupt, r);
	cache_flush(l->cache, sync_target, flush_done, r, &r->ticket);
}

/* close(2): the file's dirty data reaches the target before close returns (the
 * close-to-open rule), so `dd ... && umount` never loses data. */
static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ns_node *n = node_get(fs_of(req), ino);
	struct lun_fh *h = (struct lun_fh *)(uintptr_t)fi->fh;
	if (n && node_lun(n) && h->write && lun_removed(node_lun(n))) {
		/* Its LUN is gone: nothing more can reach the target, so close reports
		 * only what it always reports - data this file wrote that is now known
		 * lost (the dirty data dropped with the LUN: EIO once) - and otherwise
		 * succeeds, as close(2) of a removed block device does. Its reads,
		 * writes and fsyncs already answered ENODEV. */
		fuse_reply_err(req, -report_errors(node_lun(n), h, 0));
	} else if (n && node_lun(n) && h->write) {
		int r = rewrite_close(n, h); /* first zero what an O_TRUNC writer skipped */
		if (r < 0)
			fuse_reply_err(req, -report_errors(node_lun(n), h, r));
		else
			start_flush(req, n, h, false);
	} else {
		fuse_reply_err(req, 0);
	}
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct ns_node *n = node_get(fs_of(req), ino);
	(void)datasync;
	if (n && node_lun(n))
		start_flush(req, n, (struct lun_fh *)(uintptr_t)fi->fh, true);
	else
		fuse_reply_err(req, 0);
}

static void zero_done(void *opaque, int ret)
{
	struct fs_req *r = opaque;
	detach_interrupt(r);
	fuse_reply_err(r->req, -ret);
	fs_req_free(r);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct ns_node *n = node_get(fs, ino);
	struct blkdev *dev;
	uint64_t base, nsize;
	(void)fi;
	int e = node_window(n, -EOPNOTSUPP, &dev, &base, &nsize);
	if (e < 0) {
		fuse_reply_err(req, -e);
		return;
	}
	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	if (node_ro(fs, n)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (off < 0 || len <= 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	uint64_t end = (uint64_t)off + (uint64_t)len;
	if (!(mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))) {
		/* preallocation: every block of a LUN exists already; it cannot grow */
		fuse_reply_err(req, end > nsize && !(mode & FALLOC_FL_KEEP_SIZE) ? EFBIG : 0);
		return;
	}
	if ((mode & FALLOC_FL_PUNCH_HOLE) && !dev->can_discard) {
		fuse_reply_err(req, EOPNOTSUPP); /* the LUN cannot deallocate (no UNMAP) */
		return;
	}
	if ((uint64_t)off >= nsize) {
		fuse_reply_err(req, 0);
		return;
	}
	end = MIN(end, nsize);
	note_probed_write(fs, node_lun(n), base + (uint64_t)off, end - (uint64_t)off);
	struct fs_req *r = fs_req_new(req, dev);
	if (!r) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fuse_req_interrupt_func(req, on_interrupt, r);
	cache_zero(dev, base + (uint64_t)off, end - (uint64_t)off, mode & FALLOC_FL_PUNCH_HOLE,
		   zero_done, r, &r->ticket);
}

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct ns_node *n = node_get(fs, ino);
	struct blkdev *dev;
	uint64_t base, nsize;
	(void)fi;
	int e = node_window(n, -EINVAL, &dev, &base, &nsize);
	if (e < 0 || (whence != SEEK_DATA && whence != SEEK_HOLE)) {
		fuse_reply_err(req, e < 0 ? -e : EINVAL);
		return;
	}
	if (off < 0 || (uint64_t)off >= nsize) {
		fuse_reply_err(req, ENXIO);
		return;
	}
	uint64_t pos = (uint64_t)off, bs = dev->block_size;
	/* the cache's lba_status ends a hole where data not yet written back begins */
	for (int i = 0; i < 100000 && pos < nsize; i++) {
		struct blkdev_extent ext;
		uint64_t abs = (base + pos) / bs * bs;
		int r = dev->ops->lba_status ? dev->ops->lba_status(dev, abs, &ext) : 0;
		if (!dev->ops->lba_status) {
			ext.mapped = true;
			ext.len = dev->size - abs;
		}
		if (r < 0) {
			fuse_reply_err(req, -r);
			return;
		}
		if (ext.mapped == (whence == SEEK_DATA)) {
			fuse_reply_lseek(req, (off_t)pos);
			return;
		}
		pos = abs + MAX(ext.len, bs) - base;
	}
	if (whence == SEEK_HOLE)
		fuse_reply_lseek(req, (off_t)nsize);
	else
		fuse_reply_err(req, ENXIO);
}

/* ---------- extended attributes ---------- */

struct xattr {
	char name[40];
	char value[300];
};

/* Whether two probes found the same partitions (numbers and windows). */
static bool same_parts(const struct probe_result *a, const struct probe_result *b)
{
	if (a->nparts != b->nparts)
		return false;
	for (int i = 0; i < a->nparts; i++)
		if (a->parts[i].number != b->parts[i].number || a->parts[i].start != b->parts[i].start ||
		    a->parts[i].size != b->parts[i].size)
			return false;
	return true;
}

/* getxattr of blkid values: re-probe when the LUN was written since the last probe, so
 * the values follow mkfs and wipefs. The probe runs without the lock (it reads); its
 * result is taken under it. A different partition table is left to the rescan
 * thread's re-probe (it changes files and tells the kernel): asked for here. */
static void reprobe_if_written(struct fs *fs, struct fs_lun *l)
{
	struct cache_stats cs;
	cache_get_stats(l->cache, &cs);
	pthread_mutex_lock(&fs->probe_lock);
	bool same = cs.write_ops == l->probe_writes;
	pthread_mutex_unlock(&fs->probe_lock);
	if (same)
		return;
	struct probe_result *pr = malloc(sizeof(*pr));
	if (pr && probe_blkdev(l->cache, true, pr) == 0) {
		bool parts_changed;
		pthread_mutex_lock(&fs->probe_lock);
		/* partitions stay as the namespace has them; contents and the whole-LUN type
		 * refresh */
		parts_changed = !same_parts(&l->probe, pr);
		l->probe.content = pr->content;
		snprintf(l->probe.pttype, sizeof(l->probe.pttype), "%s", pr->pttype);
		for (int i = 0; i < l->probe.nparts; i++)
			for (int j = 0; j < pr->nparts; j++)
				if (pr->parts[j].start == l->probe.parts[i].start)
					l->probe.parts[i].content = pr->parts[j].content;
		memcpy(l->probe.read, pr->read, sizeof(pr->read));
		l->probe.nread = pr->nread;
		l->probe_writes = cs.write_ops;
		pthread_mutex_unlock(&fs->probe_lock);
		if (parts_changed) {
			__atomic_store_n(&l->reprobe, true, __ATOMIC_RELEASE);
			rescan_request(__atomic_load_n(&fs->m->rescan, __ATOMIC_ACQUIRE), RESCAN_PROBE);
		}
	}
	free(pr);
}

/* The partition of l numbered `number` in its last probe; NULL when it has none (the
 * namespace keeps a file whose partition changed while it was open). Under
 * probe_lock. */
static const struct probe_part *part_of(const struct fs_lun *l, int number)
{
	for (int i = 0; i < l->probe.nparts; i++)
		if (l->probe.parts[i].number == number)
			return &l->probe.parts[i];
	return NULL;
}

static int xattrs_of(struct fs *fs, struct ns_node *n, struct xattr *x, int max, bool blkid)
{
	int k = 0;
	struct fs_lun *l = node_lun(n);
	if (!l)
		return 0;
#define ADD(nm, ...)                                                             \
	do {                                                                     \
		if (k < max) {                                                   \
			snprintf(x[k].name, sizeof(x[k].name), "%s", nm);        \
			snprintf(x[k].value, sizeof(x[k].value), __VA_ARGS__);  \
			if (x[k].value[0])                                       \
				k++;                                             \
		}                                                                \
	} while (0)
	ADD("user.iscsi.target", "%s", l->target->name);
	ADD("user.iscsi.portal", "%s", l->target->portal);
	ADD("user.iscsi.lun", "%s", LUNSTR(l->info.lun));
	ADD("user.iscsi.wwn", "%s", l->info.wwn);
	ADD("user.iscsi.serial", "%s", l->info.serial);
	ADD("user.iscsi.vendor", "%s", l->info.vendor);
	ADD("user.iscsi.product", "%s", l->info.product);
	ADD("user.iscsi.block_size", "%u", l->info.block_size);
	if (!blkid)
		return k;
	if (!lun_removed(l))
		reprobe_if_written(fs, l);
	pthread_mutex_lock(&fs->probe_lock);
	const struct probe_part *p = n->kind == NS_PART ? part_of(l, n->part) : NULL;
	static const struct probe_content none;
	const struct probe_content *c = n->kind == NS_PART ? (p && p->start == n->off ? &p->content
										   : &none)
							   : &l->probe.content;
	ADD("user.blkid.type", "%s", c->type);
	ADD("user.blkid.label", "%s", c->label);
	ADD("user.blkid.uuid", "%s", c->uuid);
	if (n->kind == NS_LUN) {
		ADD("user.blkid.pttype", "%s", l->probe.pttype);
	} else {
		ADD("user.blkid.part_number", "%d", n->part);
		ADD("user.blkid.part_offset", "%" PRIu64, n->off);
	}
	pthread_mutex_unlock(&fs->probe_lock);
#undef ADD
	return k;
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fs *fs = fs_of(req);
	struct xattr x[20];
	/* The kernel asks for security.capability before a write (once per file with
	 * HANDLE_KILLPRIV_V2, which fuseext.c asks for): answer at once. */
	if (strncmp(name, "user.iscsi.", 11) && strncmp(name, "user.blkid.", 11)) {
		log_debug("getxattr %s of inode %lu", name, (unsigned long)ino);
		fuse_reply_err(req, ENODATA);
		return;
	}
	int k = xattrs_of(fs, node_get(fs, ino), x, 20, name[5] == 'b');
	for (int i = 0; i < k; i++) {
		if (strcmp(x[i].name, name))
			continue;
		size_t len = strlen(x[i].value);
		if (size == 0)
			fuse_reply_xattr(req, len);
		else if (size < len)
			fuse_reply_err(req, ERANGE);
		else
			fuse_reply_buf(req, x[i].value, len);
		return;
	}
	fuse_reply_err(req, ENODATA);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct fs *fs = fs_of(req);
	struct xattr x[20];
	char buf[20 * 40];
	size_t len = 0;
	int k = xattrs_of(fs, node_get(fs, ino), x, 20, true);
	for (int i = 0; i < k; i++) {
		size_t nl = strlen(x[i].name) + 1;
		memcpy(buf + len, x[i].name, nl);
		len += nl;
	}
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, buf, len);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	(void)ino;
	(void)name;
	(void)value;
	(void)size;
	(void)flags;
	fuse_reply_err(req, ENOTSUP);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	(void)ino;
	(void)name;
	fuse_reply_err(req, ENOTSUP);
}

/* The namespace is fixed: creating, removing or renaming anything is refused with
 * EPERM (clearer than the ENOSYS an unimplemented op gives). */
static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     dev_t rdev)
{
	(void)parent, (void)name, (void)mode, (void)rdev;
	fuse_reply_err(req, EPERM);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	(void)parent, (void)name, (void)mode;
	fuse_reply_err(req, EPERM);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent, (void)name;
	fuse_reply_err(req, EPERM);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	(void)parent, (void)name, (void)newparent, (void)newname, (void)flags;
	fuse_reply_err(req, EPERM);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	(void)link, (void)parent, (void)name;
	fuse_reply_err(req, EPERM);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino, (void)newparent, (void)newname;
	fuse_reply_err(req, EPERM);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	(void)parent, (void)name, (void)mode, (void)fi;
	fuse_reply_err(req, EPERM);
}

/* The kernel may keep this many background requests (read-ahead, asynchronous direct
 * I/O) in flight: the cache and the sessions take many at once, so the default of 12
 * would be the bottleneck of an application with a deep queue. */
#define FS_MAX_BACKGROUND 256

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* Large requests: fewer round trips for sequential I/O. */
	conn->max_write = 1u << 20;
	conn->max_readahead = MIN(conn->max_readahead, 1u << 20);
	conn->max_background = FS_MAX_BACKGROUND;
	conn->congestion_threshold = FS_MAX_BACKGROUND * 3 / 4;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	if (conn->capable & FUSE_CAP_ASYNC_DIO)
		conn->want |= FUSE_CAP_ASYNC_DIO;
#ifdef FUSE_CAP_HANDLE_KILLPRIV_V2
	if (conn->capable & FUSE_CAP_HANDLE_KILLPRIV_V2)
		conn->want |= FUSE_CAP_HANDLE_KILLPRIV_V2; /* else fuseext.c asks for it */
#endif
	conn->want |= conn->capable & FUSE_CAP_ATOMIC_O_TRUNC; /* O_TRUNC: see op_open */
}

static const struct fuse_lowlevel_ops fs_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.statfs = op_statfs,
	.open = op_open,
	.release = op_release,
	.flush = op_flush,
	.fsync = op_fsync,
	.read = op_read,
	.write = op_write,
	.fallocate = op_fallocate,
	.lseek = op_lseek,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.setxattr = op_setxattr,
	.removexattr = op_removexattr,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_unlink,
	.rename = op_rename,
	.symlink = op_symlink,
	.link = op_link,
	.create = op_create,
};

/* ---------- the live namespace (issue 11) ----------
 *
 * Nodes are added and removed on the rescan thread (and by build() before serving);
 * FUSE handlers find them through ns.h. Every change is told to the kernel right
 * after it is made, with no lock of ours held: fuse_lowlevel_notify_inval_entry for a
 * name that went (the kernel then looks it up again and gets ENOENT or the new file),
 * fuse_lowlevel_notify_inval_inode for a size that changed (attributes, and the
 * cached pages past the new end) and for a file that went (its cached pages, so a
 * handle still open reads nothing from the page cache either). A name that appears
 * needs nothing: lookups of unknown names are answered ENOENT uncached.
 */

static void notify_entry(void *opaque, uint64_t parent, const char *name)
{
	struct fs *fs = opaque;
	if (fs->se)
		fuse_lowlevel_notify_inval_entry(fs->se, parent, name, strlen(name));
}

static void notify_inode(struct fs *fs, uint64_t ino, off_t off, off_t len)
{
	if (fs->se)
		fuse_lowlevel_notify_inval_inode(fs->se, ino, off, len);
}

static void lun_get(struct fs_lun *l)
{
	__atomic_add_fetch(&l->refs, 1, __ATOMIC_ACQ_REL);
}

void fs_lun_put(struct fs_model *m, struct fs_lun *l)
{
	if (__atomic_sub_fetch(&l->refs, 1, __ATOMIC_ACQ_REL) == 0)
		rescan_request(__atomic_load_n(&m->rescan, __ATOMIC_ACQUIRE), RESCAN_REAP);
}

static void node_obj_free(void *obj, void *opaque)
{
	fs_lun_put(opaque, obj); /* every obj in the table is a LUN's */
}

static void report_line(char *report, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void report_line(char *report, size_t len, const char *fmt, ...)
{
	size_t k = report ? strlen(report) : 0;
	va_list ap;
	if (!report || k + 1 >= len)
		return;
	va_start(ap, fmt);
	vsnprintf(report + k, len - k, fmt, ap);
	va_end(ap);
}

/* A path for reports and logs: "lun1" or "iqn...:disk/lun1". */
static void path_of(struct fs *fs, const struct fs_lun *l, const char *name, char *buf,
		    size_t len)
{
	if (fs->m->target_dirs)
		snprintf(buf, len, "%s/%s", l->target->name, name);
	else
		snprintf(buf, len, "%s", name);
}

static struct ns_node *add_part_node(struct fs *fs, struct fs_lun *l, const struct probe_part *p)
{
	char name[64];
	snprintf(name, sizeof(name), "%s-part%d", l->name, p->number);
	struct ns_node *pn = ns_add(fs->ns, l->target->dir_ino, name, NS_PART, l, p->start,
				    p->size, p->number);
	if (pn) {
		lun_get(l);
		l->part_nodes[l->nparts_nodes++] = pn;
	}
	return pn;
}

int fs_live_add_lun(struct fs *fs, struct fs_lun *l, char *report, size_t len)
{
	char path[CONFIG_NAME_MAX + 64];
	if (!l->target->dir_ino)
		return -ENOENT;
	struct ns_node *n = ns_add(fs->ns, l->target->dir_ino, l->name, NS_LUN, l, 0,
				   l->cache->size, 0);
	if (!n)
		return -errno;
	lun_get(l);
	l->node = n;
	l->nparts_nodes = 0;
	path_of(fs, l, l->name, path, sizeof(path));
	report_line(report, len, "%s: added, %" PRIu64 " bytes\n", path, l->cache->size);
	pthread_mutex_lock(&fs->probe_lock);
	struct cache_stats cs;
	cache_get_stats(l->cache, &cs);
	l->probe_writes = cs.write_ops;
	for (int i = 0; i < l->probe.nparts; i++) {
		const struct probe_part *p = &l->probe.parts[i];
		if (add_part_node(fs, l, p)) {
			char name[64];
			snprintf(name, sizeof(name), "%s-part%d", l->name, p->number);
			path_of(fs, l, name, path, sizeof(path));
			report_line(report, len, "%s: added, %" PRIu64 " bytes\n", path, p->size);
		}
	}
	pthread_mutex_unlock(&fs->probe_lock);
	return 0;
}

static void unlink_node(struct fs *fs, struct ns_node *n)
{
	uint64_t ino = n->ino;
	/* ns_unlink may free n (nothing else holds it): nothing of it is used after */
	if (ns_unlink(fs->ns, n, notify_entry, fs) > 0)
		notify_inode(fs, ino, 0, 0);
}

void fs_live_remove_lun(struct fs *fs, struct fs_lun *l)
{
	struct ns_node *parts[PROBE_MAX_PARTS];
	int nparts = l->nparts_nodes;
	memcpy(parts, l->part_nodes, sizeof(parts[0]) * (size_t)nparts);
	struct ns_node *n = l->node;
	l->node = NULL;
	l->nparts_nodes = 0;
	for (int i = 0; i < nparts; i++)
		unlink_node(fs, parts[i]);
	if (n)
		unlink_node(fs, n);
}

void fs_live_resize_lun(struct fs *fs, struct fs_lun *l, uint64_t old_size, uint64_t size)
{
	if (!l->node)
		return;
	ns_set_size(l->node, size);
	/* attributes, and the pages past the smaller end */
	notify_inode(fs, l->node->ino, (off_t)MIN(old_size, size), 0);
	/* partition files end at the LUN's end too (node_size), until the re-probe */
	uint64_t ino[PROBE_MAX_PARTS], from[PROBE_MAX_PARTS];
	int n = 0;
	uint64_t lo = MIN(old_size, size);
	pthread_mutex_lock(&fs->probe_lock);
	for (int i = 0; i < l->nparts_nodes; i++) {
		struct ns_node *pn = l->part_nodes[i];
		if (pn->off + ns_get_size(pn) > lo) {
			ino[n] = pn->ino;
			from[n++] = lo > pn->off ? lo - pn->off : 0;
		}
	}
	pthread_mutex_unlock(&fs->probe_lock);
	for (int i = 0; i < n; i++)
		notify_inode(fs, ino[i], (off_t)from[i], 0);
}

int fs_live_add_target(struct fs *fs, struct fs_target *t)
{
	if (!fs->m->target_dirs) {
		t->dir_ino = FUSE_ROOT_ID;
		return 0;
	}
	struct ns_node *d = ns_add(fs->ns, FUSE_ROOT_ID, t->name, NS_DIR, NULL, 0, 0, 0);
	if (!d)
		return -errno;
	t->dir_ino = d->ino;
	return 0;
}

int fs_live_reprobe(struct fs *fs, struct fs_lun *l, char *report, size_t len)
{
	char path[CONFIG_NAME_MAX + 64];
	struct probe_result *pr = malloc(sizeof(*pr));
	struct cache_stats cs;
	int changes = 0, r;
	bool deferred = false;
	if (!pr)
		return -ENOMEM;
	__atomic_store_n(&l->reprobe, false, __ATOMIC_RELEASE);
	cache_get_stats(l->cache, &cs);
	r = probe_blkdev(l->cache, true, pr);
	if (r < 0) {
		log_warn("%s %s: could not read the partition table again (%s); the partition "
			 "files stay as they are", l->target->name, l->name, strerror(-r));
		free(pr);
		return r;
	}
	__atomic_fetch_add(&fs->m->live.reprobes, 1, __ATOMIC_RELAXED);
	/* the files there are, against the partitions found: kept, resized, or gone (not
	 * while open: then at its last close, op_release asks again) */
	int keep = 0;
	for (int i = 0; i < l->nparts_nodes; i++) {
		struct ns_node *pn = l->part_nodes[i];
		const struct probe_part *p = NULL;
		for (int j = 0; j < pr->nparts && !p; j++)
			if (pr->parts[j].number == pn->part)
				p = &pr->parts[j];
		bool same_start = p && p->start == pn->off;
		uint64_t old = ns_get_size(pn);
		path_of(fs, l, pn->name, path, sizeof(path));
		if (same_start && p->size == old) {
			l->part_nodes[keep++] = pn;
			continue;
		}
		if (ns_open_count(fs->ns, pn) > 0) {
			deferred = true; /* its window stays what its opener opened */
			l->part_nodes[keep++] = pn;
			log_info("%s %s: the partition changed while open; the file follows at its "
				 "last close", l->target->name, pn->name);
			continue;
		}
		if (same_start) {
			ns_set_size(pn, p->size);
			notify_inode(fs, pn->ino, (off_t)MIN(old, p->size), 0);
			l->part_nodes[keep++] = pn;
			report_line(report, len, "%s: size %" PRIu64 " -> %" PRIu64 " bytes\n", path,
				    old, p->size);
			__atomic_fetch_add(&fs->m->live.parts_resized, 1, __ATOMIC_RELAXED);
		} else {
			unlink_node(fs, pn);
			report_line(report, len, "%s: removed\n", path);
			__atomic_fetch_add(&fs->m->live.parts_removed, 1, __ATOMIC_RELAXED);
		}
		changes++;
	}
	l->nparts_nodes = keep;
	pthread_mutex_lock(&fs->probe_lock);
	/* new partitions (and a moved one's new window): a file each, when the name is
	 * free (a file held open with the old window keeps it until closed) */
	for (int j = 0; j < pr->nparts; j++) {
		bool have = false;
		for (int i = 0; i < l->nparts_nodes && !have; i++)
			have = l->part_nodes[i]->part == pr->parts[j].number;
		if (have || l->nparts_nodes >= PROBE_MAX_PARTS)
			continue;
		if (add_part_node(fs, l, &pr->parts[j])) {
			char name[64];
			snprintf(name, sizeof(name), "%s-part%d", l->name, pr->parts[j].number);
			path_of(fs, l, name, path, sizeof(path));
			report_line(report, len, "%s: added, %" PRIu64 " bytes\n", path,
				    pr->parts[j].size);
			__atomic_fetch_add(&fs->m->live.parts_added, 1, __ATOMIC_RELAXED);
			changes++;
		}
	}
	int nparts = pr->nparts;
	l->probe = *pr;
	__atomic_store_n(&l->probe.nparts, nparts, __ATOMIC_RELEASE);
	l->probe_writes = cs.write_ops;
	pthread_mutex_unlock(&fs->probe_lock);
	__atomic_store_n(&l->reprobe_deferred, deferred, __ATOMIC_RELEASE);
	if (changes)
		log_notice("%s %s: partition table re-probed: %d partition file%s changed "
			   "(%s, %d partition%s)", l->target->name, l->name, changes,
			   changes == 1 ? "" : "s", pr->pttype[0] ? pr->pttype : "no table", nparts,
			   nparts == 1 ? "" : "s");
	else
		log_debug("%s %s: re-probed: the partition files stay", l->target->name, l->name);
	free(pr);
	return changes;
}

/* .iscsifs/rescan: a write asks for a rescan and is answered when it is done; a read of
 * the same handle then gives its report (rescancmd.c). */
static void rescan_written(void *opaque, int result, const char *report)
{
	struct fs_req *r = opaque;
	char *copy = strdup(result < 0 || report[0] ? report : "no change\n");
	if (copy) {
		pthread_mutex_lock(&r->meta->lock);
		char *old = r->meta->data;
		r->meta->data = copy;
		r->meta->len = strlen(copy);
		pthread_mutex_unlock(&r->meta->lock);
		free(old);
	}
	if (result < 0)
		fuse_reply_err(r->req, -result);
	else
		fuse_reply_write(r->req, r->size);
	fs_req_free(r);
}

static void rescan_write(fuse_req_t req, struct fs *fs, struct meta_fh *h, size_t size)
{
	struct rescan *rs = __atomic_load_n(&fs->m->rescan, __ATOMIC_ACQUIRE);
	struct fs_req *r = rs ? fs_req_new(req, NULL) : NULL;
	if (!r) {
		fuse_reply_err(req, rs ? ENOMEM : EAGAIN);
		return;
	}
	r->meta = h;
	r->size = size;
	if (rescan_run_async(rs, RESCAN_USER, rescan_written, r) < 0) {
		fuse_reply_err(req, ENOMEM);
		fs_req_free(r);
	}
}

/* ---------- building and running ---------- */

static int build(struct fs *fs)
{
	struct fs_model *m = fs->m;
	fs->ns = ns_create(node_obj_free, m);
	if (!fs->ns)
		return -ENOMEM;
	for (int t = 0; t < m->ntargets; t++)
		if (fs_live_add_target(fs, m->targets[t]) < 0)
			return -ENOMEM;
	for (int i = 0; i < m->nluns; i++)
		if (fs_live_add_lun(fs, m->luns[i], NULL, 0) < 0)
			return -ENOMEM;
	struct ns_node *meta = ns_add(fs->ns, FUSE_ROOT_ID, ".iscsifs", NS_DIR, NULL, 0, 0, 0);
	if (!meta || !ns_add(fs->ns, meta->ino, "stats.json", NS_CTL, NULL, 0, 0, CTL_STATS) ||
	    !ns_add(fs->ns, meta->ino, "metrics", NS_CTL, NULL, 0, 0, CTL_METRICS) ||
	    !ns_add(fs->ns, meta->ino, "rescan", NS_CTL, NULL, 0, 0, CTL_RESCAN))
		return -ENOMEM;
	fs->meta_ino = meta->ino;
	return 0;
}

/* SIGHUP: a daemon's "reload" - here, rescan (libfuse would end the daemon). */
static void on_sighup(int sig)
{
	(void)sig;
	rescan_request_from_signal(RESCAN_SIGNAL);
}

int fs_run(struct fs_model *m, int ready_fd)
{
	const struct config *cfg = m->cfg;
	struct fs fs = { .m = m, .mount_time = time(NULL) };
	struct rescan_ops rescan_ops = { .run = m->rescan_run };
	char opts[2048];
	int ret = -EIO;

	pthread_mutex_init(&fs.probe_lock, NULL);
	pthread_mutex_init(&fs.idle_lock, NULL);
	util_cond_init(&fs.idle);
	pthread_mutex_init(&fs.fh_lock, NULL);
	fs.fhs.prev = fs.fhs.next = &fs.fhs;
	if (build(&fs) < 0) {
		log_err("out of memory");
		goto out_free;
	}
	/* fsname shows in /proc/mounts and df: the URL (never a secret: refused earlier) */
	snprintf(opts, sizeof(opts),
		 "fsname=%s,subtype=iscsifs,default_permissions%s%s%s%s%s",
		 cfg->url_text, cfg->allow_other ? ",allow_other" : "",
		 cfg->read_only ? ",ro" : "",
		 ",auto_unmount", /* a crashed daemon never leaves a wedged mountpoint */
		 cfg->fuse_opts[0] ? "," : "", cfg->fuse_opts);
	char *argv[] = { "iscsifs", "-o", opts, NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, argv);
	struct fuse_session *se = fuse_session_new(&args, &fs_ops, sizeof(fs_ops), &fs);
	fuse_opt_free_args(&args);
	if (!se) {
		log_err("cannot create the FUSE session (options: %s)", opts);
		goto out_free;
	}
	if (fuse_set_signal_handlers(se) != 0) {
		log_err("cannot install signal handlers");
		goto out_session;
	}
	struct sigaction hup = { .sa_handler = on_sighup, .sa_flags = SA_RESTART };
	sigemptyset(&hup.sa_mask);
	sigaction(SIGHUP, &hup, NULL); /* after libfuse's, which would end the daemon */
	if (fuse_session_mount(se, cfg->mountpoint) != 0) {
		log_err("cannot mount %s: see the message above (is /dev/fuse there, is "
			"fusermount3 installed, is the mountpoint already in use?)",
			cfg->mountpoint);
		goto out_signals;
	}
	/* FUSE_DIRECT_IO_ALLOW_MMAP (shared mmap with cache=none) and
	 * FUSE_HANDLE_KILLPRIV_V2 (no getxattr per buffered write): INIT flags libfuse
	 * 3.14 cannot ask for */
	fuseext_install(se);
	log_info("mounted %s on %s (%d LUN%s)", cfg->url_text, cfg->mountpoint, m->nluns,
		 m->nluns == 1 ? "" : "s");
	daemon_ready(m, ready_fd);   /* parent exits, READY=1 to systemd (daemon.c) */
	/* The live namespace: the rescan thread serves while the mount does (rescan.h
	 * says who asks it). A first pass makes the files follow any capacity change
	 * the LUNs saw while the mount was being built. */
	fs.se = se;
	__atomic_store_n(&m->fs, &fs, __ATOMIC_RELEASE);
	if (m->rescan_run) {
		struct rescan *rs = rescan_start(&rescan_ops, m->rescan_opaque,
						 (unsigned)cfg->rescan_interval);
		if (!rs)
			log_err("cannot start the rescan thread (%m): the namespace stays as "
				"mounted");
		__atomic_store_n(&m->rescan, rs, __ATOMIC_RELEASE);
		rescan_request(rs, RESCAN_CAPACITY);
	}
	struct fuse_loop_config *lc = fuse_loop_cfg_create();
	fuse_loop_cfg_set_max_threads(lc, FS_MAX_THREADS);
	ret = fuse_session_loop_mt(se, lc);
	fuse_loop_cfg_destroy(lc);
	ret = ret < 0 ? ret : 0;
	/* First the rescan thread: a rescan running finishes, requests waiting for one
	 * (rescan writes, closes waiting for a re-probe) are answered. */
	__atomic_store_n(&m->stopping, true, __ATOMIC_RELEASE);
	struct rescan *rs = __atomic_exchange_n(&m->rescan, NULL, __ATOMIC_ACQ_REL);
	rescan_stop(rs);
	/* Unmounted (or a signal): requests still waiting in a cache will not be answered
	 * by anything else (the kernel is gone, a dead target may never answer); complete
	 * them, and wait for the few whose I/O is in flight (each bounded by the session's
	 * budget) before the session their replies go to is destroyed. */
	pthread_mutex_lock(&m->lock);
	for (int i = 0; i < m->nluns; i++)
		cache_cancel_all(m->luns[i]->cache);
	for (struct fs_lun *l = m->gone; l; l = l->gone_next)
		cache_cancel_all(l->cache);
	pthread_mutex_unlock(&m->lock);
	pthread_mutex_lock(&fs.idle_lock);
	for (uint64_t t0 = util_now_ms(); __atomic_load_n(&fs.outstanding, __ATOMIC_ACQUIRE) > 0;) {
		struct timespec dl = util_deadline_ms(10000);
		if (pthread_cond_timedwait(&fs.idle, &fs.idle_lock, &dl) == ETIMEDOUT)
			log_notice("unmount: still waiting for %d request%s in flight to the target "
				   "(for %" PRIu64 " s)", __atomic_load_n(&fs.outstanding, __ATOMIC_ACQUIRE),
				   __atomic_load_n(&fs.outstanding, __ATOMIC_ACQUIRE) == 1 ? "" : "s",
				   (util_now_ms() - t0) / 1000);
	}
	pthread_mutex_unlock(&fs.idle_lock);
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	__atomic_store_n(&m->fs, NULL, __ATOMIC_RELEASE);
	fs.se = NULL;
	fuse_session_destroy(se);
out_free:
	while (fs.fhs.next != &fs.fhs) { /* files the kernel never released */
		struct fh_link *l = fs.fhs.next;
		fh_untrack(&fs, l);
		fh_free(l);
	}
	ns_destroy(fs.ns); /* drops the nodes' references of the LUNs; mount.c frees them */
	pthread_mutex_destroy(&fs.probe_lock);
	pthread_mutex_destroy(&fs.idle_lock);
	pthread_cond_destroy(&fs.idle);
	pthread_mutex_destroy(&fs.fh_lock);
	return ret;
}
