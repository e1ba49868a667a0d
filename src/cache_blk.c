/*
 * cache_blk.c - the block table of one cache: a hash of resident blocks that grows and
 * shrinks with them (so an idle cache of a 1000-LUN mount costs a few hundred bytes),
 * the per-sector states, pins, the dirty list, invalidation, and cache_check().
 *
 * Every function here runs under c->lock (the lock rule is in cache_int.h). Block
 * memory comes from the pool (cache_pool.c), which also decides what is evicted.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_int.h"
#include "iscsifs/log.h"

#define HASH_MIN 16

static uint64_t hash_idx(uint64_t idx)
{
	idx ^= idx >> 33;
	idx *= 0xff51afd7ed558ccdULL;
	idx ^= idx >> 33;
	return idx;
}

int blk_hash_init(struct cache *c)
{
	c->hash = calloc(HASH_MIN, sizeof(*c->hash));
	c->hash_mask = HASH_MIN - 1;
	return c->hash ? 0 : -1;
}

/* Rehash into `buckets` (a power of two); on allocation failure keep the old table. */
static void hash_resize(struct cache *c, uint64_t buckets)
{
	struct cblk **nh = calloc(buckets, sizeof(*nh));
	if (!nh)
		return;
	for (uint64_t i = 0; i <= c->hash_mask; i++) {
		for (struct cblk *b = c->hash[i], *n; b; b = n) {
			n = b->hnext;
			struct cblk **slot = &nh[hash_idx(b->idx) & (buckets - 1)];
			b->hnext = *slot;
			*slot = b;
		}
	}
	free(c->hash);
	c->hash = nh;
	c->hash_mask = buckets - 1;
}

struct cblk *blk_lookup(struct cache *c, uint64_t idx)
{
	struct cblk *b = c->hash[hash_idx(idx) & c->hash_mask];
	while (b && b->idx != idx)
		b = b->hnext;
	return b;
}

static void hash_insert(struct cache *c, struct cblk *b)
{
	if (c->nused + 1 > 2 * (c->hash_mask + 1))
		hash_resize(c, 2 * (c->hash_mask + 1));
	struct cblk **slot = &c->hash[hash_idx(b->idx) & c->hash_mask];
	b->hnext = *slot;
	*slot = b;
	c->nused++;
}

static void hash_remove(struct cache *c, struct cblk *b)
{
	struct cblk **p = &c->hash[hash_idx(b->idx) & c->hash_mask];
	while (*p != b)
		p = &(*p)->hnext;
	*p = b->hnext;
	b->hnext = NULL;
	c->nused--;
	if (c->hash_mask + 1 > HASH_MIN && c->nused < (c->hash_mask + 1) / 8)
		hash_resize(c, (c->hash_mask + 1) / 2);
}

uint32_t blk_nsect(const struct cache *c, uint64_t idx)
{
	uint64_t start = idx * c->cb;
	if (start >= c->dev.size)
		return 0;
	return (uint32_t)(MIN(c->cb, c->dev.size - start) / c->bs);
}

/* A fresh block for idx, or NULL when the budget holds nothing that can go now (`busy`:
 * something could go, but its cache's lock was taken). */
struct cblk *blk_alloc(struct cache *c, uint64_t idx, bool *busy, struct defer *d)
{
	(void)d;
	struct cblk *b = pool_alloc_block(c, idx, busy);
	if (!b)
		return NULL;
	return blk_adopt(c, b, idx);
}

/* Make a block the pool gave us (already on a replacement queue) resident. */
struct cblk *blk_adopt(struct cache *c, struct cblk *b, uint64_t idx)
{
	memset(b->valid, 0, 3 * (size_t)c->pool->words * sizeof(uint64_t));
	b->hnext = NULL;
	b->dprev = b->dnext = NULL;
	b->ndirty = 0;
	b->touch_end = UINT32_MAX;
	b->pins = 0;
	b->writing = b->unclean = b->in_dirty_list = false;
	b->offq = false;
	b->dirty_seq = b->wb_seq = b->wb_ms = b->dirty_ms = b->retry_ms = 0;
	b->fails = b->fails_at_stop = 0;
	b->reported = false;
	b->idx = idx;
	b->nsect = blk_nsect(c, idx);
	hash_insert(c, b);
	c->st.cached_bytes += c->cb;
	return b;
}

void blk_detach(struct cache *c, struct cblk *b)
{
	hash_remove(c, b);
	c->st.cached_bytes -= c->cb;
	c->st.evictions++;
}

bool blk_evictable(const struct cblk *b)
{
	return b->pins == 0 && b->ndirty == 0 && !b->writing;
}

void blk_pin(struct cblk *b)
{
	b->pins++;
}

void blk_unpin(struct cache *c, struct cblk *b, struct defer *d)
{
	if (--b->pins == 0 && blk_evictable(b) &&
	    __atomic_load_n(&c->pool->nspace_waiters, __ATOMIC_SEQ_CST))
		defer_wake_pool(d, c->pool, 1, 0);
}

/* ---------- dirty list ---------- */

void blk_dirty_unlink(struct cache *c, struct cblk *b)
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

/* Insert keeping the list ordered by dirty_seq (new dirt goes at the tail in O(1); a
 * failed write-back goes back to its place). */
void blk_dirty_link(struct cache *c, struct cblk *b)
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

/* Keep nunclean (the cache's and the pool's) in step with ndirty / writing. */
void blk_recount(struct cache *c, struct cblk *b)
{
	bool now = b->ndirty || b->writing;
	if (now != b->unclean) {
		b->unclean = now;
		pool_unclean_add(c->pool, c, now ? 1 : -1);
		if (!now && b->offq) { /* eviction took it off the queues while unclean */
			pthread_mutex_lock(&c->pool->lock);
			policy_clean(c->pool, b);
			pthread_mutex_unlock(&c->pool->lock);
		}
	}
}

void cache_dirty_add(struct cache *c, int64_t bytes)
{
	c->st.dirty_bytes += (uint64_t)bytes;
	__atomic_add_fetch(&c->pool->dirty_bytes, (uint64_t)bytes, __ATOMIC_RELAXED);
}

/* Mark sectors [s, e) of b valid and dirty. */
void blk_mark_dirty(struct cache *c, struct cblk *b, uint32_t s, uint32_t e)
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
		blk_dirty_link(c, b);
	}
	b->ndirty += added;
	b->reported = false; /* data no failure has been reported for */
	cache_dirty_add(c, (int64_t)added * c->bs);
	blk_recount(c, b);
}

/* A read touched sectors [s, e): a re-reference unless it continues where the last
 * access ended (a sequential run inside a block is one reference). */
void blk_touch(struct cache *c, struct cblk *b, uint32_t s, uint32_t e)
{
	(void)c;
	if (b->touch_end != UINT32_MAX && s != b->touch_end)
		policy_touch(b);
	b->touch_end = e;
}

/* Clear valid and dirty for whole sectors of one block. Returns dirty bytes dropped;
 * adds those no failed write-back reported yet to *unreported (when not NULL). */
static uint64_t invalidate_block(struct cache *c, struct cblk *b, uint64_t off, uint64_t len,
				 uint64_t *unreported)
{
	uint64_t base = b->idx * c->cb;
	uint64_t s = MAX(off, base), e = MIN(off + len, base + c->cb);
	uint64_t dropped = 0;
	if (s >= e)
		return 0;
	uint32_t ss = (uint32_t)((s - base) / c->bs);
	uint32_t es = (uint32_t)MIN((e - base) / c->bs, (uint64_t)c->spb);
	for (uint32_t k = ss; k < es; k++) {
		if (bit_test(b->dirty, k)) {
			bit_clear(b->dirty, k);
			b->ndirty--;
			dropped += c->bs;
		}
		bit_clear(b->valid, k);
	}
	if (dropped)
		cache_dirty_add(c, -(int64_t)dropped);
	if (unreported && !b->reported)
		*unreported += dropped;
	if (b->ndirty == 0)
		blk_dirty_unlink(c, b);
	blk_recount(c, b);
	return dropped;
}

/* Clear valid and dirty for the whole sectors of [off, off+len). Walks the range or the
 * resident blocks, whichever is shorter (a zeroed range may be the whole LUN). Returns
 * the dirty bytes dropped. */
uint64_t blk_invalidate(struct cache *c, uint64_t off, uint64_t len, uint64_t *unreported)
{
	uint64_t first = off / c->cb, last = (off + len - 1) / c->cb;
	uint64_t dropped = 0;
	if (last - first + 1 <= c->nused) {
		for (uint64_t idx = first; idx <= last; idx++) {
			struct cblk *b = blk_lookup(c, idx);
			if (b)
				dropped += invalidate_block(c, b, off, len, unreported);
		}
	} else {
		for (uint64_t i = 0; i <= c->hash_mask; i++)
			for (struct cblk *b = c->hash[i]; b; b = b->hnext)
				if (b->idx >= first && b->idx <= last)
					dropped += invalidate_block(c, b, off, len, unreported);
	}
	return dropped;
}

/* Drop every sector of b at or past its nsect (the device's end moved below them):
 * clear valid and dirty. Returns the dirty bytes dropped (the caller counts them lost).
 * A sector being fetched is left to its fetch, which does not make it valid. */
uint64_t blk_drop_past_end(struct cache *c, struct cblk *b)
{
	uint64_t dropped = 0;
	for (uint32_t k = b->nsect; k < c->spb; k++) {
		if (bit_test(b->dirty, k)) {
			bit_clear(b->dirty, k);
			b->ndirty--;
			dropped += c->bs;
		}
		bit_clear(b->valid, k);
	}
	if (!dropped)
		return 0;
	cache_dirty_add(c, -(int64_t)dropped);
	if (b->ndirty == 0)
		blk_dirty_unlink(c, b);
	blk_recount(c, b);
	return dropped;
}

/* Is any sector of [off, off+len) dirty or being written back? Walks the dirty list and
 * the write list, not the range: a discard may be huge. */
bool blk_range_unwritten(struct cache *c, uint64_t off, uint64_t len)
{
	for (struct cblk *b = c->dirty_head; b; b = b->dnext) {
		uint64_t base = b->idx * c->cb;
		if (!(base < off + len && off < base + c->cb))
			continue;
		uint32_t s = (uint32_t)((MAX(off, base) - base) / c->bs);
		uint32_t e = (uint32_t)DIV_ROUND_UP(MIN(off + len, base + c->cb) - base, c->bs);
		for (uint32_t k = s; k < e; k++)
			if (bit_test(b->dirty, k))
				return true;
	}
	return guard_overlaps(c, off, len, IF_WB);
}

/* Give every block back to the pool (the cache is being freed: nothing is pinned,
 * dirty or in flight). */
void blk_release_all(struct cache *c)
{
	for (uint64_t i = 0; i <= c->hash_mask; i++) {
		while (c->hash[i]) {
			struct cblk *b = c->hash[i];
			c->hash[i] = b->hnext;
			b->hnext = NULL;
			c->nused--;
			c->st.cached_bytes -= c->cb;
			pool_release_block(c, b);
		}
	}
	free(c->hash);
	c->hash = NULL;
}

/* ---------- the invariant checker ---------- */

static bool checks_on;

void cache_debug_checks(bool on)
{
	__atomic_store_n(&checks_on, on, __ATOMIC_RELAXED);
}

bool cache_check_enabled(void)
{
#ifdef CACHE_DEBUG
	return true;
#else
	return __atomic_load_n(&checks_on, __ATOMIC_RELAXED);
#endif
}

#define VIOLATION(...)                                                \
	do {                                                          \
		bad++;                                                \
		if (print) {                                          \
			fprintf(stderr, "cache_check %s: ", c->name); \
			fprintf(stderr, __VA_ARGS__);                 \
			fputc('\n', stderr);                          \
		}                                                     \
	} while (0)

static uint32_t popcount_range(const uint64_t *m, uint32_t n)
{
	uint32_t k = 0;
	for (uint32_t i = 0; i < n; i++)
		k += bit_test(m, i);
	return k;
}

/*
 * The invariants (the list at the top of cache.c), checked under c->lock:
 *  1. every resident block is in the hash once, under its idx, owned by this cache;
 *     nused and cached_bytes count them
 *  2. dirty implies valid; fetching implies not valid; nothing beyond nsect is set
 *  3. ndirty = number of dirty bits; in the dirty list iff ndirty > 0; the dirty list
 *     is ordered by dirty_seq and holds only blocks of this cache
 *  4. unclean = ndirty || writing; nunclean counts unclean blocks
 *  5. dirty_bytes = dirty sectors + write-backs in flight
 *  6. a block with fetching sectors, or writing, is pinned
 *  7. no two writes to inner (IF_WB, IF_WT, IF_ZERO) in flight overlap; inflight_wb_*
 *     count the IF_WB ones
 *  8. a parked request is marked parked
 *  9. a block off the replacement queues (offq) is unclean
 */
int cache_check_locked(struct cache *c, bool print)
{
	int bad = 0;
	uint64_t nblk = 0, ndirty_list = 0, unclean = 0, dirty_sect = 0;

	for (uint64_t i = 0; i <= c->hash_mask; i++) {
		for (struct cblk *b = c->hash[i]; b; b = b->hnext) {
			nblk++;
			if (b->owner != c)
				VIOLATION("block %" PRIu64 " in the hash belongs to another cache",
					  b->idx);
			if ((hash_idx(b->idx) & c->hash_mask) != i)
				VIOLATION("block %" PRIu64 " in the wrong bucket", b->idx);
			if (b->nsect > c->spb)
				VIOLATION("block %" PRIu64 " nsect %u > %u", b->idx, b->nsect,
					  c->spb);
			bool fetching = false;
			for (uint32_t k = 0; k < c->spb; k++) {
				bool v = bit_test(b->valid, k), dt = bit_test(b->dirty, k),
				     f = bit_test(b->fetching, k);
				if (dt && !v)
					VIOLATION("block %" PRIu64 " sector %u dirty but not valid",
						  b->idx, k);
				if (f && v)
					VIOLATION("block %" PRIu64 " sector %u fetching and valid",
						  b->idx, k);
				if (k >= b->nsect && (v || dt || f))
					VIOLATION("block %" PRIu64
						  " sector %u beyond the device has state",
						  b->idx, k);
				fetching |= f;
			}
			uint32_t nd = popcount_range(b->dirty, c->spb);
			if (nd != b->ndirty)
				VIOLATION("block %" PRIu64 " ndirty %u, %u dirty bits", b->idx,
					  b->ndirty, nd);
			dirty_sect += nd;
			if (b->in_dirty_list != (b->ndirty > 0))
				VIOLATION("block %" PRIu64 " in_dirty_list %d with ndirty %u",
					  b->idx, b->in_dirty_list, b->ndirty);
			if (b->unclean != (b->ndirty || b->writing))
				VIOLATION("block %" PRIu64 " unclean %d, ndirty %u writing %d",
					  b->idx, b->unclean, b->ndirty, b->writing);
			unclean += b->unclean;
			if (b->offq && !b->unclean)
				VIOLATION("block %" PRIu64 " off the replacement queues but clean",
					  b->idx);
			if ((fetching || b->writing) && b->pins == 0)
				VIOLATION("block %" PRIu64
					  " fetching or in write-back but not pinned",
					  b->idx);
		}
	}
	if (nblk != c->nused)
		VIOLATION("nused %" PRIu64 ", %" PRIu64 " blocks in the hash", c->nused, nblk);
	if (c->st.cached_bytes != nblk * c->cb)
		VIOLATION("cached_bytes %" PRIu64 " for %" PRIu64 " blocks", c->st.cached_bytes,
			  nblk);
	if (unclean != c->nunclean)
		VIOLATION("nunclean %" PRIu64 ", %" PRIu64 " unclean blocks", c->nunclean, unclean);
	uint64_t seq = 0;
	for (struct cblk *b = c->dirty_head; b; b = b->dnext) {
		ndirty_list++;
		if (b->owner != c || blk_lookup(c, b->idx) != b)
			VIOLATION("dirty list holds block %" PRIu64 " not resident here", b->idx);
		if (b->dirty_seq < seq)
			VIOLATION("dirty list out of order at block %" PRIu64, b->idx);
		seq = b->dirty_seq;
		if (ndirty_list > nblk + 1)
			break;
	}
	uint64_t wb_bytes = 0, wb_ops = 0;
	for (struct inflight *f = c->writes; f; f = f->next) {
		if (f->kind & IF_WB) {
			wb_bytes += f->len;
			wb_ops++;
		}
		for (struct inflight *g = f->next; g; g = g->next)
			if (f->off < g->off + g->len && g->off < f->off + f->len)
				VIOLATION("overlapping writes in flight: [%" PRIu64 ", +%" PRIu64
					  ") kind %d and [%" PRIu64 ", +%" PRIu64 ") kind %d",
					  f->off, f->len, f->kind, g->off, g->len, g->kind);
	}
	if (wb_ops != c->inflight_wb_ops || wb_bytes != c->inflight_wb_bytes)
		VIOLATION("inflight_wb %u ops %" PRIu64 " bytes, listed %" PRIu64 " / %" PRIu64,
			  c->inflight_wb_ops, c->inflight_wb_bytes, wb_ops, wb_bytes);
	if (c->st.dirty_bytes != dirty_sect * c->bs + wb_bytes)
		VIOLATION("dirty_bytes %" PRIu64 ", dirty sectors %" PRIu64
			  " bytes + write-back %" PRIu64,
			  c->st.dirty_bytes, dirty_sect * c->bs, wb_bytes);
	for (struct cache_io *io = c->parked; io; io = io->pnext)
		if (!io->cpark)
			VIOLATION("a parked request is not marked parked");
	return bad ? -1 : 0;
}
