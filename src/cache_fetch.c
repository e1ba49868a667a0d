/*
 * cache_fetch.c - READs into the cache, and the overlap guard.
 *
 * A fetch reads a run of sectors that are neither valid nor being fetched. Before it is
 * issued its sectors are marked `fetching` and its blocks pinned; no reader uses and no
 * writer changes a fetching sector (both wait), so the data can land without the
 * lock: straight into the block's memory for a run inside one block (a demand miss,
 * the read of a partial sector a write merges with), or into a bounce buffer copied
 * into the blocks at completion for a run over several blocks (read-ahead). Only then,
 * under the lock, do the sectors become valid - never when the READ failed.
 *
 * The overlap guard: every request in flight to inner that others must not overlap is
 * registered (struct inflight, kinds in cache_int.h). Writes (IF_WB, IF_WT, IF_ZERO)
 * never overlap each other: libiscsi re-sends in-flight commands after a reconnect, so
 * an old write could otherwise land after a newer one. A fetch overlapping an IF_WT or
 * IF_ZERO in flight is held back (c->deferred) until that completes: served before it,
 * the READ would return, and cache, the data from before it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cache_int.h"
#include "iscsifs/log.h"

static bool overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

bool guard_overlaps(struct cache *c, uint64_t off, uint64_t len, int kinds)
{
	if (kinds & (IF_WB | IF_WT | IF_ZERO))
		for (struct inflight *f = c->writes; f; f = f->next)
			if ((f->kind & kinds) && overlap(off, len, f->off, f->len))
				return true;
	if (kinds & IF_FETCH)
		for (struct inflight *f = c->fetches; f; f = f->next)
			if (overlap(off, len, f->off, f->len))
				return true;
	return false;
}

void guard_add(struct cache *c, struct inflight *f, uint64_t off, uint64_t len, int kind)
{
	struct inflight **head = kind == IF_FETCH ? &c->fetches : &c->writes;
	f->off = off;
	f->len = len;
	f->kind = kind;
	if (kind != IF_WB)
		f->seq = 0;
	f->prev = NULL;
	f->next = *head;
	if (*head)
		(*head)->prev = f;
	*head = f;
}

static void issue_deferred(struct cache *c, struct defer *d)
{
	for (struct fetch **pf = &c->deferred; *pf;) {
		struct fetch *f = *pf;
		if (guard_overlaps(c, f->off, f->len, IF_WT | IF_ZERO)) {
			pf = &f->dnext;
			continue;
		}
		*pf = f->dnext;
		defer_fetch(d, f);
	}
}

void guard_del(struct cache *c, struct inflight *f, struct defer *d)
{
	struct inflight **head = f->kind == IF_FETCH ? &c->fetches : &c->writes;
	if (f->prev)
		f->prev->next = f->next;
	else
		*head = f->next;
	if (f->next)
		f->next->prev = f->prev;
	f->prev = f->next = NULL;
	if ((f->kind & (IF_WT | IF_ZERO)) && c->deferred)
		issue_deferred(c, d);
}

/* ---------- fetches ---------- */

static struct fetch *fetch_new(struct cache *c, uint64_t off, uint64_t len, size_t nblk)
{
	struct fetch *f = calloc(1, sizeof(*f) + nblk * sizeof(struct cblk *));
	if (!f)
		return NULL;
	f->c = c;
	f->off = off;
	f->len = len;
	return f;
}

static struct cblk **fetch_blocks(struct fetch *f)
{
	return (struct cblk **)(f + 1);
}

static size_t fetch_nblk(const struct fetch *f)
{
	uint64_t cb = f->c->cb;
	return (size_t)((f->off + f->len - 1) / cb - f->off / cb + 1);
}

/* Register and queue (or hold back) a fetch whose sectors are marked and blocks pinned. */
static void fetch_start(struct cache *c, struct fetch *f, struct defer *d)
{
	cache_get(c);
	guard_add(c, &f->fl, f->off, f->len, IF_FETCH);
	c->st.fetch_ops++;
	c->st.fetch_bytes += f->len;
	if (f->readahead)
		c->st.readahead_bytes += f->len;
	if (f->rmw)
		c->st.rmw_fetches++;
	if (guard_overlaps(c, f->off, f->len, IF_WT | IF_ZERO)) {
		f->dnext = c->deferred;
		c->deferred = f;
	} else {
		defer_fetch(d, f);
	}
}

static void mark(struct cblk *b, uint32_t s, uint32_t e, bool on)
{
	for (uint32_t k = s; k < e; k++) {
		if (on)
			bit_set(b->fetching, k);
		else
			bit_clear(b->fetching, k);
	}
}

int fetch_block_run(struct cache *c, struct cblk *b, uint32_t s, uint32_t e, bool rmw,
		    bool readahead, struct defer *d)
{
	uint64_t off = b->idx * c->cb + (uint64_t)s * c->bs;
	struct fetch *f = fetch_new(c, off, (uint64_t)(e - s) * c->bs, 1);
	if (!f)
		return -ENOMEM;
	mark(b, s, e, true);
	blk_pin(b);
	fetch_blocks(f)[0] = b;
	f->dst = b->data + (uint64_t)s * c->bs;
	f->rmw = rmw;
	f->readahead = readahead;
	fetch_start(c, f, d);
	return 0;
}

int fetch_run_bounced(struct cache *c, struct cblk **blks, size_t nblk, uint64_t off, uint64_t len,
		      struct defer *d)
{
	uint8_t *buf = pool_bounce_get(c->pool, len, false);
	if (!buf)
		return -ENOMEM;
	struct fetch *f = fetch_new(c, off, len, nblk);
	if (!f) {
		pool_bounce_put(c->pool, buf, len);
		return -ENOMEM;
	}
	f->buf = f->dst = buf;
	f->readahead = true;
	for (size_t i = 0; i < nblk; i++) {
		struct cblk *b = blks[i];
		uint64_t base = b->idx * c->cb;
		uint64_t s = MAX(off, base), e = MIN(off + len, base + c->cb);
		mark(b, (uint32_t)((s - base) / c->bs), (uint32_t)((e - base) / c->bs), true);
		blk_pin(b);
		fetch_blocks(f)[i] = b;
	}
	fetch_start(c, f, d);
	return 0;
}

static void fetch_done(void *opaque, int ret)
{
	struct fetch *f = opaque;
	struct cache *c = f->c;
	struct cblk **blks = fetch_blocks(f);
	size_t n = fetch_nblk(f);
	struct defer d = DEFER_INIT;

	/* A bounced READ: copy into the blocks before taking the lock; the sectors are
	 * ours alone while they are marked fetching (see the top of this file). */
	if (ret == 0 && f->buf) {
		for (size_t i = 0; i < n; i++) {
			uint64_t base = blks[i]->idx * c->cb;
			uint64_t s = MAX(f->off, base), e = MIN(f->off + f->len, base + c->cb);
			memcpy(blks[i]->data + (s - base), f->buf + (s - f->off), e - s);
		}
	}
	cache_lock(c);
	for (size_t i = 0; i < n; i++) {
		struct cblk *b = blks[i];
		uint64_t base = b->idx * c->cb;
		uint64_t s = MAX(f->off, base), e = MIN(f->off + f->len, base + c->cb);
		for (uint32_t k = (uint32_t)((s - base) / c->bs);
		     k < (uint32_t)((e - base) / c->bs); k++) {
			bit_clear(b->fetching, k);
			if (ret == 0 && k < b->nsect) /* (the device may have shrunk meanwhile) */
				bit_set(b->valid, k);
		}
		blk_unpin(c, b, &d);
	}
	guard_del(c, &f->fl, &d);
	if (ret < 0)
		log_debug("%s: read of %" PRIu64 " bytes at offset %" PRIu64 " failed: %s", c->name,
			  f->len, f->off, strerror(-ret));
	io_wake_range(c, f->off, f->len, ret, &d);
	cache_unlock(c, &d);
	pool_bounce_put(c->pool, f->buf, f->len);
	free(f);
	cache_put(c);
}

void fetch_submit(struct fetch *f)
{
	struct cache *c = f->c;
	int r = c->inner->ops->read(c->inner, f->off, f->len, f->dst, fetch_done, f);
	if (r < 0)
		fetch_done(f, r);
}
