/*
 * blkdev.h - the contract between the layers of iscsifs.
 *
 * Every layer below the FUSE namespace (cache, lun, memdev) is a struct blkdev: a
 * fixed-size array of logical blocks with an asynchronous method table, stacked the
 * way s3backer stacks its stores: cache_create(cfg, inner) returns a blkdev that
 * forwards misses and write-back to `inner`.
 *
 * Rules that hold for every slot:
 *  - Offsets and lengths are in bytes and are multiples of dev->block_size; the range
 *    lies inside [0, dev->size). Callers check this; implementations may assert it.
 *  - The call returns 0 when the request was accepted; then `cb` is called exactly
 *    once with 0 or -errno, from any thread, possibly before the call returns.
 *    A negative return means the request was refused up front and `cb` is never called.
 *  - Buffers stay owned by the caller and must remain valid until `cb`.
 *  - Every slot is callable from any thread, concurrently.
 *  - Errors are -errno: -EIO (transport or medium), -EROFS (write protected),
 *    -ENOSPC (out of range / allocation failure), -EOPNOTSUPP (not supported),
 *    -ENODEV (LUN failed permanently, e.g. identity changed).
 */
#ifndef ISCSIFS_BLKDEV_H
#define ISCSIFS_BLKDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct blkdev;

/* Completion: `ret` is 0 or -errno. Must not block for long: it may run on the
 * event-loop thread that owns an iSCSI connection. */
typedef void (*blkdev_cb)(void *opaque, int ret);

/* What lba_status reports for a byte range starting at `off`. */
struct blkdev_extent {
	uint64_t len;   /* bytes from `off` with the same state, > 0 */
	bool mapped;    /* false: deallocated / reads as zeroes (a hole) */
};

struct blkdev_ops {
	/* Read `len` bytes at `off` into `buf`. On error the buffer content is undefined. */
	int (*read)(struct blkdev *dev, uint64_t off, size_t len, void *buf, blkdev_cb cb,
		    void *opaque);

	/* Write `len` bytes from `buf` at `off`. Completion means the layer below accepted
	 * it (for the cache in write-back mode: the data is in cache and will reach the
	 * target unless an error is reported to a later flush). */
	int (*write)(struct blkdev *dev, uint64_t off, size_t len, const void *buf,
		     blkdev_cb cb, void *opaque);

	/* Make every write completed before this call durable: write back what the layer
	 * holds, then SYNCHRONIZE CACHE. Reports -EIO if any write-back failed since the
	 * previous flush (the error is then consumed). `sync_target` false only writes
	 * back (close(2) semantics) without asking the target to sync its cache. */
	int (*flush)(struct blkdev *dev, bool sync_target, blkdev_cb cb, void *opaque);

	/* Deallocate (UNMAP). -EOPNOTSUPP when the device cannot; the content of the range
	 * is then unchanged. After success the range reads as zeroes on a thin LUN that
	 * reports LBPRZ; callers that need zeroes use write_zeroes. */
	int (*discard)(struct blkdev *dev, uint64_t off, uint64_t len, blkdev_cb cb,
		       void *opaque);

	/* Make the range read as zeroes (WRITE SAME or zero writes). */
	int (*write_zeroes)(struct blkdev *dev, uint64_t off, uint64_t len, blkdev_cb cb,
			    void *opaque);

	/* Optional (NULL = everything mapped): describe the extent starting at `off`.
	 * Synchronous: blocks the calling thread; returns 0 or -errno. */
	int (*lba_status)(struct blkdev *dev, uint64_t off, struct blkdev_extent *ext);

	/* Stop background work, write back what is held (bounded by the layer's own
	 * timeouts), release everything. The inner device is destroyed by its creator. */
	void (*destroy)(struct blkdev *dev);
};

struct blkdev {
	const struct blkdev_ops *ops;
	uint64_t size;        /* bytes; changes only through the implementation's own
	                         interface (cache_set_size), never under a request */
	uint32_t block_size;  /* logical block size in bytes, a power of two >= 512 */
	bool read_only;
	bool can_discard;     /* discard does something */
	bool discard_zeroes;  /* a successful discard makes the range read as zeroes
	                         (SCSI LBPRZ): a hole can be punched with discard */
	void *priv;           /* the implementation's state */
};

/* Synchronous wrappers: block the calling thread until completion (they wait on the
 * caller's stack, see blkdev.c). Return 0 or -errno. */
int blkdev_read_sync(struct blkdev *dev, uint64_t off, size_t len, void *buf);
int blkdev_write_sync(struct blkdev *dev, uint64_t off, size_t len, const void *buf);
int blkdev_flush_sync(struct blkdev *dev, bool sync_target);
int blkdev_discard_sync(struct blkdev *dev, uint64_t off, uint64_t len);
int blkdev_write_zeroes_sync(struct blkdev *dev, uint64_t off, uint64_t len);

/* A one-shot rendezvous for callers that need a synchronous result; it lives on the
 * waiting thread's stack:
 *     struct blkdev_waiter w;
 *     blkdev_waiter_init(&w);
 *     start_something(..., blkdev_waiter_cb, &w);
 *     ret = blkdev_waiter_wait(&w);
 * blkdev_waiter_cb may run before, during or after blkdev_waiter_wait, on any thread;
 * once blkdev_waiter_wait returns, the callback is done with `w`. */
struct blkdev_waiter {
	int done;             /* 0 pending, 1 done: guarded by the waiter lock of blkdev.c */
	int ret;
};
void blkdev_waiter_init(struct blkdev_waiter *w);
void blkdev_waiter_cb(void *waiter, int ret);         /* a blkdev_cb */
int blkdev_waiter_wait(struct blkdev_waiter *w);       /* waits, returns ret */

#endif
