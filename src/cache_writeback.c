/*
 * cache_writeback.c - dirty data back to the target.
 *
 * A write-back thread of the pool (cache_pool.c) calls wb_flusher_step for each cache
 * holding dirty data. It writes dirty data older than dirty_expire, or more when the
 * pool's dirty data passes half its bound or requests wait for a block or for the
 * bound, or everything up to a flush's sequence number. Adjacent dirty blocks are
 * coalesced into one WRITE of up to max_write bytes; the data is snapshotted into a
 * bounce buffer under the lock, so writes may go on meanwhile (they dirty the block
 * again). A WRITE is never issued over another write in flight (the overlap guard).
 *
 * A failed write-back re-marks its sectors dirty (they keep their age), is retried
 * with backoff, and is reported (EIO) to the next flush; after write_retries
 * consecutive failures of a block, writers that would have to wait for the dirty bound
 * get EIO instead of waiting forever.
 *
 * The device may shrink under any of this (cache_set_size, issue 11): data past the new
 * end can never be written. Whatever the order of the shrink and a write-back's
 * completion, it is dropped, counted in lost_bytes, logged once and reported as EIO to
 * the next flush: cache_set_size drops what is dirty then; a write-back in flight then
 * that fails drops its part past the end at completion (nothing past the end is marked
 * dirty again or retried); the flusher drops any dirt past the end it finds before
 * issuing, so no WRITE is ever issued past the current end and nothing waits for one.
 *
 * Stop (unmount): every dirty block is written without waiting for dirty_expire, and
 * gets at least one attempt after the stop began, whatever backoff it was in (a target
 * that failed a few write-backs and recovered must not lose data because the unmount
 * came inside the backoff). A block whose write-back keeps failing is retried until it
 * failed write_retries times or stop_budget_ms passed; then what is left is given up,
 * counted in lost_bytes and logged. Each attempt is bounded by inner's own timeouts
 * (the session's budget), so stop is bounded.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cache_int.h"
#include "iscsifs/log.h"

#define WB_MAX_OPS 32
#define WB_MAX_BYTES (8u << 20)

static uint64_t backoff_ms(int fails)
{
	uint64_t ms = 100ULL << MIN(fails, 6);
	return MIN(ms, 5000);
}

void wb_lost(struct cache *c, uint64_t bytes, bool report, struct defer *d)
{
	c->st.lost_bytes += bytes;
	/* once: a failure reported for this data already said it */
	if (report) {
		c->wb_error = -EIO; /* lost dirty data: EIO, whatever the target said */
		c->wb_error_gen++;
	}
	wb_recheck_failing(c, d);
	if (__atomic_load_n(&c->pool->ndirty_waiters, __ATOMIC_SEQ_CST) ||
	    __atomic_load_n(&c->pool->nspace_waiters, __ATOMIC_SEQ_CST))
		defer_wake_pool(d, c->pool, WAKE_ALL, WAKE_ALL);
	if (c->stop)
		pthread_cond_broadcast(&c->cond);
}

/* `failing` (write_retries exceeded) holds while some dirty block still fails that
 * often; when that block is written or dropped, writers may go on. */
void wb_recheck_failing(struct cache *c, struct defer *d)
{
	if (!c->failing)
		return;
	for (struct cblk *b = c->dirty_head; b; b = b->dnext)
		if (b->fails >= c->cc.write_retries)
			return;
	c->failing = false;
	log_notice("%s: write-back works again", c->name);
	defer_wake_pool(d, c->pool, 0, WAKE_ALL);
}

/* Dirt past the device's end found by the write-back (a shrink) is dropped, never
 * written: logged once for the block. */
static void drop_past_end(struct cache *c, struct cblk *b, struct defer *d)
{
	bool report = !b->reported;
	uint64_t lost = blk_drop_past_end(c, b);
	if (!lost)
		return;
	if (!c->dropped_all)
		log_err("%s: %" PRIu64 " dirty bytes at offset %" PRIu64 " lie past the device's "
			"end (%" PRIu64 " bytes): lost",
			c->name, lost, b->idx * c->cb + (uint64_t)b->nsect * c->bs, c->dev.size);
	wb_lost(c, lost, report, d);
}

static void wb_done(void *opaque, int ret)
{
	struct wb *w = opaque;
	struct cache *c = w->c;
	struct defer d = DEFER_INIT;
	uint64_t past = 0;

	cache_lock(c);
	uint64_t unclean_before = c->nunclean;
	bool failing_before = c->failing;
	for (uint64_t i = 0; i < w->nblk; i++) {
		struct cblk *b = blk_lookup(c, w->first_idx + i); /* pinned: still here */
		uint64_t base = b->idx * c->cb;
		b->writing = false;
		if (ret == 0) {
			b->fails = 0;
			b->reported = false;
			blk_recount(c, b);
			blk_unpin(c, b, &d);
			continue;
		}
		/* Keep the data: re-mark the sectors we tried to write as dirty, with the
		 * age they had, and retry later. */
		if (c->given_up) { /* counted lost when it was given up */
			b->fails = 0;
			blk_recount(c, b);
			blk_unpin(c, b, &d);
			continue;
		}
		uint64_t s = MAX(w->f.off, base), e = MIN(w->f.off + w->f.len, base + c->cb);
		uint32_t added = 0;
		for (uint32_t k = (uint32_t)((s - base) / c->bs);
		     k < (uint32_t)((e - base) / c->bs); k++) {
			if (!bit_test(b->dirty, k)) {
				bit_set(b->dirty, k);
				added++;
			}
		}
		bool was_listed = b->in_dirty_list;
		b->ndirty += added;
		cache_dirty_add(c, (int64_t)added * c->bs);
		blk_dirty_unlink(c, b);
		b->dirty_seq = was_listed ? MIN(b->dirty_seq, b->wb_seq) : b->wb_seq;
		if (!was_listed)
			b->dirty_ms = b->wb_ms; /* the data keeps its age: the list stays ordered */
		if (b->ndirty)
			blk_dirty_link(c, b);
		blk_recount(c, b);
		/* The device shrank while it was in flight: what lies past the end now is
		 * dropped, not retried (the target refused it for that reason). */
		past += blk_drop_past_end(c, b);
		if (!b->ndirty) {
			b->fails = 0;
			blk_unpin(c, b, &d);
			continue;
		}
		b->fails++;
		b->reported = true; /* wb_error_gen is bumped below */
		b->retry_ms = util_now_ms() + backoff_ms(b->fails);
		if (b->fails >= c->cc.write_retries && !c->failing) {
			c->failing = true;
			log_err("%s: write-back at offset %" PRIu64
				" failed %d times; new writes fail "
				"with EIO until it succeeds",
				c->name, w->f.off, b->fails);
		}
		blk_unpin(c, b, &d);
	}
	if (ret == 0) {
		c->st.writeback_ops++;
		c->st.writeback_bytes += w->f.len;
		wb_recheck_failing(c, &d);
	} else {
		c->st.write_errors++;
		c->st.writeback_errors++;
		/* A failed write-back is EIO to the flush that learns of it (ENOSPC is the
		 * answer to a new write past the end, not to data written earlier), or EROFS
		 * when the LUN became write-protected. */
		c->wb_error = ret == -EROFS ? ret : -EIO;
		c->wb_error_gen++;
		log_debug("%s: write-back of %" PRIu64 " bytes at offset %" PRIu64 " failed: %s",
			  c->name, w->f.len, w->f.off, strerror(-ret));
		if (past && !c->dropped_all)
			log_err("%s: write-back of %" PRIu64 " bytes at offset %" PRIu64
				" failed (%s) after the device shrank to %" PRIu64
				" bytes: the %" PRIu64 " bytes past its end are lost",
				c->name, w->f.len, w->f.off, strerror(-ret), c->dev.size, past);
		if (past) /* this failure (wb_error_gen above) reports it */
			wb_lost(c, past, false, &d);
	}
	cache_dirty_add(c, -(int64_t)w->f.len);
	c->inflight_wb_bytes -= w->f.len;
	c->inflight_wb_ops--;
	guard_del(c, &w->f, &d);
	io_wake_range(c, w->f.off, w->f.len, 0, &d);
	/* one waiting writer per block that became clean; all of them when the cache
	 * starts or stops failing (they then fail, or may go on) */
	if (c->failing != failing_before)
		defer_wake_pool(&d, c->pool, 0, WAKE_ALL);
	else if (c->nunclean < unclean_before &&
		 __atomic_load_n(&c->pool->ndirty_waiters, __ATOMIC_SEQ_CST))
		defer_wake_pool(&d, c->pool, (int)(unclean_before - c->nunclean),
				(int)(unclean_before - c->nunclean));
	if (c->stop)
		pthread_cond_broadcast(&c->cond);
	wb_pump(c, &d); /* the next batch, from this thread: no hand-off */
	if (ret < 0)
		defer_kick(&d, c->pool); /* the retry is a timer: the write-back threads' */
	cache_unlock(c, &d);
	pool_bounce_put(c->pool, w->buf, w->f.len);
	free(w);
	cache_put(c); /* last: the cache may go with it (issue 9 #3) */
}

void wb_submit(struct wb *w)
{
	struct cache *c = w->c;
	int r = c->inner->ops->write(c->inner, w->f.off, w->f.len, w->buf, wb_done, w);
	if (r < 0)
		wb_done(w, r);
}

/* The dirty span of a block: [s, e) from its first to last dirty sector, when every
 * sector between is valid (then one WRITE carries it); else up to the first invalid
 * sector. Clean valid sectors inside it are written along: harmless. */
static void dirty_span(struct cblk *b, uint32_t *s, uint32_t *e)
{
	uint32_t i = 0;
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
	*s = i;
	*e = j;
}

/* Prepare one coalesced WRITE starting from dirty block b: snapshot the data into a
 * bounce buffer, move its sectors from dirty to in flight. NULL when nothing can go
 * now (overlap, or no bounce memory: `nomem`). */
static struct wb *writeback_from(struct cache *c, struct cblk *b, bool *nomem)
{
	uint64_t cb = c->cb;
	uint32_t s, e;
	dirty_span(b, &s, &e);
	if (s >= e)
		return NULL;
	uint64_t off = b->idx * cb + (uint64_t)s * c->bs;
	uint64_t end = b->idx * cb + (uint64_t)e * c->bs;
	uint64_t first = b->idx, last = b->idx;
	uint64_t limit = cache_max_io(c);

	/* Extend forwards and backwards over neighbours whose dirty span touches ours. */
	for (struct cblk *n;
	     e == b->nsect && (n = blk_lookup(c, last + 1)) && !n->writing && n->ndirty;) {
		uint32_t ns, ne;
		dirty_span(n, &ns, &ne);
		if (ns != 0 || ne == 0 || end - off + (uint64_t)ne * c->bs > limit)
			break;
		last++;
		end = n->idx * cb + (uint64_t)ne * c->bs;
		if (ne != n->nsect)
			break;
	}
	for (struct cblk *p;
	     s == 0 && first > 0 && (p = blk_lookup(c, first - 1)) && !p->writing && p->ndirty;) {
		uint32_t ps, pe;
		dirty_span(p, &ps, &pe);
		if (pe != p->nsect || end - (p->idx * cb + (uint64_t)ps * c->bs) > limit)
			break;
		first--;
		off = p->idx * cb + (uint64_t)ps * c->bs;
		if (ps != 0)
			break;
	}
	if (guard_overlaps(c, off, end - off, IF_WB | IF_WT | IF_ZERO))
		return NULL;

	struct wb *w = calloc(1, sizeof(*w));
	uint8_t *buf = w ? pool_bounce_get(c->pool, end - off, false) : NULL;
	if (!buf) {
		free(w);
		*nomem = true;
		return NULL;
	}
	w->c = c;
	w->buf = buf;
	w->first_idx = first;
	w->nblk = last - first + 1;
	w->f.seq = UINT64_MAX;
	for (uint64_t idx = first; idx <= last; idx++) {
		struct cblk *x = blk_lookup(c, idx);
		uint64_t base = idx * cb;
		uint64_t xs = MAX(off, base), xe = MIN(end, base + cb);
		memcpy(buf + (xs - off), x->data + (xs - base), xe - xs);
		uint32_t cleared = 0;
		for (uint32_t k = (uint32_t)((xs - base) / c->bs);
		     k < (uint32_t)((xe - base) / c->bs); k++)
			if (bit_test(x->dirty, k)) {
				bit_clear(x->dirty, k);
				cleared++;
			}
		x->ndirty -= cleared;
		/* dirty_bytes keeps counting the whole WRITE until it completes */
		cache_dirty_add(c, -(int64_t)cleared * c->bs);
		x->wb_seq = x->dirty_seq;
		x->wb_ms = x->dirty_ms;
		w->f.seq = MIN(w->f.seq, x->dirty_seq); /* flush waits for the oldest it carries */
		if (x->ndirty == 0)
			blk_dirty_unlink(c, x);
		x->writing = true;
		blk_pin(x);
		blk_recount(c, x);
	}
	cache_dirty_add(c, (int64_t)(end - off));
	c->inflight_wb_bytes += end - off;
	c->inflight_wb_ops++;
	guard_add(c, &w->f, off, end - off, IF_WB);
	w->f.seq = w->f.seq; /* guard_add keeps seq for IF_WB */
	cache_get(c);
	return w;
}

/* Lowest dirty_seq still unwritten (dirty or in flight), or UINT64_MAX. */
uint64_t wb_oldest_unwritten(struct cache *c)
{
	uint64_t m = c->dirty_head ? c->dirty_head->dirty_seq : UINT64_MAX;
	for (struct inflight *f = c->writes; f; f = f->next)
		if ((f->kind & IF_WB) && f->seq < m)
			m = f->seq;
	return m;
}

static bool done_trying(const struct cache *c, const struct cblk *b, uint64_t now)
{
	return b->fails > b->fails_at_stop &&
	       (b->fails >= c->cc.write_retries || now >= c->stop_deadline);
}

/* Stopping and the target keeps refusing (or the daemon was told to end now): give the
 * rest up, say so. `inflight`: bytes of write-backs still in flight, counted lost too
 * (their completion then drops what failed instead of keeping it dirty). */
static void give_up(struct cache *c, struct defer *d, uint64_t inflight)
{
	uint64_t lost = inflight;
	while (c->dirty_head) {
		struct cblk *b = c->dirty_head;
		for (uint32_t k = 0; k < b->nsect; k++)
			if (bit_test(b->dirty, k))
				bit_clear(b->dirty, k);
		lost += (uint64_t)b->ndirty * c->bs;
		b->ndirty = 0;
		blk_dirty_unlink(c, b);
		blk_recount(c, b);
	}
	cache_dirty_add(c, -(int64_t)(lost - inflight));
	c->st.lost_bytes += lost;
	c->given_up = true;
	log_err("%s: %" PRIu64 " dirty bytes could not be written back and are lost", c->name,
		lost);
	if (__atomic_load_n(&c->pool->nspace_waiters, __ATOMIC_SEQ_CST) ||
	    __atomic_load_n(&c->pool->ndirty_waiters, __ATOMIC_SEQ_CST))
		defer_wake_pool(d, c->pool, WAKE_ALL, WAKE_ALL);
	pthread_cond_broadcast(&c->cond);
}

uint64_t wb_flusher_step(struct cache *c, uint64_t now, struct defer *d)
{
	uint64_t next = now + MAX(c->pool->cfg.dirty_expire_ms / 2, 10);
	uint64_t expire = c->pool->cfg.dirty_expire_ms;
	bool pressure = pool_background_due(c->pool) || pool_has_waiters(c->pool);

	for (struct cblk *b = c->dirty_head, *nb; b; b = nb) {
		nb = b->dnext;
		if (c->inflight_wb_ops >= WB_MAX_OPS || c->inflight_wb_bytes >= WB_MAX_BYTES)
			break;
		bool want = c->stop || b->dirty_seq <= c->flush_seq ||
			    now >= b->dirty_ms + expire || pressure;
		if (!want) {
			next = MIN(next, b->dirty_ms + expire);
			break; /* the list is ordered by age */
		}
		if (b->writing)
			continue;
		if (b->nsect < c->spb) {
			drop_past_end(c, b, d); /* never a WRITE past the end */
			if (!b->in_dirty_list)
				continue;
		}
		bool first_after_stop = c->stop && b->fails == b->fails_at_stop;
		if (b->retry_ms > now && !first_after_stop) {
			next = MIN(next, b->retry_ms);
			continue;
		}
		if (c->stop && !first_after_stop && done_trying(c, b, now))
			continue;
		/* b and its coalesced neighbours leave the dirty list; nb may be one of them,
		 * so continue from the first block that stays */
		bool nomem = false;
		struct wb *w = writeback_from(c, b, &nomem);
		if (w) {
			defer_wb(d, w);
			nb = b->in_dirty_list ? b->dnext : c->dirty_head;
			while (nb && nb->writing)
				nb = nb->dnext;
		} else if (nomem) {
			next = MIN(next, now + 10);
			break;
		}
	}
	if (c->stop && !c->given_up && c->dirty_head && !c->inflight_wb_ops) {
		bool all = true;
		for (struct cblk *b = c->dirty_head; b && all; b = b->dnext) {
			all = done_trying(c, b, now);
			if (!all)
				next = MIN(next, MIN(MAX(b->retry_ms, now + 1), c->stop_deadline));
		}
		if (all)
			give_up(c, d, 0);
	}
	return next;
}

void wb_stop_begin(struct cache *c, struct defer *d)
{
	if (c->stop)
		return;
	c->stop = true;
	c->stop_deadline = util_now_ms() + (c->cc.stop_budget_ms ? c->cc.stop_budget_ms : 30000);
	for (struct cblk *b = c->dirty_head; b; b = b->dnext)
		b->fails_at_stop = b->fails;
	/* blocks in write-back now: their outcome counts as the attempt after stop only if
	 * it fails again later; a failure of the WRITE in flight is counted like any other */
	for (uint64_t i = 0; i <= c->hash_mask; i++)
		for (struct cblk *b = c->hash[i]; b; b = b->hnext)
			if (b->writing)
				b->fails_at_stop = b->fails;
	pool_list_for_stop(c->pool, c);
	wb_pump(c, d);
	defer_kick(d, c->pool);
}

/* Issue what write-back is due now, from the calling thread (a completion, a writer
 * past the background threshold, a flush): the write-back threads are only needed
 * for timers (dirty_expire, retry backoff) and for pressure that spans caches. */
void wb_pump(struct cache *c, struct defer *d)
{
	if (c->dirty_head)
		wb_flusher_step(c, util_now_ms(), d);
}

void wb_abandon(struct cache *c, struct defer *d)
{
	if (c->given_up || (!c->dirty_head && !c->inflight_wb_ops))
		return;
	c->stop = true;
	give_up(c, d, c->inflight_wb_bytes);
}

bool wb_stop_done(struct cache *c)
{
	return (!c->dirty_head && !c->inflight_wb_ops) || c->given_up;
}
