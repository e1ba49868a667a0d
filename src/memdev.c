/*
 * memdev.c - an in-memory blkdev for tests: faults, delays, and an overlap checker.
 *
 * The device is a zero-filled byte array. Every request is checked (aligned, in range:
 * a violation is a bug in the caller and aborts with a message), counted when issued,
 * and then completed either at once in the caller's thread (no delay set) or by a
 * worker thread once its random due time has passed.
 *
 * Completion is where the device changes: a READ copies out of the array and a WRITE
 * copies into it only when the request completes, so the effect of an in-flight WRITE
 * is invisible until its callback, as with a real target. Faults are evaluated at
 * completion too: a failed READ fills the caller's buffer with a garbage pattern (so a
 * cache that marks such data valid is caught), a failed WRITE leaves the array as it
 * was.
 *
 * Invariants:
 *  - A request is "in flight" from its issue until its data movement is done; it
 *    leaves the in-flight list before its callback runs, so a callback may issue a
 *    new request over the same range without counting as an overlap.
 *  - overlap_violations counts data-changing requests (WRITE, WRITE ZEROES, UNMAP)
 *    issued while another data-changing request overlapping them is in flight.
 *  - The callback runs without the lock held; `busy` counts requests whose callback
 *    has not yet returned, and destroy waits for it to reach zero.
 *
 * NOTES ON THE THREAD MODEL
 *  - Callers: any thread, concurrently. In synchronous mode the whole request runs in
 *    the caller's thread.
 *  - Workers: MEMDEV_WORKERS threads, started the first time a non-zero delay is set
 *    and joined by destroy. Each takes the queued request with the earliest due time,
 *    sleeps until it is due, completes it and runs its callback; several workers
 *    complete (and call back) concurrently and out of issue order.
 *  - One mutex, memdev.lock, protects all mutable state (data array, counters, faults,
 *    queue, in-flight list, random state). It is never held across a callback.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "iscsifs/memdev.h"
#include "iscsifs/util.h"

#define MEMDEV_WORKERS 2
#define MEMDEV_MAX_FAULTS 16
#define MEMDEV_GARBAGE 0xa5   /* what a failed READ leaves in the buffer */

enum req_type { REQ_READ, REQ_WRITE, REQ_FLUSH, REQ_DISCARD, REQ_ZEROES };

enum fault_kind { FAULT_READ, FAULT_WRITE, FAULT_FLUSH };

struct fault {
	enum fault_kind kind;
	uint64_t off, len;   /* ignored for FAULT_FLUSH */
	int err;
	int count;           /* remaining failures; 0 = unlimited */
	bool active;
};

struct req {
	enum req_type type;
	uint64_t off, len;
	void *buf;           /* READ: destination; WRITE: source (const for the caller) */
	blkdev_cb cb;
	void *opaque;
	uint64_t due_ns;     /* CLOCK_MONOTONIC */
	struct req *qnext;   /* the due-time queue, earliest first */
	struct req *iprev, *inext;   /* the in-flight list of data-changing requests */
};

struct memdev {
	struct blkdev dev;
	pthread_mutex_t lock;
	pthread_cond_t work_cond;     /* queue changed or stopping; workers wait on it */
	pthread_cond_t idle_cond;     /* busy dropped to zero; destroy waits on it */

	uint8_t *data;                /* protected by lock (read by tests only when idle) */
	struct memdev_counters ctr;   /* protected by lock */
	struct fault faults[MEMDEV_MAX_FAULTS];   /* protected by lock */
	unsigned min_us, max_us;      /* protected by lock */
	uint64_t rng;                 /* protected by lock */

	struct req *queue;            /* protected by lock: requests waiting for a worker */
	struct req *writes_inflight;  /* protected by lock: data-changing, not completed */
	uint64_t inflight;            /* protected by lock: issued, not yet completed */
	uint64_t busy;                /* protected by lock: issued, callback not returned */

	pthread_t workers[MEMDEV_WORKERS];
	int nr_workers;               /* protected by lock; set when workers start */
	bool stopping;                /* protected by lock */
};

static uint64_t now_ns(void)
{
	return util_now_us() * 1000u;
}

/* xorshift64*; caller holds the lock. */
static uint64_t rng_next(struct memdev *md)
{
	md->rng ^= md->rng >> 12;
	md->rng ^= md->rng << 25;
	md->rng ^= md->rng >> 27;
	return md->rng * 0x2545f4914f6cdd1dull;
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return alen && blen && a < b + blen && b < a + alen;
}

static bool changes_data(enum req_type t)
{
	return t == REQ_WRITE || t == REQ_DISCARD || t == REQ_ZEROES;
}

static void check_range(struct memdev *md, const char *what, uint64_t off, uint64_t len)
{
	uint32_t bs = md->dev.block_size;

	if (off % bs || len % bs || off > md->dev.size || len > md->dev.size - off) {
		fprintf(stderr,
			"memdev: %s off=%llu len=%llu is misaligned or out of range "
			"(size %llu, block %u)\n",
			what, (unsigned long long)off, (unsigned long long)len,
			(unsigned long long)md->dev.size, bs);
		abort();
	}
}

/* The error an active fault gives this request, consuming one failure; 0 if none.
 * Caller holds the lock. */
static int take_fault(struct memdev *md, const struct req *r)
{
	enum fault_kind kind;

	switch (r->type) {
	case REQ_READ:
		kind = FAULT_READ;
		break;
	case REQ_FLUSH:
		kind = FAULT_FLUSH;
		break;
	default:
		kind = FAULT_WRITE;
		break;
	}
	for (int i = 0; i < MEMDEV_MAX_FAULTS; i++) {
		struct fault *f = &md->faults[i];

		if (!f->active || f->kind != kind)
			continue;
		if (kind != FAULT_FLUSH && !ranges_overlap(r->off, r->len, f->off, f->len))
			continue;
		if (f->count > 0 && --f->count == 0)
			f->active = false;
		return f->err;
	}
	return 0;
}

/* Move the data and leave the in-flight state; returns the request's result.
 * Caller holds the lock. */
static int complete_locked(struct memdev *md, struct req *r)
{
	int ret = take_fault(md, r);

	if (changes_data(r->type)) {
		if (r->iprev)
			r->iprev->inext = r->inext;
		else
			md->writes_inflight = r->inext;
		if (r->inext)
			r->inext->iprev = r->iprev;
	}
	md->inflight--;

	if (ret) {
		if (r->type == REQ_READ)
			memset(r->buf, MEMDEV_GARBAGE, r->len);
		return ret;
	}
	switch (r->type) {
	case REQ_READ:
		memcpy(r->buf, md->data + r->off, r->len);
		break;
	case REQ_WRITE:
		memcpy(md->data + r->off, r->buf, r->len);
		break;
	case REQ_DISCARD:
	case REQ_ZEROES:
		memset(md->data + r->off, 0, r->len);
		break;
	case REQ_FLUSH:
		break;
	}
	return 0;
}

/* Free the request and run its callback. Caller holds the lock, which is dropped
 * around the callback and held again on return. */
static void run_callback(struct memdev *md, struct req *r, int ret)
{
	blkdev_cb cb = r->cb;
	void *opaque = r->opaque;

	free(r);
	pthread_mutex_unlock(&md->lock);
	cb(opaque, ret);
	pthread_mutex_lock(&md->lock);
	if (--md->busy == 0)
		pthread_cond_broadcast(&md->idle_cond);
}

static void *worker_main(void *arg)
{
	struct memdev *md = arg;

	pthread_mutex_lock(&md->lock);
	for (;;) {
		struct req *r = md->queue;

		if (!r) {
			if (md->stopping)
				break;
			pthread_cond_wait(&md->work_cond, &md->lock);
			continue;
		}
		uint64_t now = now_ns();

		if (r->due_ns > now) {
			struct timespec ts = {
				.tv_sec = (time_t)(r->due_ns / 1000000000u),
				.tv_nsec = (long)(r->due_ns % 1000000000u),
			};
			pthread_cond_timedwait(&md->work_cond, &md->lock, &ts);
			continue;
		}
		md->queue = r->qnext;
		/* Another request may be due too: let an idle worker take it meanwhile. */
		if (md->queue)
			pthread_cond_signal(&md->work_cond);
		int ret = complete_locked(md, r);

		run_callback(md, r, ret);
	}
	pthread_mutex_unlock(&md->lock);
	return NULL;
}

/* Caller holds the lock. Start the workers once; on failure stay synchronous. */
static void start_workers_locked(struct memdev *md)
{
	while (md->nr_workers < MEMDEV_WORKERS) {
		int err = pthread_create(&md->workers[md->nr_workers], NULL, worker_main, md);

		if (err) {
			fprintf(stderr, "memdev: cannot start worker thread: %s\n", strerror(err));
			break;
		}
		md->nr_workers++;
	}
}

static int submit(struct blkdev *dev, enum req_type type, uint64_t off, uint64_t len,
		  void *buf, blkdev_cb cb, void *opaque)
{
	struct memdev *md = dev->priv;
	struct req *r;
	int ret;

	if (type != REQ_FLUSH)
		check_range(md, type == REQ_READ ? "read" : "write", off, len);
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->type = type;
	r->off = off;
	r->len = len;
	r->buf = buf;
	r->cb = cb;
	r->opaque = opaque;

	pthread_mutex_lock(&md->lock);
	switch (type) {
	case REQ_READ:
		md->ctr.reads++;
		md->ctr.read_bytes += len;
		break;
	case REQ_WRITE:
		md->ctr.writes++;
		md->ctr.write_bytes += len;
		break;
	case REQ_FLUSH:
		md->ctr.flushes++;
		break;
	case REQ_DISCARD:
		md->ctr.discards++;
		break;
	case REQ_ZEROES:
		md->ctr.write_zeroes++;
		break;
	}
	if (changes_data(type)) {
		for (struct req *o = md->writes_inflight; o; o = o->inext) {
			if (ranges_overlap(off, len, o->off, o->len)) {
				md->ctr.overlap_violations++;
				break;
			}
		}
		r->inext = md->writes_inflight;
		if (r->inext)
			r->inext->iprev = r;
		md->writes_inflight = r;
	}
	md->inflight++;
	md->busy++;
	if (md->inflight > md->ctr.max_inflight)
		md->ctr.max_inflight = md->inflight;

	if (md->max_us == 0 || md->nr_workers == 0) {
		ret = complete_locked(md, r);
		run_callback(md, r, ret);
		pthread_mutex_unlock(&md->lock);
		return 0;
	}

	uint64_t span = md->max_us - md->min_us;
	uint64_t delay_us = md->min_us + (span ? rng_next(md) % (span + 1) : 0);
	struct req **pp = &md->queue;

	r->due_ns = now_ns() + delay_us * 1000u;
	while (*pp && (*pp)->due_ns <= r->due_ns)
		pp = &(*pp)->qnext;
	r->qnext = *pp;
	*pp = r;
	pthread_cond_signal(&md->work_cond);
	pthread_mutex_unlock(&md->lock);
	return 0;
}

static int memdev_read(struct blkdev *dev, uint64_t off, size_t len, void *buf,
		       blkdev_cb cb, void *opaque)
{
	return submit(dev, REQ_READ, off, len, buf, cb, opaque);
}

static int memdev_write(struct blkdev *dev, uint64_t off, size_t len, const void *buf,
			blkdev_cb cb, void *opaque)
{
	return submit(dev, REQ_WRITE, off, len, (void *)buf, cb, opaque);
}

static int memdev_flush(struct blkdev *dev, bool sync_target, blkdev_cb cb, void *opaque)
{
	(void)sync_target;
	return submit(dev, REQ_FLUSH, 0, 0, NULL, cb, opaque);
}

static int memdev_discard(struct blkdev *dev, uint64_t off, uint64_t len, blkdev_cb cb,
			  void *opaque)
{
	return submit(dev, REQ_DISCARD, off, len, NULL, cb, opaque);
}

static int memdev_write_zeroes(struct blkdev *dev, uint64_t off, uint64_t len,
			       blkdev_cb cb, void *opaque)
{
	return submit(dev, REQ_ZEROES, off, len, NULL, cb, opaque);
}

static void memdev_destroy(struct blkdev *dev)
{
	struct memdev *md = dev->priv;

	pthread_mutex_lock(&md->lock);
	while (md->busy)
		pthread_cond_wait(&md->idle_cond, &md->lock);
	md->stopping = true;
	pthread_cond_broadcast(&md->work_cond);
	pthread_mutex_unlock(&md->lock);
	for (int i = 0; i < md->nr_workers; i++)
		pthread_join(md->workers[i], NULL);

	pthread_cond_destroy(&md->idle_cond);
	pthread_cond_destroy(&md->work_cond);
	pthread_mutex_destroy(&md->lock);
	free(md->data);
	free(md);
}

static const struct blkdev_ops memdev_ops = {
	.read = memdev_read,
	.write = memdev_write,
	.flush = memdev_flush,
	.discard = memdev_discard,
	.write_zeroes = memdev_write_zeroes,
	.lba_status = NULL,
	.destroy = memdev_destroy,
};

struct blkdev *memdev_create(uint64_t size, uint32_t block_size)
{
	struct memdev *md;

	if (block_size < 512 || (block_size & (block_size - 1)) || size % block_size) {
		errno = EINVAL;
		return NULL;
	}
	md = calloc(1, sizeof(*md));
	if (!md)
		return NULL;
	md->data = calloc(1, size ? size : 1);
	if (!md->data) {
		free(md);
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&md->lock, NULL);
	util_cond_init(&md->work_cond);   /* timed waits use CLOCK_MONOTONIC */
	pthread_cond_init(&md->idle_cond, NULL);
	md->rng = 0x9e3779b97f4a7c15ull;

	md->dev.ops = &memdev_ops;
	md->dev.size = size;
	md->dev.block_size = block_size;
	md->dev.read_only = false;
	md->dev.can_discard = true;
	md->dev.discard_zeroes = true;   /* a discarded range reads as zeroes */
	md->dev.priv = md;
	return &md->dev;
}

static void add_fault(struct blkdev *dev, enum fault_kind kind, uint64_t off, uint64_t len,
		      int err, int count)
{
	struct memdev *md = dev->priv;

	pthread_mutex_lock(&md->lock);
	for (int i = 0; i < MEMDEV_MAX_FAULTS; i++) {
		struct fault *f = &md->faults[i];

		if (f->active)
			continue;
		*f = (struct fault){ .kind = kind, .off = off, .len = len, .err = err,
				     .count = count > 0 ? count : 0, .active = true };
		pthread_mutex_unlock(&md->lock);
		return;
	}
	pthread_mutex_unlock(&md->lock);
	fprintf(stderr, "memdev: more than %d faults set\n", MEMDEV_MAX_FAULTS);
	abort();
}

void memdev_fail_reads(struct blkdev *dev, uint64_t off, uint64_t len, int err, int count)
{
	add_fault(dev, FAULT_READ, off, len, err, count);
}

void memdev_fail_writes(struct blkdev *dev, uint64_t off, uint64_t len, int err, int count)
{
	add_fault(dev, FAULT_WRITE, off, len, err, count);
}

void memdev_fail_flush(struct blkdev *dev, int err, int count)
{
	add_fault(dev, FAULT_FLUSH, 0, 0, err, count);
}

void memdev_clear_faults(struct blkdev *dev)
{
	struct memdev *md = dev->priv;

	pthread_mutex_lock(&md->lock);
	memset(md->faults, 0, sizeof(md->faults));
	pthread_mutex_unlock(&md->lock);
}

void memdev_set_delay(struct blkdev *dev, unsigned min_us, unsigned max_us)
{
	struct memdev *md = dev->priv;

	if (max_us < min_us)
		max_us = min_us;
	pthread_mutex_lock(&md->lock);
	md->min_us = min_us;
	md->max_us = max_us;
	if (max_us)
		start_workers_locked(md);
	pthread_mutex_unlock(&md->lock);
}

void memdev_get_counters(struct blkdev *dev, struct memdev_counters *out)
{
	struct memdev *md = dev->priv;

	pthread_mutex_lock(&md->lock);
	*out = md->ctr;
	pthread_mutex_unlock(&md->lock);
}

void memdev_reset_counters(struct blkdev *dev)
{
	struct memdev *md = dev->priv;

	pthread_mutex_lock(&md->lock);
	memset(&md->ctr, 0, sizeof(md->ctr));
	md->ctr.max_inflight = md->inflight;
	pthread_mutex_unlock(&md->lock);
}

uint8_t *memdev_data(struct blkdev *dev)
{
	struct memdev *md = dev->priv;

	return md->data;
}
