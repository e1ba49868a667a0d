/*
 * cache_pool.c - one memory budget per mount: block memory, bounce buffers, requests
 * waiting for a block or for the dirty bound, the write-back threads, and the runner
 * of deferred work (see struct defer in cache_int.h).
 *
 * Budget. Block memory is allocated on demand up to nblocks_max blocks and never given
 * back to malloc while the pool lives: a block freed by one cache (eviction, destroy)
 * goes on the free list and is reused by any other, so the pool's memory is bounded by
 * cache_size whatever the number of caches. Which block goes is decided pool-wide by
 * the replacement policy (cache_policy.c), so a busy cache can use the whole budget and
 * an idle one gives its share back as its blocks age out.
 *
 * Dirty bound. Writers of a cache wait while the blocks holding dirty data (or in
 * write-back) of every cache together would exceed dirty_max and that cache holds at
 * least its fair share (dirty_max / caches holding dirty data): a cache whose target
 * refuses its writes cannot lock every other cache out of the write-back budget.
 *
 * Bounce buffers: read-ahead and write-back copy through them; together they may hold
 * at most POOL_BOUNCE_MAX bytes (read-ahead is then skipped, write-back waits), so
 * memory stays within cache_size plus a fixed amount.
 *
 * NOTES ON THE THREAD MODEL
 *   cfg.flushers write-back threads per pool (pool_flusher_main), created by
 *   cache_pool_create and joined by cache_pool_destroy (or by the destroy of the one
 *   cache of a private pool). Thread k serves the caches whose id % nthreads == k that
 *   hold dirty data: it builds coalesced WRITEs under the cache's lock and submits them
 *   after unlocking; completions arrive on inner's threads (cache_writeback.c). It also
 *   wakes requests waiting on the pool at least every 100 ms while there are any, so a
 *   missed wake-up costs latency, never a hang.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cache_int.h"
#include "iscsifs/log.h"

#define POOL_BOUNCE_UNIT (1u << 20)
#define POOL_BOUNCE_MAX (16u << 20)
#define POOL_MIN_BLOCKS 8
#define POOL_SLAB (2u << 20) /* block memory is mapped this much at a time */
#define POOL_SAFETY_MS 100   /* requests parked on the pool are woken at least this often */

/* ---------- references ---------- */

static void pool_free(struct cache_pool *p);

static void pool_get(struct cache_pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->refs++;
	pthread_mutex_unlock(&p->lock);
}

static void pool_put(struct cache_pool *p)
{
	pthread_mutex_lock(&p->lock);
	bool last = --p->refs == 0;
	bool free_now = last && p->auto_free;
	if (last && p->destroying)
		pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	if (free_now)
		pool_free(p);
}

/* ---------- deferred work ---------- */

static __thread struct defer *tls_runner;

static void merge(struct defer *to, struct defer *from)
{
#define MOVE(h, t, link)                       \
	if (from->h) {                         \
		if (to->t)                     \
			to->t->link = from->h; \
		else                           \
			to->h = from->h;       \
		to->t = from->t;               \
		from->h = from->t = NULL;      \
	}
	MOVE(fetch_head, fetch_tail, dnext)
	MOVE(wb_head, wb_tail, dnext)
	MOVE(sub_head, sub_tail, snext)
	MOVE(done_head, done_tail, dnext)
#undef MOVE
	for (int i = 0; i < from->npools; i++) {
		int j;
		for (j = 0; j < to->npools && to->pools[j] != from->pools[i]; j++)
			;
		if (j < to->npools) {
			to->pool_work[j] |= from->pool_work[i];
			to->wake_space[j] = MIN(WAKE_ALL, to->wake_space[j] + from->wake_space[i]);
			to->wake_dirty[j] = MIN(WAKE_ALL, to->wake_dirty[j] + from->wake_dirty[i]);
			pool_put(from->pools[i]); /* `to` holds one already */
		} else if (j < DEFER_POOLS) {
			to->pools[j] = from->pools[i];
			to->pool_work[j] = from->pool_work[i];
			to->wake_space[j] = from->wake_space[i];
			to->wake_dirty[j] = from->wake_dirty[i];
			to->npools++;
		} else {
			/* more pools than slots (never in practice): do it now */
			struct defer one = DEFER_INIT;
			one.pools[0] = from->pools[i];
			one.pool_work[0] = from->pool_work[i];
			one.wake_space[0] = from->wake_space[i];
			one.wake_dirty[0] = from->wake_dirty[i];
			one.npools = 1;
			struct defer *saved = tls_runner;
			tls_runner = NULL;
			defer_run(&one);
			tls_runner = saved;
		}
	}
	from->npools = 0;
}

static void pool_wake(struct cache_pool *p, int nspace, int ndirty);
static void pool_reclaim(struct cache_pool *p);

static void run_pool_work(struct cache_pool *p, unsigned work, int nspace, int ndirty)
{
	if (work & DEFER_KICK)
		pool_kick(p);
	if (work & DEFER_RECLAIM)
		pool_reclaim(p);
	if (nspace || ndirty)
		pool_wake(p, nspace, ndirty);
}

void defer_run(struct defer *d)
{
	if (tls_runner && tls_runner != d) {
		merge(tls_runner, d);
		return;
	}
	tls_runner = d;
	for (;;) {
		if (d->fetch_head) {
			struct fetch *f = d->fetch_head;
			d->fetch_head = f->dnext;
			if (!d->fetch_head)
				d->fetch_tail = NULL;
			f->dnext = NULL;
			fetch_submit(f);
		} else if (d->wb_head) {
			struct wb *w = d->wb_head;
			d->wb_head = w->dnext;
			if (!d->wb_head)
				d->wb_tail = NULL;
			w->dnext = NULL;
			wb_submit(w);
		} else if (d->sub_head) {
			struct cache_io *io = d->sub_head;
			d->sub_head = io->snext;
			if (!d->sub_head)
				d->sub_tail = NULL;
			io->snext = NULL;
			io_run_submit(io);
		} else if (d->done_head) {
			struct cache_io *io = d->done_head;
			d->done_head = io->dnext;
			if (!d->done_head)
				d->done_tail = NULL;
			io->dnext = NULL;
			io_run_done(io);
		} else if (d->npools) {
			int i = --d->npools;
			struct cache_pool *p = d->pools[i];
			run_pool_work(p, d->pool_work[i], d->wake_space[i], d->wake_dirty[i]);
			pool_put(p);
		} else {
			break;
		}
	}
	tls_runner = NULL;
}

void defer_fetch(struct defer *d, struct fetch *f)
{
	f->dnext = NULL;
	if (d->fetch_tail)
		d->fetch_tail->dnext = f;
	else
		d->fetch_head = f;
	d->fetch_tail = f;
}

void defer_wb(struct defer *d, struct wb *w)
{
	w->dnext = NULL;
	if (d->wb_tail)
		d->wb_tail->dnext = w;
	else
		d->wb_head = w;
	d->wb_tail = w;
}

void defer_io_submit(struct defer *d, struct cache_io *io)
{
	io->snext = NULL;
	if (d->sub_tail)
		d->sub_tail->snext = io;
	else
		d->sub_head = io;
	d->sub_tail = io;
}

void defer_io_done(struct defer *d, struct cache_io *io)
{
	io->dnext = NULL;
	if (d->done_tail)
		d->done_tail->dnext = io;
	else
		d->done_head = io;
	d->done_tail = io;
}

static void defer_pool(struct defer *d, struct cache_pool *p, unsigned work, int nspace, int ndirty)
{
	for (int i = 0; i < d->npools; i++) {
		if (d->pools[i] == p) {
			d->pool_work[i] |= work;
			/* saturating: two WAKE_ALLs would overflow an int */
			d->wake_space[i] = (int)MIN((int64_t)WAKE_ALL, (int64_t)d->wake_space[i] + nspace);
			d->wake_dirty[i] = (int)MIN((int64_t)WAKE_ALL, (int64_t)d->wake_dirty[i] + ndirty);
			return;
		}
	}
	if (d->npools == DEFER_POOLS) {
		/* cannot happen with one pool per mount; be correct anyway */
		run_pool_work(p, work, nspace, ndirty);
		return;
	}
	pool_get(p);
	d->pools[d->npools] = p;
	d->pool_work[d->npools] = work;
	d->wake_space[d->npools] = nspace;
	d->wake_dirty[d->npools] = ndirty;
	d->npools++;
}

void defer_wake_pool(struct defer *d, struct cache_pool *p, int nspace, int ndirty)
{
	defer_pool(d, p, 0, nspace, ndirty);
}

void defer_reclaim(struct defer *d, struct cache_pool *p)
{
	defer_pool(d, p, DEFER_RECLAIM, 0, 0);
}

void defer_kick(struct defer *d, struct cache_pool *p)
{
	defer_pool(d, p, DEFER_KICK, 0, 0);
}

/* ---------- bounce buffers ---------- */

/* Buffers larger than a quarter unit are taken as whole units, so they come from the
 * free list instead of a fresh mapping each time. */
static uint64_t bounce_size(uint64_t len)
{
	return len > POOL_BOUNCE_UNIT / 4 && len <= POOL_BOUNCE_UNIT ? POOL_BOUNCE_UNIT : len;
}

void *pool_bounce_get(struct cache_pool *p, uint64_t len, bool must)
{
	len = bounce_size(len);
	uint64_t now = __atomic_add_fetch(&p->bounce_bytes, len, __ATOMIC_SEQ_CST);
	if (!must && now > POOL_BOUNCE_MAX) {
		__atomic_sub_fetch(&p->bounce_bytes, len, __ATOMIC_SEQ_CST);
		return NULL;
	}
	void *b = NULL;
	if (len == POOL_BOUNCE_UNIT) {
		pthread_mutex_lock(&p->lock);
		if (p->nbounce_free)
			b = p->bounce_free[--p->nbounce_free];
		pthread_mutex_unlock(&p->lock);
	}
	if (!b)
		b = malloc(len);
	if (!b)
		__atomic_sub_fetch(&p->bounce_bytes, len, __ATOMIC_SEQ_CST);
	return b;
}

void pool_bounce_put(struct cache_pool *p, void *buf, uint64_t len)
{
	if (!buf)
		return;
	len = bounce_size(len);
	__atomic_sub_fetch(&p->bounce_bytes, len, __ATOMIC_SEQ_CST);
	if (len == POOL_BOUNCE_UNIT) {
		pthread_mutex_lock(&p->lock);
		if (p->nbounce_free < (int)ARRAY_SIZE(p->bounce_free)) {
			p->bounce_free[p->nbounce_free++] = buf;
			buf = NULL;
		}
		pthread_mutex_unlock(&p->lock);
	}
	free(buf);
}

/* ---------- blocks ---------- */

/* Block memory comes in slabs of POOL_SLAB bytes (or one block, when blocks are
 * larger), mapped as the pool grows and given back only when it is destroyed.
 * Measured and rejected: advising the slabs for transparent huge pages. It saves the
 * page fault that a cold cache takes on nearly every 4 KiB miss (7.7% of the daemon's
 * CPU in a cold random-read run), but the kernel then zeroes 2 MiB at the first touch
 * of each huge page, all of the budget at once, where 4 KiB pages are zeroed only as
 * misses touch them: 23.6% of the daemon's CPU in the same run. Caller holds the pool
 * lock. */
static uint8_t *slab_carve(struct cache_pool *p)
{
	if (p->slab_left == 0) {
		size_t len = MAX((size_t)POOL_SLAB, (size_t)p->cb);
		void *m = mmap(NULL, len + POOL_SLAB, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			return NULL;
		/* trim to a 2 MiB-aligned region of len bytes */
		uintptr_t a = ((uintptr_t)m + POOL_SLAB - 1) & ~((uintptr_t)POOL_SLAB - 1);
		size_t head = a - (uintptr_t)m, tail = POOL_SLAB - head;
		if (head)
			munmap(m, head);
		if (tail)
			munmap((uint8_t *)a + len, tail);
		struct slab *sl = malloc(sizeof(*sl));
		if (!sl) {
			munmap((void *)a, len);
			return NULL;
		}
		*sl = (struct slab){ (uint8_t *)a, len, p->slabs };
		p->slabs = sl;
		p->slab_next = sl->mem;
		p->slab_left = len / p->cb;
	}
	uint8_t *d = p->slab_next;
	p->slab_next += p->cb;
	p->slab_left--;
	return d;
}

static struct cblk *new_block_mem(struct cache_pool *p)
{
	size_t bm = (size_t)p->words * sizeof(uint64_t);
	struct cblk *b = calloc(1, sizeof(*b) + 3 * bm);
	if (!b)
		return NULL;
	b->data = slab_carve(p);
	if (!b->data) {
		free(b);
		return NULL;
	}
	ATOMIC_FIELD(b->freq);
	b->valid = (uint64_t *)(b + 1);
	b->dirty = b->valid + p->words;
	b->fetching = b->dirty + p->words;
	return b;
}

/* Take a free block, new memory, or evict one. Caller holds c->lock and p->lock. */
static struct cblk *take_block(struct cache_pool *p, struct cache *c, bool *busy)
{
	struct cblk *b = p->free_list;
	if (b) {
		p->free_list = b->qnext;
		p->nfree--;
		b->qnext = NULL;
		return b;
	}
	if (p->nblocks < p->nblocks_max && (b = new_block_mem(p))) {
		p->nblocks++;
		return b;
	}
	b = policy_evict(p, c, busy);
	if (b)
		p->evictions++;
	return b;
}

static void give_block(struct cache_pool *p, struct cache *c, struct cblk *b, uint64_t idx)
{
	b->owner = c;
	b->idx = idx;
	policy_insert(p, b, c->id);
}

struct cblk *pool_alloc_block(struct cache *c, uint64_t idx, bool *busy)
{
	struct cache_pool *p = c->pool;
	pthread_mutex_lock(&p->lock);
	struct cblk *b = take_block(p, c, busy);
	if (b)
		give_block(p, c, b, idx);
	pthread_mutex_unlock(&p->lock);
	return b;
}

void pool_release_block(struct cache *c, struct cblk *b)
{
	struct cache_pool *p = c->pool;
	pthread_mutex_lock(&p->lock);
	policy_remove(p, b);
	b->owner = NULL;
	b->qnext = p->free_list;
	p->free_list = b;
	p->nfree++;
	pthread_mutex_unlock(&p->lock);
}

/* ---------- requests waiting on the pool ---------- */

static void wq_push(struct waitq *q, struct cache_io *io)
{
	io->pnext = NULL;
	io->pprev = q->tail;
	if (q->tail)
		q->tail->pnext = io;
	else
		q->head = io;
	q->tail = io;
	q->n++;
}

static void wq_del(struct waitq *q, struct cache_io *io)
{
	if (io->pprev)
		io->pprev->pnext = io->pnext;
	else
		q->head = io->pnext;
	if (io->pnext)
		io->pnext->pprev = io->pprev;
	else
		q->tail = io->pprev;
	io->pprev = io->pnext = NULL;
	q->n--;
}

bool pool_dirty_over(const struct cache_pool *p, const struct cache *c, bool adding)
{
	uint64_t unclean = __atomic_load_n(&p->nunclean, __ATOMIC_SEQ_CST) + (adding ? 1 : 0);
	if (unclean * p->cb <= p->cfg.dirty_max)
		return false;
	int n = __atomic_load_n(&p->unclean_caches, __ATOMIC_SEQ_CST);
	uint64_t share = p->cfg.dirty_max / (uint64_t)MAX(n, 1);
	return __atomic_load_n(&c->nunclean, __ATOMIC_RELAXED) * p->cb >= MAX(share, p->cb);
}

struct cblk *pool_park_space(struct cache *c, struct cache_io *io, uint64_t idx, struct defer *d)
{
	struct cache_pool *p = c->pool;
	bool busy = false;
	pthread_mutex_lock(&p->lock);
	wq_push(&p->space_waiters, io);
	io->ppark = PPARK_SPACE;
	__atomic_add_fetch(&p->nspace_waiters, 1, __ATOMIC_SEQ_CST);
	/* Registered: try once more, so a block freed between the caller's attempt and
	 * now is not missed (its event found no waiter). */
	struct cblk *b = take_block(p, c, &busy);
	if (b) {
		wq_del(&p->space_waiters, io);
		io->ppark = PPARK_NONE;
		__atomic_sub_fetch(&p->nspace_waiters, 1, __ATOMIC_SEQ_CST);
		give_block(p, c, b, idx);
	} else {
		p->space_waits++;
	}
	pthread_mutex_unlock(&p->lock);
	if (!b) {
		if (busy)
			defer_reclaim(d, p);
		defer_kick(d, p); /* dirty blocks may be what holds the budget */
	}
	return b;
}

bool pool_park_dirty(struct cache *c, struct cache_io *io, struct defer *d)
{
	struct cache_pool *p = c->pool;
	pthread_mutex_lock(&p->lock);
	wq_push(&p->dirty_waiters, io);
	io->ppark = PPARK_DIRTY;
	__atomic_add_fetch(&p->ndirty_waiters, 1, __ATOMIC_SEQ_CST);
	bool still = pool_dirty_over(p, c, true);
	if (!still) {
		wq_del(&p->dirty_waiters, io);
		io->ppark = PPARK_NONE;
		__atomic_sub_fetch(&p->ndirty_waiters, 1, __ATOMIC_SEQ_CST);
	} else {
		p->dirty_waits++;
	}
	pthread_mutex_unlock(&p->lock);
	if (still) {
		/* Start this cache's due write-back from here (c->lock is held). While some
		 * of it is in flight its completions wake the waiters and issue the next
		 * batch (wb_done), so the write-back threads are kicked only when none is:
		 * the data holding the bound is another cache's, or waits for a retry or
		 * for bounce memory. Kicking at every park woke both threads (and their
		 * lock traffic) about once per write under a steady write load. */
		wb_pump(c, d);
		if (c->inflight_wb_ops == 0)
			defer_kick(d, p);
	}
	return still;
}

bool pool_unpark(struct cache_pool *p, struct cache_io *io)
{
	bool was = false;
	pthread_mutex_lock(&p->lock);
	if (io->ppark == PPARK_SPACE) {
		wq_del(&p->space_waiters, io);
		__atomic_sub_fetch(&p->nspace_waiters, 1, __ATOMIC_SEQ_CST);
		was = true;
	} else if (io->ppark == PPARK_DIRTY) {
		wq_del(&p->dirty_waiters, io);
		__atomic_sub_fetch(&p->ndirty_waiters, 1, __ATOMIC_SEQ_CST);
		was = true;
	}
	if (was)
		io->ppark = PPARK_NONE;
	pthread_mutex_unlock(&p->lock);
	return was;
}

/* Step the oldest `nspace` requests waiting for a block and `ndirty` waiting for the
 * dirty bound (as many as the event freed: waking all of them would have all but one
 * park again). No lock held. */
static void pool_wake(struct cache_pool *p, int nspace, int ndirty)
{
	struct waitq woken = { 0 };
	pthread_mutex_lock(&p->lock);
	for (int k = 0; k < 2; k++) {
		struct waitq *q = k == 0 ? &p->space_waiters : &p->dirty_waiters;
		int *counter = k == 0 ? &p->nspace_waiters : &p->ndirty_waiters;
		int n = k == 0 ? nspace : ndirty;
		for (struct cache_io *io = q->head, *next; n > 0 && io; io = next) {
			next = io->pnext;
			/* a writer whose cache holds its share of the dirty budget would only
			 * park again: leave it, wake one that can go on */
			if (k == 1 && n < WAKE_ALL && pool_dirty_over(p, io_cache(io), true))
				continue;
			wq_del(q, io);
			__atomic_sub_fetch(counter, 1, __ATOMIC_SEQ_CST);
			io->ppark = PPARK_WOKEN;
			wq_push(&woken, io);
			n--;
		}
	}
	pthread_mutex_unlock(&p->lock);
	while (woken.head) {
		struct cache_io *io = woken.head;
		woken.head = io->pnext;
		io->pnext = io->pprev = NULL;
		struct cache *c = io_cache(io);
		struct defer d = DEFER_INIT;
		cache_lock(c);
		pthread_mutex_lock(&p->lock);
		io->ppark = PPARK_NONE;
		pthread_mutex_unlock(&p->lock);
		io_step_parked(io, &d);
		cache_unlock(c, &d);
	}
}

/* Eviction found only blocks of caches whose lock was busy: take one of them with
 * blocking locks (no lock is held here), so a waiting request does not have to wait
 * for an unrelated event. */
static void pool_reclaim(struct cache_pool *p)
{
	for (int tries = 0; tries < 4; tries++) {
		pthread_mutex_lock(&p->lock);
		struct cblk *head = p->small.len >= p->small_target || !p->main.head ?
					    p->small.head :
					    p->main.head;
		if (!head)
			head = p->small.head ? p->small.head : p->main.head;
		struct cache *victim = head ? head->owner : NULL;
		if (victim && !cache_tryget(victim))
			victim = NULL; /* being freed: its blocks go back to the pool anyway */
		pthread_mutex_unlock(&p->lock);
		if (!victim)
			break;
		struct defer d = DEFER_INIT;
		bool busy = false;
		cache_lock(victim);
		pthread_mutex_lock(&p->lock);
		struct cblk *b = policy_evict(p, victim, &busy);
		if (b) {
			p->evictions++;
			b->qnext = p->free_list;
			p->free_list = b;
			p->nfree++;
		}
		pthread_mutex_unlock(&p->lock);
		cache_unlock(victim, &d);
		cache_put(victim);
		if (b || !busy)
			break;
	}
	pool_wake(p, 1, 0);
}

/* ---------- dirty accounting ---------- */

void pool_unclean_add(struct cache_pool *p, struct cache *c, int delta)
{
	__atomic_add_fetch(&p->nunclean, (uint64_t)(int64_t)delta, __ATOMIC_SEQ_CST);
	bool was = c->nunclean != 0;
	__atomic_store_n(&c->nunclean, c->nunclean + (uint64_t)(int64_t)delta, __ATOMIC_RELAXED);
	bool now = c->nunclean != 0;
	if (was == now)
		return;
	__atomic_add_fetch(&p->unclean_caches, now ? 1 : -1, __ATOMIC_SEQ_CST);
	pthread_mutex_lock(&p->lock);
	if (now && !c->in_unclean) {
		c->uprev = NULL;
		c->unext = p->unclean;
		if (p->unclean)
			p->unclean->uprev = c;
		p->unclean = c;
		c->in_unclean = true;
	} else if (!now && c->in_unclean && !c->stop) {
		if (c->uprev)
			c->uprev->unext = c->unext;
		else
			p->unclean = c->unext;
		if (c->unext)
			c->unext->uprev = c->uprev;
		c->uprev = c->unext = NULL;
		c->in_unclean = false;
	}
	pthread_mutex_unlock(&p->lock);
}

/* Put a stopping cache on the write-back threads' list even when it is clean, so its
 * stop is seen through (c->lock held). */
void pool_list_for_stop(struct cache_pool *p, struct cache *c)
{
	pthread_mutex_lock(&p->lock);
	if (!c->in_unclean) {
		c->uprev = NULL;
		c->unext = p->unclean;
		if (p->unclean)
			p->unclean->uprev = c;
		p->unclean = c;
		c->in_unclean = true;
	}
	pthread_mutex_unlock(&p->lock);
}

static void unlist_unclean_locked(struct cache_pool *p, struct cache *c)
{
	if (!c->in_unclean)
		return;
	if (c->uprev)
		c->uprev->unext = c->unext;
	else
		p->unclean = c->unext;
	if (c->unext)
		c->unext->uprev = c->uprev;
	c->uprev = c->unext = NULL;
	c->in_unclean = false;
}

bool pool_background_due(const struct cache_pool *p)
{
	uint64_t dirty = __atomic_load_n(&p->dirty_bytes, __ATOMIC_RELAXED);
	uint64_t unclean = __atomic_load_n(&p->nunclean, __ATOMIC_RELAXED) * p->cb;
	return dirty > p->cfg.dirty_max / 2 || unclean > p->cfg.dirty_max / 4 * 3;
}

bool pool_has_waiters(const struct cache_pool *p)
{
	return __atomic_load_n(&p->nspace_waiters, __ATOMIC_RELAXED) ||
	       __atomic_load_n(&p->ndirty_waiters, __ATOMIC_RELAXED);
}

uint64_t pool_dirty_max(const struct cache_pool *p)
{
	return p->cfg.dirty_max;
}

void pool_kick(struct cache_pool *p)
{
	if (__atomic_exchange_n(&p->kick_pending, 1, __ATOMIC_ACQ_REL))
		return;
	pthread_mutex_lock(&p->lock);
	p->kick++;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

/* ---------- caches ---------- */

void pool_add_cache(struct cache_pool *p, struct cache *c)
{
	pthread_mutex_lock(&p->lock);
	p->refs++;
	c->id = p->next_id++;
	c->pprev = NULL;
	c->pnext = p->caches;
	if (p->caches)
		p->caches->pprev = c;
	p->caches = c;
	p->ncaches++;
	pthread_mutex_unlock(&p->lock);
}

/* The cache is being freed: no block of it is pinned or dirty any more. */
void pool_remove_cache(struct cache_pool *p, struct cache *c)
{
	pthread_mutex_lock(&p->lock);
	unlist_unclean_locked(p, c);
	if (c->pprev)
		c->pprev->pnext = c->pnext;
	else
		p->caches = c->pnext;
	if (c->pnext)
		c->pnext->pprev = c->pprev;
	p->ncaches--;
	pthread_mutex_unlock(&p->lock);
	pool_put(p);
}

/* ---------- write-back threads ---------- */

struct flusher_arg {
	struct cache_pool *p;
	int index;
};

void *pool_flusher_main(void *arg)
{
	struct flusher_arg *fa = arg;
	struct cache_pool *p = fa->p;
	int index = fa->index;
	struct cache **v = NULL;
	size_t vcap = 0;
	uint64_t last_safety = 0;

	free(fa);
	pthread_mutex_lock(&p->lock);
	while (!p->stopping) {
		uint64_t seen = p->kick;
		__atomic_store_n(&p->kick_pending, 0, __ATOMIC_RELEASE);
		size_t n = 0;
		for (struct cache *c = p->unclean; c; c = c->unext) {
			if ((int)(c->id % (uint32_t)p->nthreads) != index)
				continue;
			if (n == vcap) {
				size_t ncap = vcap ? vcap * 2 : 16;
				struct cache **nv = realloc(v, ncap * sizeof(*nv));
				if (!nv)
					break;
				v = nv;
				vcap = ncap;
			}
			if (cache_tryget(c)) /* not one whose last reference is gone */
				v[n++] = c;
		}
		pthread_mutex_unlock(&p->lock);

		uint64_t now = util_now_ms();
		uint64_t next = now + MAX(p->cfg.dirty_expire_ms / 2, 10);
		for (size_t i = 0; i < n; i++) {
			struct defer d = DEFER_INIT;
			cache_lock(v[i]);
			uint64_t w = wb_flusher_step(v[i], now, &d);
			cache_unlock(v[i], &d);
			cache_put(v[i]);
			next = MIN(next, w);
		}
		if (pool_has_waiters(p)) {
			/* safety net for a missed wake-up (see the top of this file) */
			if (index == 0 && now >= last_safety + POOL_SAFETY_MS) {
				last_safety = now;
				pool_wake(p, WAKE_ALL, WAKE_ALL);
			}
			next = MIN(next, now + POOL_SAFETY_MS);
		}

		pthread_mutex_lock(&p->lock);
		if (p->kick == seen && !p->stopping) {
			now = util_now_ms();
			struct timespec dl = util_deadline_ms(next > now ? next - now : 1);
			pthread_cond_timedwait(&p->cond, &p->lock, &dl);
		}
	}
	pthread_mutex_unlock(&p->lock);
	free(v);
	return NULL;
}

static void stop_threads(struct cache_pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	int n = p->nthreads;
	for (int i = 0; i < n; i++)
		pthread_join(p->threads[i], NULL);
	pthread_mutex_lock(&p->lock);
	p->nthreads = 0;
	pthread_mutex_unlock(&p->lock);
}

/* ---------- create / destroy ---------- */

struct cache_pool *cache_pool_create(const struct cache_pool_config *pc)
{
	uint64_t blk = pc->cache_block;
	if (blk < 4096 || (blk & (blk - 1)) || blk > (16u << 20) ||
	    pc->cache_size / blk < POOL_MIN_BLOCKS) {
		errno = EINVAL;
		return NULL;
	}
	struct cache_pool *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->cfg = *pc;
	if (!p->cfg.dirty_max)
		p->cfg.dirty_max = pc->cache_size / 4;
	p->cfg.dirty_max = MAX(p->cfg.dirty_max, blk);
	if (p->cfg.flushers <= 0)
		p->cfg.flushers = 2;
	p->cfg.flushers = MIN(p->cfg.flushers, 16);
	p->cb = blk;
	p->words = (uint32_t)DIV_ROUND_UP(blk / 512, 64);
	p->nblocks_max = pc->cache_size / blk;
	p->small_target = MAX(1, p->nblocks_max / 10);
	p->refs = 1;
	ATOMIC_FIELD(p->nunclean);
	ATOMIC_FIELD(p->dirty_bytes);
	ATOMIC_FIELD(p->bounce_bytes);
	ATOMIC_FIELD(p->unclean_caches);
	ATOMIC_FIELD(p->nspace_waiters);
	ATOMIC_FIELD(p->ndirty_waiters);
	ATOMIC_FIELD(p->kick_pending);
	pthread_mutex_init(&p->lock, NULL);
	util_cond_init(&p->cond);
	if (policy_init(p) < 0) {
		pthread_mutex_destroy(&p->lock);
		pthread_cond_destroy(&p->cond);
		free(p);
		errno = ENOMEM;
		return NULL;
	}
	p->threads = calloc((size_t)p->cfg.flushers, sizeof(*p->threads));
	if (!p->threads) {
		pool_free(p);
		errno = ENOMEM;
		return NULL;
	}
	/* Threads partition the caches by nthreads, read under the lock: set it first. */
	p->nthreads = p->cfg.flushers;
	for (int i = 0; i < p->cfg.flushers; i++) {
		struct flusher_arg *fa = malloc(sizeof(*fa));
		int r = ENOMEM;
		if (fa) {
			*fa = (struct flusher_arg){ .p = p, .index = i };
			r = pthread_create(&p->threads[i], NULL, pool_flusher_main, fa);
		}
		if (r) {
			free(fa);
			pthread_mutex_lock(&p->lock);
			p->nthreads = i; /* join what was started; its caches: none yet */
			pthread_mutex_unlock(&p->lock);
			stop_threads(p);
			pool_free(p);
			errno = r;
			return NULL;
		}
	}
	return p;
}

static void pool_free(struct cache_pool *p)
{
	for (struct cblk *b = p->free_list, *n; b; b = n) {
		n = b->qnext;
		free(b);
	}
	for (struct slab *sl = p->slabs, *n; sl; sl = n) {
		n = sl->next;
		munmap(sl->mem, sl->len);
		free(sl);
	}
	while (p->nbounce_free)
		free(p->bounce_free[--p->nbounce_free]);
	policy_free(p);
	free(p->threads);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
}

void cache_pool_destroy(struct cache_pool *p)
{
	if (!p)
		return;
	stop_threads(p);
	pthread_mutex_lock(&p->lock);
	p->destroying = true;
	p->refs--;
	while (p->refs > 0)
		pthread_cond_wait(&p->cond, &p->lock);
	pthread_mutex_unlock(&p->lock);
	pool_free(p);
}

/* A private pool: its cache is being destroyed by its creator (not on a pool thread). */
void pool_release_private(struct cache_pool *p)
{
	stop_threads(p);
	pthread_mutex_lock(&p->lock);
	p->auto_free = true;
	bool last = --p->refs == 0;
	pthread_mutex_unlock(&p->lock);
	if (last)
		pool_free(p);
}

void cache_pool_get_stats(struct cache_pool *p, struct cache_pool_stats *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&p->lock);
	out->capacity_bytes = p->nblocks_max * p->cb;
	out->cached_bytes = (p->nblocks - p->nfree) * p->cb;
	out->evictions = p->evictions;
	out->space_waits = p->space_waits;
	out->dirty_waits = p->dirty_waits;
	out->caches = p->ncaches;
	out->flushers = p->nthreads;
	pthread_mutex_unlock(&p->lock);
	out->dirty_bytes = __atomic_load_n(&p->dirty_bytes, __ATOMIC_RELAXED);
	out->unclean_bytes = __atomic_load_n(&p->nunclean, __ATOMIC_RELAXED) * p->cb;
	out->bounce_bytes = __atomic_load_n(&p->bounce_bytes, __ATOMIC_RELAXED);
}

struct cache_io *pool_take_parked_of(struct cache_pool *p, struct cache *c)
{
	struct cache_io *found = NULL;
	pthread_mutex_lock(&p->lock);
	for (int k = 0; k < 2 && !found; k++) {
		struct waitq *q = k == 0 ? &p->space_waiters : &p->dirty_waiters;
		for (struct cache_io *io = q->head; io; io = io->pnext) {
			if (io_cache(io) != c)
				continue;
			wq_del(q, io);
			__atomic_sub_fetch(k == 0 ? &p->nspace_waiters : &p->ndirty_waiters, 1,
					   __ATOMIC_SEQ_CST);
			io->ppark = PPARK_NONE;
			found = io;
			break;
		}
	}
	pthread_mutex_unlock(&p->lock);
	return found;
}
