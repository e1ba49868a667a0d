/*
 * blkdev.c - synchronous wrappers around the asynchronous blkdev contract.
 *
 * A blkdev_waiter is a one-shot rendezvous between the thread that issues a request
 * and whichever thread completes it. The completion (blkdev_waiter_cb) may run before
 * the issuing call returns, in the caller's thread or in any other thread, so the
 * callback records `done` under a lock and the waiting side checks `done` under the
 * same lock before sleeping: a wake-up can never be lost.
 *
 * Ownership: blkdev_waiter_wait() frees the waiter. The callback signals the condition
 * variable while holding the lock, and the waiter re-takes that lock before it
 * destroys and frees, so the callback is done with the waiter by then. The locks are
 * a small static array picked by the waiter's address rather than one mutex per
 * waiter, so no mutex is ever destroyed right after another thread unlocked it (legal
 * POSIX, but thread checkers report it as a race). If the request is refused up front
 * (negative return), the callback is never called and the waiter is freed at once.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "iscsifs/blkdev.h"

#define WAITER_LOCKS 16

static pthread_mutex_t waiter_locks[WAITER_LOCKS] = {
	[0 ... WAITER_LOCKS - 1] = PTHREAD_MUTEX_INITIALIZER
};

struct blkdev_waiter {
	pthread_cond_t cond;
	bool done;   /* protected by waiter_lock(w) */
	int ret;     /* protected by waiter_lock(w); valid once done */
};

static pthread_mutex_t *waiter_lock(const struct blkdev_waiter *w)
{
	return &waiter_locks[((uintptr_t)w >> 6) % WAITER_LOCKS];
}

struct blkdev_waiter *blkdev_waiter_new(void)
{
	struct blkdev_waiter *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	pthread_cond_init(&w->cond, NULL);
	return w;
}

static void waiter_free(struct blkdev_waiter *w)
{
	pthread_cond_destroy(&w->cond);
	free(w);
}

void blkdev_waiter_cb(void *waiter, int ret)
{
	struct blkdev_waiter *w = waiter;
	pthread_mutex_t *lock = waiter_lock(w);

	pthread_mutex_lock(lock);
	w->ret = ret;
	w->done = true;
	/* Signal while holding the lock: the waiter cannot free w before we unlock. */
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(lock);
}

int blkdev_waiter_wait(struct blkdev_waiter *w)
{
	pthread_mutex_t *lock = waiter_lock(w);
	int ret;

	pthread_mutex_lock(lock);
	while (!w->done)
		pthread_cond_wait(&w->cond, lock);
	ret = w->ret;
	pthread_mutex_unlock(lock);
	waiter_free(w);
	return ret;
}

/* Finish a synchronous call: `submitted` is what the op returned. */
static int waiter_finish(struct blkdev_waiter *w, int submitted)
{
	if (submitted < 0) {
		waiter_free(w);
		return submitted;
	}
	return blkdev_waiter_wait(w);
}

int blkdev_read_sync(struct blkdev *dev, uint64_t off, size_t len, void *buf)
{
	struct blkdev_waiter *w = blkdev_waiter_new();

	if (!w)
		return -ENOMEM;
	return waiter_finish(w, dev->ops->read(dev, off, len, buf, blkdev_waiter_cb, w));
}

int blkdev_write_sync(struct blkdev *dev, uint64_t off, size_t len, const void *buf)
{
	struct blkdev_waiter *w = blkdev_waiter_new();

	if (!w)
		return -ENOMEM;
	return waiter_finish(w, dev->ops->write(dev, off, len, buf, blkdev_waiter_cb, w));
}

int blkdev_flush_sync(struct blkdev *dev, bool sync_target)
{
	struct blkdev_waiter *w = blkdev_waiter_new();

	if (!w)
		return -ENOMEM;
	return waiter_finish(w, dev->ops->flush(dev, sync_target, blkdev_waiter_cb, w));
}

int blkdev_discard_sync(struct blkdev *dev, uint64_t off, uint64_t len)
{
	struct blkdev_waiter *w;

	if (!dev->ops->discard)
		return -EOPNOTSUPP;
	w = blkdev_waiter_new();
	if (!w)
		return -ENOMEM;
	return waiter_finish(w, dev->ops->discard(dev, off, len, blkdev_waiter_cb, w));
}

int blkdev_write_zeroes_sync(struct blkdev *dev, uint64_t off, uint64_t len)
{
	struct blkdev_waiter *w;

	if (!dev->ops->write_zeroes)
		return -EOPNOTSUPP;
	w = blkdev_waiter_new();
	if (!w)
		return -ENOMEM;
	return waiter_finish(w, dev->ops->write_zeroes(dev, off, len, blkdev_waiter_cb, w));
}
