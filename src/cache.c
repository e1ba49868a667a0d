/*
 * cache.c - the block cache between the FUSE namespace and a LUN: its public face.
 *
 * A cache block ("cblk") holds `cache_block` bytes of the device at an aligned offset,
 * with three bitmaps over its logical blocks ("sectors"): valid, dirty, fetching
 * (cache_int.h). Blocks come from the mount's pool (cache_pool.c), which bounds memory
 * for all LUNs together; which block goes is S3-FIFO over the whole pool
 * (cache_policy.c). The cache block is the unit of memory and eviction, not of I/O: a
 * random miss fetches the sectors asked for, a sequential stream whole blocks and
 * read-ahead (cache_readahead.c), a partial write nothing but its partial sectors.
 *
 * Invariants (cache_check() verifies them; debug builds at every release of the lock):
 *   - dirty implies valid; fetching implies not valid; a block with fetching sectors or
 *     a write-back in flight is pinned, and a pinned, dirty or writing block is never
 *     evicted.
 *   - a fetching sector is touched only by its fetch: readers and writers wait for it,
 *     so a READ completing never overwrites newer data, and a failed READ never leaves
 *     a sector valid.
 *   - no two WRITE-like requests (write-back, write-through, write_zeroes, discard) to
 *     inner that overlap are ever in flight together, and no fetch is in flight over a
 *     write-through or zeroing (cache_fetch.c): libiscsi re-sends in-flight commands
 *     after a reconnect, so an old write could otherwise land after a newer one.
 *   - dirty_bytes = bytes of dirty sectors + bytes of write-backs in flight; nunclean =
 *     blocks with dirty sectors or a write-back in flight. Writers wait while the
 *     pool's unclean blocks would exceed dirty_max (the bound is on memory that cannot
 *     be evicted, so scattered small writes cannot fill the budget with blocks that
 *     each hold a little dirty data).
 *   - blocks of all caches of a pool <= cache_size / cache_block: the budget is never
 *     exceeded.
 *
 * Requests are asynchronous state machines (cache_io.c): nothing waits in the caller's
 * thread; a request that cannot go on is parked and resumed by the event it waits for.
 * Write-back (cache_writeback.c) runs on the pool's threads.
 *
 * Modes: writeback (write() completes in the cache; dirty data written back after
 * dirty_expire, on pressure, flush and stop), writethrough (completes when inner has
 * it; the data is cached), none (nothing cached: every request goes to inner, edges of
 * unaligned writes read-modify-written under the overlap guard).
 *
 * NOTES ON THE THREAD MODEL
 *   Entry points run on any thread (FUSE workers, the mount thread) and never block:
 *   they take c->lock briefly. Completions of inner arrive on inner's threads (the
 *   session event loops) and take it briefly too; callbacks of requests run there or in
 *   the caller's thread, without the lock. The pool's write-back threads are described
 *   in cache_pool.c. Only cache_stop and the blkdev_*_sync wrappers wait.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_int.h"
#include "iscsifs/log.h"

/* ---------- references and the lock ---------- */

static void cache_free(struct cache *c);

void cache_get(struct cache *c)
{
	__atomic_add_fetch(&c->refs, 1, __ATOMIC_ACQ_REL);
}

/* A reference on a cache found through the pool (its lists or its blocks), under the
 * pool lock: refused when the last reference is already gone (the cache is being freed
 * and will leave the pool's lists under the pool lock, so its memory is still there). */
bool cache_tryget(struct cache *c)
{
	int n = __atomic_load_n(&c->refs, __ATOMIC_ACQUIRE);
	while (n > 0)
		if (__atomic_compare_exchange_n(&c->refs, &n, n + 1, false, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			return true;
	return false;
}

void cache_put(struct cache *c)
{
	HAPPENS_BEFORE(&c->refs);
	if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		HAPPENS_AFTER(&c->refs);
		cache_free(c);
	}
}

void cache_lock(struct cache *c)
{
	pthread_mutex_lock(&c->lock);
}

void cache_unlock(struct cache *c, struct defer *d)
{
	if (cache_check_enabled() && cache_check_locked(c, true) < 0) {
		fprintf(stderr, "cache_check failed: aborting\n");
		abort();
	}
	pthread_mutex_unlock(&c->lock);
	if (d)
		defer_run(d);
}

uint64_t cache_max_io(const struct cache *c)
{
	return c->cc.max_write ? c->cc.max_write : (1u << 20);
}

/* ---------- the byte-range interface ---------- */

static bool bad_range(struct cache *c, uint64_t off, uint64_t len)
{
	uint64_t size = __atomic_load_n(&c->dev.size, __ATOMIC_RELAXED);
	return len == 0 || off >= size || len > size - off;
}

/* A read whose blocks are all resident and valid: answered in the caller's thread from
 * the pinned blocks. Returns false (nothing done) otherwise. c locked; unlocks when it
 * answers. */
static bool read_hit(struct cache *c, uint64_t off, size_t len, cache_read_cb cb, void *opaque,
		     struct defer *d)
{
	uint64_t first = off / c->cb, last = (off + len - 1) / c->cb;
	struct cblk *v[16];
	struct cache_seg seg[16];
	uint32_t n = (uint32_t)(last - first + 1);
	if (n > ARRAY_SIZE(v) || n > cache_max_pin(c))
		return false;
	for (uint32_t i = 0; i < n; i++) {
		struct cblk *b = blk_lookup(c, first + i);
		if (!b)
			return false;
		uint64_t base = b->idx * c->cb;
		uint64_t s = MAX(off, base), e = MIN(off + len, base + c->cb);
		uint32_t ss = (uint32_t)((s - base) / c->bs);
		uint32_t es = (uint32_t)DIV_ROUND_UP(e - base, c->bs);
		for (uint32_t k = ss; k < es; k++)
			if (!bit_test(b->valid, k))
				return false;
		v[i] = b;
		seg[i] = (struct cache_seg){ b->data + (s - base), e - s };
	}
	for (uint32_t i = 0; i < n; i++) {
		uint64_t base = v[i]->idx * c->cb;
		uint64_t s = MAX(off, base), e = MIN(off + len, base + c->cb);
		blk_pin(v[i]);
		blk_touch(c, v[i], (uint32_t)((s - base) / c->bs),
			  (uint32_t)DIV_ROUND_UP(e - base, c->bs));
	}
	c->st.hits += n;
	cache_unlock(c, d);
	cb(opaque, 0, seg, (int)n);
	struct defer d2 = DEFER_INIT;
	cache_lock(c);
	for (uint32_t i = 0; i < n; i++)
		blk_unpin(c, v[i], &d2);
	cache_unlock(c, &d2);
	return true;
}

static void read_common(struct cache *c, uint64_t off, size_t len, void *buf, cache_read_cb rcb,
			blkdev_cb cb, void *opaque, struct cache_ticket *t)
{
	struct defer d = DEFER_INIT;
	uint64_t ra_from = 0, ra_to = 0;

	cache_lock(c);
	c->st.read_ops++;
	c->st.read_bytes += len;
	bool seq = false;
	if (c->cc.mode != CONFIG_CACHE_NONE) {
		seq = ra_update(c, off, len, &ra_from, &ra_to);
		if (ra_to > ra_from)
			ra_issue(c, ra_from, ra_to, &d);
		if (rcb && !(t && t->cancelled) && read_hit(c, off, len, rcb, opaque, &d))
			return;
	}
	struct cache_io *io = io_new(c, IO_READ, off, len, t);
	if (!io) {
		cache_unlock(c, &d);
		if (rcb)
			rcb(opaque, -ENOMEM, NULL, 0);
		else
			cb(opaque, -ENOMEM);
		return;
	}
	io->rcb = rcb;
	io->cb = cb;
	io->opaque = opaque;
	io->sequential = seq;
	if (buf) {
		io->buf = buf;
		io->copy = true;
	} else if (c->cc.mode != CONFIG_CACHE_NONE &&
		   (off + len - 1) / c->cb - off / c->cb + 1 > cache_max_pin(c)) {
		io->buf = malloc(len);
		io->own_buf = io->copy = io->buf != NULL;
		if (!io->buf)
			io->err = -ENOMEM;
	}
	io_start(io, &d);
	cache_unlock(c, &d);
}

void cache_read(struct blkdev *dev, uint64_t off, size_t len, cache_read_cb cb, void *opaque,
		struct cache_ticket *ticket)
{
	struct cache *c = to_cache(dev);
	if (bad_range(c, off, len)) {
		cb(opaque, -EINVAL, NULL, 0);
		return;
	}
	read_common(c, off, len, NULL, cb, NULL, opaque, ticket);
}

static void write_common(struct cache *c, enum io_kind kind, uint64_t off, uint64_t len,
			 const void *buf, bool discard, blkdev_cb cb, void *opaque,
			 struct cache_ticket *t)
{
	struct defer d = DEFER_INIT;
	struct cache_io *io = io_new(c, kind, off, len, t);
	if (!io) {
		cb(opaque, -ENOMEM);
		return;
	}
	io->cb = cb;
	io->opaque = opaque;
	io->src = buf;
	io->zero_src = kind == IO_ZERO;
	io->discard = discard;
	cache_lock(c);
	if (kind == IO_WRITE) {
		c->st.write_ops++;
		c->st.write_bytes += len;
	}
	io_start(io, &d);
	cache_unlock(c, &d);
}

void cache_write(struct blkdev *dev, uint64_t off, size_t len, const void *buf, blkdev_cb cb,
		 void *opaque, struct cache_ticket *ticket)
{
	struct cache *c = to_cache(dev);
	if (bad_range(c, off, len)) {
		cb(opaque, -EINVAL);
		return;
	}
	if (dev->read_only) {
		cb(opaque, -EROFS);
		return;
	}
	write_common(c, IO_WRITE, off, len, buf, false, cb, opaque, ticket);
}

void cache_zero(struct blkdev *dev, uint64_t off, uint64_t len, bool punch, blkdev_cb cb,
		void *opaque, struct cache_ticket *ticket)
{
	struct cache *c = to_cache(dev);
	if (bad_range(c, off, len)) {
		cb(opaque, -EINVAL);
		return;
	}
	if (dev->read_only) {
		cb(opaque, -EROFS);
		return;
	}
	if (punch && !dev->can_discard) {
		cb(opaque, -EOPNOTSUPP);
		return;
	}
	write_common(c, IO_ZERO, off, len, NULL, punch && dev->discard_zeroes, cb, opaque, ticket);
}

void cache_flush(struct blkdev *dev, bool sync_target, blkdev_cb cb, void *opaque,
		 struct cache_ticket *ticket)
{
	struct cache *c = to_cache(dev);
	struct defer d = DEFER_INIT;
	struct cache_io *io = io_new(c, IO_FLUSH, 0, 0, ticket);
	if (!io) {
		cb(opaque, -ENOMEM);
		return;
	}
	io->cb = cb;
	io->opaque = opaque;
	io->sync_target = sync_target;
	cache_lock(c);
	io_start(io, &d);
	cache_unlock(c, &d);
}

int cache_cancel(struct blkdev *dev, struct cache_ticket *ticket)
{
	struct cache *c = to_cache(dev);
	struct defer d = DEFER_INIT;
	struct cache_io *withdrawn;
	cache_lock(c);
	int r = io_cancel(c, ticket, &d, &withdrawn);
	cache_unlock(c, &d);
	if (withdrawn)
		io_release_withdrawn(withdrawn);
	return r;
}

void cache_cancel_all(struct blkdev *dev)
{
	struct cache *c = to_cache(dev);
	struct defer d = DEFER_INIT;
	cache_lock(c);
	io_cancel_all(c, &d);
	cache_unlock(c, &d);
}

/* ---------- the blkdev face (aligned, copying) ---------- */

static int face_read(struct blkdev *dev, uint64_t off, size_t len, void *buf, blkdev_cb cb,
		     void *opaque)
{
	struct cache *c = to_cache(dev);
	if (bad_range(c, off, len))
		return -EINVAL;
	read_common(c, off, len, buf, NULL, cb, opaque, NULL);
	return 0;
}

static int face_write(struct blkdev *dev, uint64_t off, size_t len, const void *buf, blkdev_cb cb,
		      void *opaque)
{
	struct cache *c = to_cache(dev);
	if (bad_range(c, off, len))
		return -EINVAL;
	if (dev->read_only)
		return -EROFS;
	write_common(c, IO_WRITE, off, len, buf, false, cb, opaque, NULL);
	return 0;
}

static int face_flush(struct blkdev *dev, bool sync_target, blkdev_cb cb, void *opaque)
{
	cache_flush(dev, sync_target, cb, opaque, NULL);
	return 0;
}

static int face_discard(struct blkdev *dev, uint64_t off, uint64_t len, blkdev_cb cb, void *opaque)
{
	struct cache *c = to_cache(dev);
	if (bad_range(c, off, len))
		return -EINVAL;
	if (!dev->can_discard)
		return -EOPNOTSUPP;
	write_common(c, IO_ZERO, off, len, NULL, true, cb, opaque, NULL);
	return 0;
}

static int face_write_zeroes(struct blkdev *dev, uint64_t off, uint64_t len, blkdev_cb cb,
			     void *opaque)
{
	struct cache *c = to_cache(dev);
	if (bad_range(c, off, len))
		return -EINVAL;
	write_common(c, IO_ZERO, off, len, NULL, false, cb, opaque, NULL);
	return 0;
}

static int face_lba_status(struct blkdev *dev, uint64_t off, struct blkdev_extent *ext)
{
	struct cache *c = to_cache(dev);
	uint64_t cb = c->cb, size = __atomic_load_n(&c->dev.size, __ATOMIC_RELAXED);

	cache_lock(c);
	struct cblk *b = c->cc.mode == CONFIG_CACHE_NONE ? NULL : blk_lookup(c, off / cb);
	bool dirty = b && (b->ndirty || b->writing);
	cache_unlock(c, NULL);
	if (dirty || !c->inner->ops->lba_status) {
		ext->mapped = true;
		ext->len = dirty ? (off / cb + 1) * cb - off : size - off;
		if (ext->len > size - off)
			ext->len = size - off;
		return 0;
	}
	int r = c->inner->ops->lba_status(c->inner, off, ext);
	if (r < 0 || ext->mapped)
		return r;
	/* The target only knows what it has: a hole ends where data not yet written back
	 * begins (else SEEK_DATA would skip it and `cp --sparse` lose it). */
	cache_lock(c);
	uint64_t end = off + ext->len;
	for (struct cblk *x = c->dirty_head; x; x = x->dnext)
		if (x->idx * cb < end && x->idx * cb + cb > off)
			end = MAX(off + 1, x->idx * cb);
	for (struct inflight *f = c->writes; f; f = f->next)
		if ((f->kind & IF_WB) && f->off < end && f->off + f->len > off)
			end = MAX(off + 1, f->off);
	cache_unlock(c, NULL);
	ext->len = end - off;
	return 0;
}

static void cache_destroy(struct blkdev *dev);

static const struct blkdev_ops cache_ops = {
	.read = face_read,
	.write = face_write,
	.flush = face_flush,
	.discard = face_discard,
	.write_zeroes = face_write_zeroes,
	.lba_status = face_lba_status,
	.destroy = cache_destroy,
};

/* ---------- life cycle ---------- */

/* The size changes; `gone`: the device itself is gone (cache_drop_all), say so instead
 * of "shrank". What was dirty past the new end is dropped and counted lost here; a
 * write-back in flight past it drops its part when it fails (cache_writeback.c). */
static void resize(struct cache *c, uint64_t size, const char *gone)
{
	struct defer d = DEFER_INIT;

	cache_lock(c);
	uint64_t old = c->dev.size, lost = 0, unreported = 0;
	size = size / c->bs * c->bs;
	if (gone)
		c->dropped_all = true;
	if (size < old) {
		/* in flight now past the new end: lost when it fails (wb_done) */
		uint64_t inflight = 0;
		for (struct inflight *f = c->writes; f; f = f->next)
			if ((f->kind & IF_WB) && f->off + f->len > size)
				inflight += f->off + f->len - MAX(f->off, size);
		lost = blk_invalidate(c, size, old - size, &unreported);
		if (gone && (lost || inflight))
			log_err("%s: %" PRIu64 " dirty bytes are lost: %s (reported at the next "
				"fsync or close of the files that wrote them)",
				c->name, lost + inflight, gone);
		else if (lost)
			log_err("%s: the device shrank from %" PRIu64 " to %" PRIu64
				" bytes; %" PRIu64
				" dirty bytes past its new end are lost (reported at the next fsync "
				"or close of the files that wrote them)",
				c->name, old, size, lost);
	}
	__atomic_store_n(&c->dev.size, size, __ATOMIC_RELAXED);
	/* The block across the old or new end changes its sector count; blocks wholly past
	 * the new end stay until evicted (they hold nothing valid). */
	for (uint64_t idx = MIN(old, size) / c->cb; idx * c->cb < MAX(old, size); idx++) {
		struct cblk *b = blk_lookup(c, idx);
		if (b)
			b->nsect = blk_nsect(c, idx);
	}
	if (lost)
		wb_lost(c, lost, unreported > 0, &d);
	if (size < old) /* requests waiting past the new end (or flushes) go on, or fail */
		io_wake_range(c, size, UINT64_MAX - size, 0, &d);
	cache_unlock(c, &d);
}

void cache_set_size(struct blkdev *dev, uint64_t size)
{
	resize(to_cache(dev), size, NULL);
}

void cache_drop_all(struct blkdev *dev, const char *why)
{
	resize(to_cache(dev), 0, why);
}

void cache_stop_begin(struct blkdev *dev)
{
	struct cache *c = to_cache(dev);
	struct defer d = DEFER_INIT;
	cache_lock(c);
	if (c->cc.mode == CONFIG_CACHE_WRITEBACK)
		wb_stop_begin(c, &d);
	cache_unlock(c, &d);
}

void cache_abandon(struct blkdev *dev)
{
	struct cache *c = to_cache(dev);
	struct defer d = DEFER_INIT;
	cache_lock(c);
	if (c->cc.mode == CONFIG_CACHE_WRITEBACK)
		wb_abandon(c, &d);
	cache_unlock(c, &d);
}

uint64_t cache_stop(struct blkdev *dev)
{
	struct cache *c = to_cache(dev);
	cache_stop_begin(dev);
	cache_lock(c);
	while (!wb_stop_done(c))
		pthread_cond_wait(&c->cond, &c->lock);
	uint64_t lost = c->st.lost_bytes;
	cache_unlock(c, NULL);
	return lost;
}

void cache_get_stats(struct blkdev *dev, struct cache_stats *out)
{
	struct cache *c = to_cache(dev);
	cache_lock(c);
	c->st.flush_errors = c->wb_error_gen;
	*out = c->st;
	cache_unlock(c, NULL);
}

int cache_check(struct blkdev *dev)
{
	struct cache *c = to_cache(dev);
	pthread_mutex_lock(&c->lock);
	int r = cache_check_locked(c, true);
	pthread_mutex_unlock(&c->lock);
	return r;
}

static void cache_free(struct cache *c)
{
	struct cache_pool *p = c->pool;
	pthread_mutex_lock(&c->lock);
	blk_release_all(c);
	pthread_mutex_unlock(&c->lock);
	pool_remove_cache(p, c);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	free(c);
}

/* Write back (bounded), complete what still waits, and let the last reference free the
 * memory: fetches still in flight hold one, so cache_stop need not wait for them. */
static void cache_destroy(struct blkdev *dev)
{
	struct cache *c = to_cache(dev);
	cache_stop(dev);
	cache_cancel_all(dev);
	if (c->own_pool)
		pool_release_private(c->pool);
	cache_put(c);
}

struct blkdev *cache_create(const struct cache_config *cc, struct blkdev *inner)
{
	bool none = cc->mode == CONFIG_CACHE_NONE;
	if (!inner || inner->block_size < 512 ||
	    (!none && !cc->pool && cc->cache_block < inner->block_size)) {
		errno = EINVAL;
		return NULL;
	}
	struct cache_pool *pool = cc->pool;
	bool own = false;
	if (!pool) {
		/* cache=none caches hold no blocks: the smallest pool will do */
		struct cache_pool_config pc = {
			.cache_size = none ? 8 * 4096 : cc->cache_size,
			.cache_block = none ? 4096 : cc->cache_block,
			.dirty_max = none ? 0 : cc->dirty_max,
			.dirty_expire_ms = cc->dirty_expire_ms,
			.flushers = 1,
		};
		pool = cache_pool_create(&pc);
		if (!pool)
			return NULL;
		own = true;
	}
	if (!none && pool->cb < inner->block_size) {
		if (own)
			pool_release_private(pool);
		errno = EINVAL;
		return NULL;
	}
	struct cache *c = calloc(1, sizeof(*c));
	if (!c || blk_hash_init(c) < 0) {
		free(c);
		if (own)
			pool_release_private(pool);
		errno = ENOMEM;
		return NULL;
	}
	c->cc = *cc;
	snprintf(c->name, sizeof(c->name), "%s", cc->name ? cc->name : "cache");
	c->cc.name = c->name;
	c->cc.pool = pool;
	if (!c->cc.write_retries)
		c->cc.write_retries = 5;
	c->pool = pool;
	c->own_pool = own;
	c->inner = inner;
	c->bs = inner->block_size;
	c->cb = MAX(pool->cb, (uint64_t)inner->block_size);
	c->spb = (uint32_t)(c->cb / c->bs);
	c->refs = 1;
	ATOMIC_FIELD(c->nunclean);
	pthread_mutex_init(&c->lock, NULL);
	util_cond_init(&c->cond);
	c->dev.ops = &cache_ops;
	c->dev.size = inner->size;
	c->dev.block_size = inner->block_size;
	c->dev.read_only = inner->read_only;
	c->dev.can_discard = inner->can_discard;
	c->dev.discard_zeroes = inner->discard_zeroes;
	c->dev.priv = c;
	pool_add_cache(pool, c);
	return &c->dev;
}
