/*
 * test_cache.c - proves the block cache keeps the contract of cache.h over memdev:
 * content round-trips in every mode and block size, partial writes read nothing,
 * write-back / write-through timing, coalescing, the dirty bound, scan resistance
 * and the byte budget, failed READs and WRITEs, no overlapping WRITEs in flight,
 * read-ahead on sequential streaks only, cache=none going to the device, the counters,
 * zeroing racing a fetch, and misses served when the cache is full of dirty blocks.
 *
 * A plain program: every check prints the test, what it expected and what it got;
 * the exit status is 1 if any check failed. A watchdog names the test that hangs.
 * Optional argv[1]: run only the tests whose name contains it.
 */
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
#define MiB (1024ull * 1024)
#define TEST_TIMEOUT_S 30

static int failures;
static const char *current_test = "?";

#define CHECK_EQ(what, expected, got)                                                   \
	do {                                                                            \
		long long e_ = (long long)(expected), g_ = (long long)(got);             \
		if (e_ != g_) {                                                         \
			fprintf(stderr, "FAIL %s (line %d): %s: expected %lld, got %lld\n", \
				current_test, __LINE__, (what), e_, g_);                \
			failures++;                                                     \
		}                                                                       \
	} while (0)

#define CHECK(what, cond, fmt, ...)                                                     \
	do {                                                                            \
		if (!(cond)) {                                                          \
			fprintf(stderr, "FAIL %s (line %d): %s: expected %s, got " fmt "\n", \
				current_test, __LINE__, (what), #cond, __VA_ARGS__);    \
			failures++;                                                     \
		}                                                                       \
	} while (0)

/* Compare `len` bytes; on a difference report the first differing offset. */
#define CHECK_MEM(what, expected, got, len, base)                                       \
	check_mem(__LINE__, (what), (expected), (got), (len), (base))

static bool check_mem(int line, const char *what, const uint8_t *expected, const uint8_t *got,
		      size_t len, uint64_t base)
{
	if (memcmp(expected, got, len) == 0)
		return true;
	size_t i = 0, n = 0;

	while (expected[i] == got[i])
		i++;
	for (size_t j = i; j < len; j++)
		n += expected[j] != got[j];
	fprintf(stderr,
		"FAIL %s (line %d): %s: content differs at byte %llu (0x%llx): expected 0x%02x, "
		"got 0x%02x (%zu of %zu bytes differ)\n",
		current_test, line, what, (unsigned long long)(base + i),
		(unsigned long long)(base + i), expected[i], got[i], n, len);
	failures++;
	return false;
}

static void watchdog(int sig)
{
	char msg[256];
	int n = snprintf(msg, sizeof(msg), "FAIL %s: hung (watchdog expired)\n", current_test);

	(void)sig;
	if (write(2, msg, (size_t)n) < 0)
		_exit(2);
	_exit(1);
}

/* ---- helpers ---- */

static uint64_t rng_state = 0x243f6a8885a308d3ull;

static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

/* Non-zero random bytes. */
static void fill_random(uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		uint8_t b = (uint8_t)rnd();
		p[i] = b ? b : 1;
	}
}

static void fill_pattern(uint8_t *p, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)((seed * 131 + i * 7 + (i >> 9)) | 1);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p) {
		perror("malloc");
		exit(2);
	}
	return p;
}

static struct cache_config default_config(enum config_cache_mode mode)
{
	return (struct cache_config){
		.mode = mode,
		.cache_size = 4 * MiB,
		.cache_block = 64 * KiB,
		.dirty_max = 1 * MiB,
		.dirty_expire_ms = 600000,   /* never during a test, unless asked */
		.readahead_max = 0,
		.max_write = 1 * MiB,
		.write_retries = 0,
		.name = "test",
	};
}

static struct blkdev *new_memdev(uint64_t size, uint32_t bs, bool random_content)
{
	struct blkdev *m = memdev_create(size, bs);

	if (!m) {
		fprintf(stderr, "FAIL %s: memdev_create(%llu, %u): %s\n", current_test,
			(unsigned long long)size, bs, strerror(errno));
		exit(1);
	}
	if (random_content)
		fill_random(memdev_data(m), size);
	return m;
}

static struct blkdev *new_cache(const struct cache_config *cc, struct blkdev *inner)
{
	struct blkdev *c = cache_create(cc, inner);

	if (!c) {
		fprintf(stderr, "FAIL %s: cache_create: %s\n", current_test, strerror(errno));
		exit(1);
	}
	if (c->size != inner->size || c->block_size != inner->block_size) {
		fprintf(stderr, "FAIL %s: cache size/block %llu/%u, inner %llu/%u\n",
			current_test, (unsigned long long)c->size, c->block_size,
			(unsigned long long)inner->size, inner->block_size);
		failures++;
	}
	return c;
}

static struct memdev_counters counters(struct blkdev *m)
{
	struct memdev_counters c;

	memdev_get_counters(m, &c);
	return c;
}

static struct cache_stats stats(struct blkdev *c)
{
	struct cache_stats s;

	cache_get_stats(c, &s);
	return s;
}

static const char *mode_name(enum config_cache_mode m)
{
	return m == CONFIG_CACHE_WRITEBACK ? "writeback"
	       : m == CONFIG_CACHE_WRITETHROUGH ? "writethrough" : "none";
}

/* ---- tests ---- */

/* Write `len` bytes of a fresh pattern at `off` to cache and model, then read them and
 * a wider range back. */
static void roundtrip_one(struct blkdev *c, struct blkdev *m, uint8_t *model, uint64_t off,
			  uint64_t len, enum config_cache_mode mode, uint64_t seed)
{
	uint8_t *buf = xmalloc(len), *rbuf;
	char what[128];

	fill_pattern(buf, len, seed);
	snprintf(what, sizeof(what), "write off=%llu len=%llu", (unsigned long long)off,
		 (unsigned long long)len);
	CHECK_EQ(what, 0, blkdev_write_sync(c, off, len, buf));
	memcpy(model + off, buf, len);
	if (mode != CONFIG_CACHE_WRITEBACK) {
		snprintf(what, sizeof(what), "%s: device has write off=%llu len=%llu on return",
			 mode_name(mode), (unsigned long long)off, (unsigned long long)len);
		CHECK_MEM(what, model + off, memdev_data(m) + off, len, off);
	}
	/* Read back the range plus one device block either side when possible. */
	uint64_t bs = c->block_size;
	uint64_t roff = off >= bs ? off - bs : off;
	uint64_t rend = off + len + bs <= c->size ? off + len + bs : off + len;

	rbuf = xmalloc(rend - roff);
	snprintf(what, sizeof(what), "read off=%llu len=%llu", (unsigned long long)roff,
		 (unsigned long long)(rend - roff));
	CHECK_EQ(what, 0, blkdev_read_sync(c, roff, rend - roff, rbuf));
	CHECK_MEM(what, model + roff, rbuf, rend - roff, roff);
	free(rbuf);
	free(buf);
}

static void check_device_equals_model(struct blkdev *m, const uint8_t *model, const char *when)
{
	char what[128];

	snprintf(what, sizeof(what), "device content equals model %s", when);
	CHECK_MEM(what, model, memdev_data(m), m->size, 0);
}

static void check_cache_reads_model(struct blkdev *c, const uint8_t *model)
{
	uint64_t chunk = 128 * KiB;
	uint8_t *buf = xmalloc(chunk);

	for (uint64_t off = 0; off < c->size; off += chunk) {
		uint64_t len = off + chunk <= c->size ? chunk : c->size - off;
		char what[96];

		snprintf(what, sizeof(what), "read-back off=%llu len=%llu",
			 (unsigned long long)off, (unsigned long long)len);
		CHECK_EQ(what, 0, blkdev_read_sync(c, off, len, buf));
		if (!CHECK_MEM(what, model + off, buf, len, off))
			break;
	}
	free(buf);
}

static void roundtrip(uint32_t bs, enum config_cache_mode mode, uint64_t cache_block)
{
	/* Size not a multiple of the cache block: the last cache block is partial. */
	uint64_t size = 2 * MiB + 5 * bs;
	struct blkdev *m = new_memdev(size, bs, true);
	uint8_t *model = xmalloc(size);
	struct cache_config cc = default_config(mode);
	struct blkdev *c;
	uint64_t seed = 1;

	memcpy(model, memdev_data(m), size);
	cc.cache_size = 512 * KiB;   /* a quarter of the device: eviction happens */
	cc.cache_block = cache_block;
	cc.dirty_max = 256 * KiB;
	cc.readahead_max = 256 * KiB;
	cc.max_write = 128 * 1024;
	c = new_cache(&cc, m);

	/* Reads of untouched data first. */
	check_cache_reads_model(c, model);

	const uint64_t cb = cache_block;
	const struct { uint64_t off, len; } fixed[] = {
		{ 0, bs },
		{ bs, bs },
		{ cb - bs, 2 * bs },                   /* crosses a cache-block boundary */
		{ cb - bs, cb + 2 * bs },              /* spans three cache blocks */
		{ cb, cb },                            /* exactly one cache block */
		{ 3 * cb + 2 * bs, 5 * cb },           /* unaligned to cache blocks, long */
		{ size - bs, bs },                     /* last device block */
		{ size - 5 * bs, 5 * bs },             /* the partial last cache block */
		{ size - 5 * bs - 2 * bs, 7 * bs },    /* crosses into it */
		{ (size / cb - 1) * cb, size - (size / cb - 1) * cb },
		{ 0, 256 * KiB },
		{ 1 * MiB - 3 * bs, 100 * bs },
	};
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		if (fixed[i].off + fixed[i].len > size)
			continue;
		roundtrip_one(c, m, model, fixed[i].off, fixed[i].len, mode, seed++);
	}
	CHECK_EQ("flush after fixed cases", 0, blkdev_flush_sync(c, true));
	check_device_equals_model(m, model, "after flush of fixed cases");

	/* Random aligned ranges; flush and compare every 100 operations. */
	uint8_t *buf = xmalloc(256 * KiB);
	for (int op = 1; op <= 600; op++) {
		uint64_t nblocks = size / bs;
		uint64_t maxlen = (rnd() & 3) ? 16 * KiB : 256 * KiB;
		uint64_t off = rnd_below(nblocks) * bs;
		uint64_t len = (1 + rnd_below(maxlen / bs)) * bs;

		if (rnd() % 8 == 0)   /* favour the device's end */
			off = size - (1 + rnd_below(cb * 2 / bs)) * bs;
		if (off + len > size)
			len = size - off;
		if (rnd() & 1) {
			roundtrip_one(c, m, model, off, len, mode, seed++);
		} else {
			char what[96];

			snprintf(what, sizeof(what), "random read off=%llu len=%llu",
				 (unsigned long long)off, (unsigned long long)len);
			CHECK_EQ(what, 0, blkdev_read_sync(c, off, len, buf));
			CHECK_MEM(what, model + off, buf, len, off);
		}
		if (op % 100 == 0) {
			CHECK_EQ("periodic flush", 0, blkdev_flush_sync(c, op % 200 == 0));
			check_device_equals_model(m, model, "after periodic flush");
			if (failures)
				break;
		}
	}
	free(buf);

	CHECK_EQ("final flush", 0, blkdev_flush_sync(c, true));
	check_device_equals_model(m, model, "after final flush");
	check_cache_reads_model(c, model);
	struct cache_stats s = stats(c);
	CHECK_EQ("dirty_bytes after flush", 0, s.dirty_bytes);
	CHECK("cached_bytes within budget", s.cached_bytes <= cc.cache_size, "%llu",
	      (unsigned long long)s.cached_bytes);
	CHECK_EQ("overlap_violations", 0, counters(m).overlap_violations);
	c->ops->destroy(c);
	check_device_equals_model(m, model, "after destroy");
	m->ops->destroy(m);
	free(model);
}

static void test_roundtrip(void)
{
	static const enum config_cache_mode modes[] = {
		CONFIG_CACHE_WRITEBACK, CONFIG_CACHE_WRITETHROUGH, CONFIG_CACHE_NONE
	};
	static const uint32_t sizes[] = { 512, 4096 };
	static char name[96];

	for (size_t b = 0; b < 2; b++) {
		for (size_t i = 0; i < 3; i++) {
			snprintf(name, sizeof(name), "roundtrip bs=%u %s", sizes[b],
				 mode_name(modes[i]));
			current_test = name;
			alarm(TEST_TIMEOUT_S);
			roundtrip(sizes[b], modes[i], 64 * KiB);
		}
	}
	/* Small cache blocks (cache_block == 4096 over 512-byte blocks, and == block). */
	snprintf(name, sizeof(name), "roundtrip bs=512 writeback cache_block=4K");
	current_test = name;
	alarm(TEST_TIMEOUT_S);
	roundtrip(512, CONFIG_CACHE_WRITEBACK, 4 * KiB);
	snprintf(name, sizeof(name), "roundtrip bs=4096 writeback cache_block=4K");
	current_test = name;
	alarm(TEST_TIMEOUT_S);
	roundtrip(4096, CONFIG_CACHE_WRITEBACK, 4 * KiB);
}

/* A partial write reads nothing; reading the rest fetches only what is missing. */
static void test_partial_write_no_read(void)
{
	for (uint32_t bs = 512; bs <= 4096; bs *= 8) {
		struct blkdev *m = new_memdev(4 * MiB, bs, true);
		struct cache_config cc = default_config(CONFIG_CACHE_WRITEBACK);
		struct blkdev *c = new_cache(&cc, m);
		uint8_t *model = xmalloc(m->size), buf[4096], *big = xmalloc(64 * KiB);
		uint64_t blk = 64 * KiB, off = blk + 8 * KiB;

		memcpy(model, memdev_data(m), m->size);
		fill_pattern(buf, sizeof(buf), 42);
		memcpy(model + off, buf, sizeof(buf));
		CHECK_EQ("4K write into uncached block", 0,
			 blkdev_write_sync(c, off, sizeof(buf), buf));
		CHECK_EQ("READs issued by a 4K write (bs=512/4096)", 0, counters(m).reads);

		memset(buf, 0, sizeof(buf));
		CHECK_EQ("read back the 4K", 0, blkdev_read_sync(c, off, sizeof(buf), buf));
		CHECK_MEM("read back the 4K", model + off, buf, sizeof(buf), off);
		CHECK_EQ("READs for re-reading the written 4K (a hit)", 0, counters(m).reads);

		CHECK_EQ("read whole cache block", 0, blkdev_read_sync(c, blk, blk, big));
		CHECK_MEM("read whole cache block", model + blk, big, blk, blk);
		struct memdev_counters mc = counters(m);
		CHECK("bytes fetched for the rest of the block < cache_block",
		      mc.read_bytes < blk, "%llu", (unsigned long long)mc.read_bytes);
		CHECK_EQ("bytes fetched for the rest of the block (exact)", blk - 4096,
			 mc.read_bytes);
		CHECK_EQ("device unchanged before flush", 0,
			 memcmp(memdev_data(m) + off, model + off, 4096) == 0);

		CHECK_EQ("flush", 0, blkdev_flush_sync(c, true));
		check_device_equals_model(m, model, "after flush");
		c->ops->destroy(c);
		m->ops->destroy(m);
		free(model);
		free(big);
	}
}

/* Write-back holds data until flush or dirty_expire; write-through writes at once. */
static void test_writeback_timing(void)
{
	uint8_t buf[8192];
	struct blkdev *m = new_memdev(4 * MiB, 512, false);
	struct cache_config cc = default_config(CONFIG_CACHE_WRITEBACK);
	struct blkdev *c = new_cache(&cc, m);

	fill_pattern(buf, sizeof(buf), 7);
	CHECK_EQ("write", 0, blkdev_write_sync(c, 128 * KiB, sizeof(buf), buf));
	usleep(100000);
	CHECK_EQ("writeback: device unchanged before flush (0 = unchanged)", 0,
		 memcmp(memdev_data(m) + 128 * KiB, buf, sizeof(buf)) == 0);
	CHECK_EQ("writeback: no WRITE before flush", 0, counters(m).writes);
	CHECK("dirty_bytes after write", stats(c).dirty_bytes >= sizeof(buf), "%llu",
	      (unsigned long long)stats(c).dirty_bytes);
	CHECK_EQ("flush", 0, blkdev_flush_sync(c, true));
	CHECK_MEM("writeback: device has data after flush", buf, memdev_data(m) + 128 * KiB,
		  sizeof(buf), 128 * KiB);
	CHECK_EQ("dirty_bytes after flush", 0, stats(c).dirty_bytes);
	c->ops->destroy(c);

	/* dirty_expire writes back without a flush. */
	cc.dirty_expire_ms = 100;
	c = new_cache(&cc, m);
	fill_pattern(buf, sizeof(buf), 8);
	CHECK_EQ("write", 0, blkdev_write_sync(c, 1 * MiB, sizeof(buf), buf));
	usleep(500000);
	CHECK_MEM("dirty_expire=100ms: device has data after 500 ms without flush", buf,
		  memdev_data(m) + 1 * MiB, sizeof(buf), 1 * MiB);
	CHECK_EQ("dirty_bytes after expiry", 0, stats(c).dirty_bytes);
	c->ops->destroy(c);

	/* Write-through: on the device when write returns. */
	cc = default_config(CONFIG_CACHE_WRITETHROUGH);
	c = new_cache(&cc, m);
	fill_pattern(buf, sizeof(buf), 9);
	CHECK_EQ("write", 0, blkdev_write_sync(c, 2 * MiB + 512, sizeof(buf), buf));
	CHECK_MEM("writethrough: device has data when write returns", buf,
		  memdev_data(m) + 2 * MiB + 512, sizeof(buf), 2 * MiB + 512);
	CHECK_EQ("writethrough: dirty_bytes", 0, stats(c).dirty_bytes);
	c->ops->destroy(c);

	/* destroy writes back what is held. */
	cc = default_config(CONFIG_CACHE_WRITEBACK);
	c = new_cache(&cc, m);
	fill_pattern(buf, sizeof(buf), 10);
	CHECK_EQ("write", 0, blkdev_write_sync(c, 3 * MiB, sizeof(buf), buf));
	c->ops->destroy(c);
	CHECK_MEM("destroy wrote back dirty data", buf, memdev_data(m) + 3 * MiB, sizeof(buf),
		  3 * MiB);
	m->ops->destroy(m);
}

/* Adjacent dirty blocks go out as one WRITE. */
static void test_coalescing(void)
{
	for (int reverse = 0; reverse < 2; reverse++) {
		struct blkdev *m = new_memdev(16 * MiB, 512, false);
		struct cache_config cc = default_config(CONFIG_CACHE_WRITEBACK);
		struct blkdev *c;
		uint64_t blk = 64 * KiB;
		uint8_t *buf = xmalloc(blk), *model = xmalloc(m->size);

		cc.cache_size = 8 * MiB;
		cc.dirty_max = 4 * MiB;
		cc.max_write = 1 * MiB;
		c = new_cache(&cc, m);
		memset(model, 0, m->size);
		for (int i = 0; i < 8; i++) {
			int b = reverse ? 7 - i : i;
			uint64_t off = 2 * MiB + (uint64_t)b * blk;

			fill_pattern(buf, blk, (uint64_t)b + 100);
			memcpy(model + off, buf, blk);
			CHECK_EQ("write full block", 0, blkdev_write_sync(c, off, blk, buf));
		}
		CHECK_EQ("flush", 0, blkdev_flush_sync(c, true));
		struct memdev_counters mc = counters(m);
		CHECK_EQ(reverse ? "WRITEs for 8 adjacent blocks written in reverse order"
				 : "WRITEs for 8 adjacent blocks",
			 1, mc.writes);
		CHECK_EQ("write_bytes", 8 * blk, mc.write_bytes);
		CHECK_EQ("READs", 0, mc.reads);
		CHECK_EQ("cache writeback_ops", 1, stats(c).writeback_ops);
		check_device_equals_model(m, model, "after flush");

		/* max_write splits: 16 blocks = 1 MiB, max_write 256K -> 4 WRITEs. */
		c->ops->destroy(c);
		cc.max_write = 256 * KiB;
		c = new_cache(&cc, m);
		memdev_reset_counters(m);
		for (int i = 0; i < 16; i++) {
			uint64_t off = 8 * MiB + (uint64_t)i * blk;

			fill_pattern(buf, blk, (uint64_t)i + 200);
			memcpy(model + off, buf, blk);
			CHECK_EQ("write full block", 0, blkdev_write_sync(c, off, blk, buf));
		}
		CHECK_EQ("flush", 0, blkdev_flush_sync(c, true));
		mc = counters(m);
		CHECK_EQ("WRITEs for 1 MiB with max_write=256K", 4, mc.writes);
		check_device_equals_model(m, model, "after flush (max_write 256K)");
		c->ops->destroy(c);
		m->ops->destroy(m);
		free(buf);
		free(model);
	}
}

/* Writers block at dirty_max and never fail. */
struct dirty_writer {
	struct blkdev *c;
	int id;
	int errors;
	uint64_t dirty_max, max_dirty_seen;
};

static void *dirty_writer_main(void *arg)
{
	struct dirty_writer *w = arg;
	uint64_t blk = 64 * KiB;
	uint8_t *buf = xmalloc(blk);

	for (int i = 0; i < 16; i++) {
		int b = i * 4 + w->id;

		fill_pattern(buf, blk, (uint64_t)b + 1000);
		if (blkdev_write_sync(w->c, (uint64_t)b * blk, blk, buf))
			w->errors++;
		uint64_t d = stats(w->c).dirty_bytes;
		if (d > w->max_dirty_seen)
			w->max_dirty_seen = d;
	}
	free(buf);
	return NULL;
}

static void test_dirty_bound(void)
{
	struct blkdev *m = new_memdev(8 * MiB, 512, false);
	struct cache_config cc = default_config(CONFIG_CACHE_WRITEBACK);
	uint64_t blk = 64 * KiB;
	struct blkdev *c;
	struct dirty_writer w[4];
	pthread_t tid[4];
	uint8_t *model = xmalloc(m->size);

	cc.dirty_max = 4 * blk;
	memdev_set_delay(m, 2000, 5000);
	c = new_cache(&cc, m);
	memset(model, 0, m->size);
	for (int b = 0; b < 64; b++)
		fill_pattern(model + (uint64_t)b * blk, blk, (uint64_t)b + 1000);
	for (int i = 0; i < 4; i++) {
		w[i] = (struct dirty_writer){ .c = c, .id = i, .dirty_max = cc.dirty_max };
		pthread_create(&tid[i], NULL, dirty_writer_main, &w[i]);
	}
	uint64_t max_seen = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(tid[i], NULL);
		CHECK_EQ("failed writes under the dirty bound", 0, w[i].errors);
		if (w[i].max_dirty_seen > max_seen)
			max_seen = w[i].max_dirty_seen;
	}
	CHECK("dirty_bytes never above dirty_max", max_seen <= cc.dirty_max, "%llu",
	      (unsigned long long)max_seen);
	CHECK_EQ("flush", 0, blkdev_flush_sync(c, true));
	check_device_equals_model(m, model, "after 64 block writes and flush");
	CHECK_EQ("overlap_violations", 0, counters(m).overlap_violations);
	c->ops->destroy(c);
	m->ops->destroy(m);
	free(model);
}

/* One sequential pass over much more than the cache keeps a hot set; the byte budget
 * holds throughout. */
static void scan_resistance(uint64_t readahead)
{
	uint64_t blk = 64 * KiB;
	uint64_t hot = 16, cold = 1024;
	struct blkdev *m = new_memdev((hot + cold + 8) * blk, 512, true);
	struct cache_config cc = default_config(CONFIG_CACHE_WRITEBACK);
	struct blkdev *c;
	uint8_t *buf = xmalloc(blk);
	uint64_t max_cached = 0;

	cc.cache_size = 64 * blk;
	cc.readahead_max = readahead;
	c = new_cache(&cc, m);

	for (int pass = 0; pass < 4; pass++) {
		for (uint64_t b = 0; b < hot; b++) {
			/* Hot blocks are spread out, so the hot reads are not sequential. */
			uint64_t off = (b * 3 % hot) * blk;

			CHECK_EQ("hot read", 0, blkdev_read_sync(c, off, blk, buf));
			CHECK_MEM("hot read", memdev_data(m) + off, buf, blk, off);
		}
	}
	for (uint64_t b = 0; b < cold; b++) {
		uint64_t off = (hot + 8 + b) * blk;

		if (blkdev_read_sync(c, off, blk, buf)) {
			CHECK_EQ("scan read", 0, -1);
			break;
		}
		struct cache_stats s = stats(c);
		if (s.cached_bytes > max_cached)
			max_cached = s.cached_bytes;
	}
	CHECK("cached_bytes during scan <= cache_size", max_cached <= cc.cache_size, "%llu",
	      (unsigned long long)max_cached);
	/* Let in-flight read-ahead settle before counting. */
	usleep(50000);
	memdev_reset_counters(m);
	for (uint64_t b = 0; b < hot; b++) {
		uint64_t off = (b * 3 % hot) * blk;

		CHECK_EQ("hot re-read", 0, blkdev_read_sync(c, off, blk, buf));
		CHECK_MEM("hot re-read", memdev_data(m) + off, buf, blk, off);
	}
	struct memdev_counters mc = counters(m);
	CHECK("device READs re-reading the hot set after a scan <= 2", mc.reads <= 2, "%llu",
	      (unsigned long long)mc.reads);
	c->ops->destroy(c);
	m->ops->destroy(m);
	free(buf);
}

static void test_scan_resistance(void)
{
	scan_resistance(0);
	current_test = "scan resistance (readahead_max=512K)";
	scan_resistance(512 * KiB);
}

/* A failed READ fails the read and leaves nothing valid behind. */
static void test_failed_read(void)
{
	struct blkdev *m = new_memdev(8 * MiB, 512, true);
	struct cache_config cc = default_config(CONFIG_CACHE_WRITEBACK);
	struct blkdev *c = new_cache(&cc, m);
	uint64_t blk = 64 * KiB;
	uint8_t *buf = xmalloc(2 * blk);

	/* Fault on the second of two cache blocks. */
	memdev_fail_reads(m, 3 * blk, blk, -EIO, 0);
	CHECK_EQ("read over failing range", -EIO, blkdev_read_sync(c, 2 * blk, 2 * blk, buf));
	CHECK_EQ("read of the failing block alone", -EIO, blkdev_read_sync(c, 3 * blk, 4096, buf));
	CHECK_EQ("read outside the failing range", 0, blkdev_read_sync(c, 2 * blk, blk, buf));
	CHECK_MEM("read outside the failing range", memdev_data(m) + 2 * blk, buf, blk, 2 * blk);
	memdev_clear_faults(m);
	CHECK_EQ("read after clearing faults", 0, blkdev_read_sync(c, 2 * blk, 2 * blk, buf));
	CHECK_MEM("read after clearing faults", memdev_data(m) + 2 * blk, buf, 2 * blk, 2 * blk);

	/* A partial-block read failing: a written 4K plus the rest of the block. */
	uint8_t w[4096];
	fill_pattern(w, sizeof(w), 77);
	CHECK_EQ("write 4K", 0, blkdev_write_sync(c, 5 * blk + 4096, sizeof(w), w));
	/* The block has two missing runs around the written 4K, so two READs fail, and
	 * the narrowed retry of the range asked for (a failed block fetch is retried
	 * once for just that range) sends two more. */
	memdev_fail_reads(m, 5 * blk, blk, -EIO, 4);
	CHECK_EQ("read block with missing parts, one failure", -EIO,
		 blkdev_read_sync(c, 5 * blk, blk, buf));
	CHECK_EQ("read again after count exhausted", 0, blkdev_read_sync(c, 5 * blk, blk, buf));
	CHECK_MEM("written 4K survives failed fetch", w, buf + 4096, 4096, 5 * blk + 4096);
	CHECK_MEM("rest of block", memdev_data(m) + 5 * blk, buf, 4096, 5 * blk);
	CHECK_MEM("rest of block", memdev_data(m) + 5 * blk + 8192, buf + 8192, blk - 8192,
		  5 * blk + 8192);
	memdev_clear_faults(m);
	c->ops->destroy(c);

	/* Read-ahead into a failing range must not leave garbage valid. */
	cc.readahead_max = 1 * MiB;
	c = new_cache(&cc, m);
	memdev_fail_reads(m, 1 * MiB, 1 * MiB, -EIO, 0);
	for (uint64_t off = 0; off < 1 * MiB; off += blk) {
		CHECK_EQ("sequential read before failing range", 0,
			 blkdev_read_sync(c, off, blk, buf));
	}
	usleep(50000);   /* read-ahead completes (and fails) */
	memdev_clear_faults(m);
	for (uint64_t off = 1 * MiB; off < 2 * MiB; off += blk) {
		CHECK_EQ("read where read-ahead failed", 0, blkdev_read_sync(c, off, blk, buf));
		if (!CHECK_MEM("read where read-ahead failed", memdev_data(m) + off, buf, blk,
			       off))
			break;
	}
	c->ops->destroy(c);
	m->ops->destroy(m);
	free(buf);
}

/* A failed WRITE keeps the data dirty, reports -EIO to the next flush, and is retried. */
static void test_failed_write(void)
{
	struct blkdev *m = new_memdev(8 * MiB, 512, false);
	struct cache_config cc = default_config(CONFIG_CACHE_WRITEBACK);
	struct blkdev *c = new_cache(&cc, m);
	uint8_t buf[16384];

	fill_pattern(buf, sizeof(buf), 55);
	memdev_fail_writes(m, 0, 8 * MiB, -EIO, 2);
	CHECK_EQ("write (into cache)", 0, blkdev_write_sync(c, 256 * KiB, sizeof(buf), buf));
	CHECK_EQ("flush after failed write-back", -EIO, blkdev_flush_sync(c, true));
	CHECK("write_errors counted", stats(c).write_errors > 0, "%llu",
	      (unsigned long long)stats(c).write_errors);
	memdev_clear_faults(m);
	CHECK_EQ("next flush", 0, blkdev_flush_sync(c, true));
	CHECK_MEM("device has the data after the retried write-back", buf,
		  memdev_data(m) + 256 * KiB, sizeof(buf), 256 * KiB);
	CHECK_EQ("dirty_bytes after successful flush", 0, stats(c).dirty_bytes);
	CHECK_EQ("a third flush has no stale error", 0, blkdev_flush_sync(c, true));
	uint8_t r[16384];
	CHECK_EQ("read back", 0, blkdev_read_sync(c, 256 * KiB, sizeof(r), r));
	CHECK_MEM("read back", buf, r, sizeof(r), 256 * KiB);
	c->ops->destroy(c);

	/* Write-through: the write itself reports the failure. */
	cc = default_config(CONFIG_CACHE_WRITETHROUGH);
	c = new_cache(&cc, m);
	memdev_fail_writes(m, 0, 8 * MiB, -EIO, 0);
	CHECK_EQ("writethrough write with failing device", -EIO,
		 blkdev_write_sync(c, 512 * KiB, sizeof(buf), buf));
	memdev_clear_faults(m);
	CHECK_EQ("read after failed writethrough", 0,
		 blkdev_read_sync(c, 512 * KiB, sizeof(r), r));
	CHECK_MEM("failed writethrough write left no stale cache content",
		  memdev_data(m) + 512 * KiB, r, sizeof(r), 512 * KiB);
	c->ops->destroy(c);
	m->ops->destroy(m);
}

/* Many writers over the same few blocks, flushes interleaved: never two overlapping
 * WRITEs in flight, and the device ends equal to what the cache returns. */
struct overlap_writer {
	struct blkdev *c;
	int id;
	int errors;
};

static void *overlap_writer_main(void *arg)
{
	struct overlap_writer *w = arg;
	uint64_t seed = 0x1234567ull * (uint64_t)(w->id + 1);
	uint8_t buf[32768];

	for (int i = 0; i < 150; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t off = ((seed >> 33) % 64) * 4096;   /* within 4 cache blocks */
		uint64_t len = (1 + ((seed >> 20) % 8)) * 4096;

		if (off + len > 256 * KiB)
			len = 256 * KiB - off;
		fill_pattern(buf, len, seed);
		if (blkdev_write_sync(w->c, off, len, buf))
			w->errors++;
		if (i % 15 == 0 && blkdev_flush_sync(w->c, (i & 1) != 0))
			w->errors++;
	}
	return NULL;
}

static void test_no_overlapping_writes(void)
{
	struct blkdev *m = new_memdev(4 * MiB, 512, false);
	struct cache_config cc = default_config(CONFIG_CACHE_WRITEBACK);
	struct blkdev *c;
	struct overlap_writer w[6];
	pthread_t tid[6];

	cc.dirty_expire_ms = 5;
	cc.dirty_max = 128 * KiB;
	memdev_set_delay(m, 1000, 3000);
	c = new_cache(&cc, m);
	for (int i = 0; i < 6; i++) {
		w[i] = (struct overlap_writer){ .c = c, .id = i };
		pthread_create(&tid[i], NULL, overlap_writer_main, &w[i]);
	}
	for (int i = 0; i < 6; i++) {
		pthread_join(tid[i], NULL);
		CHECK_EQ("writer errors", 0, w[i].errors);
	}
	CHECK_EQ("final flush", 0, blkdev_flush_sync(c, true));
	struct memdev_counters mc = counters(m);
	CHECK_EQ("overlap_violations", 0, mc.overlap_violations);
	CHECK("several WRITEs in flight at once (the test exercised concurrency)",
	      mc.max_inflight > 1, "%llu", (unsigned long long)mc.max_inflight);
	uint8_t *buf = xmalloc(256 * KiB);
	CHECK_EQ("read back", 0, blkdev_read_sync(c, 0, 256 * KiB, buf));
	CHECK_MEM("cache and device agree after flush", buf, memdev_data(m), 256 * KiB, 0);
	c->ops->destroy(c);
	m->ops->destroy(m);
	free(buf);
}

/* Read-ahead on a sequential streak, none for random reads. */
static void test_readahead(void)
{
	struct blkdev *m = new_memdev(16 * MiB, 512, true);
	struct cache_config cc = default_config(CONFIG_CACHE_WRITEBACK);
	struct blkdev *c;
	uint8_t *buf = xmalloc(64 * KiB);

	cc.readahead_max = 1 * MiB;
	cc.cache_size = 32 * MiB;
	c = new_cache(&cc, m);
	for (uint64_t off = 0; off < 8 * MiB; off += 64 * KiB) {
		CHECK_EQ("sequential read", 0, blkdev_read_sync(c, off, 64 * KiB, buf));
		if (!CHECK_MEM("sequential read", memdev_data(m) + off, buf, 64 * KiB, off))
			break;
	}
	struct cache_stats s = stats(c);
	CHECK("sequential 64K reads over 8 MiB: fetch_ops well below 128 or readahead_bytes > 0",
	      s.fetch_ops < 100 || s.readahead_bytes > 0, "fetch_ops=%llu readahead_bytes=%llu",
	      (unsigned long long)s.fetch_ops, (unsigned long long)s.readahead_bytes);
	CHECK("sequential reads: some hits", s.hits > 0, "%llu", (unsigned long long)s.hits);
	printf("  readahead: sequential 8 MiB: fetch_ops=%llu readahead_bytes=%llu hits=%llu "
	       "misses=%llu device reads=%llu\n",
	       (unsigned long long)s.fetch_ops, (unsigned long long)s.readahead_bytes,
	       (unsigned long long)s.hits, (unsigned long long)s.misses,
	       (unsigned long long)counters(m).reads);
	c->ops->destroy(c);

	c = new_cache(&cc, m);
	/* Random offsets, each at least 256 KiB away from each of the previous 16 reads,
	 * so no read continues (or nearly continues) an earlier one. */
	uint64_t recent[16];
	for (int i = 0; i < 16; i++)
		recent[i] = UINT64_MAX / 2;
	for (int i = 0; i < 300; i++) {
		uint64_t off;
		bool near;

		do {
			off = rnd_below(16 * MiB / 4096) * 4096;
			near = false;
			for (int k = 0; k < 16; k++)
				near |= off + 256 * KiB > recent[k] && off < recent[k] + 256 * KiB;
		} while (near);
		recent[i % 16] = off;
		CHECK_EQ("random read", 0, blkdev_read_sync(c, off, 4096, buf));
		if (!CHECK_MEM("random read", memdev_data(m) + off, buf, 4096, off))
			break;
	}
	s = stats(c);
	CHECK_EQ("random 4K reads: readahead_bytes", 0, s.readahead_bytes);
	c->ops->destroy(c);
	m->ops->destroy(m);
	free(buf);
}

/* cache=none: every read goes to the device. */
static void test_cache_none(void)
{
	struct blkdev *m = new_memdev(4 * MiB, 4096, true);
	struct cache_config cc = default_config(CONFIG_CACHE_NONE);
	struct blkdev *c = new_cache(&cc, m);
	uint8_t buf[8192], w[8192];

	for (int i = 0; i < 10; i++) {
		CHECK_EQ("read", 0, blkdev_read_sync(c, 64 * KiB, sizeof(buf), buf));
		CHECK_MEM("read", memdev_data(m) + 64 * KiB, buf, sizeof(buf), 64 * KiB);
	}
	CHECK("device READs for 10 reads of the same range", counters(m).reads >= 10, "%llu",
	      (unsigned long long)counters(m).reads);
	/* A change behind the cache's back is seen at once (another initiator). */
	memset(memdev_data(m) + 64 * KiB, 0x3c, 4096);
	CHECK_EQ("read after external change", 0, blkdev_read_sync(c, 64 * KiB, sizeof(buf), buf));
	CHECK_MEM("read after external change", memdev_data(m) + 64 * KiB, buf, sizeof(buf),
		  64 * KiB);
	fill_pattern(w, sizeof(w), 3);
	CHECK_EQ("write", 0, blkdev_write_sync(c, 1 * MiB, sizeof(w), w));
	CHECK_MEM("none: device has data when write returns", w, memdev_data(m) + 1 * MiB,
		  sizeof(w), 1 * MiB);
	CHECK_EQ("cached_bytes", 0, stats(c).cached_bytes);
	c->ops->destroy(c);
	m->ops->destroy(m);
}

/* write_zeroes through the cache: cached copies read as zeroes too. */
static void test_write_zeroes(void)
{
	struct blkdev *m = new_memdev(4 * MiB, 512, true);
	struct cache_config cc = default_config(CONFIG_CACHE_WRITEBACK);
	struct blkdev *c = new_cache(&cc, m);
	uint8_t *buf = xmalloc(256 * KiB), *model = xmalloc(m->size);

	memcpy(model, memdev_data(m), m->size);
	fill_pattern(buf, 128 * KiB, 5);
	memcpy(model + 100 * KiB, buf, 128 * KiB);
	CHECK_EQ("write", 0, blkdev_write_sync(c, 100 * KiB, 128 * KiB, buf));
	CHECK_EQ("read (fill cache)", 0, blkdev_read_sync(c, 0, 256 * KiB, buf));
	CHECK_EQ("write_zeroes", 0, blkdev_write_zeroes_sync(c, 60 * KiB, 100 * KiB));
	memset(model + 60 * KiB, 0, 100 * KiB);
	CHECK_EQ("read after write_zeroes", 0, blkdev_read_sync(c, 0, 256 * KiB, buf));
	CHECK_MEM("read after write_zeroes", model, buf, 256 * KiB, 0);
	CHECK_EQ("flush", 0, blkdev_flush_sync(c, true));
	check_device_equals_model(m, model, "after write_zeroes and flush");
	c->ops->destroy(c);
	m->ops->destroy(m);
	free(buf);
	free(model);
}

/* Requests larger than the cache budget or the dirty bound still complete. */
static void test_oversized_requests(void)
{
	struct blkdev *m = new_memdev(8 * MiB, 512, true);
	struct cache_config cc = default_config(CONFIG_CACHE_WRITEBACK);
	struct blkdev *c;
	uint8_t *buf = xmalloc(2 * MiB), *model = xmalloc(m->size);

	memcpy(model, memdev_data(m), m->size);
	cc.cache_size = 512 * KiB;
	cc.dirty_max = 256 * KiB;
	c = new_cache(&cc, m);
	CHECK_EQ("read of 2 MiB with cache_size 512K", 0, blkdev_read_sync(c, 0, 2 * MiB, buf));
	CHECK_MEM("read of 2 MiB with cache_size 512K", model, buf, 2 * MiB, 0);
	fill_pattern(buf, 1 * MiB, 11);
	memcpy(model + 3 * MiB, buf, 1 * MiB);
	CHECK_EQ("write of 1 MiB with dirty_max 256K", 0,
		 blkdev_write_sync(c, 3 * MiB, 1 * MiB, buf));
	CHECK("cached_bytes within budget", stats(c).cached_bytes <= cc.cache_size, "%llu",
	      (unsigned long long)stats(c).cached_bytes);
	CHECK_EQ("flush", 0, blkdev_flush_sync(c, true));
	check_device_equals_model(m, model, "after oversized write and flush");
	c->ops->destroy(c);
	m->ops->destroy(m);
	free(buf);
	free(model);
}

/* Bad configurations are refused with EINVAL. */
static void test_bad_config(void)
{
	struct blkdev *m = new_memdev(1 * MiB, 4096, false);
	struct cache_config cc = default_config(CONFIG_CACHE_WRITEBACK);
	struct blkdev *c;

	cc.cache_block = 48 * KiB;   /* not a power of two */
	errno = 0;
	c = cache_create(&cc, m);
	CHECK("cache_block not a power of two refused", c == NULL, "%p", (void *)c);
	CHECK_EQ("errno", EINVAL, errno);
	if (c)
		c->ops->destroy(c);
	cc = default_config(CONFIG_CACHE_WRITEBACK);
	cc.cache_block = 2048;   /* below the device block size */
	errno = 0;
	c = cache_create(&cc, m);
	CHECK("cache_block < block_size refused", c == NULL, "%p", (void *)c);
	CHECK_EQ("errno", EINVAL, errno);
	if (c)
		c->ops->destroy(c);
	m->ops->destroy(m);
}

/* The counters mean what cache.h says, and flush reaches the target as documented. */
static void test_stats_and_flush(void)
{
	uint64_t blk = 64 * KiB;
	struct blkdev *m = new_memdev(4 * MiB, 512, true);
	struct cache_config cc = default_config(CONFIG_CACHE_WRITEBACK);
	struct blkdev *c = new_cache(&cc, m);
	uint8_t *buf = xmalloc(blk);
	struct cache_stats s;

	CHECK_EQ("read uncached block", 0, blkdev_read_sync(c, 2 * blk, blk, buf));
	s = stats(c);
	CHECK_EQ("read_ops", 1, s.read_ops);
	CHECK_EQ("read_bytes", blk, s.read_bytes);
	CHECK_EQ("misses after one cold block", 1, s.misses);
	CHECK_EQ("hits after one cold block", 0, s.hits);
	CHECK_EQ("fetch_ops", 1, s.fetch_ops);
	CHECK_EQ("fetch_bytes", blk, s.fetch_bytes);
	CHECK_EQ("cached_bytes", blk, s.cached_bytes);
	CHECK_EQ("read same block again", 0, blkdev_read_sync(c, 2 * blk, blk, buf));
	s = stats(c);
	CHECK_EQ("hits after re-reading it", 1, s.hits);
	CHECK_EQ("misses after re-reading it", 1, s.misses);

	fill_pattern(buf, 4096, 1);
	CHECK_EQ("write 4K", 0, blkdev_write_sync(c, 8 * blk, 4096, buf));
	s = stats(c);
	CHECK_EQ("write_ops", 1, s.write_ops);
	CHECK_EQ("write_bytes", 4096, s.write_bytes);
	CHECK_EQ("dirty_bytes", 4096, s.dirty_bytes);
	CHECK_EQ("cached_bytes (a partial block counts whole)", 2 * blk, s.cached_bytes);

	memdev_reset_counters(m);
	CHECK_EQ("flush(sync_target=false)", 0, blkdev_flush_sync(c, false));
	CHECK_EQ("device flushes for flush(false)", 0, counters(m).flushes);
	CHECK_EQ("device writes for flush(false)", 1, counters(m).writes);
	s = stats(c);
	CHECK_EQ("writeback_ops", 1, s.writeback_ops);
	CHECK_EQ("writeback_bytes", 4096, s.writeback_bytes);
	CHECK_EQ("dirty_bytes after flush", 0, s.dirty_bytes);
	CHECK_EQ("flush(sync_target=true) with nothing dirty", 0, blkdev_flush_sync(c, true));
	CHECK_EQ("device flushes for flush(true)", 1, counters(m).flushes);
	memdev_fail_flush(m, -EIO, 1);
	CHECK_EQ("flush when the device's SYNCHRONIZE CACHE fails", -EIO,
		 blkdev_flush_sync(c, true));
	CHECK_EQ("next flush", 0, blkdev_flush_sync(c, true));
	c->ops->destroy(c);

	/* writethrough: flush(true) syncs the target, no write-back counted as error. */
	cc = default_config(CONFIG_CACHE_WRITETHROUGH);
	c = new_cache(&cc, m);
	memdev_reset_counters(m);
	CHECK_EQ("writethrough write", 0, blkdev_write_sync(c, 0, 4096, buf));
	CHECK_EQ("writethrough flush", 0, blkdev_flush_sync(c, true));
	CHECK_EQ("writethrough: device flushes", 1, counters(m).flushes);
	CHECK_EQ("writethrough: device writes", 1, counters(m).writes);
	c->ops->destroy(c);
	m->ops->destroy(m);
	free(buf);
}

/* A blkdev between the cache and memdev that can hold back the completion of one READ
 * (its data already read from memdev), to order a fetch against other requests. */
struct gate {
	struct blkdev dev;
	struct blkdev *inner;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool armed;          /* the next READ overlapping [off, off+len) is held */
	uint64_t off, len;
	bool held;           /* a READ is held: cb(opaque, ret) pending */
	blkdev_cb cb;
	void *opaque;
	int ret;
};

static int gate_read(struct blkdev *dev, uint64_t off, size_t len, void *buf, blkdev_cb cb,
		     void *opaque)
{
	struct gate *g = dev->priv;

	pthread_mutex_lock(&g->lock);
	bool hold = g->armed && off < g->off + g->len && g->off < off + len;
	if (hold)
		g->armed = false;
	pthread_mutex_unlock(&g->lock);
	if (!hold)
		return g->inner->ops->read(g->inner, off, len, buf, cb, opaque);
	int ret = blkdev_read_sync(g->inner, off, len, buf);
	pthread_mutex_lock(&g->lock);
	g->held = true;
	g->cb = cb;
	g->opaque = opaque;
	g->ret = ret;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
	return 0;
}

static int gate_write(struct blkdev *dev, uint64_t off, size_t len, const void *buf,
		      blkdev_cb cb, void *opaque)
{
	struct gate *g = dev->priv;
	return g->inner->ops->write(g->inner, off, len, buf, cb, opaque);
}

static int gate_flush(struct blkdev *dev, bool sync_target, blkdev_cb cb, void *opaque)
{
	struct gate *g = dev->priv;
	return g->inner->ops->flush(g->inner, sync_target, cb, opaque);
}

static int gate_discard(struct blkdev *dev, uint64_t off, uint64_t len, blkdev_cb cb,
			void *opaque)
{
	struct gate *g = dev->priv;
	return g->inner->ops->discard(g->inner, off, len, cb, opaque);
}

static int gate_write_zeroes(struct blkdev *dev, uint64_t off, uint64_t len, blkdev_cb cb,
			     void *opaque)
{
	struct gate *g = dev->priv;
	return g->inner->ops->write_zeroes(g->inner, off, len, cb, opaque);
}

static void gate_destroy(struct blkdev *dev)
{
	struct gate *g = dev->priv;

	pthread_cond_destroy(&g->cond);
	pthread_mutex_destroy(&g->lock);
	free(g);
}

static const struct blkdev_ops gate_ops = {
	.read = gate_read,
	.write = gate_write,
	.flush = gate_flush,
	.discard = gate_discard,
	.write_zeroes = gate_write_zeroes,
	.destroy = gate_destroy,
};

static struct gate *gate_create(struct blkdev *inner)
{
	struct gate *g = xmalloc(sizeof(*g));

	*g = (struct gate){ .inner = inner };
	g->dev = *inner;
	g->dev.ops = &gate_ops;
	g->dev.priv = g;
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cond, NULL);
	return g;
}

/* Wait up to `ms` for a READ to be held; release it. Returns whether one was held. */
static bool gate_release(struct gate *g, unsigned ms)
{
	uint64_t until = util_now_ms() + ms;

	pthread_mutex_lock(&g->lock);
	while (!g->held && util_now_ms() < until) {
		pthread_mutex_unlock(&g->lock);
		usleep(1000);
		pthread_mutex_lock(&g->lock);
	}
	bool held = g->held;
	g->held = false;
	pthread_mutex_unlock(&g->lock);
	if (held)
		g->cb(g->opaque, g->ret);
	return held;
}

static bool gate_is_held(struct gate *g)
{
	pthread_mutex_lock(&g->lock);
	bool held = g->held;
	pthread_mutex_unlock(&g->lock);
	return held;
}

struct bg_op {
	struct blkdev *c;
	int kind;   /* 0 read, 1 write_zeroes, 2 discard */
	uint64_t off, len;
	uint8_t *buf;
	int ret;
	bool done;  /* protected by bg_lock */
};

static pthread_mutex_t bg_lock = PTHREAD_MUTEX_INITIALIZER;

static void *bg_main(void *arg)
{
	struct bg_op *op = arg;
	int ret = op->kind == 0   ? blkdev_read_sync(op->c, op->off, op->len, op->buf)
		  : op->kind == 1 ? blkdev_write_zeroes_sync(op->c, op->off, op->len)
				  : blkdev_discard_sync(op->c, op->off, op->len);

	pthread_mutex_lock(&bg_lock);
	op->ret = ret;
	op->done = true;
	pthread_mutex_unlock(&bg_lock);
	return NULL;
}

static bool bg_done(struct bg_op *op, unsigned ms)
{
	uint64_t until = util_now_ms() + ms;
	bool done;

	for (;;) {
		pthread_mutex_lock(&bg_lock);
		done = op->done;
		pthread_mutex_unlock(&bg_lock);
		if (done || util_now_ms() >= until)
			return done;
		usleep(1000);
	}
}

/* A fetch whose data was read before a write_zeroes (or discard) reached the device,
 * but whose completion arrives after it, must not leave the old data valid. */
static void zeroing_vs_fetch(int kind)
{
	uint64_t blk = 64 * KiB, x = 5 * blk;
	struct blkdev *m = new_memdev(4 * MiB, 512, true);
	struct gate *g = gate_create(m);
	struct cache_config cc = default_config(CONFIG_CACHE_WRITEBACK);
	struct blkdev *c = new_cache(&cc, &g->dev);
	uint8_t *rbuf = xmalloc(blk), *buf = xmalloc(blk), *zero = xmalloc(blk);
	struct bg_op rd = { .c = c, .kind = 0, .off = x, .len = blk, .buf = rbuf };
	struct bg_op zr = { .c = c, .kind = kind, .off = x, .len = blk };
	pthread_t t1, t2;

	memset(zero, 0, blk);
	pthread_mutex_lock(&g->lock);
	g->armed = true;
	g->off = x;
	g->len = blk;
	pthread_mutex_unlock(&g->lock);
	pthread_create(&t1, NULL, bg_main, &rd);
	for (int i = 0; i < 2000 && !gate_is_held(g); i++)
		usleep(1000);
	CHECK("the fetch reached the device and is held", gate_is_held(g), "%s", "not held");
	pthread_create(&t2, NULL, bg_main, &zr);
	/* The zeroing may complete while the fetch is held, or wait for it: both fine. */
	bg_done(&zr, 300);
	gate_release(g, 0);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	CHECK_EQ(kind == 1 ? "write_zeroes" : "discard", 0, zr.ret);
	CHECK_EQ("the concurrent read", 0, rd.ret);
	CHECK_EQ("read after the zeroing", 0, blkdev_read_sync(c, x, blk, buf));
	CHECK_MEM(kind == 1 ? "read after write_zeroes raced with a fetch"
			    : "read after discard raced with a fetch",
		  zero, buf, blk, x);
	c->ops->destroy(c);
	g->dev.ops->destroy(&g->dev);
	m->ops->destroy(m);
	free(rbuf);
	free(buf);
	free(zero);
}

static void test_zeroing_vs_fetch(void)
{
	zeroing_vs_fetch(1);
	zeroing_vs_fetch(2);
}

/* A cache whose every block holds a little dirty data must still serve a miss: it has
 * to write something back to make room, even though dirty bytes are far below
 * dirty_max and nothing has expired. */
static void test_full_of_dirty_blocks(void)
{
	uint64_t blk = 64 * KiB;
	struct blkdev *m = new_memdev(4 * MiB, 512, true);
	struct cache_config cc = default_config(CONFIG_CACHE_WRITEBACK);
	struct blkdev *c;
	uint8_t *buf = xmalloc(blk), w[512];

	cc.cache_size = 8 * blk;
	cc.dirty_max = 8 * blk;
	c = new_cache(&cc, m);
	fill_pattern(w, sizeof(w), 99);
	for (uint64_t b = 0; b < 8; b++)
		CHECK_EQ("512-byte write", 0, blkdev_write_sync(c, b * blk, sizeof(w), w));
	alarm(10);
	uint64_t t0 = util_now_ms();
	CHECK_EQ("read a ninth block", 0, blkdev_read_sync(c, 20 * blk, blk, buf));
	uint64_t dt = util_now_ms() - t0;
	CHECK_MEM("read a ninth block", memdev_data(m) + 20 * blk, buf, blk, 20 * blk);
	CHECK("the miss did not wait for dirty_expire (ms)", dt < 1000, "%llu",
	      (unsigned long long)dt);
	CHECK_EQ("flush", 0, blkdev_flush_sync(c, true));
	for (uint64_t b = 0; b < 8; b++)
		CHECK_MEM("written 512 bytes reached the device", w, memdev_data(m) + b * blk,
			  sizeof(w), b * blk);
	c->ops->destroy(c);
	m->ops->destroy(m);
	free(buf);
}

/* When clean blocks are cached, a miss evicts one of them: it neither waits for nor
 * forces write-back, wherever the dirty blocks sit in the replacement order. */
static void test_miss_evicts_clean_before_dirty(void)
{
	uint64_t blk = 64 * KiB;
	struct blkdev *m = new_memdev(4 * MiB, 512, true);
	struct cache_config cc = default_config(CONFIG_CACHE_WRITEBACK);
	struct blkdev *c;
	uint8_t *buf = xmalloc(blk), w[512];

	cc.cache_size = 8 * blk;
	cc.dirty_max = 8 * blk;
	c = new_cache(&cc, m);
	/* Give the replacement policy some history: blocks 0..5 are read twice, with
	 * enough in between to have left the cache once. */
	for (uint64_t b = 0; b < 16; b++)
		CHECK_EQ("read", 0, blkdev_read_sync(c, b * blk, 4096, buf));
	for (uint64_t b = 0; b < 6; b++)
		CHECK_EQ("re-read", 0, blkdev_read_sync(c, b * blk, 4096, buf));
	/* Dirty the two most recently inserted other blocks. */
	fill_pattern(w, sizeof(w), 98);
	CHECK_EQ("write", 0, blkdev_write_sync(c, 14 * blk, sizeof(w), w));
	CHECK_EQ("write", 0, blkdev_write_sync(c, 15 * blk, sizeof(w), w));
	alarm(10);
	memdev_reset_counters(m);
	uint64_t t0 = util_now_ms();
	for (uint64_t b = 20; b < 24; b++) {
		CHECK_EQ("miss", 0, blkdev_read_sync(c, b * blk, blk, buf));
		CHECK_MEM("miss", memdev_data(m) + b * blk, buf, blk, b * blk);
	}
	uint64_t dt = util_now_ms() - t0;
	CHECK("4 misses with clean blocks cached: no wait (ms)", dt < 1000, "%llu",
	      (unsigned long long)dt);
	CHECK_EQ("WRITEs forced by misses while clean blocks were cached", 0,
		 counters(m).writes);
	c->ops->destroy(c);
	m->ops->destroy(m);
	free(buf);
}

static const struct {
	const char *name;
	void (*fn)(void);
} tests[] = {
	{ "partial write reads nothing", test_partial_write_no_read },
	{ "write-back timing", test_writeback_timing },
	{ "coalescing", test_coalescing },
	{ "dirty bound", test_dirty_bound },
	{ "scan resistance", test_scan_resistance },
	{ "failed read", test_failed_read },
	{ "failed write", test_failed_write },
	{ "no overlapping writes", test_no_overlapping_writes },
	{ "read-ahead", test_readahead },
	{ "cache none", test_cache_none },
	{ "write_zeroes", test_write_zeroes },
	{ "zeroing vs fetch", test_zeroing_vs_fetch },
	{ "oversized requests", test_oversized_requests },
	{ "bad config", test_bad_config },
	{ "stats and flush", test_stats_and_flush },
	/* Last: a failure here tends to be a hang, which ends the program. */
	{ "miss evicts clean before dirty", test_miss_evicts_clean_before_dirty },
	{ "full of dirty blocks", test_full_of_dirty_blocks },
	{ "roundtrip", test_roundtrip },
};

int main(int argc, char **argv)
{
	signal(SIGALRM, watchdog);
	cache_debug_checks(true); /* cache_check() at every release of a cache lock */
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		if (argc > 1 && !strstr(tests[i].name, argv[1]))
			continue;
		int before = failures;

		current_test = tests[i].name;
		alarm(TEST_TIMEOUT_S);
		tests[i].fn();
		alarm(0);
		printf("%s: %s\n", before == failures ? "ok  " : "FAIL", tests[i].name);
		fflush(stdout);
	}
	if (failures) {
		fprintf(stderr, "test_cache: %d check(s) failed\n", failures);
		return 1;
	}
	printf("test_cache: all checks passed\n");
	return 0;
}
