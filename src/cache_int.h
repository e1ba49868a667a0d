/*
 * cache_int.h - what the files of the cache share. Private: only src/cache*.c include it.
 *
 *   cache.c            the public face: create, destroy, the blkdev method table, the
 *                      byte-range entry points, stop, size changes, stats
 *   cache_io.c         requests (read, write, zero, flush) as state machines: parking,
 *                      waking, cancelling, completing
 *   cache_blk.c        the block table: hash, per-sector states, dirty list, pins,
 *                      invalidation, and cache_check() (the invariant checker)
 *   cache_policy.c     replacement: S3-FIFO over every block of a pool, ghosts, eviction
 *   cache_pool.c       the pool: memory budget, block memory, bounce buffers, the
 *                      write-back threads, requests waiting for a block or the dirty
 *                      bound, the deferred-work runner
 *   cache_fetch.c      READs into the cache (fetches) and the overlap guard
 *   cache_readahead.c  sequential streams and read-ahead
 *   cache_writeback.c  write-back: coalescing, completion, retries, the stop rule
 *
 * LOCK RULE
 *   c->lock  one per cache. Protects the cache's block table (hash, the sector bitmaps,
 *            pins, the dirty list), its in-flight lists, its parked requests, its
 *            counters, and the bytes of its blocks, with two exceptions: a pinned read's
 *            callback reads valid sectors without it (the pin keeps the block; see the
 *            contract of cache_read for concurrent writes), and a fetch fills sectors
 *            marked `fetching` without it (nothing else touches those bytes: readers
 *            and writers wait until the sector is no longer fetching).
 *   p->lock  one per pool. Protects the replacement queues (qprev, qnext, queue of every
 *            resident block), the free list, the ghosts, the list of caches, the
 *            requests parked on the pool (waiting for a block or for the dirty bound),
 *            and the pool's counters.
 *   Order: c->lock, then p->lock. A thread that holds p->lock takes another cache's
 *   lock only with trylock (eviction takes a block from whichever cache owns it).
 *   Never two cache locks otherwise.
 *   No lock is held across a call into `inner` or into a caller's callback: what is
 *   found to do under the lock is put in a struct defer and done by cache_unlock().
 *   Atomics, read without a lock for decisions: b->freq, p->nunclean, p->dirty_bytes,
 *   p->unclean_caches, p->nspace_waiters, p->ndirty_waiters, p->bounce_bytes, c->refs.
 *
 * LIFETIME
 *   A cache is freed when its last reference goes: one held by its creator (dropped by
 *   destroy), one by every request in the cache, and one by every I/O to inner in
 *   flight. A completion drops its reference last, after everything else it does
 *   (issue 9 #3). The pool outlives its caches: cache_pool_destroy waits for them.
 */
#ifndef ISCSIFS_CACHE_INT_H
#define ISCSIFS_CACHE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "iscsifs-config.h"
#include "iscsifs/cache.h"
#include "iscsifs/util.h"

/* Fields used with __atomic builtins (the list in the lock rule below) are declared to
 * helgrind, which does not model atomics and would report them as races. */
#if HAVE_VALGRIND_HELGRIND_H
#include <valgrind/helgrind.h>
#define ATOMIC_FIELD(x) VALGRIND_HG_DISABLE_CHECKING(&(x), sizeof(x))
#define HAPPENS_BEFORE(x) ANNOTATE_HAPPENS_BEFORE(x)   /* a reference count drop ... */
#define HAPPENS_AFTER(x) ANNOTATE_HAPPENS_AFTER(x)     /* ... orders the free after it */
#else
#define ATOMIC_FIELD(x) ((void)0)
#define HAPPENS_BEFORE(x) ((void)0)
#define HAPPENS_AFTER(x) ((void)0)
#endif

struct cache;
struct cache_pool;
struct cache_io;

enum { Q_NONE = 0, Q_SMALL, Q_MAIN };

/* A cache block: `cb` bytes of one device at an aligned offset, with one bit per
 * logical block ("sector") in three bitmaps:
 *   valid     the sector's bytes in memory are the device's current content (or newer)
 *   dirty     newer than the device; must be written back
 *   fetching  a READ that fills the sector is in flight (the sector is not valid) */
struct cblk {
	/* identity: set while the block belongs to a cache, constant meanwhile */
	struct cache *owner;          /* NULL on the pool's free list */
	uint64_t idx;                 /* cache block number (offset / cb) */
	uint8_t *data;

	/* protected by owner->lock */
	struct cblk *hnext;           /* hash chain */
	struct cblk *dprev, *dnext;   /* dirty list, ordered by dirty_seq */
	uint64_t *valid, *dirty, *fetching;
	uint32_t nsect;               /* sectors in this block (the last may be short) */
	uint32_t ndirty;
	uint32_t touch_end;           /* sector after the last access: sequential detection */
	uint32_t pins;                /* holders outside the lock: requests, fetches, write-back */
	bool writing;                 /* a write-back of this block is in flight */
	bool unclean;                 /* counted in nunclean: ndirty || writing */
	bool in_dirty_list;
	uint64_t dirty_seq;           /* flush sequence number when it became dirty */
	uint64_t wb_seq;              /* dirty_seq of the data in the write-back in flight */
	uint64_t wb_ms;               /* and its dirty_ms, restored if the write fails */
	uint64_t dirty_ms;            /* when it became dirty */
	uint64_t retry_ms;            /* earliest next write-back attempt after a failure */
	int fails;                    /* consecutive failed write-backs */
	int fails_at_stop;            /* `fails` when cache_stop began */
	bool reported;                /* its dirty data's failed write-back was reported
	                                 (wb_error_gen); cleared when new data is dirtied */

	/* protected by the pool lock */
	struct cblk *qprev, *qnext;   /* replacement queue, or free list (qnext) */
	uint8_t queue;                /* Q_* */
	/* written under both the pool lock and owner->lock, so readable under either */
	bool offq;                    /* taken off the queues while unclean (policy.c) */

	/* atomic: a replacement hint, bumped on re-reference without any lock */
	uint8_t freq;                 /* 0..3 */
};

struct qlist {
	struct cblk *head, *tail;
	uint64_t len;
};

/* A request in flight to inner that others must not overlap:
 *   IF_WB     write-back WRITE: no other write may overlap it
 *   IF_WT     write-through / cache=none WRITE (with its read of partial edges), IF_ZERO
 *             discard / write_zeroes: nothing may overlap them, not even a fetch (it
 *             could return the data from before them, and would then be cached)
 *   IF_FETCH  READ into the cache: write-through and zeroing wait for it */
enum { IF_WB = 1, IF_WT = 2, IF_ZERO = 4, IF_FETCH = 8 };

struct inflight {
	uint64_t off, len;
	uint64_t seq;                 /* lowest dirty_seq it carries (write-back), else 0 */
	int kind;                     /* IF_* */
	struct inflight *prev, *next;
};

/* A READ into the cache. Direct (buf == NULL): one run of sectors of one block, read
 * straight into the block's memory. Bounced: a run over several blocks (read-ahead),
 * read into a bounce buffer and copied into the blocks at completion. Either way every
 * sector it fills is marked fetching and every block it covers pinned until it
 * completes. */
struct fetch {
	struct cache *c;
	uint64_t off, len;
	uint8_t *buf;                 /* bounce buffer, or NULL */
	uint8_t *dst;                 /* where inner writes: buf, or the block's memory */
	bool readahead;
	bool rmw;                     /* for a partial-sector write */
	struct inflight fl;           /* IF_FETCH entry while in flight */
	struct fetch *dnext;          /* defer list, or the cache's deferred list */
};

/* A write-back WRITE of one run of dirty sectors over adjacent blocks. */
struct wb {
	struct cache *c;
	struct inflight f;
	uint8_t *buf;                 /* snapshot of the data */
	uint64_t first_idx, nblk;
	struct wb *dnext;             /* defer list */
};

/* Work found under a lock, done after it is released (cache_unlock, defer_run). The
 * runner is a per-thread trampoline: work deferred while the thread is already running
 * deferred work joins the outer runner's lists, so completions that arrive inline (a
 * synchronous inner device) never recurse without bound. Every item holds a reference
 * on what it touches (a cache reference for fetches, write-backs and requests; a pool
 * reference for pool-wide wake-ups), so items may run after the code that queued them
 * has dropped its own references. */
#define DEFER_POOLS 4
struct defer {
	struct fetch *fetch_head, *fetch_tail;        /* READs to submit */
	struct wb *wb_head, *wb_tail;                 /* write-backs to submit */
	struct cache_io *sub_head, *sub_tail;         /* requests whose inner op to submit */
	struct cache_io *done_head, *done_tail;       /* requests to complete */
	struct cache_pool *pools[DEFER_POOLS];        /* pool-wide work, a reference each */
	unsigned pool_work[DEFER_POOLS];              /* DEFER_RECLAIM | DEFER_KICK */
	int wake_space[DEFER_POOLS], wake_dirty[DEFER_POOLS];   /* how many to wake */
	int npools;
};
#define DEFER_INIT { 0 }
enum { DEFER_RECLAIM = 2, DEFER_KICK = 4 };
#define WAKE_ALL (1 << 30)

/* Requests parked on the pool, oldest first. */
struct waitq {
	struct cache_io *head, *tail;
	int n;
};

/* ---------- the pool ---------- */

struct ghost {
	uint64_t idx;                 /* UINT64_MAX = unused */
	uint32_t cache_id;
	struct ghost *hnext;
};

struct slab {
	uint8_t *mem;
	size_t len;
	struct slab *next;
};

struct cache_pool {
	struct cache_pool_config cfg; /* immutable after create (dirty_max resolved) */
	uint64_t cb;                  /* cache block bytes */
	uint32_t words;               /* bitmap words per block (room for 512-byte sectors) */
	uint64_t nblocks_max;         /* the budget in blocks */
	uint64_t small_target;        /* S3-FIFO: blocks the small queue may hold */

	pthread_mutex_t lock;
	pthread_cond_t cond;          /* write-back threads sleep here; destroy waits here */

	/* protected by lock */
	uint64_t nblocks;             /* block memory allocated (resident + free) */
	struct slab *slabs;           /* block memory, mapped POOL_SLAB at a time */
	uint8_t *slab_next;           /* the next block of the newest slab */
	uint64_t slab_left;           /* blocks left in it */
	struct cblk *free_list;
	uint64_t nfree;
	struct qlist small, main;
	struct ghost *ghosts, **ghash;
	uint64_t nghosts, ghost_pos, ghash_mask;
	struct cache *caches;         /* every cache of the pool (c->pnext) */
	int ncaches;
	uint32_t next_id;
	struct waitq space_waiters;   /* parked: need a block */
	struct waitq dirty_waiters;   /* parked: the dirty bound */
	uint64_t kick;                /* bumped to wake the write-back threads */
	bool stopping;                /* destroy: threads exit */
	void *bounce_free[16];        /* free bounce buffers of POOL_BOUNCE_UNIT bytes */
	int nbounce_free;
	uint64_t evictions, space_waits, dirty_waits;

	/* atomic */
	uint64_t nunclean;            /* blocks holding dirty data or in write-back */
	uint64_t dirty_bytes;
	uint64_t bounce_bytes;        /* bounce buffers handed out */
	int unclean_caches;           /* caches with nunclean > 0 */
	int nspace_waiters, ndirty_waiters;

	int kick_pending;             /* a kick is on its way to the write-back threads */
	int refs;                     /* protected by lock: creator + caches + defer items */
	bool destroying;              /* protected by lock: cache_pool_destroy waits for refs */
	bool auto_free;               /* protected by lock: freed by the last reference (a
	                                 private pool, released by its cache) */
	struct cache *unclean;        /* protected by lock: caches with nunclean > 0 (c->unext) */

	pthread_t *threads;
	int nthreads;
};

/* ---------- the cache ---------- */

struct stream {
	uint64_t next_off;            /* where the next sequential read would start */
	uint64_t ra_end;              /* read-ahead issued up to here */
	uint64_t window;              /* current read-ahead size */
	uint64_t last_use;
	uint32_t hits;
};
#define NSTREAMS 8

struct cache {
	struct blkdev dev;            /* what we export; dev.priv == this */
	struct blkdev *inner;
	struct cache_pool *pool;
	bool own_pool;                /* created for this cache (cc.pool was NULL) */
	struct cache_config cc;       /* immutable after create */
	char name[256];
	uint32_t bs;                  /* sector size = inner->block_size */
	uint32_t spb;                 /* sectors per cache block */
	uint64_t cb;                  /* cache block bytes (the pool's) */
	uint32_t id;                  /* unique in the pool (ghost key) */
	int refs;                     /* atomic; see LIFETIME */

	pthread_mutex_t lock;
	pthread_cond_t cond;          /* cache_stop waits here */

	/* everything below: protected by lock */
	struct cblk **hash;
	uint64_t hash_mask;
	uint64_t nused;               /* resident blocks */
	struct cblk *dirty_head, *dirty_tail;
	struct inflight *writes;      /* IF_WB, IF_WT, IF_ZERO in flight */
	struct inflight *fetches;     /* IF_FETCH in flight */
	struct fetch *deferred;       /* fetches held back by an overlapping IF_WT/IF_ZERO */
	struct cache_io *parked;      /* requests waiting on an event of this cache */
	uint64_t seq;                 /* last dirty sequence number handed out */
	uint64_t flush_seq;           /* write-back must write everything <= this */
	int wb_error;                 /* sticky -errno of a failed write-back, for flush */
	uint64_t wb_error_gen;        /* bumped on every write-back failure */
	bool failing;                 /* write_retries exceeded on some block */
	uint64_t nunclean;            /* blocks with dirty data or a write-back in flight;
	                                 written under lock with __atomic stores, so the pool
	                                 may read it (fair shares) */
	uint64_t inflight_wb_bytes;
	uint32_t inflight_wb_ops;
	bool stop;                    /* cache_stop began: write back everything */
	bool given_up;                /* stopping: the rest of the dirty data is lost */
	uint64_t stop_deadline;       /* util_now_ms() after which stop stops retrying */
	bool closing;                 /* cache_cancel_all: no request waits any more */
	bool dropped_all;             /* cache_drop_all: the device is gone; its losses were
	                                 logged there, in-flight write-back included */
	struct stream streams[NSTREAMS];
	uint64_t stream_clock;
	struct cache_stats st;

	/* protected by the pool lock */
	struct cache *pnext, *pprev;  /* p->caches */
	struct cache *unext, *uprev;  /* p->unclean */
	bool in_unclean;
};

/* ---------- requests ---------- */

enum io_kind { IO_READ, IO_WRITE, IO_ZERO, IO_FLUSH };
enum { PPARK_NONE = 0, PPARK_SPACE, PPARK_DIRTY, PPARK_WOKEN };

/* One request in the cache (cache_io.c has the state machines). */
struct cache_io {
	struct cache *c;              /* holds a reference */
	enum io_kind kind;
	int state;                    /* the kind's step */
	uint64_t off, len;            /* what was asked for */
	uint64_t pos, end;            /* the part being worked on */
	int ret;                      /* first error of its inner ops */
	int err;                      /* a fetch it waited for failed (after `narrow`) */
	bool narrow;                  /* after a failed wider fetch: only what is needed */
	bool cancelled;               /* complete with -EINTR at the next step */
	struct cache_ticket *ticket;
	cache_read_cb rcb;
	blkdev_cb cb;
	void *opaque;

	/* IO_READ */
	uint8_t *buf;                 /* copy mode: where the bytes go */
	bool own_buf;                 /* buf is ours (byte-range read in copy mode) */
	bool copy;                    /* copy mode, else the answer is the pinned blocks */
	bool sequential;              /* part of a sequential stream: fetch whole blocks */
	struct cblk **pin;            /* blocks pinned for the current part */
	uint32_t npin, pincap;
	struct cblk *pin_inline[16];
	bool counted;                 /* hits/misses of the current part counted */

	/* IO_WRITE, and the edges of IO_ZERO */
	const uint8_t *src;           /* the caller's bytes (valid during the first step) */
	uint8_t *own_src;             /* our copy, once parked */
	bool zero_src;                /* write zeroes */

	/* write-through / none writes, zeroing, flush: I/O to inner of the request */
	struct inflight guard;        /* its IF_WT / IF_ZERO entry while registered */
	uint8_t *bounce;              /* write-through / none: the aligned data */
	uint64_t a0, a1;              /* aligned range of the write */
	unsigned ops;                 /* OP_* to submit */
	int pending;                  /* its inner ops in flight: not withdrawable */
	bool sync_target, discard;
	bool orphaned;                /* withdrawn while its inner op was in flight */
	int zstate;                   /* IO_ZERO: phase */
	bool zedge;                   /* IO_ZERO: an edge is being written */
	bool flush_asked;             /* IO_ZERO: write-back of the range was asked for */
	uint64_t target_seq, gen;

	/* parking */
	bool cpark;                   /* in c->parked: protected by c->lock */
	uint64_t woff, wlen;          /* the range of events it waits for */
	int ppark;                    /* PPARK_*: protected by the pool lock */
	struct cache_io *pprev, *pnext;   /* c->parked or a pool list */
	struct cache_io *snext, *dnext;   /* defer lists */
};

static inline struct cache *to_cache(struct blkdev *dev)
{
	return dev->priv;
}

/* ---------- cache.c ---------- */
void cache_get(struct cache *c);
bool cache_tryget(struct cache *c);  /* under the pool lock; false: being freed */
void cache_put(struct cache *c);     /* frees at the last reference */
void cache_lock(struct cache *c);
void cache_unlock(struct cache *c, struct defer *d);   /* runs d after unlocking */
uint64_t cache_max_io(const struct cache *c);

/* ---------- cache_pool.c ---------- */
void defer_run(struct defer *d);
void defer_fetch(struct defer *d, struct fetch *f);
void defer_wb(struct defer *d, struct wb *w);
void defer_io_submit(struct defer *d, struct cache_io *io);   /* the request's inner op */
void defer_io_done(struct defer *d, struct cache_io *io);     /* callback, then release */
/* step up to `nspace` / `ndirty` requests parked on p (WAKE_ALL: every one) */
void defer_wake_pool(struct defer *d, struct cache_pool *p, int nspace, int ndirty);
void defer_reclaim(struct defer *d, struct cache_pool *p);    /* evict with blocking locks */
void defer_kick(struct defer *d, struct cache_pool *p);       /* wake write-back threads */
void *pool_bounce_get(struct cache_pool *p, uint64_t len, bool must);   /* NULL: over cap */
void pool_bounce_put(struct cache_pool *p, void *buf, uint64_t len);
/* c locked: a block on the replacement queue, owned by c (not yet in its hash). */
struct cblk *pool_alloc_block(struct cache *c, uint64_t idx, bool *busy);
void pool_release_block(struct cache *c, struct cblk *b);     /* c locked: to the free list */
/* c locked: park io until a block may be had; returns a block when one could be had
 * after all (io not parked). */
struct cblk *pool_park_space(struct cache *c, struct cache_io *io, uint64_t idx,
			     struct defer *d);
/* c locked: park io for the dirty bound; false when it no longer applies (not parked). */
bool pool_park_dirty(struct cache *c, struct cache_io *io, struct defer *d);
bool pool_unpark(struct cache_pool *p, struct cache_io *io);  /* c locked: true if it was */
struct cache_io *pool_take_parked_of(struct cache_pool *p, struct cache *c);   /* c locked */
bool pool_dirty_over(const struct cache_pool *p, const struct cache *c, bool adding);
bool pool_background_due(const struct cache_pool *p);
bool pool_has_waiters(const struct cache_pool *p);
void pool_kick(struct cache_pool *p);
void pool_add_cache(struct cache_pool *p, struct cache *c);
void pool_remove_cache(struct cache_pool *p, struct cache *c);
void pool_unclean_add(struct cache_pool *p, struct cache *c, int delta);   /* c locked */
void pool_list_for_stop(struct cache_pool *p, struct cache *c);           /* c locked */
void pool_release_private(struct cache_pool *p);
void *pool_flusher_main(void *arg);

/* ---------- cache_policy.c (callers hold the pool lock) ---------- */
void policy_insert(struct cache_pool *p, struct cblk *b, uint32_t cache_id);
void policy_remove(struct cache_pool *p, struct cblk *b);
struct cblk *policy_evict(struct cache_pool *p, struct cache *self, bool *busy);
void policy_touch(struct cblk *b);   /* no lock: a re-reference */
void policy_clean(struct cache_pool *p, struct cblk *b);   /* + owner->lock */
int policy_init(struct cache_pool *p);
void policy_free(struct cache_pool *p);

/* ---------- cache_blk.c (callers hold c->lock) ---------- */
int blk_hash_init(struct cache *c);
struct cblk *blk_lookup(struct cache *c, uint64_t idx);
struct cblk *blk_alloc(struct cache *c, uint64_t idx, bool *busy, struct defer *d);
struct cblk *blk_adopt(struct cache *c, struct cblk *b, uint64_t idx);
void blk_detach(struct cache *c, struct cblk *b);   /* off the hash, counted as evicted */
void blk_release_all(struct cache *c);
uint32_t blk_nsect(const struct cache *c, uint64_t idx);
bool blk_evictable(const struct cblk *b);
void blk_pin(struct cblk *b);
void blk_unpin(struct cache *c, struct cblk *b, struct defer *d);
void blk_mark_dirty(struct cache *c, struct cblk *b, uint32_t s, uint32_t e);
void blk_recount(struct cache *c, struct cblk *b);
void blk_dirty_link(struct cache *c, struct cblk *b);
void blk_dirty_unlink(struct cache *c, struct cblk *b);
void blk_touch(struct cache *c, struct cblk *b, uint32_t s, uint32_t e);
/* Returns the dirty bytes dropped; *unreported (may be NULL) += those of blocks whose
 * dirty data no failed write-back has reported yet. */
uint64_t blk_invalidate(struct cache *c, uint64_t off, uint64_t len, uint64_t *unreported);
uint64_t blk_drop_past_end(struct cache *c, struct cblk *b); /* dirty bytes dropped */
bool blk_range_unwritten(struct cache *c, uint64_t off, uint64_t len);
void cache_dirty_add(struct cache *c, int64_t bytes);
bool cache_check_enabled(void);
int cache_check_locked(struct cache *c, bool print);

/* ---------- cache_fetch.c (callers hold c->lock) ---------- */
bool guard_overlaps(struct cache *c, uint64_t off, uint64_t len, int kinds);
void guard_add(struct cache *c, struct inflight *f, uint64_t off, uint64_t len, int kind);
void guard_del(struct cache *c, struct inflight *f, struct defer *d);
/* Mark sectors [s, e) of b fetching and plan one READ of them straight into b. */
int fetch_block_run(struct cache *c, struct cblk *b, uint32_t s, uint32_t e, bool rmw,
		    bool readahead, struct defer *d);
/* Plan one bounced READ of [off, off+len) over fresh blocks blks[0..nblk). -ENOMEM:
 * no bounce memory (nothing marked). */
int fetch_run_bounced(struct cache *c, struct cblk **blks, size_t nblk, uint64_t off,
		      uint64_t len, struct defer *d);
void fetch_submit(struct fetch *f);   /* no lock held */

/* ---------- cache_readahead.c (callers hold c->lock) ---------- */
bool ra_update(struct cache *c, uint64_t off, uint64_t len, uint64_t *ra_from,
	       uint64_t *ra_to);
void ra_issue(struct cache *c, uint64_t from, uint64_t to, struct defer *d);

/* ---------- cache_writeback.c ---------- */
uint64_t wb_flusher_step(struct cache *c, uint64_t now, struct defer *d);   /* c locked */
void wb_submit(struct wb *w);            /* no lock held */
uint64_t wb_oldest_unwritten(struct cache *c);          /* c locked */
void wb_stop_begin(struct cache *c, struct defer *d);   /* c locked */
void wb_pump(struct cache *c, struct defer *d);         /* c locked */
bool wb_stop_done(struct cache *c);                     /* c locked */
void wb_abandon(struct cache *c, struct defer *d);      /* c locked: cache_abandon */
/* c locked: `bytes` of dirty data past the device's end were dropped: count them lost,
 * wake what waits, and when `report` (no failed write-back reported them yet) report
 * them (EIO) to the next flush; logged by the caller. */
void wb_lost(struct cache *c, uint64_t bytes, bool report, struct defer *d);
void wb_recheck_failing(struct cache *c, struct defer *d); /* c locked */

/* ---------- cache_io.c ---------- */
struct cache_io *io_new(struct cache *c, enum io_kind kind, uint64_t off, uint64_t len,
			struct cache_ticket *t);
void io_start(struct cache_io *io, struct defer *d);    /* c locked */
void io_run_submit(struct cache_io *io);   /* no lock held: the request's inner ops */
void io_run_done(struct cache_io *io);     /* no lock held: callback, release */
void io_step_parked(struct cache_io *io, struct defer *d);   /* c locked, io unparked */
void io_wake_range(struct cache *c, uint64_t off, uint64_t len, int err, struct defer *d);
int io_cancel(struct cache *c, struct cache_ticket *t, struct defer *d,
	      struct cache_io **withdrawn);               /* c locked */
void io_release_withdrawn(struct cache_io *io);        /* no lock held */
void io_cancel_all(struct cache *c, struct defer *d);  /* c locked */
struct cache *io_cache(const struct cache_io *io);
uint32_t cache_max_pin(const struct cache *c);

#endif
