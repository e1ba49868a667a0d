/*
 * cache.h - the block cache: one memory budget per mount, one cache per device.
 *
 *   struct cache_pool   the budget of a mount: cache_size bytes of cached data and
 *                       dirty_max bytes of blocks holding dirty data, shared by every
 *                       cache created in it, and a bounded pool of write-back threads.
 *                       A LUN that is busy can use the whole budget; one that is idle
 *                       gives it back as its blocks age out of the (pool-wide) S3-FIFO
 *                       replacement order. Memory does not grow with the number of LUNs.
 *   the cache           cache_create(cc, inner) returns a struct blkdev with the size and
 *                       block size of `inner`. It is a blkdev like any other (aligned,
 *                       copying: what probe and the tests use), and it has the byte-range
 *                       interface below, which is what the namespace (fs.c) uses.
 *
 * The byte-range interface. Offsets and lengths are bytes, any alignment, inside
 * [0, dev->size): the cache does read-modify-write of partial logical blocks itself,
 * so nothing above it needs a lock across I/O. Every call is asynchronous and honest
 * about it:
 *   - the callback is called exactly once, with 0 or -errno;
 *   - it may be called before the call returns, in the caller's thread (a cache hit, a
 *     write absorbed by the write-back cache, an error found up front), or later in any
 *     thread (the completion of a READ or WRITE to `inner`, a write-back thread);
 *   - no lock of the cache is held while it runs: it may call the cache again;
 *   - the call itself never waits for I/O or for memory: a request that cannot go on
 *     (a miss, the dirty bound, a full budget, an overlapping write in flight) is parked
 *     and resumed by the event that lets it go on.
 * A request may carry a struct cache_ticket so it can be withdrawn while it waits
 * (FUSE INTERRUPT); see cache_cancel().
 *
 * Policy and invariants are documented at the top of src/cache.c; the lock rule in
 * src/cache_int.h.
 */
#ifndef ISCSIFS_CACHE_H
#define ISCSIFS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iscsifs/blkdev.h"
#include "iscsifs/config.h"

struct cache_pool;

struct cache_pool_config {
	uint64_t cache_size;           /* bytes of cached data, all caches together; at
	                                  least 8 cache blocks; never exceeded */
	uint64_t cache_block;          /* bytes per cache block: a power of two, 4 KiB to
	                                  16 MiB; the unit of memory and eviction, not of
	                                  I/O. Every cache of the pool uses it. */
	uint64_t dirty_max;            /* bytes of cache blocks that hold dirty data
	                                  (all caches together) before writers wait;
	                                  0 = cache_size / 4 */
	uint32_t dirty_expire_ms;      /* dirty data older than this is written back */
	int flushers;                  /* write-back threads; 0 = 2 */
};

struct cache_pool_stats {
	uint64_t capacity_bytes;       /* cache_size rounded down to whole blocks */
	uint64_t cached_bytes;         /* bytes of blocks holding data, all caches */
	uint64_t dirty_bytes;          /* dirty bytes, all caches (incl. write-back in flight) */
	uint64_t unclean_bytes;        /* bytes of blocks holding dirty data or in write-back
	                                  (what dirty_max bounds) */
	uint64_t bounce_bytes;         /* bounce buffers of read-ahead and write-back in
	                                  flight (bounded: see cache_pool.c) */
	uint64_t evictions;            /* blocks given up for others, all caches */
	uint64_t space_waits;          /* requests that had to wait for a block */
	uint64_t dirty_waits;          /* writes that had to wait for the dirty bound */
	int caches;                    /* caches in the pool now */
	int flushers;                  /* write-back threads */
};

/* A pool, or NULL with errno (EINVAL: bad config, ENOMEM, or a thread error).
 * Thread model: starts `flushers` write-back threads, joined by cache_pool_destroy. */
struct cache_pool *cache_pool_create(const struct cache_pool_config *pc);

/* Destroy a pool whose caches have all been destroyed (it waits until the last of
 * their in-flight I/O has completed and released them). */
void cache_pool_destroy(struct cache_pool *pool);

void cache_pool_get_stats(struct cache_pool *pool, struct cache_pool_stats *out);

struct cache_config {
	enum config_cache_mode mode;   /* writeback, writethrough, none */
	struct cache_pool *pool;       /* the budget it draws on; NULL: a private pool
	                                  made from the four fields below (tests, tools) */
	uint64_t cache_size;           /* private pool only, see cache_pool_config */
	uint64_t cache_block;          /* private pool only */
	uint64_t dirty_max;            /* private pool only */
	uint32_t dirty_expire_ms;      /* private pool only */
	uint64_t readahead_max;        /* bytes; 0 disables read-ahead */
	uint32_t max_write;            /* largest single WRITE or read-ahead READ to inner,
	                                  bytes (0: 1 MiB) */
	int write_retries;             /* failed write-backs of a block retried this many
	                                  times before new writes that must wait fail with
	                                  EIO instead of waiting; 0: 5 */
	uint32_t stop_budget_ms;       /* at cache_stop, write-back of dirty data that
	                                  failed before is retried until this much time has
	                                  passed (each attempt is bounded by inner's own
	                                  timeouts); 0: 30 s */
	const char *name;              /* for log lines, e.g. "iqn...:disk1 LUN 1" */
};

struct cache_stats {
	uint64_t read_ops, write_ops;          /* requests served */
	uint64_t read_bytes, write_bytes;      /* bytes asked for by callers */
	uint64_t hits, misses;                 /* read requests found valid in memory /
	                                          needing a fetch (per cache block touched) */
	uint64_t fetch_ops, fetch_bytes;       /* READs issued to inner (incl. read-ahead) */
	uint64_t readahead_bytes;              /* of fetch_bytes, issued by read-ahead */
	uint64_t rmw_fetches;                  /* READs of partial logical blocks a write
	                                          had to merge with */
	uint64_t writeback_ops, writeback_bytes;   /* WRITEs issued to inner */
	uint64_t write_errors;                 /* failed WRITEs to inner */
	uint64_t writeback_errors;             /* of those, background write-backs (their
	                                          error reaches the caller only at a later
	                                          flush; write-through errors are returned
	                                          by the write itself) */
	uint64_t evictions;                    /* blocks of this cache given up */
	uint64_t interrupted;                  /* requests withdrawn by cache_cancel */
	uint64_t cached_bytes;                 /* current */
	uint64_t dirty_bytes;                  /* current */
	uint64_t flush_errors;                 /* errors a flush reports, each counted
	                                          once: failed write-backs, and dirty data
	                                          dropped that no such failure covered (a
	                                          change tells every open file once) */
	uint64_t lost_bytes;                   /* dirty bytes given up: at shutdown because
	                                          the target kept refusing them, or past
	                                          the end of a device that shrank or went */
};

/* Returns the cache, or NULL with errno set (EINVAL for a bad config, e.g. a device
 * block size larger than the pool's cache block; ENOMEM). Does not take ownership of
 * `inner`: destroy the cache first, then inner. */
struct blkdev *cache_create(const struct cache_config *cc, struct blkdev *inner);

/* ---------- the byte-range interface (see the top of this file) ---------- */

/* Lets a caller withdraw a request while it is waiting. Zero it (CACHE_TICKET_INIT),
 * pass it to one request, keep it valid until that request's callback has returned or
 * cache_cancel() withdrew the request. The fields are the cache's. */
struct cache_ticket {
	void *io;                      /* the request while it is in the cache */
	bool cancelled;                /* cancel came before the request started */
};
#define CACHE_TICKET_INIT { NULL, false }

/* One contiguous piece of a read's answer. */
struct cache_seg {
	const void *data;
	size_t len;
};

/* Completion of cache_read: ret 0 and seg[0..nseg) hold exactly the bytes asked for,
 * in order; the memory is the cache's own (no copy was made) and stays valid and
 * unchanged by the cache until the callback returns (a concurrent overlapping write
 * may change it, as it may change any block device's data under a concurrent read).
 * ret < 0: nseg == 0. */
typedef void (*cache_read_cb)(void *opaque, int ret, const struct cache_seg *seg, int nseg);

/* Read [off, off+len), len > 0. A miss fetches only the logical blocks asked for
 * (rounded to a small minimum); sequential streams are read ahead. Errors: -EIO (the
 * target failed the READ), -EINTR (cancelled), -ENOMEM, -EINVAL (not inside the
 * device), or what inner reported. The write, zero and flush calls below answer the
 * same -EINVAL, and -EROFS on a read-only device. */
void cache_read(struct blkdev *dev, uint64_t off, size_t len, cache_read_cb cb,
		void *opaque, struct cache_ticket *ticket);

/* Write [off, off+len) from `buf`, len > 0. `buf` needs to be valid only until this
 * call returns (the cache copies what it keeps). A partial logical block waits only for
 * that block's READ. writeback: completes when the data is in the cache (waiting, not
 * failing, while dirty_max is reached; -EIO instead of waiting once write-back has
 * failed write_retries times); writethrough and none: completes when inner has it.
 * No two overlapping WRITEs are ever in flight to inner. */
void cache_write(struct blkdev *dev, uint64_t off, size_t len, const void *buf,
		 blkdev_cb cb, void *opaque, struct cache_ticket *ticket);

/* Make [off, off+len) read as zeroes. Partial logical blocks at the edges are written
 * with zeroes through the cache; the aligned middle goes to inner's discard when
 * `punch` and the device reads discarded blocks as zeroes (dev->discard_zeroes), else
 * to inner's write_zeroes. A punch on a device that cannot discard (!dev->can_discard)
 * fails with -EOPNOTSUPP before anything is changed. */
void cache_zero(struct blkdev *dev, uint64_t off, uint64_t len, bool punch, blkdev_cb cb,
		void *opaque, struct cache_ticket *ticket);

/* Write back every write completed before this call (writeback mode), then, when
 * `sync_target`, SYNCHRONIZE CACHE. Reports -EIO if a write-back failed since the
 * previous flush (the error is then consumed; per-file reporting is the caller's). */
void cache_flush(struct blkdev *dev, bool sync_target, blkdev_cb cb, void *opaque,
		 struct cache_ticket *ticket);

/* Withdraw the request of `ticket` if it is still waiting (for a READ, the dirty bound,
 * a block, an overlapping write, write-back). Returns 0 when withdrawn: its callback
 * will never be called, the caller answers for it, and what the request had done
 * stays done (a cancelled write may have been partly applied; I/O it started
 * goes on in the background). Returns -EBUSY when it cannot: the callback has run,
 * is running or will run soon (when the request had not started yet, it will then
 * complete with -EINTR at once). Callable from any thread, also from inside another
 * request's callback. */
int cache_cancel(struct blkdev *dev, struct cache_ticket *ticket);

/* Complete every request still waiting with -EINTR (unmount: nothing will answer
 * them). Requests whose I/O to inner is in flight complete when it does. */
void cache_cancel_all(struct blkdev *dev);

/* ---------- life cycle ---------- */

/* The device changed size (a rescan): what lies past a shrunken end is dropped from the
 * cache (dirty data there is lost and counted in lost_bytes, with a log line); reads
 * and writes are checked against the new size from now on. Whatever the order of the
 * shrink and write-back: a write-back in flight past the new end that fails drops its
 * data there (lost, logged) instead of retrying it, no WRITE is issued past the end
 * after this call, and a request waiting past the end completes (-ENOSPC for a write,
 * -EINVAL for a read). Every loss is reported once as -EIO to the next cache_flush. */
void cache_set_size(struct blkdev *dev, uint64_t size);

/* The device is gone (its LUN was removed or changed identity): as cache_set_size(dev,
 * 0), with one log line saying how many dirty bytes (in flight included) are lost and
 * `why` (e.g. "the LUN was removed (no longer reported)"). */
void cache_drop_all(struct blkdev *dev, const char *why);

/* Start stopping: write back everything without waiting for dirty_expire. Returns at
 * once; cache_stop() waits. */
void cache_stop_begin(struct blkdev *dev);

/* Write back everything, then stop. Waits only for write-back, never for reads or
 * read-ahead in flight: each dirty block gets at least one attempt after this call,
 * and blocks whose write-back fails are retried within stop_budget_ms. Returns the
 * bytes that could not be written and were given up (0 = nothing lost). Idempotent;
 * destroy calls it too. */
uint64_t cache_stop(struct blkdev *dev);

/* Give up now what is not written yet (the daemon was told to end during its final
 * write-back): dirty data and write-backs in flight are counted lost (one log line);
 * a cache_stop waiting returns at once. Any thread. */
void cache_abandon(struct blkdev *dev);

/* Snapshot of the counters (thread-safe). */
void cache_get_stats(struct blkdev *dev, struct cache_stats *out);

/* Check the cache's invariants (the list is at the top of src/cache.c); returns 0, or
 * -1 after printing every violation found to stderr. Debug builds (CACHE_DEBUG) run it
 * at every release of the cache lock; cache_debug_checks(true) turns that on in any
 * build (the stress test does). */
int cache_check(struct blkdev *dev);
void cache_debug_checks(bool on);

#endif
