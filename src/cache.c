/*
 * cache.c - the block cache between the FUSE namespace and a LUN.
 *
 * A cache block ("cblk") holds `cache_block` bytes of the device at an aligned offset,
 * with three bitmaps over its logical blocks ("sectors"):
 *
 *   valid     the sector's bytes in memory are the device's current content (or newer)
 *   dirty     newer than the device; must be written back
 *   fetching  a READ into a bounce buffer is in flight for this sector
 *
 * Invariants (checked by cache_check() in debug builds):
 *   - dirty implies valid; fetching implies !valid at issue time (a write may make it
 *     valid meanwhile: the fetch then leaves that sector alone).
 *   - block memory is read and written only under `lock`; I/O to `inner` uses bounce
 *     buffers, so the lock is never held across I/O and a completion never overwrites
 *     a sector that was written after the READ was issued.
 *   - no two WRITEs (write-back, write-through, write_zeroes, discard) to `inner` that
 *     overlap are ever in flight together: every one is registered in `inflight` and
 *     none is issued over another (libiscsi re-sends in-flight commands after a
 *     reconnect, so an old write could otherwise land after a newer one).
 *   - a block with pins, dirty sectors or a write-back in flight is never evicted.
 *   - dirty_bytes = bytes of dirty sectors + bytes of write-backs in flight (reported);
 *     nunclean = blocks with dirty sectors or a write-back in flight. Writers wait while
 *     nunclean * cache_block would exceed dirty_max: the bound is on the memory that
 *     cannot be evicted, so scattered 4 KiB writes cannot fill the cache with blocks
 *     that each hold a little dirty data.
 *   - allocated blocks <= cache_size / cache_block: the byte budget is never exceeded.
 *
 * Eviction is S3-FIFO (Yang et al., SOSP'23): new blocks enter a small FIFO (10% of the
 * budget); a block re-referenced while there moves to the main FIFO, one that is not is
 * evicted and remembered in a ghost FIFO, and a ghost hit enters main directly. Main is
 * a FIFO with 2-bit frequency counters and reinsertion (CLOCK-like). We chose it over
 * LRU because one sequential pass over a LUN larger than the cache - a backup, a dd, a
 * mkfs - only cycles through the small queue and leaves the hot working set in main
 * alone, and over 2Q/ARC because it needs no list moves on a hit (a hit is a counter
 * bump), which matters with several FUSE threads hitting the same lock. A sequential
 * run of reads inside one block counts as a single reference, so reading a 64 KiB block
 * in 4 KiB steps does not promote it.
 *
 * Write-back (default): write() copies into the cache and completes. A flusher thread
 * writes dirty data older than dirty_expire, or more when dirty bytes pass half the
 * bound, or everything up to a flush's sequence number; adjacent dirty blocks are
 * coalesced into one WRITE of up to max_write bytes. A failed write-back re-marks its
 * sectors dirty (they keep their age), is retried with backoff, and is reported (EIO) to
 * the next flush; after write_retries consecutive failures writers that would have to
 * wait for space get EIO instead of waiting forever.
 *
 * Thread model: callers (FUSE worker threads) run read/write/flush in their own thread
 * and may sleep on `cond`; completions of `inner` arrive on whatever thread `inner`
 * uses (the session event loop) and only take `lock` briefly; one flusher thread per
 * cache, created in cache_create and joined in destroy.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsifs/cache.h"
#include "iscsifs/log.h"
#include "iscsifs/util.h"

enum { Q_NONE = 0, Q_SMALL, Q_MAIN };

struct cblk {
	uint64_t idx;                 /* cache block number (offset / cache_block) */
	struct cblk *hnext;           /* hash chain */
	struct cblk *qprev, *qnext;   /* S3-FIFO queue, or free list (qnext) */
	struct cblk *dprev, *dnext;   /* dirty list, ordered by dirty_seq */
	uint8_t *data;
	uint64_t *valid, *dirty, *fetching;
	uint32_t nsect;               /* sectors in this block (the last may be short) */
	uint32_t ndirty;
	uint32_t touch_end;           /* sector after the last access: sequential detection */
	uint32_t pins;                /* holders outside the lock: waiters, fetches, write-back */
	uint8_t queue;                /* Q_* */
	uint8_t freq;                 /* 0..3 */
	bool writing;                 /* a write-back of this block is in flight */
	bool unclean;                 /* counted in nunclean: ndirty || writing */
	bool in_dirty_list;
	uint64_t dirty_seq;           /* flush sequence number when it became dirty */
	uint64_t wb_seq;              /* dirty_seq of the data in the write-back in flight */
	uint64_t wb_ms;               /* and its dirty_ms, restored if the write fails */
	uint64_t dirty_ms;            /* when it became dirty */
	uint64_t retry_ms;            /* earliest next write-back attempt after a failure */
	int fails;                    /* consecutive failed write-backs */
};

struct qlist {
	struct cblk *head, *tail;
	uint64_t len;
};

/* A WRITE-like request in flight to inner; also the overlap guard. */
/* A request in flight to inner that others must not overlap:
 *   IF_WB     write-back WRITE: no other write may overlap it
 *   IF_WT     write-through WRITE, IF_ZERO discard/write_zeroes: nothing may overlap them,
 *             not even a READ (it could return the data from before them, and would
 *             then be cached as valid)
 *   IF_FETCH  READ into a bounce buffer: write-through and zeroing wait for it */
enum { IF_WB = 1, IF_WT = 2, IF_ZERO = 4, IF_FETCH = 8 };

struct inflight {
	uint64_t off, len;
	uint64_t seq;                 /* lowest dirty_seq it carries (write-back) */
	int kind;                     /* IF_* */
	struct inflight *next;
};

struct ghost {
	uint64_t idx;                 /* UINT64_MAX = unused */
	struct ghost *hnext;
};

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
	struct cache_config cc;       /* immutable after create */
	char name[256];
	uint32_t bs;                  /* sector size */
	uint32_t words;               /* bitmap words per block */
	uint64_t nblocks_max;         /* budget in blocks */
	uint64_t small_target;

	pthread_mutex_t lock;
	pthread_cond_t cond;          /* any state change: fetch/write done, space, dirty */
	pthread_cond_t flusher_cond;  /* work for the flusher */

	/* everything below: protected by lock */
	struct cblk **hash;
	uint64_t hash_mask;
	struct qlist small, main;
	struct cblk *free_list;
	uint64_t nblocks;             /* allocated (in use + free list) */
	uint64_t nused;
	struct ghost *ghosts, **ghash;
	uint64_t nghosts, ghost_pos, ghash_mask;
	struct cblk *dirty_head, *dirty_tail;
	struct inflight *inflight;
	uint64_t inflight_wb_bytes;
	uint32_t inflight_wb_ops;
	uint64_t seq;                 /* last dirty sequence number handed out */
	uint64_t flush_seq;           /* flusher must write everything <= this */
	int wb_error;                 /* sticky -errno of a failed write-back, for flush */
	uint64_t wb_error_gen;        /* bumped on every write-back failure */
	bool failing;                 /* write_retries exceeded on some block */
	int space_waiters;            /* threads waiting for a block to become evictable */
	bool flusher_busy;            /* the flusher is scanning: no need to signal it */
	uint64_t nunclean;            /* blocks with dirty data or a write-back in flight */
	uint32_t inflight_fetches;    /* READs to inner not completed (read-ahead too) */
	bool stop;
	struct stream streams[NSTREAMS];
	uint64_t stream_clock;
	struct cache_stats st;

	pthread_t flusher;
	bool flusher_started;

	/* Bounce buffers of max_io bytes, kept for reuse: a fresh mmap'ed megabyte per
	 * I/O costs page faults and zeroing. protected by pool_lock */
	pthread_mutex_t pool_lock;
	void *pool[16];
	int npool;
};

static uint64_t max_io(struct cache *c);

static void *bounce_get(struct cache *c, uint64_t len)
{
	if (len == max_io(c)) {
		pthread_mutex_lock(&c->pool_lock);
		void *b = c->npool ? c->pool[--c->npool] : NULL;
		pthread_mutex_unlock(&c->pool_lock);
		if (b)
			return b;
	}
	return malloc(len);
}

static void bounce_put(struct cache *c, void *buf, uint64_t len)
{
	if (buf && len == max_io(c)) {
		pthread_mutex_lock(&c->pool_lock);
		if (c->npool < (int)ARRAY_SIZE(c->pool)) {
			c->pool[c->npool++] = buf;
			buf = NULL;
		}
		pthread_mutex_unlock(&c->pool_lock);
	}
	free(buf);
}

static struct cache *to_cache(struct blkdev *dev)
{
	return dev->priv;
}

/* ---------- queues, hash, ghosts ---------- */

static void q_push(struct qlist *q, struct cblk *b)
{
	b->qnext = NULL;
	b->qprev = q->tail;
	if (q->tail)
		q->tail->qnext = b;
	else
		q->head = b;
	q->tail = b;
	q->len++;
}

static void q_remove(struct qlist *q, struct cblk *b)
{
	if (b->qprev)
		b->qprev->qnext = b->qnext;
	else
		q->head = b->qnext;
	if (b->qnext)
		b->qnext->qprev = b->qprev;
	else
		q->tail = b->qprev;
	b->qprev = b->qnext = NULL;
	q->len--;
}

static struct qlist *q_of(struct cache *c, struct cblk *b)
{
	return b->queue == Q_SMALL ? &c->small : &c->main;
}

static uint64_t hash_idx(uint64_t idx)
{
	idx ^= idx >> 33;
	idx *= 0xff51afd7ed558ccdULL;
	idx ^= idx >> 33;
	return idx;
}

static struct cblk *lookup(struct cache *c, uint64_t idx)
{
	struct cblk *b = c->hash[hash_idx(idx) & c->hash_mask];
	while (b && b->idx != idx)
		b = b->hnext;
	return b;
}

static void hash_insert(struct cache *c, struct cblk *b)
{
	struct cblk **slot = &c->hash[hash_idx(b->idx) & c->hash_mask];
	b->hnext = *slot;
	*slot = b;
}

static void hash_remove(struct cache *c, struct cblk *b)
{
	struct cblk **p = &c->hash[hash_idx(b->idx) & c->hash_mask];
	while (*p != b)
		p = &(*p)->hnext;
	*p = b->hnext;
}

static struct ghost **ghost_slot(struct cache *c, uint64_t idx)
{
	return &c->ghash[hash_idx(idx) & c->ghash_mask];
}

static bool ghost_take(struct cache *c, uint64_t idx)
{
	for (struct ghost **p = ghost_slot(c, idx); *p; p = &(*p)->hnext) {
		if ((*p)->idx == idx) {
			struct ghost *g = *p;
			*p = g->hnext;
			g->idx = UINT64_MAX;
			return true;
		}
	}
	return false;
}

static void ghost_add(struct cache *c, uint64_t idx)
{
	struct ghost *g = &c->ghosts[c->ghost_pos];
	c->ghost_pos = (c->ghost_pos + 1) % c->nghosts;
	if (g->idx != UINT64_MAX)
		ghost_take(c, g->idx);
	g->idx = idx;
	struct ghost **slot = ghost_slot(c, idx);
	g->hnext = *slot;
	*slot = g;
}

/* ---------- dirty list ---------- */

static void dirty_unlink(struct cache *c, struct cblk *b)
{
	if (!b->in_dirty_list)
		return;
	if (b->dprev)
		b->dprev->dnext = b->dnext;
	else
		c->dirty_head = b->dnext;
	if (b->dnext)
		b->dnext->dprev = b->dprev;
	else
		c->dirty_tail = b->dprev;
	b->dprev = b->dnext = NULL;
	b->in_dirty_list = false;
}

/* Insert keeping the list ordered by dirty_seq (new dirt goes at the tail in O(1);
 * a failed write-back goes back to its place). */
static void dirty_link(struct cache *c, struct cblk *b)
{
	struct cblk *after = c->dirty_tail;
	while (after && after->dirty_seq > b->dirty_seq)
		after = after->dprev;
	b->dprev = after;
	b->dnext = after ? after->dnext : c->dirty_head;
	if (b->dprev)
		b->dprev->dnext = b;
	else
		c->dirty_head = b;
	if (b->dnext)
		b->dnext->dprev = b;
	else
		c->dirty_tail = b;
	b->in_dirty_list = true;
}

/* Keep nunclean in step after a change of b->ndirty or b->writing. */
static void recount(struct cache *c, struct cblk *b)
{
	bool now = b->ndirty || b->writing;
	if (now != b->unclean) {
		b->unclean = now;
		if (now)
			c->nunclean++;
		else
			c->nunclean--;
	}
}

static uint64_t unclean_bytes(const struct cache *c)
{
	return c->nunclean * c->cc.cache_block;
}

/* Background write-back, before anything expires: when half the dirty bound is dirty
 * data, or when the blocks pinned by dirty data near the bound writers wait at. Small
 * scattered writes that fit are left to dirty_expire, so rewrites of the same blocks
 * cost no I/O at all. */
static bool background_due(const struct cache *c)
{
	return c->st.dirty_bytes > c->cc.dirty_max / 2 ||
	       unclean_bytes(c) > c->cc.dirty_max / 4 * 3;
}

/* Mark sectors [s, e) of b valid+dirty. */
static void mark_dirty(struct cache *c, struct cblk *b, uint32_t s, uint32_t e)
{
	uint32_t added = 0;
	for (uint32_t i = s; i < e; i++) {
		bit_set(b->valid, i);
		if (!bit_test(b->dirty, i)) {
			bit_set(b->dirty, i);
			added++;
		}
	}
	if (!added)
		return;
	if (b->ndirty == 0 && !b->in_dirty_list) {
		b->dirty_seq = ++c->seq;
		b->dirty_ms = util_now_ms();
		dirty_link(c, b);
	}
	b->ndirty += added;
	c->st.dirty_bytes += (uint64_t)added * c->bs;
	recount(c, b);
}

/* ---------- allocation and eviction ---------- */

static bool evictable(const struct cblk *b)
{
	return b->pins == 0 && b->ndirty == 0 && !b->writing;
}

static void release_block(struct cache *c, struct cblk *b)
{
	q_remove(q_of(c, b), b);
	b->queue = Q_NONE;
	hash_remove(c, b);
	c->nused--;
	c->st.cached_bytes -= (uint64_t)b->nsect * c->bs;
	c->st.evictions++;
	b->qnext = c->free_list;
	c->free_list = b;
}

/* Try to evict from one queue: rotate past blocks that cannot go (pinned, dirty, in
 * write-back), promote re-referenced small-queue blocks to main, age main-queue blocks.
 * Bounded: a main block's frequency (at most 3) drops by one per lap. */
static bool evict_from(struct cache *c, bool from_small)
{
	struct qlist *q = from_small ? &c->small : &c->main;
	for (uint64_t tries = 4 * q->len + 1; tries > 0 && q->head; tries--) {
		struct cblk *b = q->head;
		q_remove(q, b);
		if (!evictable(b)) {
			q_push(q, b);
			continue;
		}
		if (from_small) {
			if (b->freq > 0) {
				b->freq = 0;
				b->queue = Q_MAIN;
				q_push(&c->main, b);
				continue;
			}
			ghost_add(c, b->idx);
		} else if (b->freq > 0) {
			b->freq--;
			q_push(q, b);
			continue;
		}
		q_push(q, b); /* release_block takes it off its queue */
		release_block(c, b);
		return true;
	}
	return false;
}

/* One S3-FIFO eviction: from small while it is over its share, else from main; the
 * other queue when the first has nothing that can go. */
static bool evict_one(struct cache *c)
{
	bool small_first = c->small.len >= c->small_target || !c->main.len;
	return evict_from(c, small_first) || evict_from(c, !small_first);
}

static struct cblk *new_block_mem(struct cache *c)
{
	size_t bm = (size_t)c->words * sizeof(uint64_t);
	struct cblk *b = calloc(1, sizeof(*b) + 3 * bm);
	if (!b)
		return NULL;
	b->data = malloc(c->cc.cache_block);
	if (!b->data) {
		free(b);
		return NULL;
	}
	b->valid = (uint64_t *)(b + 1);
	b->dirty = b->valid + c->words;
	b->fetching = b->dirty + c->words;
	return b;
}

/* A fresh block for idx, or NULL when the budget is full of unevictable blocks (or
 * memory ran out). Caller holds the lock. */
static struct cblk *alloc_block(struct cache *c, uint64_t idx)
{
	struct cblk *b = c->free_list;
	if (b) {
		c->free_list = b->qnext;
	} else if (c->nblocks < c->nblocks_max && (b = new_block_mem(c))) {
		c->nblocks++;
	} else if (evict_one(c)) {
		b = c->free_list;
		c->free_list = b->qnext;
	} else {
		return NULL;
	}
	uint8_t *data = b->data;
	uint64_t *valid = b->valid;
	memset(b, 0, sizeof(*b));
	b->data = data;
	b->valid = valid;
	b->dirty = valid + c->words;
	b->fetching = b->dirty + c->words;
	memset(b->valid, 0, 3 * (size_t)c->words * sizeof(uint64_t));
	b->idx = idx;
	uint64_t start = idx * c->cc.cache_block;
	uint64_t bytes = MIN(c->cc.cache_block, c->dev.size - start);
	b->nsect = (uint32_t)(bytes / c->bs);
	b->touch_end = UINT32_MAX;
	hash_insert(c, b);
	if (ghost_take(c, idx)) {
		b->queue = Q_MAIN;
		q_push(&c->main, b);
	} else {
		b->queue = Q_SMALL;
		q_push(&c->small, b);
	}
	c->nused++;
	c->st.cached_bytes += (uint64_t)b->nsect * c->bs;
	return b;
}

static void touch(struct cblk *b, uint32_t s, uint32_t e)
{
	/* The access that brought the block in, and reads continuing where the previous
	 * one ended, are not re-references. */
	if (b->touch_end != UINT32_MAX && s != b->touch_end && b->freq < 3)
		b->freq++;
	b->touch_end = e;
}

/* ---------- overlap guard ---------- */

/* Does [off, off+len) overlap an in-flight request of one of the `kinds`? */
static bool overlaps_inflight(struct cache *c, uint64_t off, uint64_t len, int kinds)
{
	for (struct inflight *f = c->inflight; f; f = f->next)
		if ((f->kind & kinds) && off < f->off + f->len && f->off < off + len)
			return true;
	return false;
}

static void inflight_add(struct cache *c, struct inflight *f)
{
	f->next = c->inflight;
	c->inflight = f;
}

static void inflight_del(struct cache *c, struct inflight *f)
{
	struct inflight **p = &c->inflight;
	while (*p != f)
		p = &(*p)->next;
	*p = f->next;
}

/* ---------- fetch (READ into a bounce buffer) ---------- */

struct fetch {
	struct cache *c;
	uint64_t off, len;
	uint8_t *buf;
	int ret;
	struct inflight fl;           /* IF_FETCH entry while in flight */
	int refs;                     /* issuer (if it waits) + completion */
};

static void fetch_put(struct fetch *f)
{
	if (--f->refs == 0) {
		bounce_put(f->c, f->buf, f->len);
		free(f);
	}
}

static void fetch_done(void *opaque, int ret)
{
	struct fetch *f = opaque;
	struct cache *c = f->c;
	uint64_t cb = c->cc.cache_block;

	pthread_mutex_lock(&c->lock);
	for (uint64_t pos = f->off; pos < f->off + f->len;) {
		uint64_t idx = pos / cb;
		uint64_t bend = MIN((idx + 1) * cb, f->off + f->len);
		struct cblk *b = lookup(c, idx);
		/* The block is pinned by this fetch, so it is still there. */
		uint32_t s = (uint32_t)((pos - idx * cb) / c->bs);
		uint32_t e = (uint32_t)((bend - idx * cb) / c->bs);
		for (uint32_t i = s; i < e; i++) {
			if (!bit_test(b->fetching, i))
				continue;
			bit_clear(b->fetching, i);
			if (ret == 0 && !bit_test(b->valid, i)) {
				memcpy(b->data + (size_t)i * c->bs,
				       f->buf + (idx * cb + (uint64_t)i * c->bs - f->off), c->bs);
				bit_set(b->valid, i);
			}
		}
		b->pins--;
		pos = bend;
	}
	f->ret = ret;
	c->inflight_fetches--;
	inflight_del(c, &f->fl);
	if (ret < 0)
		log_debug("%s: read of %" PRIu64 " bytes at offset %" PRIu64 " failed: %s", c->name,
			  f->len, f->off, strerror(-ret));
	fetch_put(f);
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

/* Issue a READ of [off, off+len) (cache-block-internal sectors already marked fetching
 * and blocks pinned by the caller). Drops and retakes the lock. Returns the fetch with
 * a reference for the caller when `wait_ref`, else NULL. On submit failure the sectors
 * are released and the fetch is completed with the error. */
static struct fetch *fetch_issue(struct cache *c, uint64_t off, uint64_t len, bool wait_ref,
				 bool readahead)
{
	/* Not over a write-through or zeroing in flight: this READ could be served before
	 * it and cache what it replaces. The sectors stay marked fetching meanwhile. */
	while (overlaps_inflight(c, off, len, IF_WT | IF_ZERO))
		pthread_cond_wait(&c->cond, &c->lock);
	struct fetch *f = calloc(1, sizeof(*f));
	uint8_t *buf = bounce_get(c, len);
	if (!f || !buf) {
		free(buf);
		if (f) {
			f->c = c;
			f->off = off;
			f->len = len;
			f->refs = wait_ref ? 2 : 1;
			f->fl = (struct inflight){ .off = off, .len = len, .kind = IF_FETCH };
			inflight_add(c, &f->fl);
			c->inflight_fetches++;
			pthread_mutex_unlock(&c->lock);
			fetch_done(f, -ENOMEM);
			pthread_mutex_lock(&c->lock);
			return wait_ref ? f : NULL;
		}
		abort(); /* cannot even report: out of memory for a 100-byte struct */
	}
	f->c = c;
	f->off = off;
	f->len = len;
	f->buf = buf;
	f->refs = wait_ref ? 2 : 1;
	f->fl = (struct inflight){ .off = off, .len = len, .kind = IF_FETCH };
	inflight_add(c, &f->fl);
	c->inflight_fetches++;
	c->st.fetch_ops++;
	c->st.fetch_bytes += len;
	if (readahead)
		c->st.readahead_bytes += len;
	pthread_mutex_unlock(&c->lock);
	int r = c->inner->ops->read(c->inner, off, len, buf, fetch_done, f);
	if (r < 0)
		fetch_done(f, r);
	pthread_mutex_lock(&c->lock);
	return wait_ref ? f : NULL;
}

/* Mark the invalid, not-yet-fetching sectors of b as fetching and append them as
 * byte runs to the pending run list (merging with the previous run when adjacent).
 * Pins b once per run that touches it. */
struct runs {
	uint64_t off[64], len[64];
	int n;
};

static void collect_missing(struct cache *c, struct cblk *b, struct runs *r, uint64_t max_len,
			    uint32_t lo, uint32_t hi)
{
	uint64_t base = b->idx * c->cc.cache_block;
	hi = MIN(hi, b->nsect);
	for (uint32_t i = lo; i < hi;) {
		if (bit_test(b->valid, i) || bit_test(b->fetching, i)) {
			i++;
			continue;
		}
		if (r->n == (int)ARRAY_SIZE(r->off))
			return; /* full: the caller issues these and comes back for the rest */
		uint32_t j = i;
		while (j < hi && !bit_test(b->valid, j) && !bit_test(b->fetching, j)) {
			bit_set(b->fetching, j);
			j++;
		}
		uint64_t off = base + (uint64_t)i * c->bs, len = (uint64_t)(j - i) * c->bs;
		if (r->n > 0 && r->off[r->n - 1] + r->len[r->n - 1] == off &&
		    r->len[r->n - 1] + len <= max_len &&
		    (off % c->cc.cache_block) == 0) {
			r->len[r->n - 1] += len;
		} else {
			r->off[r->n] = off;
			r->len[r->n] = len;
			r->n++;
		}
		b->pins++;
		i = j;
	}
}

/* ---------- read ---------- */

static uint64_t max_io(struct cache *c)
{
	return c->cc.max_write ? c->cc.max_write : (1u << 20);
}

/* Blocks pinned by one call at most, so several threads cannot pin the whole budget. */
static uint64_t chunk_blocks(struct cache *c)
{
	return MAX(1, MIN(32, c->nblocks_max / 8));
}

static void readahead(struct cache *c, uint64_t from, uint64_t to)
{
	uint64_t cb = c->cc.cache_block;
	struct runs r = { .n = 0 };
	to = MIN(to, c->dev.size);
	for (uint64_t idx = from / cb; idx * cb < to; idx++) {
		struct cblk *b = lookup(c, idx);
		if (b)
			continue; /* present (maybe partially): left to demand reads */
		b = alloc_block(c, idx);
		if (!b)
			break;
		collect_missing(c, b, &r, max_io(c), 0, UINT32_MAX);
		if (r.n >= (int)ARRAY_SIZE(r.off) - 1)
			break;
	}
	for (int i = 0; i < r.n; i++)
		fetch_issue(c, r.off[i], r.len[i], false, true);
}

/* Sequential-stream detection; called under the lock for each read request. Returns
 * the range to read ahead, or from == to for none. */
static void stream_update(struct cache *c, uint64_t off, uint64_t len, uint64_t *ra_from,
			  uint64_t *ra_to)
{
	struct stream *s = NULL, *lru = &c->streams[0];
	uint64_t end = off + len;
	*ra_from = *ra_to = 0;
	c->stream_clock++;
	for (int i = 0; i < NSTREAMS; i++) {
		struct stream *t = &c->streams[i];
		/* Reads that arrive slightly out of order from several FUSE threads still
		 * belong to the stream. */
		uint64_t slack = 4 * MAX(len, (uint64_t)c->bs);
		if (t->last_use && off + slack >= t->next_off && off <= t->next_off + slack) {
			s = t;
			break;
		}
		if (t->last_use < lru->last_use)
			lru = t;
	}
	if (!s) {
		memset(lru, 0, sizeof(*lru));
		lru->next_off = end;
		lru->ra_end = end;
		lru->last_use = c->stream_clock;
		return;
	}
	s->last_use = c->stream_clock;
	s->next_off = MAX(s->next_off, end);
	if (++s->hits < 2 || c->cc.readahead_max == 0)
		return;
	s->window = s->window ? MIN(s->window * 2, c->cc.readahead_max)
			      : MIN(MAX(len, c->cc.cache_block) * 2, c->cc.readahead_max);
	/* Issue in steps of at least half the window, to keep commands large. */
	uint64_t from = MAX(s->ra_end, end);
	uint64_t to = end + s->window;
	if (to > from && (to - from >= s->window / 2 || from == end)) {
		*ra_from = from;
		*ra_to = to;
		s->ra_end = to;
	}
}

/* Wait for space: returns false when it should not (the caller holds pins, or the
 * cache is failing writes and cannot make space). */
static void kick_flusher(struct cache *c)
{
	if (!c->flusher_busy)
		pthread_cond_signal(&c->flusher_cond);
}

/* Every block is pinned or dirty: have the flusher write back the oldest dirty data
 * now (not at dirty_expire), and wait a while. Caller holds the lock and no pins. */
static void wait_for_space(struct cache *c)
{
	c->space_waiters++;
	kick_flusher(c);
	struct timespec dl = util_deadline_ms(100);
	pthread_cond_timedwait(&c->cond, &c->lock, &dl);
	c->space_waiters--;
}

static int cache_read_chunk(struct cache *c, uint64_t off, uint64_t len, uint8_t *buf,
			    uint64_t *done_len)
{
	uint64_t cb = c->cc.cache_block;
	uint64_t first = off / cb, last = (off + len - 1) / cb;
	uint64_t nb = MIN(last - first + 1, chunk_blocks(c));
	struct cblk *blocks[32];
	uint64_t got = 0;
	int ret = 0;

	/* 1. Find or allocate the blocks, pin them. */
	while (got < nb) {
		struct cblk *b = lookup(c, first + got);
		if (!b)
			b = alloc_block(c, first + got);
		if (!b) {
			if (got > 0)
				break; /* serve what we have, unpinned, then come back */
			if (c->failing) {
				ret = -EIO;
				goto out;
			}
			wait_for_space(c);
			continue;
		}
		b->pins++;
		blocks[got++] = b;
	}
	uint64_t end = MIN(off + len, (first + got) * cb);

	/* 2. Fetch what is missing. Another round is needed when a fetch by another thread
	 *    that we waited for failed, or when there were more runs than one round takes;
	 *    our own failed fetch ends the loop with its error. */
	bool missed[32] = { false };
	bool narrow = false; /* after a failed fetch: only the sectors asked for */
	for (int round = 0; ret == 0; round++) {
		struct runs r = { .n = 0 };
		struct fetch *mine[ARRAY_SIZE(r.off)];
		int nmine = 0;
		bool need_wait = false;
		for (uint64_t i = 0; i < got; i++) {
			struct cblk *b = blocks[i];
			uint64_t base = b->idx * cb;
			uint32_t s = (uint32_t)((MAX(off, base) - base) / c->bs);
			uint32_t e = (uint32_t)((MIN(end, base + cb) - base) / c->bs);
			bool all_valid = true;
			for (uint32_t k = s; k < e && all_valid; k++)
				all_valid = bit_test(b->valid, k);
			if (all_valid)
				continue;
			need_wait = true;
			if (round == 0) {
				c->st.misses++;
				missed[i] = true;
			}
			if (narrow)
				collect_missing(c, b, &r, max_io(c), s, e);
			else
				collect_missing(c, b, &r, max_io(c), 0, UINT32_MAX);
		}
		if (!need_wait)
			break;
		for (int i = 0; i < r.n; i++)
			mine[nmine++] = fetch_issue(c, r.off[i], r.len[i], true, false);
		/* Wait until no sector we need is being fetched. */
		for (;;) {
			bool busy = false;
			for (uint64_t i = 0; i < got && !busy; i++) {
				struct cblk *b = blocks[i];
				uint64_t base = b->idx * cb;
				uint32_t s = (uint32_t)((MAX(off, base) - base) / c->bs);
				uint32_t e = (uint32_t)((MIN(end, base + cb) - base) / c->bs);
				for (uint32_t k = s; k < e; k++)
					if (bit_test(b->fetching, k)) {
						busy = true;
						break;
					}
			}
			if (!busy)
				break;
			pthread_cond_wait(&c->cond, &c->lock);
		}
		for (int i = 0; i < nmine; i++) {
			if (mine[i]->ret < 0 && ret == 0)
				ret = mine[i]->ret;
			fetch_put(mine[i]);
		}
		/* A whole-block fetch failed (say, one bad sector): retry just what was asked
		 * for, so a read of good sectors next to a bad one still works. */
		if (ret < 0 && !narrow) {
			narrow = true;
			ret = 0;
		}
		if (round > 1000 && ret == 0)
			ret = -EIO; /* cannot happen; never spin forever */
	}

	/* 3. Copy out (every needed sector is valid unless an error was returned). */
	if (ret == 0) {
		for (uint64_t i = 0; i < got; i++) {
			struct cblk *b = blocks[i];
			uint64_t base = b->idx * cb;
			uint64_t s = MAX(off, base), e = MIN(end, base + cb);
			uint32_t ss = (uint32_t)((s - base) / c->bs), es = (uint32_t)((e - base) / c->bs);
			for (uint32_t k = ss; k < es; k++)
				if (!bit_test(b->valid, k)) {
					ret = -EIO; /* a fetch by another thread failed twice */
					break;
				}
			if (ret)
				break;
			memcpy(buf + (s - off), b->data + (s - base), e - s);
			touch(b, ss, es);
			if (!missed[i])
				c->st.hits++;
		}
	}
	for (uint64_t i = 0; i < got; i++)
		blocks[i]->pins--;
	*done_len = end - off;
out:
	pthread_cond_broadcast(&c->cond);
	return ret;
}

static int cache_read(struct blkdev *dev, uint64_t off, size_t len, void *buf, blkdev_cb cb,
		      void *opaque)
{
	struct cache *c = to_cache(dev);
	int ret = 0;

	if (c->cc.mode == CONFIG_CACHE_NONE) {
		pthread_mutex_lock(&c->lock);
		c->st.read_ops++;
		c->st.read_bytes += len;
		c->st.fetch_ops++;
		c->st.fetch_bytes += len;
		pthread_mutex_unlock(&c->lock);
		return c->inner->ops->read(c->inner, off, len, buf, cb, opaque);
	}
	pthread_mutex_lock(&c->lock);
	c->st.read_ops++;
	c->st.read_bytes += len;
	uint64_t ra_from, ra_to;
	stream_update(c, off, len, &ra_from, &ra_to);
	uint64_t pos = off;
	while (pos < off + len && ret == 0) {
		uint64_t done = 0;
		ret = cache_read_chunk(c, pos, off + len - pos, (uint8_t *)buf + (pos - off), &done);
		pos += done;
	}
	if (ret == 0 && ra_to > ra_from)
		readahead(c, ra_from, ra_to);
	pthread_mutex_unlock(&c->lock);
	cb(opaque, ret);
	return 0;
}

/* ---------- write ---------- */

/* Copy [off, off+len) into cache blocks; `dirty` marks them for write-back (else they
 * are only made valid, for write-through). Blocks are allocated as needed. Returns 0,
 * or -EIO when the cache is failing and has no room. Caller holds the lock. */
static int copy_in(struct cache *c, uint64_t off, uint64_t len, const uint8_t *buf, bool dirty)
{
	uint64_t cb = c->cc.cache_block;
	uint64_t pos = off;
	while (pos < off + len) {
		uint64_t idx = pos / cb, base = idx * cb;
		uint64_t e = MIN(off + len, base + cb);
		if (dirty) {
			/* Dirty bound: block (not fail) until write-back makes room. */
			for (;;) {
				struct cblk *x = lookup(c, idx);
				uint64_t add = x && x->unclean ? 0 : c->cc.cache_block;
				if (unclean_bytes(c) + add <= c->cc.dirty_max || c->nunclean == 0)
					break;
				if (c->failing)
					return -EIO;
				wait_for_space(c); /* the flusher writes back at once while we wait */
			}
		}
		struct cblk *b = lookup(c, idx);
		if (!b)
			b = alloc_block(c, idx);
		if (!b && !dirty) {
			pos = e; /* not cached, so nothing stale: the target will have it */
			continue;
		}
		if (!b) {
			if (c->failing)
				return -EIO;
			wait_for_space(c);
			continue;
		}
		uint32_t s = (uint32_t)((pos - base) / c->bs), es = (uint32_t)((e - base) / c->bs);
		memcpy(b->data + (pos - base), buf + (pos - off), e - pos);
		if (dirty) {
			mark_dirty(c, b, s, es);
		} else {
			for (uint32_t k = s; k < es; k++)
				bit_set(b->valid, k);
		}
		touch(b, s, es);
		pos = e;
	}
	if (dirty && background_due(c))
		kick_flusher(c);
	return 0;
}

/* Clear valid (and dirty) for whole sectors in [off, off+len). Caller holds the lock. */
static void invalidate(struct cache *c, uint64_t off, uint64_t len)
{
	uint64_t cb = c->cc.cache_block;
	for (uint64_t pos = off; pos < off + len;) {
		uint64_t idx = pos / cb, base = idx * cb;
		uint64_t e = MIN(off + len, base + cb);
		struct cblk *b = lookup(c, idx);
		if (b) {
			for (uint32_t k = (uint32_t)((pos - base) / c->bs);
			     k < (uint32_t)((e - base) / c->bs); k++) {
				if (bit_test(b->dirty, k)) {
					bit_clear(b->dirty, k);
					b->ndirty--;
					c->st.dirty_bytes -= c->bs;
				}
				bit_clear(b->valid, k);
			}
			if (b->ndirty == 0)
				dirty_unlink(c, b);
			recount(c, b);
		}
		pos = e;
	}
}

/* Wait until nothing in flight overlaps (writes, and READs that could otherwise
 * overtake us), then register a write-through or zeroing request. Caller holds the
 * lock. */
static void guard_enter(struct cache *c, struct inflight *f, uint64_t off, uint64_t len,
			int kind)
{
	while (overlaps_inflight(c, off, len, IF_WB | IF_WT | IF_ZERO | IF_FETCH))
		pthread_cond_wait(&c->cond, &c->lock);
	f->off = off;
	f->len = len;
	f->seq = 0;
	f->kind = kind;
	inflight_add(c, f);
}

static void guard_leave(struct cache *c, struct inflight *f)
{
	inflight_del(c, f);
	pthread_cond_broadcast(&c->cond);
}

static int cache_write(struct blkdev *dev, uint64_t off, size_t len, const void *buf,
		       blkdev_cb cb, void *opaque)
{
	struct cache *c = to_cache(dev);
	struct inflight f;
	int ret;

	pthread_mutex_lock(&c->lock);
	c->st.write_ops++;
	c->st.write_bytes += len;
	if (c->cc.mode == CONFIG_CACHE_WRITEBACK) {
		ret = copy_in(c, off, len, buf, true);
		pthread_mutex_unlock(&c->lock);
		cb(opaque, ret);
		return 0;
	}
	/* write-through and none: the write reaches the target before we complete. */
	guard_enter(c, &f, off, len, IF_WT);
	if (c->cc.mode == CONFIG_CACHE_WRITETHROUGH)
		copy_in(c, off, len, buf, false);
	c->st.writeback_ops++;
	c->st.writeback_bytes += len;
	pthread_mutex_unlock(&c->lock);
	ret = blkdev_write_sync(c->inner, off, len, buf);
	pthread_mutex_lock(&c->lock);
	if (ret < 0) {
		c->st.write_errors++;
		if (c->cc.mode == CONFIG_CACHE_WRITETHROUGH)
			invalidate(c, off, len);
	}
	guard_leave(c, &f);
	pthread_mutex_unlock(&c->lock);
	cb(opaque, ret);
	return 0;
}

/* ---------- write-back ---------- */

struct wb {
	struct cache *c;
	struct inflight f;
	uint8_t *buf;
	uint64_t first_idx, nblk;
};

static uint64_t backoff_ms(int fails)
{
	uint64_t ms = 100ULL << MIN(fails, 6);
	return MIN(ms, 5000);
}

static void wb_done(void *opaque, int ret)
{
	struct wb *w = opaque;
	struct cache *c = w->c;
	uint64_t cb = c->cc.cache_block;

	pthread_mutex_lock(&c->lock);
	for (uint64_t i = 0; i < w->nblk; i++) {
		struct cblk *b = lookup(c, w->first_idx + i);
		uint64_t base = b->idx * cb;
		b->writing = false;
		b->pins--;
		if (ret == 0) {
			b->fails = 0;
			recount(c, b);
			continue;
		}
		/* Keep the data: re-mark the sectors we tried to write as dirty, with the
		 * age they had, and retry later. */
		uint64_t s = MAX(w->f.off, base), e = MIN(w->f.off + w->f.len, base + cb);
		uint32_t added = 0;
		for (uint32_t k = (uint32_t)((s - base) / c->bs); k < (uint32_t)((e - base) / c->bs); k++) {
			if (!bit_test(b->dirty, k)) {
				bit_set(b->dirty, k);
				added++;
			}
		}
		bool was_listed = b->in_dirty_list;
		b->ndirty += added;
		c->st.dirty_bytes += (uint64_t)added * c->bs;
		dirty_unlink(c, b);
		b->dirty_seq = was_listed ? MIN(b->dirty_seq, b->wb_seq) : b->wb_seq;
		if (!was_listed)
			b->dirty_ms = b->wb_ms; /* the data keeps its age: the list stays ordered */
		if (b->ndirty)
			dirty_link(c, b);
		recount(c, b);
		b->fails++;
		b->retry_ms = util_now_ms() + backoff_ms(b->fails);
		if (b->fails >= c->cc.write_retries && !c->failing) {
			c->failing = true;
			log_err("%s: write-back at offset %" PRIu64 " failed %d times; new writes fail "
				"with EIO until it succeeds",
				c->name, w->f.off, b->fails);
		}
	}
	if (ret == 0) {
		c->st.writeback_ops++;
		c->st.writeback_bytes += w->f.len;
		if (c->failing) {
			bool any = false;
			for (struct cblk *b = c->dirty_head; b && !any; b = b->dnext)
				any = b->fails >= c->cc.write_retries;
			if (!any) {
				c->failing = false;
				log_notice("%s: write-back works again", c->name);
			}
		}
	} else {
		c->st.write_errors++;
		c->st.writeback_errors++;
		c->wb_error = ret == -ENOSPC || ret == -EROFS ? ret : -EIO;
		c->wb_error_gen++;
		log_debug("%s: write-back of %" PRIu64 " bytes at offset %" PRIu64 " failed: %s",
			  c->name, w->f.len, w->f.off, strerror(-ret));
	}
	c->st.dirty_bytes -= w->f.len;
	c->inflight_wb_bytes -= w->f.len;
	c->inflight_wb_ops--;
	inflight_del(c, &w->f);
	pthread_cond_broadcast(&c->cond);
	kick_flusher(c);
	pthread_mutex_unlock(&c->lock);
	bounce_put(c, w->buf, w->f.len);
	free(w);
}

/* The dirty span of a block: [s, e) from its first to last dirty sector, when every
 * sector between is valid (then one WRITE carries it); else the first dirty run. */
static void dirty_span(struct cache *c, struct cblk *b, uint32_t *s, uint32_t *e)
{
	uint32_t i = 0;
	(void)c;
	while (i < b->nsect && !bit_test(b->dirty, i))
		i++;
	uint32_t j = b->nsect;
	while (j > i && !bit_test(b->dirty, j - 1))
		j--;
	for (uint32_t k = i; k < j; k++)
		if (!bit_test(b->valid, k)) {
			j = k;
			break;
		}
	/* i..j may still contain clean-but-valid sectors: writing them is harmless. */
	*s = i;
	*e = j;
}

/* Prepare one coalesced WRITE starting from dirty block b: snapshot the data into a
 * bounce buffer, move its sectors from dirty to in flight. Caller holds the lock and
 * submits the result (wb_submit) after dropping it. NULL when nothing can go now. */
static struct wb *writeback_from(struct cache *c, struct cblk *b)
{
	uint64_t cb = c->cc.cache_block;
	uint32_t s, e;
	dirty_span(c, b, &s, &e);
	if (s >= e)
		return NULL;
	uint64_t off = b->idx * cb + (uint64_t)s * c->bs;
	uint64_t end = b->idx * cb + (uint64_t)e * c->bs;
	uint64_t first = b->idx, last = b->idx;
	uint64_t limit = max_io(c);

	/* Extend forwards and backwards over neighbours whose dirty span touches ours. */
	for (struct cblk *n; e == b->nsect && (n = lookup(c, last + 1)) && !n->writing && n->ndirty;) {
		uint32_t ns, ne;
		dirty_span(c, n, &ns, &ne);
		if (ns != 0 || ne == 0 || end - off + (uint64_t)ne * c->bs > limit)
			break;
		last++;
		end = n->idx * cb + (uint64_t)ne * c->bs;
		if (ne != n->nsect)
			break;
	}
	for (struct cblk *p; s == 0 && first > 0 && (p = lookup(c, first - 1)) && !p->writing && p->ndirty;) {
		uint32_t ps, pe;
		dirty_span(c, p, &ps, &pe);
		if (pe != p->nsect || end - (p->idx * cb + (uint64_t)ps * c->bs) > limit)
			break;
		first--;
		off = p->idx * cb + (uint64_t)ps * c->bs;
		if (ps != 0)
			break;
	}
	if (overlaps_inflight(c, off, end - off, IF_WB | IF_WT | IF_ZERO))
		return NULL;

	struct wb *w = calloc(1, sizeof(*w));
	uint8_t *buf = w ? bounce_get(c, end - off) : NULL;
	if (!buf) {
		free(w);
		return NULL;
	}
	w->c = c;
	w->buf = buf;
	w->first_idx = first;
	w->nblk = last - first + 1;
	w->f.off = off;
	w->f.len = end - off;
	w->f.seq = UINT64_MAX;
	w->f.kind = IF_WB;
	for (uint64_t idx = first; idx <= last; idx++) {
		struct cblk *x = lookup(c, idx);
		uint64_t base = idx * cb;
		uint64_t xs = MAX(off, base), xe = MIN(end, base + cb);
		memcpy(buf + (xs - off), x->data + (xs - base), xe - xs);
		uint32_t cleared = 0;
		for (uint32_t k = (uint32_t)((xs - base) / c->bs); k < (uint32_t)((xe - base) / c->bs); k++)
			if (bit_test(x->dirty, k)) {
				bit_clear(x->dirty, k);
				cleared++;
			}
		x->ndirty -= cleared;
		/* dirty_bytes keeps counting these bytes until the WRITE completes; adjust
		 * for clean sectors carried along. */
		c->st.dirty_bytes -= (uint64_t)cleared * c->bs;
		x->wb_seq = x->dirty_seq;
		x->wb_ms = x->dirty_ms;
		w->f.seq = MIN(w->f.seq, x->dirty_seq); /* flush waits for the oldest it carries */
		if (x->ndirty == 0)
			dirty_unlink(c, x);
		x->writing = true;
		x->pins++;
		recount(c, x);
	}
	c->st.dirty_bytes += w->f.len;
	c->inflight_wb_bytes += w->f.len;
	c->inflight_wb_ops++;
	inflight_add(c, &w->f);
	return w;
}

/* Submit prepared write-backs; the caller does not hold the lock. */
static void wb_submit(struct wb **v, int n)
{
	for (int i = 0; i < n; i++) {
		struct cache *c = v[i]->c;
		int r = c->inner->ops->write(c->inner, v[i]->f.off, v[i]->f.len, v[i]->buf, wb_done, v[i]);
		if (r < 0)
			wb_done(v[i], r);
	}
}

/* Lowest dirty_seq still unwritten (dirty or in flight), or UINT64_MAX. */
static uint64_t oldest_unwritten(struct cache *c)
{
	uint64_t m = c->dirty_head ? c->dirty_head->dirty_seq : UINT64_MAX;
	for (struct inflight *f = c->inflight; f; f = f->next)
		if (f->seq && f->seq < m)
			m = f->seq;
	return m;
}

#define WB_MAX_OPS 32
#define WB_MAX_BYTES (8u << 20)   /* bounce buffers in flight count against RSS */

static void *flusher_main(void *arg)
{
	struct cache *c = arg;
	pthread_mutex_lock(&c->lock);
	while (!c->stop || c->dirty_head || c->inflight_wb_ops) {
		uint64_t now = util_now_ms();
		uint64_t next_wake = now + MAX(c->cc.dirty_expire_ms / 2, 10);
		struct wb *batch[WB_MAX_OPS];
		int nbatch = 0;
		c->flusher_busy = true;
		for (struct cblk *b = c->dirty_head, *nb; b; b = nb) {
			nb = b->dnext;
			if (c->inflight_wb_ops >= WB_MAX_OPS || c->inflight_wb_bytes >= WB_MAX_BYTES)
				break;
			bool want = c->stop || b->dirty_seq <= c->flush_seq ||
				    now >= b->dirty_ms + c->cc.dirty_expire_ms ||
				    background_due(c) || c->space_waiters > 0;
			if (!want) {
				next_wake = MIN(next_wake, b->dirty_ms + c->cc.dirty_expire_ms);
				break; /* the list is ordered by age */
			}
			if (b->writing)
				continue;
			if (b->retry_ms > now) {
				next_wake = MIN(next_wake, b->retry_ms);
				continue;
			}
			/* b and its coalesced neighbours leave the dirty list; nb may be one of
			 * them, so continue from the first block that stays */
			struct wb *w = writeback_from(c, b);
			if (w) {
				batch[nbatch++] = w;
				nb = b->in_dirty_list ? b->dnext : c->dirty_head;
				while (nb && nb->writing)
					nb = nb->dnext;
			}
		}
		if (nbatch) {
			pthread_mutex_unlock(&c->lock);
			wb_submit(batch, nbatch);
			pthread_mutex_lock(&c->lock);
			continue;
		}
		c->flusher_busy = false;
		if (c->stop && c->dirty_head && c->failing && !c->inflight_wb_ops) {
			/* Unmounting and the target keeps refusing: give up after the retries
			 * (each bounded by the session's replacement timeout), say so. */
			log_err("%s: %" PRIu64 " dirty bytes could not be written back and are lost",
				c->name, c->st.dirty_bytes);
			c->st.lost_bytes = c->st.dirty_bytes;
			break;
		}
		now = util_now_ms();
		struct timespec dl = util_deadline_ms(next_wake > now ? next_wake - now : 1);
		pthread_cond_timedwait(&c->flusher_cond, &c->lock, &dl);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static int cache_flush(struct blkdev *dev, bool sync_target, blkdev_cb cb, void *opaque)
{
	struct cache *c = to_cache(dev);
	int ret = 0;

	if (c->cc.mode != CONFIG_CACHE_WRITEBACK) {
		if (!sync_target) {
			cb(opaque, 0);
			return 0;
		}
		return c->inner->ops->flush(c->inner, true, cb, opaque);
	}
	pthread_mutex_lock(&c->lock);
	uint64_t target = c->seq;
	uint64_t gen = c->wb_error_gen;
	if (target > c->flush_seq)
		c->flush_seq = target;
	kick_flusher(c);
	while (oldest_unwritten(c) <= target && c->wb_error_gen == gen)
		pthread_cond_wait(&c->cond, &c->lock);
	if (c->wb_error) {
		ret = c->wb_error;
		c->wb_error = 0; /* reported once; per-file reporting is fs.c's (errseq-like) */
	}
	pthread_mutex_unlock(&c->lock);
	if (ret == 0 && sync_target)
		return c->inner->ops->flush(c->inner, true, cb, opaque);
	cb(opaque, ret);
	return 0;
}

/* Is any sector of [off, off+len) dirty or being written back? Caller holds the lock.
 * Walks the dirty list and the in-flight list, not the range: a discard may be huge. */
static bool range_unwritten(struct cache *c, uint64_t off, uint64_t len)
{
	uint64_t cb = c->cc.cache_block;
	for (struct cblk *b = c->dirty_head; b; b = b->dnext)
		if (b->idx * cb < off + len && off < (b->idx + 1) * cb)
			return true;
	return overlaps_inflight(c, off, len, IF_WB);
}

/*
 * discard and write_zeroes, with the overlap guard. write_zeroes drops what the cache
 * holds for the range (dirty data there must not be written after the zeroes) and
 * goes; if it fails the range's content is undefined anyway. A discard must leave the
 * content as it was when it fails, so dirty data in its range is written back first.
 */
static int cache_zero_common(struct blkdev *dev, uint64_t off, uint64_t len, bool discard,
			     blkdev_cb cb, void *opaque)
{
	struct cache *c = to_cache(dev);
	struct inflight f;
	int ret;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		if (discard && range_unwritten(c, off, len)) {
			uint64_t gen = c->wb_error_gen;
			c->flush_seq = MAX(c->flush_seq, c->seq);
			kick_flusher(c);
			while (range_unwritten(c, off, len) && c->wb_error_gen == gen)
				pthread_cond_wait(&c->cond, &c->lock);
			if (c->wb_error_gen != gen && range_unwritten(c, off, len)) {
				pthread_mutex_unlock(&c->lock);
				cb(opaque, -EIO); /* the data stays dirty; nothing was discarded */
				return 0;
			}
		}
		guard_enter(c, &f, off, len, IF_ZERO); /* waits for write-backs in the range */
		if (!discard || !range_unwritten(c, off, len))
			break;
		guard_leave(c, &f); /* written to meanwhile: write that back too */
	}
	invalidate(c, off, len);
	pthread_mutex_unlock(&c->lock);
	ret = discard ? blkdev_discard_sync(c->inner, off, len)
		      : blkdev_write_zeroes_sync(c->inner, off, len);
	pthread_mutex_lock(&c->lock);
	guard_leave(c, &f);
	pthread_mutex_unlock(&c->lock);
	cb(opaque, ret);
	return 0;
}

static int cache_discard(struct blkdev *dev, uint64_t off, uint64_t len, blkdev_cb cb,
			 void *opaque)
{
	return cache_zero_common(dev, off, len, true, cb, opaque);
}

static int cache_write_zeroes(struct blkdev *dev, uint64_t off, uint64_t len, blkdev_cb cb,
			      void *opaque)
{
	return cache_zero_common(dev, off, len, false, cb, opaque);
}

static int cache_lba_status(struct blkdev *dev, uint64_t off, struct blkdev_extent *ext)
{
	struct cache *c = to_cache(dev);
	uint64_t cb = c->cc.cache_block;

	pthread_mutex_lock(&c->lock);
	struct cblk *b = lookup(c, off / cb);
	bool dirty = b && (b->ndirty || b->writing);
	pthread_mutex_unlock(&c->lock);
	if (dirty || !c->inner->ops->lba_status) {
		ext->mapped = true;
		ext->len = dirty ? (off / cb + 1) * cb - off : c->dev.size - off;
		if (ext->len > c->dev.size - off)
			ext->len = c->dev.size - off;
		return 0;
	}
	int r = c->inner->ops->lba_status(c->inner, off, ext);
	if (r < 0 || ext->mapped)
		return r;
	/* The target only knows what it has: a hole ends where data not yet written back
	 * begins (else SEEK_DATA would skip it and `cp --sparse` lose it). */
	pthread_mutex_lock(&c->lock);
	uint64_t end = off + ext->len;
	for (struct cblk *x = c->dirty_head; x; x = x->dnext)
		if (x->idx * cb < end && x->idx * cb + cb > off)
			end = MAX(off + 1, x->idx * cb);
	for (struct inflight *f = c->inflight; f; f = f->next)
		if ((f->kind & IF_WB) && f->off < end && f->off + f->len > off)
			end = MAX(off + 1, f->off);
	pthread_mutex_unlock(&c->lock);
	ext->len = end - off;
	return 0;
}

uint64_t cache_stop(struct blkdev *dev)
{
	struct cache *c = to_cache(dev);

	pthread_mutex_lock(&c->lock);
	c->stop = true;
	pthread_cond_signal(&c->flusher_cond);
	pthread_mutex_unlock(&c->lock);
	if (c->flusher_started) {
		pthread_join(c->flusher, NULL);
		c->flusher_started = false;
	}
	pthread_mutex_lock(&c->lock);
	/* read-ahead may still be in flight: its completion must not find us gone */
	while (c->inflight_wb_ops || c->inflight_fetches)
		pthread_cond_wait(&c->cond, &c->lock);
	uint64_t lost = c->st.lost_bytes;
	pthread_mutex_unlock(&c->lock);
	return lost;
}

static void cache_destroy(struct blkdev *dev)
{
	struct cache *c = to_cache(dev);

	cache_stop(dev);
	for (uint64_t i = 0; i <= c->hash_mask; i++) {
		for (struct cblk *b = c->hash[i], *n; b; b = n) {
			n = b->hnext;
			free(b->data);
			free(b);
		}
	}
	for (struct cblk *b = c->free_list, *n; b; b = n) {
		n = b->qnext;
		free(b->data);
		free(b);
	}
	free(c->hash);
	free(c->ghosts);
	free(c->ghash);
	while (c->npool)
		free(c->pool[--c->npool]);
	pthread_mutex_destroy(&c->pool_lock);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	pthread_cond_destroy(&c->flusher_cond);
	free(c);
}

static const struct blkdev_ops cache_ops = {
	.read = cache_read,
	.write = cache_write,
	.flush = cache_flush,
	.discard = cache_discard,
	.write_zeroes = cache_write_zeroes,
	.lba_status = cache_lba_status,
	.destroy = cache_destroy,
};

void cache_get_stats(struct blkdev *dev, struct cache_stats *out)
{
	struct cache *c = to_cache(dev);
	pthread_mutex_lock(&c->lock);
	*out = c->st;
	pthread_mutex_unlock(&c->lock);
}

static uint64_t pow2_at_least(uint64_t n)
{
	uint64_t p = 1;
	while (p < n)
		p <<= 1;
	return p;
}

struct blkdev *cache_create(const struct cache_config *cc, struct blkdev *inner)
{
	uint64_t blk = cc->cache_block;
	if (!inner || blk < inner->block_size || (blk & (blk - 1)) || blk > (16u << 20) ||
	    (cc->mode != CONFIG_CACHE_NONE && cc->cache_size < 8 * blk)) {
		errno = EINVAL;
		return NULL;
	}
	struct cache *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->cc = *cc;
	snprintf(c->name, sizeof(c->name), "%s", cc->name ? cc->name : "cache");
	c->cc.name = c->name;
	if (!c->cc.write_retries)
		c->cc.write_retries = 5;
	if (!c->cc.dirty_max)
		c->cc.dirty_max = cc->cache_size / 4;
	c->cc.dirty_max = MAX(c->cc.dirty_max, blk);
	c->inner = inner;
	c->bs = inner->block_size;
	c->words = DIV_ROUND_UP((uint32_t)(blk / c->bs), 64); /* sectors per block / 64 */
	c->nblocks_max = cc->mode == CONFIG_CACHE_NONE ? 0 : cc->cache_size / blk;
	c->small_target = MAX(1, c->nblocks_max / 10);
	c->hash_mask = pow2_at_least(MAX(c->nblocks_max, 16)) - 1;
	c->hash = calloc(c->hash_mask + 1, sizeof(*c->hash));
	c->nghosts = MAX(c->nblocks_max, 16);
	c->ghosts = calloc(c->nghosts, sizeof(*c->ghosts));
	c->ghash_mask = c->hash_mask;
	c->ghash = calloc(c->ghash_mask + 1, sizeof(*c->ghash));
	if (!c->hash || !c->ghosts || !c->ghash) {
		free(c->hash);
		free(c->ghosts);
		free(c->ghash);
		free(c);
		errno = ENOMEM;
		return NULL;
	}
	for (uint64_t i = 0; i < c->nghosts; i++)
		c->ghosts[i].idx = UINT64_MAX;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->pool_lock, NULL);
	util_cond_init(&c->cond);
	util_cond_init(&c->flusher_cond);
	c->dev.ops = &cache_ops;
	c->dev.size = inner->size;
	c->dev.block_size = inner->block_size;
	c->dev.read_only = inner->read_only;
	c->dev.can_discard = inner->can_discard;
	c->dev.priv = c;
	if (cc->mode == CONFIG_CACHE_WRITEBACK) {
		int r = pthread_create(&c->flusher, NULL, flusher_main, c);
		if (r) {
			errno = r;
			c->flusher_started = false;
			cache_destroy(&c->dev);
			return NULL;
		}
		c->flusher_started = true;
	}
	return &c->dev;
}
