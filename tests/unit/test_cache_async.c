/*
 * test_cache_async.c - proves what the asynchronous cache adds to the contract of
 * cache.h: a miss fetches what it asks for (rounded to 4 KiB), streams whole blocks;
 * read-modify-write of partial sectors happens inside the cache, fetching only those
 * sectors, and is atomic with respect to other writes in every mode; calls never wait
 * (a miss answers later, a hit at once, from the blocks themselves); one pool's budget
 * is shared by its caches (an idle one gives its blocks back) and its write-back
 * threads do not grow with the caches; a cache whose target refuses writes cannot
 * starve another of the dirty budget; cancel withdraws a waiting request; the device
 * size can change.
 *
 * A plain program: each failed check prints what it expected and got; exit status 1
 * if any failed. Optional argv[1]: run only the tests whose name contains it.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "iscsifs/blkdev.h"
#include "iscsifs/cache.h"
#include "iscsifs/memdev.h"
#include "iscsifs/util.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)

static int failures;
static const char *current = "?";

#define CHECK(what, cond, ...)                                                        \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "FAIL %s (line %d): %s: ", current, __LINE__, (what)); \
			fprintf(stderr, __VA_ARGS__);                                 \
			fputc('\n', stderr);                                          \
			failures++;                                                   \
		}                                                                     \
	} while (0)
#define CHECK_EQ(what, exp, got)                                                       \
	CHECK(what, (long long)(exp) == (long long)(got), "expected %lld, got %lld",  \
	      (long long)(exp), (long long)(got))

static struct cache_config config(enum config_cache_mode mode)
{
	return (struct cache_config){
		.mode = mode,
		.cache_size = 4 * MiB,
		.cache_block = 64 * KiB,
		.dirty_max = 1 * MiB,
		.dirty_expire_ms = 600000,
		.readahead_max = 0,
		.max_write = 1 * MiB,
		.name = "async",
	};
}

static struct memdev_counters ctr(struct blkdev *m)
{
	struct memdev_counters c;
	memdev_get_counters(m, &c);
	return c;
}

static struct cache_stats cst(struct blkdev *c)
{
	struct cache_stats s;
	cache_get_stats(c, &s);
	return s;
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)((seed * 131 + i * 7 + (i >> 9)) | 1);
}

/* ---------- a completion to wait for ---------- */

struct done {
	int magic;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int calls;
	int ret;
	int nseg;
	uint8_t data[256 * 1024];
	size_t len;
};

/* Reset for the next request; the first use initialises the lock (a callback may still
 * be unlocking it when the next request is prepared, so it is never re-initialised). */
static void done_init(struct done *d)
{
	if (d->magic != 0x600d) {
		memset(d, 0, sizeof(*d));
		pthread_mutex_init(&d->lock, NULL);
		util_cond_init(&d->cond);
		d->magic = 0x600d;
		return;
	}
	pthread_mutex_lock(&d->lock);
	d->calls = d->ret = d->nseg = 0;
	d->len = 0;
	pthread_mutex_unlock(&d->lock);
}

static void done_rcb(void *opaque, int ret, const struct cache_seg *seg, int nseg)
{
	struct done *d = opaque;
	size_t pos = 0;
	for (int i = 0; i < nseg; i++) {
		memcpy(d->data + pos, seg[i].data, seg[i].len);
		pos += seg[i].len;
	}
	pthread_mutex_lock(&d->lock);
	d->calls++;
	d->ret = ret;
	d->nseg = nseg;
	d->len = pos;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

static void done_cb(void *opaque, int ret)
{
	done_rcb(opaque, ret, NULL, 0);
}

static int done_calls(struct done *d)
{
	pthread_mutex_lock(&d->lock);
	int n = d->calls;
	pthread_mutex_unlock(&d->lock);
	return n;
}

/* Wait up to ms for the callback; returns whether it came. */
static bool done_wait(struct done *d, unsigned ms)
{
	struct timespec dl = util_deadline_ms(ms);
	pthread_mutex_lock(&d->lock);
	while (!d->calls && pthread_cond_timedwait(&d->cond, &d->lock, &dl) == 0)
		;
	bool ok = d->calls > 0;
	pthread_mutex_unlock(&d->lock);
	return ok;
}

/* ---------- a device that can hold READs (and WRITEs) back ---------- */

struct held {
	blkdev_cb cb;
	void *opaque;
	int ret;
	struct held *next;
};

struct gate {
	struct blkdev dev;
	struct blkdev *in;
	pthread_mutex_t lock;
	bool hold_reads, hold_writes;
	struct held *held;
	int nheld;
};

static void gate_hold(struct gate *g, int ret, blkdev_cb cb, void *opaque)
{
	struct held *h = calloc(1, sizeof(*h));
	*h = (struct held){ cb, opaque, ret, NULL };
	pthread_mutex_lock(&g->lock);
	h->next = g->held;
	g->held = h;
	g->nheld++;
	pthread_mutex_unlock(&g->lock);
}

static int g_read(struct blkdev *d, uint64_t o, size_t l, void *b, blkdev_cb cb, void *op)
{
	struct gate *g = d->priv;
	pthread_mutex_lock(&g->lock);
	bool hold = g->hold_reads;
	pthread_mutex_unlock(&g->lock);
	if (!hold)
		return g->in->ops->read(g->in, o, l, b, cb, op);
	gate_hold(g, blkdev_read_sync(g->in, o, l, b), cb, op);
	return 0;
}

static int g_write(struct blkdev *d, uint64_t o, size_t l, const void *b, blkdev_cb cb,
		   void *op)
{
	struct gate *g = d->priv;
	pthread_mutex_lock(&g->lock);
	bool hold = g->hold_writes;
	pthread_mutex_unlock(&g->lock);
	if (!hold)
		return g->in->ops->write(g->in, o, l, b, cb, op);
	gate_hold(g, blkdev_write_sync(g->in, o, l, b), cb, op);
	return 0;
}

static int g_flush(struct blkdev *d, bool s, blkdev_cb cb, void *op)
{
	struct gate *g = d->priv;
	return g->in->ops->flush(g->in, s, cb, op);
}

static int g_discard(struct blkdev *d, uint64_t o, uint64_t l, blkdev_cb cb, void *op)
{
	struct gate *g = d->priv;
	return g->in->ops->discard(g->in, o, l, cb, op);
}

static int g_zeroes(struct blkdev *d, uint64_t o, uint64_t l, blkdev_cb cb, void *op)
{
	struct gate *g = d->priv;
	return g->in->ops->write_zeroes(g->in, o, l, cb, op);
}

static void g_destroy(struct blkdev *d)
{
	struct gate *g = d->priv;
	pthread_mutex_destroy(&g->lock);
	free(g);
}

static const struct blkdev_ops gate_ops = { g_read, g_write, g_flush, g_discard, g_zeroes,
					    NULL, g_destroy };

static struct gate *gate_new(struct blkdev *in)
{
	struct gate *g = calloc(1, sizeof(*g));
	g->in = in;
	g->dev = *in;
	g->dev.ops = &gate_ops;
	g->dev.priv = g;
	pthread_mutex_init(&g->lock, NULL);
	return g;
}

static void gate_release(struct gate *g)
{
	pthread_mutex_lock(&g->lock);
	g->hold_reads = g->hold_writes = false;
	struct held *h = g->held;
	g->held = NULL;
	g->nheld = 0;
	pthread_mutex_unlock(&g->lock);
	while (h) {
		struct held *n = h->next;
		h->cb(h->opaque, h->ret);
		free(h);
		h = n;
	}
}

static int gate_nheld(struct gate *g)
{
	pthread_mutex_lock(&g->lock);
	int n = g->nheld;
	pthread_mutex_unlock(&g->lock);
	return n;
}

/* ---------- fetch sizing ---------- */

static void test_fetch_sizing(void)
{
	struct blkdev *m = memdev_create(8 * MiB, 512);
	struct cache_config cc = config(CONFIG_CACHE_WRITEBACK);
	struct blkdev *c = cache_create(&cc, m);
	uint8_t buf[64 * KiB];

	fill(memdev_data(m), 8 * MiB, 3);
	CHECK_EQ("4 KiB miss", 0, blkdev_read_sync(c, 64 * KiB + 8 * KiB, 4096, buf));
	CHECK_EQ("READs for a 4 KiB miss", 1, ctr(m).reads);
	CHECK_EQ("bytes fetched for a 4 KiB miss (not the 64 KiB block)", 4096, ctr(m).read_bytes);
	CHECK_EQ("a block is still the unit of memory", 64 * KiB, cst(c).cached_bytes);
	CHECK("4 KiB miss content", memcmp(buf, memdev_data(m) + 72 * KiB, 4096) == 0, "differs");

	memdev_reset_counters(m);
	CHECK_EQ("512-byte miss", 0, blkdev_read_sync(c, 128 * KiB + 1024, 512, buf));
	CHECK_EQ("bytes fetched for a 512-byte miss: the 4 KiB around it", 4096, ctr(m).read_bytes);
	memdev_reset_counters(m);
	CHECK_EQ("512-byte read next to it", 0, blkdev_read_sync(c, 128 * KiB + 3072, 512, buf));
	CHECK_EQ("... is a hit", 0, ctr(m).reads);

	/* A miss next to valid sectors fetches only the missing ones. */
	memdev_reset_counters(m);
	CHECK_EQ("8 KiB over 4 valid + 4 missing", 0, blkdev_read_sync(c, 72 * KiB, 8192, buf));
	CHECK_EQ("... fetches the missing 4 KiB", 4096, ctr(m).read_bytes);
	CHECK("... content", memcmp(buf, memdev_data(m) + 72 * KiB, 8192) == 0, "differs");

	/* A sequential stream fetches whole blocks. */
	memdev_reset_counters(m);
	for (uint64_t off = 1 * MiB; off < 1 * MiB + 16 * KiB; off += 4096)
		CHECK_EQ("sequential 4 KiB read", 0, blkdev_read_sync(c, off, 4096, buf));
	CHECK_EQ("READs of a 4 KiB stream over one block: two misses, then the rest", 3,
		 ctr(m).reads);
	CHECK_EQ("bytes of those READs", 64 * KiB, ctr(m).read_bytes);
	c->ops->destroy(c);

	/* Random misses never read ahead, even with read-ahead on. */
	cc.readahead_max = 1 * MiB;
	c = cache_create(&cc, m);
	memdev_reset_counters(m);
	uint64_t x = 12345;
	for (int i = 0; i < 64; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t off = (x >> 20) % (8 * MiB / 4096) * 4096;
		CHECK_EQ("random 4 KiB read", 0, blkdev_read_sync(c, off, 4096, buf));
	}
	CHECK_EQ("read-ahead bytes of random reads", 0, cst(c).readahead_bytes);
	CHECK("bytes fetched by 64 random 4 KiB reads", ctr(m).read_bytes <= 64 * 4096, "%llu",
	      (unsigned long long)ctr(m).read_bytes);
	c->ops->destroy(c);

	/* 4096-byte sectors */
	struct blkdev *m4 = memdev_create(8 * MiB, 4096);
	c = cache_create(&cc, m4);
	CHECK_EQ("4 KiB miss, 4096-byte blocks", 0, blkdev_read_sync(c, 40 * KiB, 4096, buf));
	CHECK_EQ("bytes fetched", 4096, ctr(m4).read_bytes);
	c->ops->destroy(c);
	m4->ops->destroy(m4);
	m->ops->destroy(m);
}

/* ---------- read-modify-write inside the cache ---------- */

static void rmw_mode(enum config_cache_mode mode)
{
	struct blkdev *m = memdev_create(4 * MiB, 512);
	struct cache_config cc = config(mode);
	struct blkdev *c = cache_create(&cc, m);
	uint8_t *model = malloc(4 * MiB), w[4096], r[4096];
	struct done d = { 0 };

	fill(memdev_data(m), 4 * MiB, 9);
	memcpy(model, memdev_data(m), 4 * MiB);
	const struct {
		uint64_t off, len, fetched;
	} cases[] = {
		{ 64 * KiB + 50, 100, 512 },        /* inside one sector: that sector */
		{ 128 * KiB + 300, 1000, 1024 },    /* two partial sectors, one whole */
		{ 192 * KiB + 512, 1024, 0 },       /* aligned: nothing */
		{ 256 * KiB - 100, 200, 1024 },     /* across a cache block boundary */
		{ 64 * KiB + 10, 20, 0 },           /* the sector is valid now (writeback) */
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		fill(w, cases[i].len, (unsigned)i + 40);
		memcpy(model + cases[i].off, w, cases[i].len);
		memdev_reset_counters(m);
		done_init(&d);
		cache_write(c, cases[i].off, cases[i].len, w, done_cb, &d, NULL);
		memset(w, 0, sizeof(w)); /* the cache must have copied it */
		CHECK("write completes", done_wait(&d, 5000), "no callback");
		CHECK_EQ("write result", 0, d.ret);
		if (mode == CONFIG_CACHE_WRITEBACK && !(i == 4))
			CHECK_EQ("bytes read to merge partial sectors", cases[i].fetched,
				 ctr(m).read_bytes);
		if (mode != CONFIG_CACHE_WRITEBACK)
			CHECK("device has it on completion",
			      memcmp(memdev_data(m) + cases[i].off, model + cases[i].off,
				     cases[i].len) == 0, "differs (case %zu)", i);
		uint64_t roff = cases[i].off / 512 * 512;
		CHECK_EQ("read back", 0, blkdev_read_sync(c, roff, 2048, r));
		CHECK("read back content", memcmp(r, model + roff, 2048) == 0, "differs (case %zu)", i);
	}
	CHECK_EQ("flush", 0, blkdev_flush_sync(c, true));
	CHECK("device equals model", memcmp(memdev_data(m), model, 4 * MiB) == 0, "differs");
	CHECK_EQ("no overlapping writes", 0, ctr(m).overlap_violations);
	c->ops->destroy(c);
	m->ops->destroy(m);
	free(model);
}

struct rmw_thread {
	struct blkdev *c;
	int id;
	int errors;
};

/* Each thread writes its own 32-byte slice of the same sectors, over and over. */
static void *rmw_writer(void *arg)
{
	struct rmw_thread *t = arg;
	uint8_t v[32];
	memset(v, t->id + 1, sizeof(v));
	for (int i = 0; i < 200; i++) {
		uint64_t off = 64 * KiB + (uint64_t)(i % 4) * 512 + (uint64_t)t->id * 32 + 7;
		struct blkdev_waiter wt;
		blkdev_waiter_init(&wt);
		cache_write(t->c, off, sizeof(v), v, blkdev_waiter_cb, &wt, NULL);
		if (blkdev_waiter_wait(&wt))
			t->errors++;
	}
	return NULL;
}

static void rmw_atomic(enum config_cache_mode mode)
{
	struct blkdev *m = memdev_create(1 * MiB, 512);
	struct cache_config cc = config(mode);
	cc.cache_size = 1 * MiB;
	memdev_set_delay(m, 0, 300);
	struct blkdev *c = cache_create(&cc, m);
	struct rmw_thread t[8];
	pthread_t tid[8];
	for (int i = 0; i < 8; i++) {
		t[i] = (struct rmw_thread){ c, i, 0 };
		pthread_create(&tid[i], NULL, rmw_writer, &t[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(tid[i], NULL);
		CHECK_EQ("failed writes", 0, t[i].errors);
	}
	CHECK_EQ("flush", 0, blkdev_flush_sync(c, true));
	uint8_t r[2048];
	CHECK_EQ("read", 0, blkdev_read_sync(c, 64 * KiB, sizeof(r), r));
	for (int s = 0; s < 4; s++)
		for (int id = 0; id < 8; id++)
			for (int k = 0; k < 32; k++) {
				uint64_t o = (uint64_t)s * 512 + (uint64_t)id * 32 + 7 + k;
				if (r[o] != id + 1 || memdev_data(m)[64 * KiB + o] != id + 1) {
					CHECK("every writer's bytes survive the others' read-modify-write",
					      false, "byte %llu: cache 0x%02x device 0x%02x, expected 0x%02x",
					      (unsigned long long)o, r[o], memdev_data(m)[64 * KiB + o], id + 1);
					s = 4, id = 8, k = 32;
				}
			}
	CHECK_EQ("no overlapping writes", 0, ctr(m).overlap_violations);
	c->ops->destroy(c);
	m->ops->destroy(m);
}

static void test_rmw(void)
{
	static const enum config_cache_mode modes[] = { CONFIG_CACHE_WRITEBACK,
							CONFIG_CACHE_WRITETHROUGH, CONFIG_CACHE_NONE };
	static const char *names[] = { "rmw writeback", "rmw writethrough", "rmw none" };
	for (int i = 0; i < 3; i++) {
		current = names[i];
		rmw_mode(modes[i]);
		rmw_atomic(modes[i]);
	}
}

/* ---------- asynchronous and zero-copy ---------- */

static void test_async(void)
{
	struct blkdev *m = memdev_create(4 * MiB, 512);
	struct cache_config cc = config(CONFIG_CACHE_WRITEBACK);
	struct blkdev *c = cache_create(&cc, m);
	struct done d = { 0 };

	fill(memdev_data(m), 4 * MiB, 5);
	memdev_set_delay(m, 300000, 300000);
	done_init(&d);
	uint64_t t0 = util_now_ms();
	cache_read(c, 200 * KiB, 4096, done_rcb, &d, NULL);
	uint64_t dt = util_now_ms() - t0;
	CHECK("a miss returns at once (the READ takes 300 ms)", dt < 150, "%llu ms",
	      (unsigned long long)dt);
	CHECK_EQ("... and answers later", 0, done_calls(&d));
	CHECK("the answer comes", done_wait(&d, 5000), "no callback");
	CHECK_EQ("miss result", 0, d.ret);
	CHECK("miss content", d.len == 4096 && !memcmp(d.data, memdev_data(m) + 200 * KiB, 4096),
	      "len %zu", d.len);

	done_init(&d);
	cache_read(c, 200 * KiB, 4096, done_rcb, &d, NULL);
	CHECK_EQ("a hit answers before the call returns", 1, done_calls(&d));

	uint8_t w[8192];
	fill(w, sizeof(w), 77);
	done_init(&d);
	cache_write(c, 1 * MiB + 512, sizeof(w), w, done_cb, &d, NULL);
	CHECK_EQ("an aligned write-back write completes before the call returns", 1,
		 done_calls(&d));

	/* Answers from the blocks: one piece per cache block, no copy. */
	memdev_set_delay(m, 0, 0);
	CHECK_EQ("warm 3 blocks", 0, blkdev_read_sync(c, 2 * MiB, 192 * KiB, d.data));
	done_init(&d);
	cache_read(c, 2 * MiB + 1000, 130 * KiB, done_rcb, &d, NULL);
	CHECK_EQ("pieces of a 130 KiB hit over 3 blocks", 3, d.nseg);
	CHECK("its content", d.len == 130 * KiB &&
			     !memcmp(d.data, memdev_data(m) + 2 * MiB + 1000, 130 * KiB), "differs");
	c->ops->destroy(c);

	/* A read longer than a request may pin is copied part by part. */
	cc.cache_size = 512 * KiB; /* 8 blocks: at most 1 pinned per request */
	c = cache_create(&cc, m);
	done_init(&d);
	cache_read(c, 100 * KiB, 200 * KiB, done_rcb, &d, NULL);
	CHECK("long read answers", done_wait(&d, 5000), "no callback");
	CHECK("long read: one piece, the right bytes",
	      d.ret == 0 && d.nseg == 1 && d.len == 200 * KiB &&
		      !memcmp(d.data, memdev_data(m) + 100 * KiB, 200 * KiB),
	      "ret %d nseg %d", d.ret, d.nseg);
	CHECK("budget kept", cst(c).cached_bytes <= 512 * KiB, "%llu",
	      (unsigned long long)cst(c).cached_bytes);
	c->ops->destroy(c);

	/* cache=none reads answer from a buffer of their own */
	cc = config(CONFIG_CACHE_NONE);
	c = cache_create(&cc, m);
	done_init(&d);
	cache_read(c, 3 * MiB + 7, 5000, done_rcb, &d, NULL);
	CHECK("cache=none unaligned read", done_wait(&d, 5000) && d.ret == 0 && d.len == 5000 &&
						   !memcmp(d.data, memdev_data(m) + 3 * MiB + 7, 5000),
	      "ret %d len %zu", d.ret, d.len);
	c->ops->destroy(c);
	m->ops->destroy(m);
}

/* ---------- one budget for several caches ---------- */

static int count_threads(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	while (d && (e = readdir(d)))
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

static void test_shared_budget(void)
{
	struct cache_pool_config pc = { .cache_size = 1 * MiB, .cache_block = 64 * KiB,
					.dirty_expire_ms = 100, .flushers = 2 };
	int threads0 = count_threads();
	struct cache_pool *p = cache_pool_create(&pc);
	CHECK("pool", p != NULL, "%s", strerror(errno));
	CHECK_EQ("threads of a pool: its write-back threads", threads0 + 2, count_threads());
	struct blkdev *m[20], *c[20];
	struct cache_config cc = config(CONFIG_CACHE_WRITEBACK);
	cc.pool = p;
	int threads1 = count_threads();
	for (int i = 0; i < 20; i++) {
		m[i] = memdev_create(4 * MiB, 512);
		fill(memdev_data(m[i]), 4 * MiB, (unsigned)i);
		c[i] = cache_create(&cc, m[i]);
	}
	CHECK_EQ("20 caches start no thread", threads1, count_threads());

	uint8_t *buf = malloc(4 * MiB);
	struct cache_pool_stats ps;
	/* cache 0 uses the whole budget... */
	CHECK_EQ("read all of cache 0", 0, blkdev_read_sync(c[0], 0, 4 * MiB, buf));
	CHECK("... correctly", !memcmp(buf, memdev_data(m[0]), 4 * MiB), "differs");
	cache_pool_get_stats(p, &ps);
	CHECK("a busy cache may use the whole budget", cst(c[0]).cached_bytes >= 768 * KiB,
	      "%llu", (unsigned long long)cst(c[0]).cached_bytes);
	CHECK("pool within budget", ps.cached_bytes <= 1 * MiB, "%llu",
	      (unsigned long long)ps.cached_bytes);
	/* ... and gives it back when another one is busy and it is idle */
	for (int pass = 0; pass < 2; pass++)
		CHECK_EQ("read all of cache 1", 0, blkdev_read_sync(c[1], 0, 4 * MiB, buf));
	CHECK("an idle cache gives its blocks back", cst(c[0]).cached_bytes <= 256 * KiB, "%llu",
	      (unsigned long long)cst(c[0]).cached_bytes);
	uint64_t total = 0;
	for (int i = 0; i < 20; i++)
		total += cst(c[i]).cached_bytes;
	CHECK("all caches together within the budget", total <= 1 * MiB, "%llu",
	      (unsigned long long)total);

	/* Every cache a little dirty data: the two write-back threads write all of it. */
	uint8_t w[4096];
	for (int i = 0; i < 20; i++) {
		fill(w, sizeof(w), (unsigned)i + 100);
		CHECK_EQ("write", 0, blkdev_write_sync(c[i], 2 * MiB, sizeof(w), w));
	}
	for (int i = 0; i < 100; i++) { /* dirty_expire is 100 ms; allow a loaded machine 5 s */
		struct cache_pool_stats now;
		cache_pool_get_stats(p, &now);
		if (now.dirty_bytes == 0)
			break;
		usleep(50000);
	}
	for (int i = 0; i < 20; i++) {
		fill(w, sizeof(w), (unsigned)i + 100);
		CHECK("written back by the pool's threads after dirty_expire",
		      !memcmp(memdev_data(m[i]) + 2 * MiB, w, sizeof(w)), "cache %d", i);
	}
	cache_pool_get_stats(p, &ps);
	CHECK_EQ("pool dirty bytes after expiry", 0, ps.dirty_bytes);
	for (int i = 0; i < 20; i++) {
		c[i]->ops->destroy(c[i]);
		m[i]->ops->destroy(m[i]);
	}
	cache_pool_destroy(p);
	CHECK_EQ("threads after the pool is gone", threads0, count_threads());
	free(buf);
}

/* A target that refuses every write holds its cache's dirty data; another cache of the
 * pool can still write (it gets its share of dirty_max). */
struct bg_writes {
	struct blkdev *c;
	int n, done, errors;
	pthread_mutex_t lock;
};

static void bgw_cb(void *opaque, int ret)
{
	struct bg_writes *b = opaque;
	pthread_mutex_lock(&b->lock);
	b->done++;
	b->errors += ret != 0;
	pthread_mutex_unlock(&b->lock);
}

static void test_dirty_fairness(void)
{
	struct cache_pool_config pc = { .cache_size = 4 * MiB, .cache_block = 64 * KiB,
					.dirty_max = 1 * MiB, .dirty_expire_ms = 50, .flushers = 2 };
	struct cache_pool *p = cache_pool_create(&pc);
	struct blkdev *ma = memdev_create(8 * MiB, 512), *mb = memdev_create(8 * MiB, 512);
	struct cache_config cc = config(CONFIG_CACHE_WRITEBACK);
	cc.pool = p;
	cc.write_retries = 1000; /* keeps waiting instead of failing */
	cc.stop_budget_ms = 200;
	struct blkdev *a = cache_create(&cc, ma), *b = cache_create(&cc, mb);
	memdev_fail_writes(ma, 0, 8 * MiB, -EIO, 0);
	struct bg_writes wa = { .c = a }, wb = { .c = b };
	pthread_mutex_init(&wa.lock, NULL);
	pthread_mutex_init(&wb.lock, NULL);
	static uint8_t blk[64 * KiB];
	for (int i = 0; i < 32; i++) /* 2 MiB into a failing target: it has to wait */
		cache_write(a, (uint64_t)i * 64 * KiB, sizeof(blk), blk, bgw_cb, &wa, NULL);
	usleep(200000);
	pthread_mutex_lock(&wa.lock);
	int a_done = wa.done;
	pthread_mutex_unlock(&wa.lock);
	CHECK("writes into a failing target stop at the dirty bound", a_done < 32, "%d done",
	      a_done);
	uint64_t t0 = util_now_ms();
	for (int i = 0; i < 16; i++)
		cache_write(b, (uint64_t)i * 64 * KiB, sizeof(blk), blk, bgw_cb, &wb, NULL);
	for (int i = 0; i < 300; i++) {
		pthread_mutex_lock(&wb.lock);
		int n = wb.done;
		pthread_mutex_unlock(&wb.lock);
		if (n == 16)
			break;
		usleep(10000);
	}
	uint64_t dt = util_now_ms() - t0;
	pthread_mutex_lock(&wb.lock);
	CHECK("another cache's writes complete meanwhile", wb.done == 16 && wb.errors == 0,
	      "%d done, %d errors, %llu ms", wb.done, wb.errors, (unsigned long long)dt);
	pthread_mutex_unlock(&wb.lock);
	CHECK_EQ("flush of the healthy cache", 0, blkdev_flush_sync(b, true));
	/* tear down: the failing cache gives its data up */
	cache_cancel_all(a);
	uint64_t lost = cache_stop(a);
	CHECK("the failing cache's data is reported lost", lost > 0, "%llu",
	      (unsigned long long)lost);
	for (int i = 0; i < 200; i++) { /* parked writes completed with EINTR or EIO */
		pthread_mutex_lock(&wa.lock);
		int n = wa.done;
		pthread_mutex_unlock(&wa.lock);
		if (n == 32)
			break;
		usleep(10000);
	}
	a->ops->destroy(a);
	b->ops->destroy(b);
	CHECK_EQ("every write of the failing cache completed", 32, wa.done);
	cache_pool_destroy(p);
	ma->ops->destroy(ma);
	mb->ops->destroy(mb);
}

/* ---------- cancel ---------- */

static void test_cancel(void)
{
	struct blkdev *m = memdev_create(4 * MiB, 512);
	struct gate *g = gate_new(m);
	struct cache_config cc = config(CONFIG_CACHE_WRITEBACK);
	struct blkdev *c = cache_create(&cc, &g->dev);
	struct done d = { 0 };
	struct cache_ticket t = CACHE_TICKET_INIT;

	fill(memdev_data(m), 4 * MiB, 11);
	g->hold_reads = true; /* a target that does not answer */
	done_init(&d);
	cache_read(c, 1 * MiB, 4096, done_rcb, &d, &t);
	CHECK_EQ("a read the target does not answer waits", 0, done_calls(&d));
	CHECK_EQ("its READ is out", 1, gate_nheld(g));
	CHECK_EQ("cancel withdraws it", 0, cache_cancel(c, &t));
	CHECK_EQ("interrupted counter", 1, cst(c).interrupted);
	gate_release(g); /* the READ comes back after all */
	CHECK_EQ("the withdrawn read's callback never runs", 0, done_calls(&d));
	done_init(&d);
	cache_read(c, 1 * MiB, 4096, done_rcb, &d, NULL);
	CHECK("the data fetched for it is there", d.calls == 1 && d.ret == 0 &&
						     !memcmp(d.data, memdev_data(m) + 1 * MiB, 4096),
	      "calls %d ret %d", d.calls, d.ret);

	/* cancelled before it started: completes with EINTR at once */
	struct cache_ticket t2 = CACHE_TICKET_INIT;
	CHECK_EQ("cancel before the request", -EBUSY, cache_cancel(c, &t2));
	done_init(&d);
	cache_read(c, 2 * MiB, 4096, done_rcb, &d, &t2);
	CHECK("... it completes with EINTR", d.calls == 1 && d.ret == -EINTR, "calls %d ret %d",
	      d.calls, d.ret);
	/* after completion: too late */
	struct cache_ticket t3 = CACHE_TICKET_INIT;
	done_init(&d);
	cache_read(c, 1 * MiB, 4096, done_rcb, &d, &t3);
	CHECK_EQ("cancel after completion", -EBUSY, cache_cancel(c, &t3));

	/* a write waiting for its partial sector's READ */
	g->hold_reads = true;
	struct cache_ticket t4 = CACHE_TICKET_INIT;
	uint8_t w[100];
	memset(w, 0xee, sizeof(w));
	done_init(&d);
	cache_write(c, 3 * MiB + 10, sizeof(w), w, done_cb, &d, &t4);
	CHECK_EQ("a partial write waits for its sector", 0, done_calls(&d));
	CHECK_EQ("cancel withdraws it", 0, cache_cancel(c, &t4));
	gate_release(g);

	/* cancel_all: every waiting request completes with EINTR */
	g->hold_reads = true;
	struct done d1 = { 0 }, d2 = { 0 };
	done_init(&d1);
	done_init(&d2);
	cache_read(c, 3 * MiB + 512 * KiB, 4096, done_rcb, &d1, NULL);
	cache_read(c, 3 * MiB + 768 * KiB, 4096, done_rcb, &d2, NULL);
	cache_cancel_all(c);
	CHECK("cancel_all completes waiting reads with EINTR",
	      d1.calls == 1 && d1.ret == -EINTR && d2.calls == 1 && d2.ret == -EINTR,
	      "%d/%d %d/%d", d1.calls, d1.ret, d2.calls, d2.ret);
	gate_release(g);
	c->ops->destroy(c);

	/* cache=none: the READ in flight is orphaned */
	cc = config(CONFIG_CACHE_NONE);
	c = cache_create(&cc, &g->dev);
	g->hold_reads = true;
	struct cache_ticket t5 = CACHE_TICKET_INIT;
	done_init(&d);
	cache_read(c, 5000, 3000, done_rcb, &d, &t5);
	CHECK_EQ("cache=none: cancel of a read in flight", 0, cache_cancel(c, &t5));
	gate_release(g);
	CHECK_EQ("its callback never runs", 0, done_calls(&d));
	c->ops->destroy(c);
	g->dev.ops->destroy(&g->dev);
	m->ops->destroy(m);
}

/* ---------- a failed write-back is retried on its own ---------- */

/* Nothing else happens after the failure (no flush, no other write, dirty_expire far
 * away): the retry after the backoff must still come (the write-back threads' timer). */
static void test_retry_timer(void)
{
	struct blkdev *m = memdev_create(4 * MiB, 512);
	struct cache_config cc = config(CONFIG_CACHE_WRITEBACK);
	struct blkdev *c = cache_create(&cc, m);
	uint8_t w[4096];
	struct done d = { 0 };
	fill(w, sizeof(w), 21);
	memdev_fail_writes(m, 0, 4 * MiB, -EIO, 1);
	CHECK_EQ("write", 0, blkdev_write_sync(c, 1 * MiB, sizeof(w), w));
	done_init(&d);
	cache_flush(c, false, done_cb, &d, NULL); /* starts the write-back, which fails */
	CHECK("flush answers", done_wait(&d, 5000), "no callback");
	CHECK_EQ("flush reports the failed write-back", -EIO, d.ret);
	bool there = false;
	for (int i = 0; i < 100 && !there; i++) { /* backoff 200 ms; allow 5 s */
		usleep(50000);
		there = !memcmp(memdev_data(m) + 1 * MiB, w, sizeof(w));
	}
	CHECK("the failed write-back is retried without any other event", there, "%s",
	      "data not on the device after 5 s");
	c->ops->destroy(c);
	m->ops->destroy(m);
}

/* ---------- the size changes ---------- */

static void test_set_size(void)
{
	struct blkdev *m = memdev_create(4 * MiB, 512);
	struct cache_config cc = config(CONFIG_CACHE_WRITEBACK);
	struct blkdev *c = cache_create(&cc, m);
	uint8_t w[8192], r[8192];
	fill(w, sizeof(w), 3);
	CHECK_EQ("write near the end", 0, blkdev_write_sync(c, 4 * MiB - 8192, sizeof(w), w));
	cache_set_size(c, 4 * MiB - 4096);
	CHECK_EQ("size", 4 * MiB - 4096, c->size);
	CHECK_EQ("dirty bytes past the new end are counted lost", 4096, cst(c).lost_bytes);
	CHECK_EQ("read past the new end", -EINVAL, blkdev_read_sync(c, 4 * MiB - 4096, 4096, r));
	CHECK_EQ("read before it", 0, blkdev_read_sync(c, 4 * MiB - 8192, 4096, r));
	CHECK("... still has the data", !memcmp(r, w, 4096), "differs");
	CHECK_EQ("cache_check", 0, cache_check(c));
	cache_set_size(c, 4 * MiB);
	CHECK_EQ("read of the regained end", 0, blkdev_read_sync(c, 4 * MiB - 4096, 4096, r));
	CHECK("... reads the device", !memcmp(r, memdev_data(m) + 4 * MiB - 4096, 4096), "differs");
	CHECK_EQ("cache_check", 0, cache_check(c));
	int fr = blkdev_flush_sync(c, true);
	CHECK_EQ("the first flush reports the lost dirty data once, as EIO", -EIO, fr);
	fr = blkdev_flush_sync(c, true);
	CHECK_EQ("the next flush succeeds", 0, fr);
	c->ops->destroy(c);
	m->ops->destroy(m);
}


/* ---------- a shrink racing write-back (issue 11 follow-up) ---------- */

struct stopper {
	struct blkdev *c;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
};

static void *stop_main(void *arg)
{
	struct stopper *s = arg;
	cache_stop(s->c);
	pthread_mutex_lock(&s->lock);
	s->done = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* cache_stop must end (within ms); false: it hangs (the thread is left behind). */
static bool stop_ends(struct blkdev *c, unsigned ms)
{
	static struct stopper s;
	pthread_t t;
	s = (struct stopper){ .c = c };
	pthread_mutex_init(&s.lock, NULL);
	util_cond_init(&s.cond);
	pthread_create(&t, NULL, stop_main, &s);
	struct timespec dl = util_deadline_ms(ms);
	pthread_mutex_lock(&s.lock);
	while (!s.done && pthread_cond_timedwait(&s.cond, &s.lock, &dl) == 0)
		;
	bool ok = s.done;
	pthread_mutex_unlock(&s.lock);
	if (ok)
		pthread_join(t, NULL);
	else
		pthread_detach(t);
	return ok;
}

/* A WRITE past the new end, counted by the gate: none may be issued after the shrink. */
static uint64_t writes_past(struct blkdev *m, struct gate *g)
{
	(void)g;
	return ctr(m).writes;
}

/* Dirty data 1 MiB past what becomes the end, its write-back failing with ENOSPC (the
 * target's "LBA out of range"), in each order against cache_set_size:
 *   A  the WRITE is in flight when the size shrinks, and fails after it;
 *   B  the WRITE failed first (a retry is scheduled, a flush waits for it), then the
 *      size shrinks (the failure was reported: the drop is not a second error);
 *   D  a write waiting for its read-modify-write fetch resumes after the shrink.
 * Each time: the data past the end is dropped and counted lost, the flush waiting
 * answers, EIO (not ENOSPC: lost dirty data is EIO) once, the next flush answers 0,
 * nothing is written past the end afterwards, the invariants hold, cache_stop ends. */
static void test_shrink_vs_writeback(void)
{
	const uint64_t at = 3 * MiB, len = 256 * KiB, end = 2 * MiB;
	uint8_t *w = malloc(len);
	struct done f = { 0 }, f2 = { 0 };
	fill(w, len, 31);
	cache_debug_checks(false); /* checked below, explicitly: a violation is reported */

	for (int order = 0; order < 3; order++) {
		const char *o = order == 0 ? "A (fails after the shrink)" :
				order == 1 ? "B (fails before the shrink)" :
					     "D (a write resumes after the shrink)";
		struct blkdev *m = memdev_create(4 * MiB, 512);
		struct gate *g = gate_new(m);
		struct cache_config cc = config(CONFIG_CACHE_WRITEBACK);
		struct blkdev *c = cache_create(&cc, &g->dev);
		memdev_fail_writes(m, end, 4 * MiB - end, -ENOSPC, 0);
		if (order == 2) {
			pthread_mutex_lock(&g->lock);
			g->hold_reads = true;
			pthread_mutex_unlock(&g->lock);
			done_init(&f);
			cache_write(c, at + 10, 100, w, done_cb, &f, NULL); /* RMW: waits */
			CHECK_EQ(o, 1, gate_nheld(g));
			cache_set_size(c, end);
			gate_release(g);
			CHECK("D: the write answers", done_wait(&f, 5000), "no callback");
			CHECK_EQ("D: a write that finds the end moved before it: ENOSPC", -ENOSPC,
				 f.ret);
			CHECK_EQ("D: nothing dirty", 0, cst(c).dirty_bytes);
		} else {
			CHECK_EQ("write", 0, blkdev_write_sync(c, at, len, w));
			pthread_mutex_lock(&g->lock);
			g->hold_writes = true;
			pthread_mutex_unlock(&g->lock);
			done_init(&f);
			cache_flush(c, false, done_cb, &f, NULL); /* the write-back is held */
			for (int i = 0; i < 500 && gate_nheld(g) == 0; i++)
				usleep(1000);
			CHECK("the write-back was issued", gate_nheld(g) > 0, "%s", o);
			if (order == 0) {
				cache_set_size(c, end);
				gate_release(g); /* fails now, after the shrink */
				CHECK("A: the flush answers", done_wait(&f, 5000), "no callback");
				CHECK_EQ("A: the flush reports the loss as EIO", -EIO, f.ret);
			} else {
				gate_release(g); /* fails before the shrink */
				CHECK("B: the first flush answers", done_wait(&f, 5000), "no callback");
				CHECK_EQ("B: the failed write-back is EIO to the flush", -EIO, f.ret);
				pthread_mutex_lock(&g->lock);
				g->hold_writes = true; /* a retry would be held: it must not come */
				pthread_mutex_unlock(&g->lock);
				done_init(&f2);
				cache_flush(c, false, done_cb, &f2, NULL); /* waits for the retry */
				cache_set_size(c, end);
				CHECK("B: the flush waiting for the retry answers", done_wait(&f2, 5000),
				      "no callback");
				CHECK_EQ("B: ... with 0: the first flush reported the failure of this "
					 "data; its drop is not a second error", 0, f2.ret);
			}
			struct cache_stats s = cst(c);
			CHECK_EQ(o, len, s.lost_bytes);
			CHECK_EQ(o, 0, s.dirty_bytes);
		}
		uint64_t n0 = writes_past(m, g);
		usleep(700 * 1000); /* past the retry backoff (200 ms) */
		CHECK_EQ("nothing is written (or retried) past the end", n0, writes_past(m, g));
		CHECK_EQ("and nothing held at the gate", 0, gate_nheld(g));
		done_init(&f);
		cache_flush(c, false, done_cb, &f, NULL);
		CHECK("the next flush answers", done_wait(&f, 5000), "no callback (%s)", o);
		CHECK_EQ("... with 0: the loss was reported once", 0, f.ret);
		CHECK_EQ("cache_check", 0, cache_check(c));
		bool ended = stop_ends(c, 10000);
		CHECK("cache_stop ends", ended, "still waiting after 10 s (%s)", o);
		if (!ended)
			continue; /* leave it: destroying it would hang too */
		memdev_clear_faults(m);
		cache_set_size(c, 4 * MiB);
		CHECK_EQ("regrown: nothing stale is valid past the old end", 0,
			 blkdev_read_sync(c, at, 4096, f.data));
		CHECK("... reads the device", !memcmp(f.data, memdev_data(m) + at, 4096), "differs");
		c->ops->destroy(c);
		g->dev.ops->destroy(&g->dev);
		m->ops->destroy(m);
	}
	cache_debug_checks(true);
	free(w);
}

static void watchdog(int sig)
{
	char msg[200];
	int n = snprintf(msg, sizeof(msg), "FAIL %s: hung (watchdog)\n", current);
	(void)sig;
	if (write(2, msg, (size_t)n) < 0)
		_exit(2);
	_exit(1);
}

static const struct {
	const char *name;
	void (*fn)(void);
} tests[] = {
	{ "fetch sizing", test_fetch_sizing },
	{ "rmw", test_rmw },
	{ "async", test_async },
	{ "shared budget", test_shared_budget },
	{ "dirty fairness", test_dirty_fairness },
	{ "cancel", test_cancel },
	{ "set size", test_set_size },
	{ "retry timer", test_retry_timer },
	{ "shrink vs write-back", test_shrink_vs_writeback },
};

int main(int argc, char **argv)
{
	signal(SIGALRM, watchdog);
	cache_debug_checks(true);
	for (size_t i = 0; i < ARRAY_SIZE(tests); i++) {
		if (argc > 1 && !strstr(tests[i].name, argv[1]))
			continue;
		int before = failures;
		current = tests[i].name;
		alarm(60);
		tests[i].fn();
		alarm(0);
		printf("%s: %s\n", failures == before ? "ok  " : "FAIL", tests[i].name);
		fflush(stdout);
	}
	if (failures) {
		fprintf(stderr, "test_cache_async: %d check(s) failed\n", failures);
		return 1;
	}
	printf("test_cache_async: all checks passed\n");
	return 0;
}
