/*
 * test_cache_teardown.c - proves the cache's shutdown is safe and prompt (issue 9 #3,
 * #4, #8): a write-back completing while the cache is destroyed never touches freed
 * memory (run under ASan: the completion is made to lose the CPU right after it wakes
 * the destroying thread); a target that failed write-backs and recovered gets its
 * data at unmount even inside the retry backoff; cache_stop waits for write-back only,
 * not for a READ that may never be answered.
 *
 * Uses only cache_create / cache_stop / destroy and memdev, so it also builds against
 * the cache before these fixes (to see it fail there). Exit status 1 on any failure.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
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

#define CHECK(what, cond, ...)                                                        \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "FAIL %s (line %d): ", (what), __LINE__);     \
			fprintf(stderr, __VA_ARGS__);                                 \
			fputc('\n', stderr);                                          \
			failures++;                                                   \
		}                                                                     \
	} while (0)

static struct cache_config config(enum config_cache_mode mode)
{
	return (struct cache_config){
		.mode = mode,
		.cache_size = 2 * MiB,
		.cache_block = 64 * KiB,
		.dirty_max = 1 * MiB,
		.dirty_expire_ms = 600000,
		.readahead_max = 0,
		.max_write = 1 * MiB,
		.name = "teardown",
	};
}

static void pin_to_cpu0(void)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(0, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* ---------- an inner device whose completions come from a SCHED_IDLE thread ---------- */

struct slowreq {
	bool write;
	uint64_t off, len;
	void *buf;
	blkdev_cb cb;
	void *opaque;
	struct slowreq *next;
};

struct slow {
	struct blkdev dev;
	struct blkdev *mem;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct slowreq *head, **tail;
	bool hold_reads;     /* READs are queued but not completed until released */
	struct slowreq *held;
	bool stop;
	pthread_t thread;
};

static void *slow_main(void *arg)
{
	struct slow *s = arg;
	struct sched_param sp = { 0 };
	pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
	pin_to_cpu0();
	pthread_mutex_lock(&s->lock);
	for (;;) {
		while (!s->head && !s->stop)
			pthread_cond_wait(&s->cond, &s->lock);
		if (!s->head)
			break;
		struct slowreq *r = s->head;
		s->head = r->next;
		if (!s->head)
			s->tail = &s->head;
		pthread_mutex_unlock(&s->lock);
		int ret = r->write ? blkdev_write_sync(s->mem, r->off, r->len, r->buf)
				   : blkdev_read_sync(s->mem, r->off, r->len, r->buf);
		r->cb(r->opaque, ret);
		free(r);
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static int slow_queue(struct blkdev *dev, bool write, uint64_t off, uint64_t len, void *buf,
		      blkdev_cb cb, void *opaque)
{
	struct slow *s = dev->priv;
	struct slowreq *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	*r = (struct slowreq){ write, off, len, buf, cb, opaque, NULL };
	pthread_mutex_lock(&s->lock);
	if (!write && s->hold_reads) {
		r->next = s->held;
		s->held = r;
	} else {
		*s->tail = r;
		s->tail = &r->next;
		pthread_cond_signal(&s->cond);
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int slow_read(struct blkdev *d, uint64_t o, size_t l, void *b, blkdev_cb cb, void *op)
{
	return slow_queue(d, false, o, l, b, cb, op);
}

static int slow_write(struct blkdev *d, uint64_t o, size_t l, const void *b, blkdev_cb cb,
		      void *op)
{
	return slow_queue(d, true, o, l, (void *)b, cb, op);
}

static int slow_flush(struct blkdev *d, bool s, blkdev_cb cb, void *op)
{
	(void)d;
	(void)s;
	cb(op, 0);
	return 0;
}

static void slow_release_reads(struct slow *s)
{
	pthread_mutex_lock(&s->lock);
	s->hold_reads = false;
	while (s->held) {
		struct slowreq *r = s->held;
		s->held = r->next;
		r->next = NULL;
		*s->tail = r;
		s->tail = &r->next;
	}
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void slow_destroy(struct blkdev *d)
{
	struct slow *s = d->priv;
	slow_release_reads(s);
	pthread_mutex_lock(&s->lock);
	s->stop = true;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s);
}

static const struct blkdev_ops slow_ops = {
	.read = slow_read,
	.write = slow_write,
	.flush = slow_flush,
	.destroy = slow_destroy,
};

static struct slow *slow_create(struct blkdev *mem)
{
	struct slow *s = calloc(1, sizeof(*s));
	s->dev = *mem;
	s->dev.ops = &slow_ops;
	s->dev.priv = s;
	s->mem = mem;
	s->tail = &s->head;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	pthread_create(&s->thread, NULL, slow_main, s);
	return s;
}

/* ---------- issue 9 #3: write-back completion vs destroy ---------- */

/* The completion of the last write-back wakes the thread waiting in destroy; on one
 * CPU the completing thread (SCHED_IDLE) loses the CPU right there, destroy runs to its
 * end, then the completion resumes. Whatever it touches must still exist. */
static void test_wb_done_vs_destroy(void)
{
	pin_to_cpu0();
	for (int i = 0; i < 30; i++) {
		struct blkdev *mem = memdev_create(8 * MiB, 512);
		struct slow *s = slow_create(mem);
		struct cache_config cc = config(CONFIG_CACHE_WRITEBACK);
		struct blkdev *c = cache_create(&cc, &s->dev);
		uint8_t buf[4096];
		memset(buf, 0x5a + i, sizeof(buf));
		for (int k = 0; k < 4; k++)
			blkdev_write_sync(c, (uint64_t)k * 128 * KiB, sizeof(buf), buf);
		c->ops->destroy(c);
		usleep(20000); /* let the completion thread finish what it was doing */
		CHECK("write-back reached the device before destroy returned",
		      memdev_data(mem)[3 * 128 * KiB] == (uint8_t)(0x5a + i), "byte 0x%02x",
		      memdev_data(mem)[3 * 128 * KiB]);
		s->dev.ops->destroy(&s->dev);
		mem->ops->destroy(mem);
	}
	cpu_set_t all;
	CPU_ZERO(&all);
	for (int k = 0; k < CPU_SETSIZE; k++)
		CPU_SET(k, &all);
	pthread_setaffinity_np(pthread_self(), sizeof(all), &all);
}

/* ---------- issue 9 #4: unmount inside the retry backoff ---------- */

/* The target failed write-back write_retries times (the cache is "failing"), then
 * recovered; the unmount comes while the block waits for its next retry. */
static void test_stop_inside_backoff(void)
{
	struct blkdev *mem = memdev_create(8 * MiB, 512);
	struct cache_config cc = config(CONFIG_CACHE_WRITEBACK);
	cc.write_retries = 2;
	struct blkdev *c = cache_create(&cc, mem);
	uint8_t buf[8192];
	memset(buf, 0xc3, sizeof(buf));
	memdev_fail_writes(mem, 0, 8 * MiB, -EIO, 2);
	CHECK("write", blkdev_write_sync(c, 1 * MiB, sizeof(buf), buf) == 0, "failed");
	/* Two failed attempts: the flush reports the first; wait for the second (its
	 * backoff is 100 ms after the first). */
	int r = blkdev_flush_sync(c, false);
	CHECK("flush while the target fails", r == -EIO, "got %d", r);
	for (int i = 0; i < 300; i++) {
		struct cache_stats st;
		cache_get_stats(c, &st);
		if (st.write_errors >= 2)
			break;
		usleep(10000);
	}
	struct cache_stats st;
	cache_get_stats(c, &st);
	CHECK("two write-back failures", st.write_errors == 2, "got %llu",
	      (unsigned long long)st.write_errors);
	/* The target is back (the fault count is used up); the next retry is 400 ms away. */
	uint64_t t0 = util_now_ms();
	uint64_t lost = cache_stop(c);
	uint64_t dt = util_now_ms() - t0;
	CHECK("nothing lost when the target recovered inside the backoff", lost == 0,
	      "%llu bytes lost", (unsigned long long)lost);
	CHECK("the data reached the device", memcmp(memdev_data(mem) + 1 * MiB, buf, sizeof(buf)) == 0,
	      "it did not");
	CHECK("stop did not take long", dt < 5000, "%llu ms", (unsigned long long)dt);
	c->ops->destroy(c);

	/* A target that keeps failing: stop gives up, bounded, and says how much. */
	cc.stop_budget_ms = 500;
	c = cache_create(&cc, mem);
	memdev_fail_writes(mem, 0, 8 * MiB, -EIO, 0);
	CHECK("write", blkdev_write_sync(c, 2 * MiB, sizeof(buf), buf) == 0, "failed");
	t0 = util_now_ms();
	lost = cache_stop(c);
	dt = util_now_ms() - t0;
	CHECK("a target that keeps failing: the dirty bytes are reported lost", lost == sizeof(buf),
	      "%llu", (unsigned long long)lost);
	CHECK("giving up is bounded", dt < 10000, "%llu ms", (unsigned long long)dt);
	memdev_clear_faults(mem);
	c->ops->destroy(c);
	mem->ops->destroy(mem);
}

/* ---------- issue 9 #8: stop waits for write-back only ---------- */

struct bgread {
	struct blkdev *c;
	uint64_t off;
	int ret;
	uint8_t buf[4096];
};

static void *bg_read(void *arg)
{
	struct bgread *b = arg;
	b->ret = blkdev_read_sync(b->c, b->off, sizeof(b->buf), b->buf);
	return NULL;
}

static void test_stop_does_not_wait_for_reads(void)
{
	struct blkdev *mem = memdev_create(8 * MiB, 512);
	struct slow *s = slow_create(mem);
	struct cache_config cc = config(CONFIG_CACHE_WRITEBACK);
	struct blkdev *c = cache_create(&cc, &s->dev);
	struct bgread b = { .c = c, .off = 3 * MiB, .ret = 1 };
	pthread_t t;

	s->hold_reads = true; /* a target that does not answer READs */
	pthread_create(&t, NULL, bg_read, &b);
	usleep(100000);
	uint64_t t0 = util_now_ms();
	uint64_t lost = cache_stop(c);
	uint64_t dt = util_now_ms() - t0;
	CHECK("cache_stop with a READ outstanding returns at once", dt < 1000, "%llu ms",
	      (unsigned long long)dt);
	CHECK("nothing lost", lost == 0, "%llu", (unsigned long long)lost);
	slow_release_reads(s); /* the READ completes after stop */
	pthread_join(t, NULL);
	c->ops->destroy(c);
	s->dev.ops->destroy(&s->dev);
	mem->ops->destroy(mem);
}

/* ---------- caches destroyed while the pool's write-back threads scan them ---------- */

struct churn {
	struct blkdev *c;
	volatile int stop;
};

static void *churn_main(void *arg)
{
	struct churn *ch = arg;
	uint8_t buf[4096];
	memset(buf, 0x3c, sizeof(buf));
	for (uint64_t i = 0; !__atomic_load_n(&ch->stop, __ATOMIC_RELAXED); i++)
		blkdev_write_sync(ch->c, (i * 64 * KiB) % (7 * MiB), sizeof(buf), buf);
	return NULL;
}

/* A cache's last reference goes while a write-back thread of its pool picks it from the
 * list of caches with dirty data: the thread must not take a reference on it then
 * (that was a double free, seen as a crash at unmount). Run it under ASan. */
static void test_destroy_while_scanned(void)
{
	struct cache_pool_config pc = { .cache_size = 4 * MiB, .cache_block = 64 * KiB,
					.dirty_max = 256 * KiB, .dirty_expire_ms = 1, .flushers = 2 };
	struct cache_pool *p = cache_pool_create(&pc);
	struct blkdev *busy_mem = memdev_create(8 * MiB, 512);
	struct cache_config cc = config(CONFIG_CACHE_WRITEBACK);
	cc.pool = p;
	struct churn ch = { .c = cache_create(&cc, busy_mem) };
	pthread_t t;
	pthread_create(&t, NULL, churn_main, &ch); /* keeps the write-back threads scanning */
	uint8_t buf[4096];
	memset(buf, 0x7e, sizeof(buf));
	for (int i = 0; i < 300; i++) {
		struct blkdev *mem = memdev_create(1 * MiB, 512);
		struct blkdev *c = cache_create(&cc, mem);
		blkdev_write_sync(c, (uint64_t)(i % 16) * 4096, sizeof(buf), buf);
		c->ops->destroy(c);
		CHECK("written back at destroy", memdev_data(mem)[(i % 16) * 4096] == 0x7e, "iteration %d", i);
		mem->ops->destroy(mem);
	}
	__atomic_store_n(&ch.stop, 1, __ATOMIC_RELAXED);
	pthread_join(t, NULL);
	ch.c->ops->destroy(ch.c);
	cache_pool_destroy(p);
	busy_mem->ops->destroy(busy_mem);
}

static void watchdog(int sig)
{
	static const char msg[] = "FAIL test_cache_teardown: hung (watchdog)\n";
	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(2);
	_exit(1);
}

int main(int argc, char **argv)
{
	const char *only = argc > 1 ? argv[1] : "";
	signal(SIGALRM, watchdog);
	alarm(120);
	if (!*only || strstr("wbdone", only))
		test_wb_done_vs_destroy();
	printf("%s: write-back completion vs destroy\n", failures ? "FAIL" : "ok  ");
	int before = failures;
	if (!*only || strstr("backoff", only))
		test_stop_inside_backoff();
	printf("%s: stop inside the retry backoff\n", failures > before ? "FAIL" : "ok  ");
	before = failures;
	if (!*only || strstr("reads", only))
		test_stop_does_not_wait_for_reads();
	printf("%s: stop does not wait for reads\n", failures > before ? "FAIL" : "ok  ");
	before = failures;
	if (!*only || strstr("scanned", only))
		test_destroy_while_scanned();
	printf("%s: caches destroyed while the write-back threads scan them\n",
	       failures > before ? "FAIL" : "ok  ");
	if (failures) {
		fprintf(stderr, "test_cache_teardown: %d check(s) failed\n", failures);
		return 1;
	}
	printf("test_cache_teardown: all checks passed\n");
	return 0;
}
