/*
 * lun.h - one LUN as a struct blkdev: byte ranges to LBAs, READ/WRITE(10|16) CDBs
 * split at the transfer limit, SYNCHRONIZE CACHE, UNMAP, WRITE SAME, GET LBA STATUS,
 * sense data through the one table in sense.c with bounded retries. Commands are
 * spread round-robin over the target's sessions.
 */
#ifndef ISCSIFS_LUN_H
#define ISCSIFS_LUN_H

#include "iscsifs/blkdev.h"
#include "iscsifs/lunaddr.h"
#include "iscsifs/session.h"

/* What discovery learned about a LUN (discovery.c fills it). */
struct lun_info {
	uint64_t lun;                 /* as REPORT LUNS gave it (lunaddr.h) */
	uint8_t devtype;              /* peripheral device type; 0 = disk */
	uint8_t qualifier;            /* peripheral qualifier; 0 = connected */
	uint32_t block_size;
	uint64_t nblocks;
	bool write_protected;         /* MODE SENSE WP bit */
	bool thin;                    /* READ CAPACITY(16) LBPME */
	bool lbprz;                   /* unmapped blocks read as zeroes */
	bool can_unmap;               /* VPD 0xB2 LBPU */
	bool can_ws16;                /* VPD 0xB2 LBPWS */
	uint32_t max_xfer_blocks;     /* VPD 0xB0, 0 = not reported */
	uint32_t max_unmap_blocks;    /* VPD 0xB0 MAXIMUM UNMAP LBA COUNT: blocks per
	                                 UNMAP command (all its descriptors together);
	                                 0 = not reported, 0xffffffff = no limit */
	uint32_t max_unmap_descs;     /* VPD 0xB0 MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT,
	                                 0 = not reported */
	uint64_t max_ws_blocks;       /* VPD 0xB0, 0 = not reported */
	char vendor[9], product[17], revision[5];
	char serial[256];             /* VPD 0x80, "" when absent */
	char wwn[256];                /* VPD 0x83: the best logical-unit designator (NAA 6, 5, 2,
	                                 3, EUI-64, name, T10; discovery.c), "" when absent */
	/* Identity, compared after every re-login: the raw VPD pages as first read (a
	 * different disk may differ in only one of them). Length 0 = page absent. */
	uint8_t vpd80[255], vpd83[255];
	size_t vpd80_len, vpd83_len;
};

/*
 * Send a command and wait, retrying transient conditions as sense_decide() says
 * (bounded: at most 8 tries, backoff 50 ms doubling to 2 s, and never past
 * c->expire_ms when the caller set it). Returns 0, or -errno.
 *
 * Success is GOOD (or CONDITION MET) with every byte accounted for: a data-in
 * command may come back short (a residual) only when its answer may be shorter than
 * asked (INQUIRY and VPD pages, REPORT LUNS, MODE SENSE, READ CAPACITY, GET LBA
 * STATUS); the bytes that arrived are c->len - c->residual. On failure the buffer's
 * content is undefined and must not be used.
 *
 * `what` names the operation for the one log line written on failure ("REPORT
 * LUNS"); NULL: do not log (the caller handles a failure it expects). `why` (may be
 * NULL) receives what the target did, in words for the caller's own message: "no
 * answer within 15 s", "CHECK CONDITION: ... (sense key 0x5 asc 0x20 ascq 0x00)".
 */
int lun_command(struct session *s, struct session_cmd *c, const char *target,
		const char *what, char *why, size_t whylen);

/*
 * The size of a LUN from READ CAPACITY: its last LBA and block size. Fills
 * *nblocks and *bytes and returns 0, or returns -EOVERFLOW when last_lba + 1 or
 * (last_lba + 1) * bs overflows 64 bits or the size exceeds the largest file size
 * (INT64_MAX, the largest off_t): such a LUN cannot be a file.
 */
int lun_capacity(uint64_t last_lba, uint32_t bs, uint64_t *nblocks, uint64_t *bytes);

/* A blkdev over `nsess` sessions to the LUN's target (the array is copied; the sessions
 * stay owned by the caller and must outlive the blkdev). NULL with errno on failure. */
struct blkdev *lun_create(struct session **sess, int nsess, const char *target,
			  const struct lun_info *info, bool read_only);

/*
 * SCSI command latency per operation (PLAN.md interface 3), for stats.json and the
 * Prometheus histograms. A sample is one request chunk (one READ/WRITE/SYNCHRONIZE
 * CACHE command as the LUN sends it), from its first submission to its final
 * completion: time queued in the session, re-issues after a reconnect and retries
 * after BUSY / UNIT ATTENTION included, errors included. bucket[i] counts samples
 * with bounds[i-1] < latency <= bounds[i] (non-cumulative); the last bucket is +Inf.
 */
#define LUN_LAT_BOUNDS_US                                                            \
	{ 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, \
	  1000000, 2500000, 5000000, 10000000 }
#define LUN_LAT_NBOUNDS 16
#define LUN_LAT_BUCKETS (LUN_LAT_NBOUNDS + 1)

struct lun_latency {
	uint64_t bucket[LUN_LAT_BUCKETS];
	uint64_t count;
	uint64_t sum_us;
};

/* Counters for stats. */
struct lun_stats {
	uint64_t reads, writes, read_bytes, write_bytes, retries, errors;
	uint64_t read_lat_us, write_lat_us;   /* sums, for averages */
	uint64_t capacity_blocks;             /* last re-read after a CAPACITY DATA HAS
	                                         CHANGED unit attention; 0 = never */
	struct lun_latency lat_read, lat_write, lat_flush;
};
void lun_get_stats(struct blkdev *dev, struct lun_stats *out);

#endif
