/*
 * cache_io.c - requests as state machines: read, write, zero, flush.
 *
 * A request (struct cache_io) is stepped under its cache's lock. A step either
 * finishes it (its callback is then queued in the struct defer and runs after the
 * unlock), or parks it where the event that lets it go on will find it:
 *
 *   on the cache (c->parked, with the byte range it waits for): a fetch of sectors it
 *       needs, a write of a range it must not overlap, write-back (flush, discard);
 *       fetch, write-back and guard completions wake the requests whose range they
 *       touch (io_wake_range);
 *   on the pool: no block could be had (PPARK_SPACE), or the dirty bound (PPARK_DIRTY);
 *       woken by whatever frees a block or dirty budget, and at least every 100 ms.
 *
 * Reads pin the blocks of the part they work on. A read of at most max_pin blocks is
 * answered from the pinned blocks themselves (the callback gets pointers into them, no
 * copy); a longer read, or one that could not pin all its blocks, copies part by part
 * into a buffer, so a request never holds more than max_pin blocks and requests cannot
 * deadlock holding parts of the budget. A read miss fetches what it asks for, rounded
 * to FETCH_MIN, or whole blocks when it is part of a sequential stream; after a failed
 * fetch it retries once fetching exactly the sectors it needs (`narrow`), then fails.
 *
 * Writes (writeback mode) copy into the blocks and mark them dirty; a partial logical
 * block first needs that sector valid: it is fetched (only it) and the write waits for
 * it. A write never changes a sector being fetched (it waits): the fetch fills it
 * without the lock. Write-through and cache=none: the write is aligned to logical
 * blocks in a buffer of its own (its partial edges read from the cache or inner, under
 * the overlap guard, which also makes the read-modify-write atomic with respect to
 * other writes) and sent to inner; the request completes with inner's answer.
 *
 * Cancel: a parked request is withdrawn at once; one whose own I/O to inner is in
 * flight is not (except a cache=none read and a SYNCHRONIZE CACHE, which are orphaned:
 * their completion then only frees them).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cache_int.h"

#define FETCH_MIN 4096u
#define FAST_MAX 16

enum {
	OP_READ_HEAD = 1,
	OP_READ_TAIL = 2,
	OP_WRITE = 4,
	OP_ZERO = 8,
	OP_DISCARD = 16,
	OP_FLUSH = 32,
	OP_READ_ALL = 64
};

/* states */
enum { W_START = 0, W_GUARD, W_EDGES, W_SENT };                            /* write-through, none */
enum { Z_HEAD = 0, Z_MID_FLUSH, Z_MID_GUARD, Z_MID_SENT, Z_TAIL, Z_DONE }; /* zero */
enum { F_START = 0, F_WAIT, F_SENT };                                      /* flush */
enum { R_CACHE = 0, R_NONE_SENT };                                         /* read */

static void io_step(struct cache_io *io, struct defer *d);
static void edge_done(struct cache_io *io, struct defer *d);

struct cache *io_cache(const struct cache_io *io)
{
	return io->c;
}

uint32_t cache_max_pin(const struct cache *c)
{
	return (uint32_t)MAX(1, MIN(32, c->pool->nblocks_max / 8));
}

/* ---------- life of a request ---------- */

struct cache_io *io_new(struct cache *c, enum io_kind kind, uint64_t off, uint64_t len,
			struct cache_ticket *t)
{
	struct cache_io *io = calloc(1, sizeof(*io));
	if (!io)
		return NULL;
	io->c = c;
	io->kind = kind;
	io->off = io->pos = off;
	io->len = len;
	io->end = off + len;
	io->ticket = t;
	io->pin = io->pin_inline;
	io->pincap = ARRAY_SIZE(io->pin_inline);
	cache_get(c);
	return io;
}

static void unpin_all(struct cache_io *io, struct defer *d)
{
	for (uint32_t i = 0; i < io->npin; i++)
		blk_unpin(io->c, io->pin[i], d);
	io->npin = 0;
}

static void io_free(struct cache_io *io)
{
	struct cache *c = io->c;
	if (io->own_buf)
		free(io->buf);
	free(io->own_src);
	free(io->bounce);
	if (io->pin != io->pin_inline)
		free(io->pin);
	free(io);
	cache_put(c);
}

/* Finish: the callback runs after the unlock (io_run_done). Pins of a pinned read stay
 * until the callback has returned. c locked. */
static void finish(struct cache_io *io, int ret, struct defer *d)
{
	io->ret = ret;
	if (ret < 0 && io->kind == IO_READ)
		unpin_all(io, d);
	if (io->ticket) {
		io->ticket->io = NULL;
		io->ticket = NULL;
	}
	if (ret == -EINTR)
		io->c->st.interrupted++;
	defer_io_done(d, io);
}

void io_run_done(struct cache_io *io)
{
	struct cache *c = io->c;
	if (io->kind == IO_READ && io->rcb) {
		struct cache_seg local[FAST_MAX], *seg = local;
		int n = 0;
		if (io->ret == 0 && io->bounce) {
			seg[0] = (struct cache_seg){ io->bounce + (io->off - io->a0), io->len };
			n = 1;
		} else if (io->ret == 0 && io->copy) {
			seg[0] = (struct cache_seg){ io->buf, io->len };
			n = 1;
		} else if (io->ret == 0) {
			if (io->npin > FAST_MAX && !(seg = malloc(io->npin * sizeof(*seg)))) {
				seg = local;
				io->ret = -ENOMEM;
			}
			for (uint32_t i = 0; io->ret == 0 && i < io->npin; i++) {
				uint64_t base = io->pin[i]->idx * c->cb;
				uint64_t s = MAX(io->off, base),
					 e = MIN(io->off + io->len, base + c->cb);
				seg[n++] =
					(struct cache_seg){ io->pin[i]->data + (s - base), e - s };
			}
		}
		io->rcb(io->opaque, io->ret, seg, io->ret ? 0 : n);
		if (seg != local)
			free(seg);
		if (io->npin) {
			struct defer d = DEFER_INIT;
			cache_lock(c);
			unpin_all(io, &d);
			cache_unlock(c, &d);
		}
	} else if (io->cb) {
		io->cb(io->opaque, io->ret);
	}
	io_free(io);
}

/* ---------- parking ---------- */

static void park(struct cache_io *io, uint64_t off, uint64_t end)
{
	struct cache *c = io->c;
	io->woff = off;
	io->wlen = end - off;
	io->cpark = true;
	io->pprev = NULL;
	io->pnext = c->parked;
	if (c->parked)
		c->parked->pprev = io;
	c->parked = io;
}

static void unpark(struct cache_io *io)
{
	struct cache *c = io->c;
	if (io->pprev)
		io->pprev->pnext = io->pnext;
	else
		c->parked = io->pnext;
	if (io->pnext)
		io->pnext->pprev = io->pprev;
	io->pprev = io->pnext = NULL;
	io->cpark = false;
}

void io_wake_range(struct cache *c, uint64_t off, uint64_t len, int err, struct defer *d)
{
	struct cache_io *list = NULL, *tail = NULL;
	for (struct cache_io *io = c->parked, *n; io; io = n) {
		n = io->pnext;
		if (!(off < io->woff + io->wlen && io->woff < off + len))
			continue;
		unpark(io);
		if (tail)
			tail->pnext = io;
		else
			list = io;
		tail = io;
	}
	while (list) {
		struct cache_io *io = list;
		list = io->pnext;
		io->pnext = NULL;
		if (err < 0 &&
		    (io->kind == IO_READ || io->kind == IO_WRITE || io->kind == IO_ZERO)) {
			if (!io->narrow)
				io->narrow = true;
			else if (!io->err)
				io->err = err;
		}
		io_step(io, d);
	}
}

void io_step_parked(struct cache_io *io, struct defer *d)
{
	io_step(io, d);
}

/* The caller's buffer is valid only during the first step: copy what is left of it
 * before the request waits. */
static bool detach_src(struct cache_io *io)
{
	if (io->zero_src || io->own_src || !io->src)
		return true;
	io->own_src = malloc(io->len);
	if (!io->own_src)
		return false;
	memcpy(io->own_src, io->src, io->len);
	io->src = io->own_src;
	return true;
}

/* ---------- read ---------- */

static bool pin_add(struct cache_io *io, struct cblk *b)
{
	if (io->npin == io->pincap) {
		uint32_t ncap = io->pincap * 2;
		struct cblk **np = malloc(ncap * sizeof(*np));
		if (!np)
			return false;
		memcpy(np, io->pin, io->npin * sizeof(*np));
		if (io->pin != io->pin_inline)
			free(io->pin);
		io->pin = np;
		io->pincap = ncap;
	}
	blk_pin(b);
	io->pin[io->npin++] = b;
	return true;
}

static bool to_copy_mode(struct cache_io *io)
{
	if (io->copy)
		return true;
	io->buf = malloc(io->len);
	if (!io->buf)
		return false;
	io->own_buf = true;
	io->copy = true;
	return true;
}

/* Plan fetches for the missing sectors of [s, e) in b. Returns -ENOMEM or the number of
 * sectors the read has to wait for. */
static int read_fetch(struct cache_io *io, struct cblk *b, uint32_t s, uint32_t e, struct defer *d)
{
	struct cache *c = io->c;
	uint32_t m = MAX(1u, FETCH_MIN / c->bs);
	int wait = 0;
	for (uint32_t k = s; k < e;) {
		if (bit_test(b->valid, k)) {
			k++;
			continue;
		}
		if (bit_test(b->fetching, k)) {
			wait++;
			k++;
			continue;
		}
		uint32_t i = k, j = k;
		while (j < e && !bit_test(b->valid, j) && !bit_test(b->fetching, j))
			j++;
		if (!io->narrow) {
			/* A stream reads whole blocks; a random miss its sectors rounded to a
			 * small minimum. Only over sectors nobody has or is fetching. */
			uint32_t lo = io->sequential ? 0 : i / m * m;
			uint32_t hi = io->sequential ? b->nsect :
						       MIN(DIV_ROUND_UP(j, m) * m, b->nsect);
			while (i > lo && !bit_test(b->valid, i - 1) &&
			       !bit_test(b->fetching, i - 1))
				i--;
			while (j < hi && !bit_test(b->valid, j) && !bit_test(b->fetching, j))
				j++;
		}
		if (fetch_block_run(c, b, i, j, false, false, d) < 0)
			return -ENOMEM;
		wait += (int)(j - k);
		k = j;
	}
	return wait;
}

static void read_step(struct cache_io *io, struct defer *d)
{
	struct cache *c = io->c;
	uint64_t cb = c->cb, end = io->off + io->len;

	if (io->cancelled || io->err || end > c->dev.size) {
		/* (the device shrank while it waited: as a read asked past the end now) */
		unpin_all(io, d);
		finish(io, io->cancelled ? -EINTR : io->err ? io->err : -EINVAL, d);
		return;
	}
	for (;;) {
		if (io->pos >= end) {
			finish(io, 0, d);
			return;
		}
		uint64_t first = io->pos / cb;
		if (io->npin == 0) {
			uint64_t limit = io->copy ? cache_max_pin(c) : UINT64_MAX;
			io->end = limit == UINT64_MAX ? end : MIN(end, (first + limit) * cb);
		}
		uint64_t nb = (io->end - 1) / cb - first + 1;
		while (io->npin < nb) {
			uint64_t idx = first + io->npin;
			struct cblk *b = blk_lookup(c, idx);
			bool busy = false;
			if (!b)
				b = blk_alloc(c, idx, &busy, d);
			if (!b && io->npin > 0) {
				/* Serve the blocks we hold first, part by part. */
				io->end = (first + io->npin) * cb;
				nb = io->npin;
				if (!to_copy_mode(io)) {
					unpin_all(io, d);
					finish(io, -ENOMEM, d);
					return;
				}
				break;
			}
			if (!b) {
				b = pool_park_space(c, io, idx, d);
				if (!b)
					return; /* parked on the pool */
				b = blk_adopt(c, b, idx);
			}
			if (!pin_add(io, b)) {
				unpin_all(io, d);
				finish(io, -ENOMEM, d);
				return;
			}
		}
		int wait = 0;
		for (uint32_t i = 0; i < io->npin; i++) {
			struct cblk *b = io->pin[i];
			uint64_t base = b->idx * cb;
			uint32_t s = (uint32_t)((MAX(io->pos, base) - base) / c->bs);
			uint32_t e = (uint32_t)DIV_ROUND_UP(MIN(io->end, base + cb) - base, c->bs);
			int w = read_fetch(io, b, s, e, d);
			if (w < 0) {
				unpin_all(io, d);
				finish(io, -ENOMEM, d);
				return;
			}
			if (w && !io->counted)
				c->st.misses++;
			wait += w;
		}
		if (wait) {
			io->counted = true;
			park(io, io->pos, io->end);
			return;
		}
		for (uint32_t i = 0; i < io->npin; i++) {
			struct cblk *b = io->pin[i];
			uint64_t base = b->idx * cb;
			uint64_t s = MAX(io->pos, base), e = MIN(io->end, base + cb);
			blk_touch(c, b, (uint32_t)((s - base) / c->bs),
				  (uint32_t)DIV_ROUND_UP(e - base, c->bs));
			if (!io->counted)
				c->st.hits++;
			if (io->copy)
				memcpy(io->buf + (s - io->off), b->data + (s - base), e - s);
		}
		io->counted = false;
		if (!io->copy) {
			io->pos = end;
			finish(io, 0, d);
			return;
		}
		unpin_all(io, d);
		io->pos = io->end;
	}
}

/* cache=none: one aligned READ, into the caller's buffer (the blkdev face, aligned)
 * or a buffer of our own that the answer points into. */
static void read_none_step(struct cache_io *io, struct defer *d)
{
	struct cache *c = io->c;
	if (io->state == R_CACHE) {
		if (io->cancelled) {
			finish(io, -EINTR, d);
			return;
		}
		io->a0 = io->off / c->bs * c->bs;
		io->a1 = DIV_ROUND_UP(io->off + io->len, c->bs) * c->bs;
		if (!io->buf) {
			io->bounce = malloc(io->a1 - io->a0);
			if (!io->bounce) {
				finish(io, -ENOMEM, d);
				return;
			}
		}
		c->st.fetch_ops++;
		c->st.fetch_bytes += io->a1 - io->a0;
		io->state = R_NONE_SENT;
		io->ops = OP_READ_ALL;
		io->pending = 1;
		defer_io_submit(d, io);
		return;
	}
	finish(io, io->ret, d);
}

/* ---------- write, writeback mode ---------- */

/* Write [io->pos, io->end) of the request's bytes into the cache. */
static void write_wb_step(struct cache_io *io, struct defer *d)
{
	struct cache *c = io->c;
	uint64_t cb = c->cb;

	if (io->cancelled || io->err) {
		finish(io, io->cancelled ? -EINTR : io->err, d);
		return;
	}
	if (io->end > c->dev.size) {
		/* the device shrank while it waited: nothing is marked dirty past its end */
		finish(io, -ENOSPC, d);
		return;
	}
	while (io->pos < io->end) {
		uint64_t idx = io->pos / cb, base = idx * cb;
		uint64_t e = MIN(io->end, base + cb);
		struct cblk *b = blk_lookup(c, idx);
		if ((!b || !b->unclean) && pool_dirty_over(c->pool, c, true)) {
			if (c->failing) {
				finish(io, -EIO, d);
				return;
			}
			if (!detach_src(io)) {
				finish(io, -ENOMEM, d);
				return;
			}
			if (pool_park_dirty(c, io, d))
				return;
		}
		if (!b) {
			bool busy = false;
			b = blk_alloc(c, idx, &busy, d);
			if (!b) {
				if (c->failing) {
					finish(io, -EIO, d);
					return;
				}
				if (!detach_src(io)) {
					finish(io, -ENOMEM, d);
					return;
				}
				b = pool_park_space(c, io, idx, d);
				if (!b)
					return;
				b = blk_adopt(c, b, idx);
			}
		}
		uint32_t s = (uint32_t)((io->pos - base) / c->bs);
		uint32_t es = (uint32_t)DIV_ROUND_UP(e - base, c->bs);
		/* A sector being fetched is filled without the lock: wait for it. */
		uint32_t fs = UINT32_MAX, fe = 0;
		for (uint32_t k = s; k < es; k++)
			if (bit_test(b->fetching, k)) {
				fs = MIN(fs, k);
				fe = k + 1;
			}
		/* A partial sector merges with the sector's current content. */
		bool head = (io->pos - base) % c->bs != 0, tail = (e - base) % c->bs != 0;
		for (int edge = 0; edge < 2 && fs == UINT32_MAX; edge++) {
			uint32_t k = edge == 0 ? s : es - 1;
			if (!(edge == 0 ? head : tail) || bit_test(b->valid, k))
				continue;
			if (edge == 1 && head && k == s && bit_test(b->fetching, k))
				continue;
			if (fetch_block_run(c, b, k, k + 1, true, false, d) < 0) {
				finish(io, -ENOMEM, d);
				return;
			}
			fs = MIN(fs, k);
			fe = MAX(fe, k + 1);
		}
		if (fs != UINT32_MAX) {
			if (!detach_src(io)) {
				finish(io, -ENOMEM, d);
				return;
			}
			park(io, base + (uint64_t)fs * c->bs, base + (uint64_t)fe * c->bs);
			return;
		}
		if (io->zero_src)
			memset(b->data + (io->pos - base), 0, e - io->pos);
		else
			memcpy(b->data + (io->pos - base), io->src + (io->pos - io->off),
			       e - io->pos);
		blk_mark_dirty(c, b, s, es);
		blk_touch(c, b, s, es);
		io->pos = e;
	}
	if (pool_background_due(c->pool))
		wb_pump(c, d);
	if (io->kind == IO_ZERO) {
		edge_done(io, d);
		return;
	}
	finish(io, 0, d);
}

/* ---------- write, write-through and none ---------- */

/* Write [io->pos, io->end): aligned into io->bounce, edges read under the guard. */
static void write_wt_step(struct cache_io *io, struct defer *d)
{
	struct cache *c = io->c;
	uint64_t bs = c->bs;

	switch (io->state) {
	case W_START:
		io->a0 = io->pos / bs * bs;
		io->a1 = DIV_ROUND_UP(io->end, bs) * bs;
		io->bounce = malloc(io->a1 - io->a0);
		if (!io->bounce || !detach_src(io)) {
			finish(io, -ENOMEM, d);
			return;
		}
		io->state = W_GUARD;
		/* fall through */
	case W_GUARD:
		if (io->cancelled || io->a1 > c->dev.size) { /* (or shrank while it waited) */
			finish(io, io->cancelled ? -EINTR : -ENOSPC, d);
			return;
		}
		if (guard_overlaps(c, io->a0, io->a1 - io->a0,
				   IF_WB | IF_WT | IF_ZERO | IF_FETCH)) {
			park(io, io->a0, io->a1);
			return;
		}
		guard_add(c, &io->guard, io->a0, io->a1 - io->a0, IF_WT);
		/* The partial edges: from the cache when it has them, else from inner. */
		io->ops = 0;
		if (io->pos != io->a0) {
			struct cblk *b = blk_lookup(c, io->a0 / c->cb);
			uint32_t k = (uint32_t)((io->a0 % c->cb) / bs);
			if (b && bit_test(b->valid, k))
				memcpy(io->bounce, b->data + (io->a0 % c->cb), bs);
			else
				io->ops |= OP_READ_HEAD;
		}
		if (io->end % bs && !(io->a1 - bs == io->a0 && (io->ops & OP_READ_HEAD))) {
			uint64_t t = io->a1 - bs;
			struct cblk *b = blk_lookup(c, t / c->cb);
			uint32_t k = (uint32_t)((t % c->cb) / bs);
			if (b && bit_test(b->valid, k))
				memcpy(io->bounce + (t - io->a0), b->data + (t % c->cb), bs);
			else
				io->ops |= OP_READ_TAIL;
		}
		io->state = W_EDGES;
		if (io->ops) {
			c->st.rmw_fetches += __builtin_popcount(io->ops);
			io->pending = __builtin_popcount(io->ops);
			defer_io_submit(d, io);
			return;
		}
		/* fall through */
	case W_EDGES:
		if (io->ret < 0) {
			guard_del(c, &io->guard, d);
			io_wake_range(c, io->a0, io->a1 - io->a0, 0, d);
			finish(io, io->ret, d);
			return;
		}
		if (io->zero_src)
			memset(io->bounce + (io->pos - io->a0), 0, io->end - io->pos);
		else
			memcpy(io->bounce + (io->pos - io->a0), io->src + (io->pos - io->off),
			       io->end - io->pos);
		if (c->cc.mode == CONFIG_CACHE_WRITETHROUGH) {
			/* Cache what goes to the target: valid, not dirty. Blocks that cannot be
			 * had now are not cached, and then nothing stale is either. */
			for (uint64_t p = io->a0; p < MIN(io->a1, c->dev.size);) {
				uint64_t idx = p / c->cb, base = idx * c->cb;
				uint64_t e = MIN(io->a1, base + c->cb);
				struct cblk *b = blk_lookup(c, idx);
				bool busy = false;
				if (!b)
					b = blk_alloc(c, idx, &busy, d);
				if (b) {
					memcpy(b->data + (p - base), io->bounce + (p - io->a0),
					       e - p);
					for (uint64_t k = (p - base) / bs; k < (e - base) / bs; k++)
						bit_set(b->valid, (uint32_t)k);
					blk_touch(c, b, (uint32_t)((p - base) / bs),
						  (uint32_t)((e - base) / bs));
				}
				p = e;
			}
		}
		c->st.writeback_ops++;
		c->st.writeback_bytes += io->a1 - io->a0;
		io->state = W_SENT;
		io->ops = OP_WRITE;
		io->pending = 1;
		defer_io_submit(d, io);
		return;
	case W_SENT:
		if (io->ret < 0) {
			c->st.write_errors++;
			if (c->cc.mode == CONFIG_CACHE_WRITETHROUGH)
				blk_invalidate(c, io->a0, io->a1 - io->a0, NULL);
		}
		guard_del(c, &io->guard, d);
		io_wake_range(c, io->a0, io->a1 - io->a0, 0, d);
		if (io->kind == IO_ZERO && io->ret == 0) {
			free(io->bounce);
			io->bounce = NULL;
			edge_done(io, d);
			return;
		}
		finish(io, io->ret, d);
		return;
	}
}

static void write_step(struct cache_io *io, struct defer *d)
{
	if (io->c->cc.mode == CONFIG_CACHE_WRITEBACK)
		write_wb_step(io, d);
	else
		write_wt_step(io, d);
}

/* ---------- zero ---------- */

/* Edges (partial logical blocks) go through the write path with zero_src; the aligned
 * middle through inner's write_zeroes or discard, under the guard. io->zstate is the
 * phase; while an edge is written, io->zedge is set and io->state is the write path's. */
static void zero_step(struct cache_io *io, struct defer *d);

static void start_edge(struct cache_io *io, uint64_t from, uint64_t to, struct defer *d)
{
	io->pos = from;
	io->end = to;
	io->state = W_START;
	io->zedge = true;
	write_step(io, d);
}

static void edge_done(struct cache_io *io, struct defer *d)
{
	io->zedge = false;
	io->zstate = io->zstate == Z_HEAD ? Z_MID_FLUSH : Z_DONE;
	zero_step(io, d);
}

static void zero_step(struct cache_io *io, struct defer *d)
{
	struct cache *c = io->c;
	uint64_t bs = c->bs, end = io->off + io->len;
	uint64_t m0 = DIV_ROUND_UP(io->off, bs) * bs, m1 = end / bs * bs;
	bool wb = c->cc.mode == CONFIG_CACHE_WRITEBACK;

	if (m0 >= m1)
		m0 = m1 = end; /* no aligned middle: the head edge is everything */
	for (;;) {
		switch (io->zstate) {
		case Z_HEAD:
			if (io->off < m0) {
				start_edge(io, io->off, m0, d);
				return;
			}
			io->zstate = Z_MID_FLUSH;
			break;
		case Z_MID_FLUSH:
			if (m0 >= m1) {
				io->zstate = Z_TAIL;
				break;
			}
			if (io->cancelled) {
				finish(io, -EINTR, d);
				return;
			}
			if (io->discard && wb && blk_range_unwritten(c, m0, m1 - m0)) {
				/* A discard must leave the content as it was if it fails: write back
				 * what is dirty in its range first. */
				if (!io->flush_asked) {
					io->flush_asked = true;
					io->gen = c->wb_error_gen;
					c->flush_seq = MAX(c->flush_seq, c->seq);
					wb_pump(c, d);
				} else if (c->wb_error_gen != io->gen) {
					finish(io, -EIO,
					       d); /* the data stays dirty; nothing discarded */
					return;
				}
				/* dirtiness is tracked per block: wake on write-back of any of them */
				park(io, m0 / c->cb * c->cb, DIV_ROUND_UP(m1, c->cb) * c->cb);
				return;
			}
			io->zstate = Z_MID_GUARD;
			break;
		case Z_MID_GUARD:
			if (io->cancelled) {
				finish(io, -EINTR, d);
				return;
			}
			if (guard_overlaps(c, m0, m1 - m0, IF_WB | IF_WT | IF_ZERO | IF_FETCH)) {
				park(io, m0, m1);
				return;
			}
			if (io->discard && wb && blk_range_unwritten(c, m0, m1 - m0)) {
				io->zstate = Z_MID_FLUSH; /* written to meanwhile: that first */
				io->flush_asked = false;
				break;
			}
			guard_add(c, &io->guard, m0, m1 - m0, IF_ZERO);
			blk_invalidate(c, m0, m1 - m0, NULL);
			io->zstate = Z_MID_SENT;
			io->ops = io->discard ? OP_DISCARD : OP_ZERO;
			io->pos = m0;
			io->end = m1;
			io->pending = 1;
			defer_io_submit(d, io);
			return;
		case Z_MID_SENT:
			guard_del(c, &io->guard, d);
			io_wake_range(c, m0, m1 - m0, 0, d);
			if (io->ret < 0) {
				finish(io, io->ret, d);
				return;
			}
			io->zstate = Z_TAIL;
			break;
		case Z_TAIL:
			if (m1 < end) {
				start_edge(io, m1, end, d);
				return;
			}
			io->zstate = Z_DONE;
			break;
		default:
			finish(io, 0, d);
			return;
		}
	}
}

/* ---------- flush ---------- */

static void flush_step(struct cache_io *io, struct defer *d)
{
	struct cache *c = io->c;
	switch (io->state) {
	case F_START:
		if (c->cc.mode != CONFIG_CACHE_WRITEBACK) {
			io->state = F_WAIT;
		} else {
			io->target_seq = c->seq;
			io->gen = c->wb_error_gen;
			if (io->target_seq > c->flush_seq)
				c->flush_seq = io->target_seq;
			wb_pump(c, d);
			io->state = F_WAIT;
		}
		/* fall through */
	case F_WAIT:
		if (io->cancelled) {
			finish(io, -EINTR, d);
			return;
		}
		if (c->cc.mode == CONFIG_CACHE_WRITEBACK) {
			if (wb_oldest_unwritten(c) <= io->target_seq &&
			    c->wb_error_gen == io->gen && !c->given_up) {
				park(io, 0, UINT64_MAX);
				return;
			}
			if (c->wb_error) {
				int r = c->wb_error;
				c->wb_error =
					0; /* reported once; per-file reporting is the caller's */
				finish(io, r, d);
				return;
			}
		}
		if (!io->sync_target) {
			finish(io, 0, d);
			return;
		}
		io->state = F_SENT;
		io->ops = OP_FLUSH;
		io->pending = 1;
		defer_io_submit(d, io);
		return;
	case F_SENT:
		finish(io, io->ret, d);
		return;
	}
}

/* ---------- dispatch ---------- */

static void io_step(struct cache_io *io, struct defer *d)
{
	/* After cache_cancel_all nothing waits any more: a request stepped meanwhile (woken
	 * from the pool while it ran) completes with -EINTR instead of parking again. */
	if (io->c->closing)
		io->cancelled = true;
	switch (io->kind) {
	case IO_READ:
		if (io->c->cc.mode == CONFIG_CACHE_NONE)
			read_none_step(io, d);
		else
			read_step(io, d);
		break;
	case IO_WRITE:
		write_step(io, d);
		break;
	case IO_ZERO:
		if (io->zedge)
			write_step(io, d); /* an edge being written */
		else
			zero_step(io, d);
		break;
	case IO_FLUSH:
		flush_step(io, d);
		break;
	}
}

void io_start(struct cache_io *io, struct defer *d)
{
	struct cache *c = io->c;
	if (io->ticket) {
		if (io->ticket->cancelled) {
			io->ticket = NULL;
			finish(io, -EINTR, d);
			return;
		}
		io->ticket->io = io;
	}
	(void)c;
	io_step(io, d);
}

/* ---------- I/O to inner of a request ---------- */

static void op_done(void *opaque, int ret)
{
	struct cache_io *io = opaque;
	struct cache *c = io->c;
	struct defer d = DEFER_INIT;

	cache_lock(c);
	if (ret < 0 && io->ret == 0)
		io->ret = ret;
	if (--io->pending == 0) {
		if (io->orphaned) {
			cache_unlock(c, &d);
			io_free(io);
			return;
		}
		io_step(io, &d);
	}
	cache_unlock(c, &d);
}

void io_run_submit(struct cache_io *io)
{
	struct cache *c = io->c;
	struct blkdev *in = c->inner;
	unsigned ops = io->ops;
	uint64_t bs = c->bs;
	int r;

	io->ops = 0;
	/* Each submitted op completes through op_done exactly once (refused: at once). */
	if (ops & OP_READ_HEAD) {
		r = in->ops->read(in, io->a0, bs, io->bounce, op_done, io);
		if (r < 0)
			op_done(io, r);
	}
	if (ops & OP_READ_TAIL) {
		r = in->ops->read(in, io->a1 - bs, bs, io->bounce + (io->a1 - bs - io->a0), op_done,
				  io);
		if (r < 0)
			op_done(io, r);
	}
	if (ops & OP_READ_ALL) {
		uint8_t *dst = io->bounce ? io->bounce : io->buf;
		r = in->ops->read(in, io->a0, io->a1 - io->a0, dst, op_done, io);
		if (r < 0)
			op_done(io, r);
	}
	if (ops & OP_WRITE) {
		r = in->ops->write(in, io->a0, io->a1 - io->a0, io->bounce, op_done, io);
		if (r < 0)
			op_done(io, r);
	}
	if (ops & OP_ZERO) {
		r = in->ops->write_zeroes ?
			    in->ops->write_zeroes(in, io->pos, io->end - io->pos, op_done, io) :
			    -EOPNOTSUPP;
		if (r < 0)
			op_done(io, r);
	}
	if (ops & OP_DISCARD) {
		r = in->ops->discard ?
			    in->ops->discard(in, io->pos, io->end - io->pos, op_done, io) :
			    -EOPNOTSUPP;
		if (r < 0)
			op_done(io, r);
	}
	if (ops & OP_FLUSH) {
		r = in->ops->flush(in, true, op_done, io);
		if (r < 0)
			op_done(io, r);
	}
}

/* ---------- cancel ---------- */

int io_cancel(struct cache *c, struct cache_ticket *t, struct defer *d, struct cache_io **withdrawn)
{
	struct cache_io *io = t->io;
	*withdrawn = NULL;
	if (!io) {
		t->cancelled = true; /* not started yet (or done: then harmless) */
		return -EBUSY;
	}
	bool out = false;
	if (io->pending > 0) {
		if ((io->kind == IO_READ && c->cc.mode == CONFIG_CACHE_NONE) ||
		    io->kind == IO_FLUSH) {
			io->orphaned = true; /* op_done frees it */
			t->io = NULL;
			io->ticket = NULL;
			c->st.interrupted++;
			return 0;
		}
		io->cancelled = true;
		return -EBUSY;
	}
	if (io->cpark) {
		unpark(io);
		out = true;
	} else {
		out = pool_unpark(c->pool, io);
	}
	if (!out) {
		io->cancelled = true;
		return -EBUSY;
	}
	unpin_all(io, d);
	t->io = NULL;
	io->ticket = NULL;
	c->st.interrupted++;
	*withdrawn = io;
	return 0;
}

/* Unmount: complete every parked request of c with -EINTR. */
void io_cancel_all(struct cache *c, struct defer *d)
{
	c->closing = true;
	while (c->parked) {
		struct cache_io *io = c->parked;
		unpark(io);
		unpin_all(io, d);
		finish(io, -EINTR, d);
	}
	/* and those parked on the pool */
	struct cache_io *mine;
	while ((mine = pool_take_parked_of(c->pool, c))) {
		unpin_all(mine, d);
		finish(mine, -EINTR, d);
	}
}

void io_release_withdrawn(struct cache_io *io)
{
	io_free(io);
}
