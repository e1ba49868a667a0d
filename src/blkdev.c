/*
 * blkdev.c - synchronous wrappers around the asynchronous blkdev contract.
 *
 * A blkdev_waiter is a one-shot rendezvous between the thread that issues a request
 * and whichever thread completes it; it lives on the issuing thread's stack. The
 * completion (blkdev_waiter_cb) may run before the issuing call returns, in the
 * caller's thread or in any other thread, so the callback records `done` under a lock
 * and the waiting side checks `done` under the same lock before sleeping: a wake-up
 * can never be lost.
 *
 * Lifetime: the lock and condition variable are not in the waiter but in a small
 * static array picked by the waiter's address, so the last thing the callback does to
 * the waiter is set `done` under that lock; blkdev_waiter_wait returns only after it
 * has seen `done` under the same lock, so the callback is finished with the waiter
 * (whose stack frame may then go away) by then. Slots are shared by unrelated waiters,
 * hence the broadcast.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "iscsifs/blkdev.h"

#define WAITER_SLOTS 16

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
} slots[WAITER_SLOTS] = { [0 ... WAITER_SLOTS - 1] = { PTHREAD_MUTEX_INITIALIZER,
						       PTHREAD_COND_INITIALIZER } };

static unsigned slot_of(const struct blkdev_waiter *w)
{
	return (unsigned)(((uintptr_t)w >> 4) % WAITER_SLOTS);
}

void blkdev_waiter_init(struct blkdev_waiter *w)
{
	w->done = 0;
	w->ret = 0;
}

void blkdev_waiter_cb(void *waiter, int ret)
{
	struct blkdev_waiter *w = waiter;
	unsigned s = slot_of(w);

	pthread_mutex_lock(&slots[s].lock);
	w->ret = ret;
	w->done = 1;
	pthread_cond_broadcast(&slots[s].cond);
	pthread_mutex_unlock(&slots[s].lock);
}

int blkdev_waiter_wait(struct blkdev_waiter *w)
{
	unsigned s = slot_of(w);
	int ret;

	pthread_mutex_lock(&slots[s].lock);
	while (!w->done)
		pthread_cond_wait(&slots[s].cond, &slots[s].lock);
	ret = w->ret;
	pthread_mutex_unlock(&slots[s].lock);
	return ret;
}

/* Finish a synchronous call: `submitted` is what the op returned (negative: refused up
 * front, the callback will not run). */
static int waiter_finish(struct blkdev_waiter *w, int submitted)
{
	if (submitted < 0)
		return submitted;
	return blkdev_waiter_wait(w);
}

int blkdev_read_sync(struct blkdev *dev, uint64_t off, size_t len, void *buf)
{
	struct blkdev_waiter w;

	blkdev_waiter_init(&w);
	return waiter_finish(&w, dev->ops->read(dev, off, len, buf, blkdev_waiter_cb, &w));
}

int blkdev_write_sync(struct blkdev *dev, uint64_t off, size_t len, const void *buf)
{
	struct blkdev_waiter w;

	blkdev_waiter_init(&w);
	return waiter_finish(&w, dev->ops->write(dev, off, len, buf, blkdev_waiter_cb, &w));
}

int blkdev_flush_sync(struct blkdev *dev, bool sync_target)
{
	struct blkdev_waiter w;

	blkdev_waiter_init(&w);
	return waiter_finish(&w, dev->ops->flush(dev, sync_target, blkdev_waiter_cb, &w));
}

int blkdev_discard_sync(struct blkdev *dev, uint64_t off, uint64_t len)
{
	struct blkdev_waiter w;

	if (!dev->ops->discard)
		return -EOPNOTSUPP;
	blkdev_waiter_init(&w);
	return waiter_finish(&w, dev->ops->discard(dev, off, len, blkdev_waiter_cb, &w));
}

int blkdev_write_zeroes_sync(struct blkdev *dev, uint64_t off, uint64_t len)
{
	struct blkdev_waiter w;

	if (!dev->ops->write_zeroes)
		return -EOPNOTSUPP;
	blkdev_waiter_init(&w);
	return waiter_finish(&w, dev->ops->write_zeroes(dev, off, len, blkdev_waiter_cb, &w));
}
