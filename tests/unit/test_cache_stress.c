/*
 * test_cache_stress.c - proves the cache stays correct under concurrency: 8 threads
 * issue random reads, writes, write_zeroes and flushes of random aligned ranges over a
 * small device with eviction, a tight dirty bound, expiry write-back and read-ahead,
 * while memdev completes requests out of order after random delays. Each thread owns
 * a disjoint set of stripes for writing, so the expected content is deterministic: a
 * thread checks its own stripes on every read, and at the end the device must equal
 * the model and memdev must have seen no overlapping WRITEs.
 *
 * Usage: test_cache_stress [OPS_PER_THREAD]   (or env STRESS_OPS; default 20000,
 * bounded to about 8 s of run time). Exit status 1 on any failure.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "iscsifs/blkdev.h"
#include "iscsifs/cache.h"
#include "iscsifs/memdev.h"
#include "iscsifs/util.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)

#define NTHREADS 8
#define DEV_SIZE (8 * MiB)
#define DEV_BLOCK 512u
#define SECTOR 4096u              /* ownership unit */
#define STRIPE_SECTORS 8u         /* a stripe: 32 KiB, two owners per 64 KiB cache block */
#define STRIPE (SECTOR * STRIPE_SECTORS)
#define MAX_RUNTIME_MS 8000
#define WATCHDOG_S 600

static uint8_t *model;            /* bytes of stripe s are written only by owner(s) */
static struct blkdev *mem, *cache;
static long ops_per_thread = 20000;
static uint64_t deadline_ms;

static unsigned owner(uint64_t off)
{
	return (unsigned)((off / STRIPE) % NTHREADS);
}

struct worker {
	int id;
	uint64_t rng;
	long ops, reads, writes, zeroes, flushes;
	int failures;
	char first_failure[256];
};

static uint64_t wrnd(struct worker *w)
{
	w->rng ^= w->rng >> 12;
	w->rng ^= w->rng << 25;
	w->rng ^= w->rng >> 27;
	return w->rng * 0x2545f4914f6cdd1dull;
}

static void fail(struct worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(struct worker *w, const char *fmt, ...)
{
	va_list ap;

	if (w->failures++)
		return;
	va_start(ap, fmt);
	vsnprintf(w->first_failure, sizeof(w->first_failure), fmt, ap);
	va_end(ap);
}

/* A random range inside one of my stripes, aligned to DEV_BLOCK. */
static void my_range(struct worker *w, uint64_t *off, uint64_t *len)
{
	uint64_t nstripes = DEV_SIZE / STRIPE;
	uint64_t s = (wrnd(w) % (nstripes / NTHREADS)) * NTHREADS + (uint64_t)w->id;
	uint64_t blocks = STRIPE / DEV_BLOCK;
	uint64_t first = wrnd(w) % blocks;
	uint64_t n = 1 + wrnd(w) % (blocks - first);

	if (wrnd(w) & 1) {   /* half the time whole 4 KiB sectors */
		first = first / 8 * 8;
		n = (n + 7) / 8 * 8;
		if (first + n > blocks)
			n = blocks - first;
	}
	*off = s * STRIPE + first * DEV_BLOCK;
	*len = n * DEV_BLOCK;
}

static void check_own(struct worker *w, uint64_t off, uint64_t len, const uint8_t *buf)
{
	for (uint64_t p = off; p < off + len;) {
		uint64_t stripe_end = (p / STRIPE + 1) * STRIPE;
		uint64_t n = MIN(stripe_end, off + len) - p;

		if (owner(p) == (unsigned)w->id && memcmp(buf + (p - off), model + p, n)) {
			uint64_t i = 0;

			while (buf[p - off + i] == model[p + i])
				i++;
			fail(w, "read off=%llu len=%llu: byte %llu: expected 0x%02x, got 0x%02x",
			     (unsigned long long)off, (unsigned long long)len,
			     (unsigned long long)(p + i), model[p + i], buf[p - off + i]);
			return;
		}
		p += n;
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint8_t *buf = malloc(256 * KiB);
	int ret;

	if (!buf) {
		fail(w, "malloc: %s", strerror(errno));
		return NULL;
	}
	for (w->ops = 0; w->ops < ops_per_thread; w->ops++) {
		if ((w->ops & 63) == 0 && util_now_ms() > deadline_ms)
			break;
		unsigned pick = (unsigned)(wrnd(w) % 100);
		uint64_t off, len;

		if (pick < 45) {   /* read anywhere */
			len = (1 + wrnd(w) % ((wrnd(w) & 1) ? 16 : 512)) * DEV_BLOCK;
			off = (wrnd(w) % (DEV_SIZE / DEV_BLOCK)) * DEV_BLOCK;
			if (off + len > DEV_SIZE)
				len = DEV_SIZE - off;
			ret = blkdev_read_sync(cache, off, len, buf);
			if (ret)
				fail(w, "read off=%llu len=%llu: %s", (unsigned long long)off,
				     (unsigned long long)len, strerror(-ret));
			else
				check_own(w, off, len, buf);
			w->reads++;
		} else if (pick < 88) {   /* write inside my stripe */
			my_range(w, &off, &len);
			for (uint64_t i = 0; i < len; i++)
				buf[i] = (uint8_t)(wrnd(w) >> 56);
			ret = blkdev_write_sync(cache, off, len, buf);
			if (ret)
				fail(w, "write off=%llu len=%llu: %s", (unsigned long long)off,
				     (unsigned long long)len, strerror(-ret));
			/* The model follows even a failed write: the check then shows it. */
			memcpy(model + off, buf, len);
			w->writes++;
		} else if (pick < 92) {   /* zero inside my stripe */
			my_range(w, &off, &len);
			ret = blkdev_write_zeroes_sync(cache, off, len);
			if (ret)
				fail(w, "write_zeroes off=%llu len=%llu: %s", (unsigned long long)off,
				     (unsigned long long)len, strerror(-ret));
			memset(model + off, 0, len);
			w->zeroes++;
		} else if (pick < 94) {   /* flush */
			ret = blkdev_flush_sync(cache, pick & 1);
			if (ret)
				fail(w, "flush(sync_target=%u): %s", pick & 1, strerror(-ret));
			w->flushes++;
		} else {   /* re-read my own last-written region: write-read consistency */
			my_range(w, &off, &len);
			ret = blkdev_read_sync(cache, off, len, buf);
			if (ret)
				fail(w, "read own off=%llu len=%llu: %s", (unsigned long long)off,
				     (unsigned long long)len, strerror(-ret));
			else
				check_own(w, off, len, buf);
			w->reads++;
		}
	}
	free(buf);
	return NULL;
}

static void watchdog(int sig)
{
	static const char msg[] = "FAIL cache stress: no completion within the watchdog "
				  "limit (hang?)\n";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(2);
	_exit(1);
}

int main(int argc, char **argv)
{
	const char *env = getenv("STRESS_OPS");
	struct worker w[NTHREADS];
	pthread_t tid[NTHREADS];
	int failures = 0;

	if (argc > 1)
		ops_per_thread = strtol(argv[1], NULL, 0);
	else if (env)
		ops_per_thread = strtol(env, NULL, 0);
	signal(SIGALRM, watchdog);
	alarm(WATCHDOG_S);
	/* cache_check() at every release of a cache lock: any broken invariant aborts
	 * with a list of what is wrong */
	cache_debug_checks(true);

	mem = memdev_create(DEV_SIZE, DEV_BLOCK);
	model = malloc(DEV_SIZE);
	if (!mem || !model) {
		fprintf(stderr, "FAIL cache stress: setup: %s\n", strerror(errno));
		return 1;
	}
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	for (uint64_t i = 0; i < DEV_SIZE; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		model[i] = (uint8_t)((seed >> 56) | 1);
	}
	memcpy(memdev_data(mem), model, DEV_SIZE);
	memdev_set_delay(mem, 0, 500);

	struct cache_config cc = {
		.mode = CONFIG_CACHE_WRITEBACK,
		.cache_size = 1 * MiB,
		.cache_block = 64 * KiB,
		.dirty_max = 256 * KiB,
		.dirty_expire_ms = 20,
		.readahead_max = 256 * KiB,
		.max_write = 128 * 1024,
		.write_retries = 0,
		.name = "stress",
	};
	cache = cache_create(&cc, mem);
	if (!cache) {
		fprintf(stderr, "FAIL cache stress: cache_create: %s\n", strerror(errno));
		return 1;
	}

	/* Thread model: NTHREADS workers issue requests on `cache` concurrently; the main
	 * thread only starts and joins them. `model` is shared, but each byte is written
	 * only by the thread that owns its stripe and read by it or, after the joins, by
	 * main, so it needs no lock. */
	deadline_ms = util_now_ms() + MAX_RUNTIME_MS;
	for (int i = 0; i < NTHREADS; i++) {
		w[i] = (struct worker){ .id = i, .rng = 0x51ed270b27f39ull * (uint64_t)(i + 1) };
		pthread_create(&tid[i], NULL, worker_main, &w[i]);
	}
	long total = 0;
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(tid[i], NULL);
		total += w[i].ops;
		if (w[i].failures) {
			fprintf(stderr, "FAIL cache stress: thread %d: %d failure(s); first: %s\n", i,
				w[i].failures, w[i].first_failure);
			failures++;
		}
	}

	int ret = blkdev_flush_sync(cache, true);
	if (ret) {
		fprintf(stderr, "FAIL cache stress: final flush: expected 0, got %d\n", ret);
		failures++;
	}
	struct cache_stats s;
	cache_get_stats(cache, &s);
	if (s.dirty_bytes) {
		fprintf(stderr, "FAIL cache stress: dirty_bytes after final flush: expected 0, "
			"got %llu\n", (unsigned long long)s.dirty_bytes);
		failures++;
	}
	if (s.cached_bytes > cc.cache_size) {
		fprintf(stderr, "FAIL cache stress: cached_bytes %llu > cache_size %llu\n",
			(unsigned long long)s.cached_bytes, (unsigned long long)cc.cache_size);
		failures++;
	}
	/* Everything read through the cache equals the model. */
	uint8_t *buf = malloc(1 * MiB);
	for (uint64_t off = 0; buf && off < DEV_SIZE; off += 1 * MiB) {
		ret = blkdev_read_sync(cache, off, 1 * MiB, buf);
		if (ret || memcmp(buf, model + off, 1 * MiB)) {
			fprintf(stderr, "FAIL cache stress: final read-back at %llu: ret %d, "
				"content %s\n", (unsigned long long)off, ret,
				ret ? "-" : "differs from model");
			failures++;
			break;
		}
	}
	free(buf);
	cache->ops->destroy(cache);

	uint8_t *data = memdev_data(mem);
	if (memcmp(data, model, DEV_SIZE)) {
		uint64_t i = 0, n = 0;

		while (data[i] == model[i])
			i++;
		for (uint64_t j = i; j < DEV_SIZE; j++)
			n += data[j] != model[j];
		fprintf(stderr, "FAIL cache stress: device differs from model at byte %llu "
			"(owner thread %u): expected 0x%02x, got 0x%02x; %llu bytes differ\n",
			(unsigned long long)i, owner(i), model[i], data[i],
			(unsigned long long)n);
		failures++;
	}
	struct memdev_counters mc;
	memdev_get_counters(mem, &mc);
	if (mc.overlap_violations) {
		fprintf(stderr, "FAIL cache stress: overlap_violations: expected 0, got %llu\n",
			(unsigned long long)mc.overlap_violations);
		failures++;
	}
	printf("cache stress: %ld ops (%ld per thread asked); device: %llu reads, %llu writes, "
	       "%llu flushes, max_inflight %llu; cache: hits %llu misses %llu evictions %llu "
	       "writeback_ops %llu readahead_bytes %llu\n",
	       total, ops_per_thread, (unsigned long long)mc.reads,
	       (unsigned long long)mc.writes, (unsigned long long)mc.flushes,
	       (unsigned long long)mc.max_inflight, (unsigned long long)s.hits,
	       (unsigned long long)s.misses, (unsigned long long)s.evictions,
	       (unsigned long long)s.writeback_ops, (unsigned long long)s.readahead_bytes);
	mem->ops->destroy(mem);
	free(model);
	if (failures) {
		fprintf(stderr, "test_cache_stress: %d failure(s)\n", failures);
		return 1;
	}
	printf("test_cache_stress: passed\n");
	return 0;
}
