/*
 * cache_policy.c - which block goes when the pool is full: S3-FIFO (Yang et al.,
 * SOSP'23) over every block of the pool, whatever cache it belongs to.
 *
 * New blocks enter a small FIFO (10% of the budget); a block re-referenced while there
 * moves to the main FIFO, one that is not is evicted and remembered in a ghost FIFO,
 * and a ghost hit enters main directly. Main is a FIFO with 2-bit frequency counters
 * and reinsertion (CLOCK-like). Chosen over LRU because one sequential pass over a LUN
 * larger than the cache - a backup, a dd, a mkfs - only cycles through the small queue
 * and leaves the hot working set in main alone, and over 2Q/ARC because a hit is a
 * counter bump (b->freq, an atomic, no lock at all), not a list move under a lock that
 * every reader of every LUN would take. The queues are pool-wide, so LUNs compete for
 * the budget by use: a busy LUN's blocks stay, an idle LUN's age out.
 *
 * Everything here runs under the pool lock (the lock rule is in cache_int.h). To
 * evict a block of another cache, its lock is taken with trylock; when that fails the
 * block goes to the back of its queue and `busy` tells the caller, which then has
 * the pool reclaim with blocking locks outside any lock (cache_pool.c). A block found
 * dirty or in write-back leaves the queues until it is clean (b->offq): random writes
 * can make a quarter of the budget dirty, and scanning past it on every eviction
 * cost 7% of the daemon's CPU.
 */
#include <stdlib.h>

#include "cache_int.h"

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

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return x;
}

static struct ghost **ghost_slot(struct cache_pool *p, uint32_t id, uint64_t idx)
{
	return &p->ghash[mix(idx ^ ((uint64_t)id << 40)) & p->ghash_mask];
}

static bool ghost_take(struct cache_pool *p, uint32_t id, uint64_t idx)
{
	for (struct ghost **g = ghost_slot(p, id, idx); *g; g = &(*g)->hnext) {
		if ((*g)->idx == idx && (*g)->cache_id == id) {
			struct ghost *x = *g;
			*g = x->hnext;
			x->idx = UINT64_MAX;
			return true;
		}
	}
	return false;
}

static void ghost_add(struct cache_pool *p, uint32_t id, uint64_t idx)
{
	struct ghost *g = &p->ghosts[p->ghost_pos];
	p->ghost_pos = (p->ghost_pos + 1) % p->nghosts;
	if (g->idx != UINT64_MAX)
		ghost_take(p, g->cache_id, g->idx);
	g->idx = idx;
	g->cache_id = id;
	struct ghost **slot = ghost_slot(p, id, idx);
	g->hnext = *slot;
	*slot = g;
}

void policy_insert(struct cache_pool *p, struct cblk *b, uint32_t cache_id)
{
	__atomic_store_n(&b->freq, 0, __ATOMIC_RELAXED);
	if (ghost_take(p, cache_id, b->idx)) {
		b->queue = Q_MAIN;
		q_push(&p->main, b);
	} else {
		b->queue = Q_SMALL;
		q_push(&p->small, b);
	}
}

void policy_remove(struct cache_pool *p, struct cblk *b)
{
	if (b->queue == Q_SMALL)
		q_remove(&p->small, b);
	else if (b->queue == Q_MAIN)
		q_remove(&p->main, b);
	b->queue = Q_NONE;
}

/* A block taken off the queues while unclean became clean: it is in use, so it goes
 * back into main. Caller holds its owner's lock and the pool lock. */
void policy_clean(struct cache_pool *p, struct cblk *b)
{
	b->offq = false;
	b->queue = Q_MAIN;
	q_push(&p->main, b);
}

void policy_touch(struct cblk *b)
{
	uint8_t f = __atomic_load_n(&b->freq, __ATOMIC_RELAXED);
	if (f < 3)
		__atomic_store_n(&b->freq, (uint8_t)(f + 1), __ATOMIC_RELAXED);
}

/* Try to evict from one queue: rotate past blocks that cannot go (pinned, dirty, in
 * write-back, their cache busy), promote re-referenced small-queue blocks to main, age
 * main-queue blocks. Bounded: a main block's frequency (at most 3) drops by one per
 * lap. */
static struct cblk *evict_from(struct cache_pool *p, struct cache *self, bool from_small,
			       bool *busy)
{
	struct qlist *q = from_small ? &p->small : &p->main;
	for (uint64_t tries = 4 * q->len + 1; tries > 0 && q->head; tries--) {
		struct cblk *b = q->head;
		q_remove(q, b);
		uint8_t f = __atomic_load_n(&b->freq, __ATOMIC_RELAXED);
		if (from_small && f > 0) {
			__atomic_store_n(&b->freq, 0, __ATOMIC_RELAXED);
			b->queue = Q_MAIN;
			q_push(&p->main, b);
			continue;
		}
		if (!from_small && f > 0) {
			__atomic_store_n(&b->freq, (uint8_t)(f - 1), __ATOMIC_RELAXED);
			q_push(q, b);
			continue;
		}
		struct cache *owner = b->owner;
		if (owner != self && pthread_mutex_trylock(&owner->lock) != 0) {
			*busy = true;
			q_push(q, b);
			continue;
		}
		if (!blk_evictable(b)) {
			if (b->unclean) {
				/* Dirty or in write-back: it cannot go before write-back makes it
				 * clean, which may take long (a burst of random writes holds
				 * dirty_max of blocks). Off the queues meanwhile, so evictions do not
				 * scan past it again and again; back into main when clean
				 * (policy_clean). */
				b->offq = true;
				b->queue = Q_NONE;
			} else {
				q_push(q, b); /* pinned: briefly */
			}
			if (owner != self)
				pthread_mutex_unlock(&owner->lock);
			continue;
		}
		if (from_small)
			ghost_add(p, owner->id, b->idx);
		blk_detach(owner, b);
		if (owner != self)
			pthread_mutex_unlock(&owner->lock);
		b->queue = Q_NONE;
		b->owner = NULL;
		return b;
	}
	return NULL;
}

struct cblk *policy_evict(struct cache_pool *p, struct cache *self, bool *busy)
{
	bool small_first = p->small.len >= p->small_target || !p->main.len;
	struct cblk *b = evict_from(p, self, small_first, busy);
	return b ? b : evict_from(p, self, !small_first, busy);
}

static uint64_t pow2_at_least(uint64_t n)
{
	uint64_t x = 1;
	while (x < n)
		x <<= 1;
	return x;
}

int policy_init(struct cache_pool *p)
{
	p->nghosts = MAX(p->nblocks_max, 16);
	p->ghash_mask = pow2_at_least(p->nghosts) - 1;
	p->ghosts = calloc(p->nghosts, sizeof(*p->ghosts));
	p->ghash = calloc(p->ghash_mask + 1, sizeof(*p->ghash));
	if (!p->ghosts || !p->ghash) {
		policy_free(p);
		return -1;
	}
	for (uint64_t i = 0; i < p->nghosts; i++)
		p->ghosts[i].idx = UINT64_MAX;
	return 0;
}

void policy_free(struct cache_pool *p)
{
	free(p->ghosts);
	free(p->ghash);
	p->ghosts = NULL;
	p->ghash = NULL;
}
