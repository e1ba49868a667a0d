/* test_cache_races: four cache bugs found in review stay fixed - a read chunk with more
 * than 64 missing runs, reads spinning while an unrelated write_zeroes is slow, a failed
 * discard dropping dirty data, and a write-through block re-fetched stale while its
 * WRITE was in flight. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "iscsifs/blkdev.h"
#include "iscsifs/cache.h"
#include "iscsifs/memdev.h"
#include "iscsifs/config.h"
#define KiB 1024ull
#define MiB (1024ull*KiB)

static int failures;
#define CHECK(what, cond) do { if (!(cond)) { printf("FAIL %s\n", what); failures++; } else printf("ok   %s\n", what); } while (0)

/* wrapper: slow write_zeroes / writes, failing discard */
struct wrap { struct blkdev dev; struct blkdev *in; int slow_wz_ms, slow_w_ms, fail_discard; };
static int w_read(struct blkdev *d, uint64_t o, size_t l, void *b, blkdev_cb cb, void *op)
{ struct wrap *w = d->priv; return w->in->ops->read(w->in, o, l, b, cb, op); }
static int w_write(struct blkdev *d, uint64_t o, size_t l, const void *b, blkdev_cb cb, void *op)
{ struct wrap *w = d->priv; if (w->slow_w_ms) usleep(w->slow_w_ms*1000); return w->in->ops->write(w->in, o, l, b, cb, op); }
static int w_flush(struct blkdev *d, bool s, blkdev_cb cb, void *op)
{ struct wrap *w = d->priv; return w->in->ops->flush(w->in, s, cb, op); }
static int w_discard(struct blkdev *d, uint64_t o, uint64_t l, blkdev_cb cb, void *op)
{ struct wrap *w = d->priv; if (w->fail_discard) { cb(op, -EIO); return 0; } return w->in->ops->discard(w->in, o, l, cb, op); }
static int w_wz(struct blkdev *d, uint64_t o, uint64_t l, blkdev_cb cb, void *op)
{ struct wrap *w = d->priv; if (w->slow_wz_ms) usleep(w->slow_wz_ms*1000); return w->in->ops->write_zeroes(w->in, o, l, cb, op); }
static void w_destroy(struct blkdev *d) { (void)d; }
static const struct blkdev_ops wops = { w_read, w_write, w_flush, w_discard, w_wz, NULL, w_destroy };
static struct wrap *wrap_new(struct blkdev *in)
{ struct wrap *w = calloc(1, sizeof *w); w->in = in; w->dev = *in; w->dev.ops = &wops; w->dev.priv = w; w->dev.can_discard = true; return w; }

static struct cache_config cfg(enum config_cache_mode m, uint64_t size)
{ return (struct cache_config){ .mode = m, .cache_size = size, .cache_block = 64*KiB, .dirty_max = 1*MiB,
  .dirty_expire_ms = 600000, .readahead_max = 0, .max_write = 1*MiB, .name = "t" }; }

/* 1: >64 runs in one read chunk */
static void t_runs(void)
{
	struct blkdev *m = memdev_create(8*MiB, 512);
	struct cache_config cc = cfg(CONFIG_CACHE_WRITEBACK, 4*MiB);
	struct blkdev *c = cache_create(&cc, m);
	uint8_t s[512]; memset(s, 0xab, sizeof s);
	for (int blk = 0; blk < 4; blk++)
		for (int k = 0; k < 128; k += 2)
			blkdev_write_sync(c, blk*64*KiB + k*512, 512, s);
	uint8_t *buf = malloc(256*KiB);
	int r = blkdev_read_sync(c, 0, 256*KiB, buf);
	CHECK("read over 4 blocks with 64 gaps each", r == 0 && buf[0] == 0xab && buf[512] == 0x00);
	c->ops->destroy(c); m->ops->destroy(m); free(buf);
}

/* 2: a read anywhere while a slow write_zeroes elsewhere is in flight */
struct zarg { struct blkdev *c; };
static int zret;
static void *zthr(void *a) { struct zarg *z = a; zret = blkdev_write_zeroes_sync(z->c, 4*MiB, 64*KiB); return NULL; }
static void t_zero_spin(void)
{
	struct blkdev *m = memdev_create(8*MiB, 512);
	struct wrap *w = wrap_new(m); w->slow_wz_ms = 1500;
	struct cache_config cc = cfg(CONFIG_CACHE_WRITEBACK, 4*MiB);
	struct blkdev *c = cache_create(&cc, &w->dev);
	struct zarg z = { c }; pthread_t t; pthread_create(&t, NULL, zthr, &z);
	usleep(100000);
	memdev_set_delay(m, 200, 400);
	uint8_t buf[4096];
	struct memdev_counters before, after; memdev_get_counters(m, &before);
	int r = blkdev_read_sync(c, 0, 4096, buf);
	memdev_get_counters(m, &after);
	CHECK("read of another block during a slow write_zeroes: one READ, no error",
	      r == 0 && after.reads - before.reads <= 2);
	pthread_join(t, NULL);
	CHECK("the write_zeroes itself", zret == 0);
	c->ops->destroy(c); m->ops->destroy(m); free(w);
}

/* 3: failing discard drops dirty data */
static void t_discard_fail(void)
{
	struct blkdev *m = memdev_create(8*MiB, 512);
	struct wrap *w = wrap_new(m); w->fail_discard = 1;
	struct cache_config cc = cfg(CONFIG_CACHE_WRITEBACK, 4*MiB);
	struct blkdev *c = cache_create(&cc, &w->dev);
	uint8_t s[4096]; memset(s, 0x5a, sizeof s);
	blkdev_write_sync(c, 0, 4096, s);
	int r = blkdev_discard_sync(c, 0, 4096);
	blkdev_flush_sync(c, true);
	uint8_t buf[4096];
	blkdev_read_sync(c, 0, 4096, buf);
	CHECK("a failed discard leaves the written data, in cache and on the device",
	      r < 0 && buf[0] == 0x5a && memdev_data(m)[0] == 0x5a);
	c->ops->destroy(c); m->ops->destroy(m); free(w);
}

/* 4: write-through: block evicted while its WRITE is in flight, then re-fetched stale */
struct warg { struct blkdev *c; uint8_t *d; };
static int wret;
static void *wthr(void *a) { struct warg *x = a; wret = blkdev_write_sync(x->c, 0, 64*KiB, x->d); return NULL; }
static void t_wt_stale(void)
{
	struct blkdev *m = memdev_create(8*MiB, 512);
	struct wrap *w = wrap_new(m);
	struct cache_config cc = cfg(CONFIG_CACHE_WRITETHROUGH, 512*KiB); /* 8 blocks */
	struct blkdev *c = cache_create(&cc, &w->dev);
	uint8_t *d = malloc(64*KiB); memset(d, 0x77, 64*KiB);
	uint8_t *buf = malloc(64*KiB);
	w->slow_w_ms = 500;
	struct warg x = { c, d }; pthread_t t; pthread_create(&t, NULL, wthr, &x);
	usleep(100000);
	for (int i = 1; i < 40; i++) blkdev_read_sync(c, i*64*KiB, 64*KiB, buf); /* evict block 0 */
	blkdev_read_sync(c, 0, 64*KiB, buf); /* re-fetch while the WRITE is in flight */
	pthread_join(t, NULL);
	w->slow_w_ms = 0;
	blkdev_read_sync(c, 0, 64*KiB, buf);
	CHECK("write-through: no stale re-fetch while the WRITE was in flight",
	      wret == 0 && buf[0] == 0x77 && memdev_data(m)[0] == 0x77);
	c->ops->destroy(c); m->ops->destroy(m); free(w); free(d); free(buf);
}

int main(int argc, char **argv)
{
	const char *t = argc > 1 ? argv[1] : "";
	if (!*t || strstr("zero", t)) t_zero_spin();
	if (!*t || strstr("discard", t)) t_discard_fail();
	if (!*t || strstr("wt", t)) t_wt_stale();
	if (!*t || strstr("runs", t)) t_runs();
	printf(failures ? "test_cache_races: %d failed\n" : "test_cache_races: all passed\n", failures);
	return failures != 0;
}
