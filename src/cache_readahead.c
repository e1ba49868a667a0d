/*
 * cache_readahead.c - sequential streams and read-ahead.
 *
 * A cache follows NSTREAMS streams (the least recently used one is replaced). A read
 * that starts where a stream's last one ended (within a slack: several FUSE requests of
 * one stream arrive slightly out of order) continues it. From the third read of a
 * stream on, demand misses fetch whole cache blocks, and read-ahead runs ahead of the
 * stream by a window that doubles, from twice the request or cache block size up to
 * readahead_max, issued in steps of at least half the window to keep commands large.
 * Random reads are left alone: no read-ahead, and misses fetch only what they ask for.
 *
 * Read-ahead never waits: it takes free or evictable blocks only, skips blocks already
 * resident (demand reads fill their gaps), and uses bounce buffers only within the
 * pool's bound (else one READ per block, straight into the block).
 * Everything here runs under c->lock.
 */
#include <string.h>

#include "cache_int.h"

bool ra_update(struct cache *c, uint64_t off, uint64_t len, uint64_t *ra_from, uint64_t *ra_to)
{
	struct stream *s = NULL, *lru = &c->streams[0];
	uint64_t end = off + len;
	*ra_from = *ra_to = 0;
	c->stream_clock++;
	for (int i = 0; i < NSTREAMS; i++) {
		struct stream *t = &c->streams[i];
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
		return false;
	}
	s->last_use = c->stream_clock;
	s->next_off = MAX(s->next_off, end);
	if (++s->hits < 2)
		return false; /* not a stream until its third read */
	if (c->cc.readahead_max == 0)
		return true;
	s->window = s->window ? MIN(s->window * 2, c->cc.readahead_max) :
				MIN(MAX(len, c->cb) * 2, c->cc.readahead_max);
	uint64_t from = MAX(s->ra_end, end);
	uint64_t to = end + s->window;
	if (to > from && (to - from >= s->window / 2 || from == end)) {
		*ra_from = from;
		*ra_to = to;
		s->ra_end = to;
	}
	return true;
}

/* Fetch a run of fresh blocks (all their sectors missing), pinned by the caller. */
static void fetch_fresh(struct cache *c, struct cblk **v, size_t n, struct defer *d)
{
	if (n == 0)
		return;
	uint64_t off = v[0]->idx * c->cb;
	uint64_t end = v[n - 1]->idx * c->cb + (uint64_t)v[n - 1]->nsect * c->bs;
	if (n == 1 || fetch_run_bounced(c, v, n, off, end - off, d) < 0)
		for (size_t i = 0; i < n; i++)
			fetch_block_run(c, v[i], 0, v[i]->nsect, false, true, d);
	for (size_t i = 0; i < n; i++)
		blk_unpin(c, v[i], d);
}

void ra_issue(struct cache *c, uint64_t from, uint64_t to, struct defer *d)
{
	struct cblk *run[256];
	size_t n = 0;
	uint64_t per_run = MIN(cache_max_io(c) / c->cb, (uint64_t)ARRAY_SIZE(run));
	to = MIN(to, c->dev.size);
	per_run = MAX(per_run, 1);
	for (uint64_t idx = from / c->cb; idx * c->cb < to; idx++) {
		struct cblk *b = blk_lookup(c, idx);
		if (b) {
			fetch_fresh(c, run, n, d);
			n = 0;
			continue;
		}
		bool busy = false;
		b = blk_alloc(c, idx, &busy, d);
		if (!b)
			break;
		blk_pin(b); /* until its fetch pins it: our next allocation must not take it */
		run[n++] = b;
		if (n == per_run) {
			fetch_fresh(c, run, n, d);
			n = 0;
		}
	}
	fetch_fresh(c, run, n, d);
}
