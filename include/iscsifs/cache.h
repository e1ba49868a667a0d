/*
 * cache.h - the block cache: a struct blkdev stacked on another one.
 *
 * cache_create(cc, inner) returns a blkdev with the same size and block size as
 * `inner` that serves reads from memory, fetches misses (only the missing logical
 * blocks of a cache block), reads ahead on sequential streaks, holds writes (write-back
 * mode) and writes them back coalesced, never with two overlapping WRITEs in flight.
 * Policy and invariants are documented at the top of src/cache.c.
 *
 * The cache's read/write may block the calling thread (waiting for a fetch, or for
 * the dirty bound) and then call `cb` before returning; they never hold the cache
 * lock across I/O on `inner`.
 */
#ifndef ISCSIFS_CACHE_H
#define ISCSIFS_CACHE_H

#include "iscsifs/blkdev.h"
#include "iscsifs/config.h"

struct cache_config {
	enum config_cache_mode mode;   /* writeback, writethrough, none */
	uint64_t cache_size;           /* byte budget for cached data, never exceeded */
	uint64_t cache_block;          /* power of two, >= inner->block_size */
	uint64_t dirty_max;            /* writers block when dirty bytes would exceed it */
	uint32_t dirty_expire_ms;      /* dirty data older than this is written back */
	uint64_t readahead_max;        /* bytes; 0 disables read-ahead */
	uint32_t max_write;            /* largest single WRITE to inner, bytes (0: 1 MiB) */
	int write_retries;             /* failed write-backs retried this many times before
	                                  new writes fail with EIO instead of blocking; 0: 5 */
	const char *name;              /* for log lines, e.g. "iqn...:disk1/lun1" */
};

struct cache_stats {
	uint64_t read_ops, write_ops;          /* requests served */
	uint64_t read_bytes, write_bytes;      /* bytes asked for by callers */
	uint64_t hits, misses;                 /* cache blocks found valid / needing a fetch */
	uint64_t fetch_ops, fetch_bytes;       /* READs issued to inner (incl. read-ahead) */
	uint64_t readahead_bytes;              /* of fetch_bytes, issued by read-ahead */
	uint64_t writeback_ops, writeback_bytes;   /* WRITEs issued to inner */
	uint64_t write_errors;                 /* failed WRITEs to inner */
	uint64_t writeback_errors;             /* of those, background write-backs (their
	                                          error reaches the caller only at a later
	                                          flush; write-through errors are returned
	                                          by the write itself) */
	uint64_t evictions;
	uint64_t cached_bytes;                 /* current */
	uint64_t dirty_bytes;                  /* current */
	uint64_t lost_bytes;                   /* dirty bytes given up at shutdown because
	                                          the target kept refusing them */
};

/* Returns the cache, or NULL with errno set (EINVAL for a bad config, ENOMEM).
 * Does not take ownership of `inner`: destroy the cache first, then inner. */
struct blkdev *cache_create(const struct cache_config *cc, struct blkdev *inner);

/* Write back everything (bounded by the write retries, each bounded by the session's
 * replacement timeout), then stop the flusher. Returns the bytes that could not be
 * written and were given up (0 = nothing lost). Idempotent; destroy calls it too. */
uint64_t cache_stop(struct blkdev *cache);

/* Snapshot of the counters (thread-safe). */
void cache_get_stats(struct blkdev *cache, struct cache_stats *out);

#endif
