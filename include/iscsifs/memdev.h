/*
 * memdev.h - an in-memory blkdev with injectable faults and delays, so the cache and
 * the filesystem layer can be tested without a network.
 *
 * Without a delay, requests complete synchronously in the caller's thread. With a
 * delay set, each request completes from a worker thread after a random delay in
 * [min_us, max_us], so completions arrive out of order, as from a real target.
 * memdev also checks the rule the cache must keep: it counts every WRITE that was
 * issued while an overlapping WRITE was still in flight (overlap_violations).
 */
#ifndef ISCSIFS_MEMDEV_H
#define ISCSIFS_MEMDEV_H

#include "iscsifs/blkdev.h"

struct memdev_counters {
	uint64_t reads, writes, flushes, discards, write_zeroes;
	uint64_t read_bytes, write_bytes;
	uint64_t overlap_violations;   /* WRITEs issued over an in-flight overlapping WRITE */
	uint64_t max_inflight;         /* most requests in flight at once */
};

/* size must be a multiple of block_size (512 or 4096 typically). Content starts zero. */
struct blkdev *memdev_create(uint64_t size, uint32_t block_size);

/* Requests that overlap [off, off+len) fail with `err` (a negative errno) until
 * memdev_clear_faults(). `count` > 0 limits the number of failures, 0 = unlimited. */
void memdev_fail_reads(struct blkdev *dev, uint64_t off, uint64_t len, int err, int count);
void memdev_fail_writes(struct blkdev *dev, uint64_t off, uint64_t len, int err, int count);
void memdev_fail_flush(struct blkdev *dev, int err, int count);
void memdev_clear_faults(struct blkdev *dev);

/* Complete requests asynchronously after a random delay; 0,0 = synchronous. */
void memdev_set_delay(struct blkdev *dev, unsigned min_us, unsigned max_us);

void memdev_get_counters(struct blkdev *dev, struct memdev_counters *out);
void memdev_reset_counters(struct blkdev *dev);

/* The device's bytes, for comparing with a model. Read it only while no request
 * is in flight. */
uint8_t *memdev_data(struct blkdev *dev);

#endif
