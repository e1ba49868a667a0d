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
	uint32_t max_unmap_blocks;    /* VPD 0xB0 */
	uint64_t max_ws_blocks;       /* VPD 0xB0 */
	char vendor[9], product[17], revision[5];
	char serial[256];             /* VPD 0x80, "" when absent */
	char wwn[256];                /* VPD 0x83 first NAA/EUI/name designator, "" when absent */
	/* Identity, compared after every re-login: the raw VPD pages as first read (a
	 * different disk may differ in only one of them). Length 0 = page absent. */
	uint8_t vpd80[255], vpd83[255];
	size_t vpd80_len, vpd83_len;
};

/*
 * Send a command and wait, retrying transient conditions as sense_decide() says
 * (bounded: at most 8 tries, backoff 50 ms doubling to 2 s). Returns 0, or -errno.
 * `what` names the operation for the one log line written on failure ("read at
 * LBA 123"); NULL: do not log (the caller handles a failure it expects).
 */
int lun_command(struct session *s, struct session_cmd *c, const char *target,
		const char *what);

/* A blkdev over `nsess` sessions to the LUN's target (the array is copied; the sessions
 * stay owned by the caller and must outlive the blkdev). NULL with errno on failure. */
struct blkdev *lun_create(struct session **sess, int nsess, const char *target,
			  const struct lun_info *info, bool read_only);

/* Counters for stats. */
struct lun_stats {
	uint64_t reads, writes, read_bytes, write_bytes, retries, errors;
	uint64_t read_lat_us, write_lat_us;   /* sums, for averages */
	uint64_t capacity_blocks;             /* last re-read after a CAPACITY DATA HAS
	                                         CHANGED unit attention; 0 = never */
};
void lun_get_stats(struct blkdev *dev, struct lun_stats *out);

#endif
