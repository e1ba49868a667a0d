/*
 * test_memdev.c - proves that memdev (the cache's test double) and the blkdev
 * synchronous wrappers behave as documented: data round-trips, counters, faults with
 * count limits, zeroing, delayed out-of-order completion with data visible only at
 * completion, the overlapping-WRITE checker, and destroy waiting for in-flight work.
 *
 * A plain program: every check prints what it expected and what it got on failure;
 * the exit status is 1 if any check failed.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "iscsifs/blkdev.h"
#include "iscsifs/memdev.h"

#include "check.h"

static bool all_bytes(const uint8_t *p, size_t len, uint8_t v)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != v)
			return false;
	return true;
}

/* A completion that records the order of completions and counts them. */
struct tracker {
	pthread_mutex_t lock;
	int order[256];
	int n;
	int errors;
	pthread_t caller;
	int in_caller_thread;
};

struct tracked {
	struct tracker *t;
	int id;
};

static void tracked_cb(void *opaque, int ret)
{
	struct tracked *tr = opaque;
	struct tracker *t = tr->t;

	pthread_mutex_lock(&t->lock);
	t->order[t->n++] = tr->id;
	if (ret)
		t->errors++;
	if (pthread_equal(pthread_self(), t->caller))
		t->in_caller_thread++;
	pthread_mutex_unlock(&t->lock);
}

static int tracker_count(struct tracker *t)
{
	pthread_mutex_lock(&t->lock);
	int n = t->n;
	pthread_mutex_unlock(&t->lock);
	return n;
}

static void test_sync_roundtrip(void)
{
	struct blkdev *d = memdev_create(1 << 20, 512);
	struct memdev_counters c;
	uint8_t wbuf[4096], rbuf[4096];

	CHECK("memdev_create", d != NULL);
	CHECK_EQ("size", 1 << 20, d->size);
	CHECK_EQ("block_size", 512, d->block_size);
	CHECK("can_discard", d->can_discard);
	CHECK("content starts zero", all_bytes(memdev_data(d), d->size, 0));

	for (size_t i = 0; i < sizeof(wbuf); i++)
		wbuf[i] = (uint8_t)(i * 7 + 1);
	CHECK_EQ("write", 0, blkdev_write_sync(d, 8192, sizeof(wbuf), wbuf));
	CHECK("write visible in data", memcmp(memdev_data(d) + 8192, wbuf, sizeof(wbuf)) == 0);
	CHECK_EQ("read", 0, blkdev_read_sync(d, 8192, sizeof(rbuf), rbuf));
	CHECK("read returns written", memcmp(rbuf, wbuf, sizeof(wbuf)) == 0);
	CHECK_EQ("flush", 0, blkdev_flush_sync(d, true));

	memdev_get_counters(d, &c);
	CHECK_EQ("reads", 1, c.reads);
	CHECK_EQ("writes", 1, c.writes);
	CHECK_EQ("flushes", 1, c.flushes);
	CHECK_EQ("read_bytes", 4096, c.read_bytes);
	CHECK_EQ("write_bytes", 4096, c.write_bytes);
	CHECK_EQ("overlap_violations", 0, c.overlap_violations);
	CHECK_EQ("max_inflight (sync)", 1, c.max_inflight);

	/* Zeroing. */
	CHECK_EQ("write_zeroes", 0, blkdev_write_zeroes_sync(d, 8192, 1024));
	CHECK("write_zeroes zeroed", all_bytes(memdev_data(d) + 8192, 1024, 0));
	CHECK("write_zeroes kept rest", memcmp(memdev_data(d) + 9216, wbuf + 1024, 3072) == 0);
	CHECK_EQ("discard", 0, blkdev_discard_sync(d, 9216, 3072));
	CHECK("discard zeroed", all_bytes(memdev_data(d) + 8192, 4096, 0));
	memdev_get_counters(d, &c);
	CHECK_EQ("write_zeroes counter", 1, c.write_zeroes);
	CHECK_EQ("discards counter", 1, c.discards);

	memdev_reset_counters(d);
	memdev_get_counters(d, &c);
	CHECK_EQ("reset reads", 0, c.reads);
	CHECK_EQ("reset writes", 0, c.writes);

	/* Synchronous mode completes in the caller's thread, before the call returns. */
	struct tracker t = { .lock = PTHREAD_MUTEX_INITIALIZER, .caller = pthread_self() };
	struct tracked tr = { &t, 1 };
	CHECK_EQ("async read accepted", 0, d->ops->read(d, 0, 512, rbuf, tracked_cb, &tr));
	CHECK_EQ("sync mode: completed before return", 1, tracker_count(&t));
	CHECK_EQ("sync mode: in caller thread", 1, t.in_caller_thread);

	d->ops->destroy(d);
}

static void test_faults(void)
{
	struct blkdev *d = memdev_create(1 << 20, 4096);
	uint8_t buf[8192], pat[8192];
	struct memdev_counters c;

	memset(pat, 0x5c, sizeof(pat));
	CHECK_EQ("seed write", 0, blkdev_write_sync(d, 0, sizeof(pat), pat));

	/* Read fault, limited to one failure, over the second block only. */
	memdev_fail_reads(d, 4096, 4096, -EIO, 1);
	CHECK_EQ("read outside fault", 0, blkdev_read_sync(d, 0, 4096, buf));
	CHECK_EQ("read overlapping fault fails", -EIO, blkdev_read_sync(d, 0, 8192, buf));
	CHECK("failed read leaves garbage", !all_bytes(buf, 8192, 0x5c));
	CHECK_EQ("read after count exhausted", 0, blkdev_read_sync(d, 0, 8192, buf));
	CHECK("read after count exhausted data", all_bytes(buf, 8192, 0x5c));

	/* Unlimited write fault: fails each time, content unchanged, until cleared. */
	memdev_fail_writes(d, 0, 4096, -ENOSPC, 0);
	memset(buf, 0x11, sizeof(buf));
	for (int i = 0; i < 3; i++)
		CHECK_EQ("write in fault fails", -ENOSPC, blkdev_write_sync(d, 0, 4096, buf));
	CHECK("failed write left content", all_bytes(memdev_data(d), 8192, 0x5c));
	CHECK_EQ("write outside fault ok", 0, blkdev_write_sync(d, 4096, 4096, buf));
	CHECK_EQ("write_zeroes in write fault fails", -ENOSPC,
		 blkdev_write_zeroes_sync(d, 0, 4096));
	memdev_clear_faults(d);
	CHECK_EQ("write after clear", 0, blkdev_write_sync(d, 0, 4096, buf));
	CHECK("write after clear content", all_bytes(memdev_data(d), 8192, 0x11));

	/* Flush faults with a count. */
	memdev_fail_flush(d, -EIO, 2);
	CHECK_EQ("flush fault 1", -EIO, blkdev_flush_sync(d, true));
	CHECK_EQ("flush fault 2", -EIO, blkdev_flush_sync(d, false));
	CHECK_EQ("flush after count", 0, blkdev_flush_sync(d, true));
	memdev_get_counters(d, &c);
	CHECK_EQ("flushes counted incl. failed", 3, c.flushes);

	d->ops->destroy(d);
}

static void test_async(void)
{
	struct blkdev *d = memdev_create(1 << 20, 4096);
	struct tracker t = { .lock = PTHREAD_MUTEX_INITIALIZER, .caller = pthread_self() };
	struct tracked tr[64];
	static uint8_t bufs[64][4096];
	struct memdev_counters c;

	memdev_set_delay(d, 100, 5000);
	for (int i = 0; i < 64; i++) {
		tr[i] = (struct tracked){ &t, i };
		memset(bufs[i], i + 1, 4096);
		CHECK_EQ("async write accepted", 0,
			 d->ops->write(d, (uint64_t)i * 4096, 4096, bufs[i], tracked_cb, &tr[i]));
	}
	CHECK("writes not all completed at once", tracker_count(&t) < 64);
	for (int i = 0; i < 500 && tracker_count(&t) < 64; i++)
		usleep(10000);
	CHECK_EQ("all completed", 64, tracker_count(&t));
	CHECK_EQ("no errors", 0, t.errors);
	CHECK_EQ("none in caller thread", 0, t.in_caller_thread);
	int out_of_order = 0;
	for (int i = 1; i < t.n; i++)
		if (t.order[i] < t.order[i - 1])
			out_of_order++;
	CHECK("completions out of order", out_of_order > 0);
	for (int i = 0; i < 64; i++)
		CHECK("async write content", all_bytes(memdev_data(d) + i * 4096, 4096, i + 1));
	memdev_get_counters(d, &c);
	CHECK("max_inflight > 1", c.max_inflight > 1);
	CHECK_EQ("no overlap among disjoint writes", 0, c.overlap_violations);

	/* A WRITE's effect is invisible until it completes. */
	struct tracker t2 = { .lock = PTHREAD_MUTEX_INITIALIZER, .caller = pthread_self() };
	struct tracked one = { &t2, 0 };
	memset(bufs[0], 0xee, 4096);
	memdev_set_delay(d, 100000, 100000);
	CHECK_EQ("slow write accepted", 0, d->ops->write(d, 0, 4096, bufs[0], tracked_cb, &one));
	usleep(20000);
	CHECK_EQ("slow write not completed yet", 0, tracker_count(&t2));
	CHECK("in-flight write not visible", all_bytes(memdev_data(d), 4096, 1));

	/* An overlapping WRITE while it is in flight is a violation; a disjoint one not. */
	struct tracked two = { &t2, 1 }, three = { &t2, 2 };
	CHECK_EQ("disjoint write accepted", 0,
		 d->ops->write(d, 8192, 4096, bufs[2], tracked_cb, &two));
	memdev_get_counters(d, &c);
	CHECK_EQ("disjoint: no violation", 0, c.overlap_violations);
	CHECK_EQ("overlapping zeroes accepted", 0,
		 d->ops->write_zeroes(d, 0, 8192, tracked_cb, &three));
	memdev_get_counters(d, &c);
	CHECK_EQ("overlap counted", 1, c.overlap_violations);

	/* The synchronous wrapper waits across threads. */
	CHECK_EQ("sync read with delay", 0, blkdev_read_sync(d, 12288, 4096, bufs[63]));
	CHECK("sync read data", all_bytes(bufs[63], 4096, 4));
	for (int i = 0; i < 500 && tracker_count(&t2) < 3; i++)
		usleep(10000);
	CHECK_EQ("slow requests completed", 3, tracker_count(&t2));

	/* A write issued after the previous one completed is no violation. */
	memdev_reset_counters(d);
	CHECK_EQ("sequential write", 0, blkdev_write_sync(d, 0, 4096, bufs[0]));
	CHECK_EQ("sequential write 2", 0, blkdev_write_sync(d, 0, 4096, bufs[1]));
	memdev_get_counters(d, &c);
	CHECK_EQ("no violation after completion", 0, c.overlap_violations);

	/* Faults apply in async mode too. */
	memdev_set_delay(d, 0, 2000);
	memdev_fail_reads(d, 0, 4096, -EIO, 0);
	CHECK_EQ("async read fault", -EIO, blkdev_read_sync(d, 0, 4096, bufs[5]));
	memdev_clear_faults(d);
	CHECK_EQ("async read after clear", 0, blkdev_read_sync(d, 0, 4096, bufs[5]));

	/* destroy waits for everything in flight, callbacks included. */
	struct tracker t3 = { .lock = PTHREAD_MUTEX_INITIALIZER, .caller = pthread_self() };
	memdev_set_delay(d, 5000, 30000);
	for (int i = 0; i < 32; i++) {
		tr[i] = (struct tracked){ &t3, i };
		CHECK_EQ("read accepted", 0,
			 d->ops->read(d, (uint64_t)i * 4096, 4096, bufs[i], tracked_cb, &tr[i]));
	}
	d->ops->destroy(d);
	CHECK_EQ("destroy waited for all completions", 32, tracker_count(&t3));
}

/* The sync wrappers: a refused request returns at once; a late callback from another
 * thread wakes the waiter. */
static int refuse_read(struct blkdev *dev, uint64_t off, size_t len, void *buf,
		       blkdev_cb cb, void *opaque)
{
	(void)dev, (void)off, (void)len, (void)buf, (void)cb, (void)opaque;
	return -EROFS;
}

struct late {
	blkdev_cb cb;
	void *opaque;
};

static void *late_thread(void *arg)
{
	struct late *l = arg;

	usleep(20000);
	l->cb(l->opaque, -ENODEV);
	return NULL;
}

static pthread_t late_tid;
static struct late late_arg;

static int late_read(struct blkdev *dev, uint64_t off, size_t len, void *buf, blkdev_cb cb,
		     void *opaque)
{
	(void)dev, (void)off, (void)len, (void)buf;
	late_arg = (struct late){ cb, opaque };
	pthread_create(&late_tid, NULL, late_thread, &late_arg);
	return 0;
}

static void test_wrappers(void)
{
	struct blkdev_ops ops = { .read = refuse_read };
	struct blkdev dev = { .ops = &ops, .size = 4096, .block_size = 512 };
	uint8_t buf[512];

	CHECK_EQ("refused up front", -EROFS, blkdev_read_sync(&dev, 0, 512, buf));
	ops.read = late_read;
	CHECK_EQ("late callback from other thread", -ENODEV, blkdev_read_sync(&dev, 0, 512, buf));
	pthread_join(late_tid, NULL);
	CHECK_EQ("missing discard slot", -EOPNOTSUPP, blkdev_discard_sync(&dev, 0, 512));
}

int main(void)
{
	test_sync_roundtrip();
	test_faults();
	test_async();
	test_wrappers();
	if (failures) {
		fprintf(stderr, "test_memdev: %d check(s) failed\n", failures);
		return 1;
	}
	printf("test_memdev: all checks passed\n");
	return 0;
}
