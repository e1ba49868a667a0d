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
 * ---------- a LUN that changes while mounted (issue 11) ----------
 *
 * Capacity. The LUN's size (dev->size, read with lun_get_size()) follows the target:
 * READ CAPACITY is read again on a CAPACITY DATA HAS CHANGED unit attention (2A/09)
 * and whenever lun_check_capacity() is called (after a re-login, on a rescan). The
 * new size takes effect at once and atomically: a request, or a command of a request,
 * that reaches past the new end fails with -ENOSPC before anything is sent, so nothing
 * past the end of a shrunken LUN reaches the target. A different block size is a
 * different disk: the LUN is failed for good (every request -EIO). Each change is
 * logged once with the old and new size, and reported as LUN_EVENT_CAPACITY.
 *
 * Identity. Nothing cached or dirty for one disk is ever sent to another disk put at
 * its address. Every sign that the logical unit at the address may not be the one
 * identified makes the LUN check, on the live session, that its VPD pages 0x83 and 0x80
 * are still those it was created with (as the session does after a re-login):
 *  - a unit attention that announces a new, reset or redefined logical unit (3F/0E,
 *    3F/03, 3F/05, 3F/02, 3F/01, 29/xx, 28/xx: the table in sense.c);
 *  - "no logical unit here" (ILLEGAL REQUEST 25/00, 68/xx): the command is not failed
 *    and not retried blindly; it waits for the check like the others;
 *  - a write, discard or write-zeroes request after the target has answered nothing of
 *    this LUN for 250 ms (a target may give a new logical unit no unit attention at
 *    all: tgt 1.0.85 does not).
 * Until the check has answered, the command that got the signal and every new command
 * of the LUN wait (parked, nothing sent); then they go on when the disk is the same, and
 * fail with EIO (the LUN fails for good, LUN_EVENT_FAILED) when another disk, or none
 * (25/00 again, or peripheral qualifier 011b), answers there. A unit attention or a
 * missing LU also asks the layer above for a rescan (LUN_EVENT_RESCAN), and so does a
 * failure (via LUN_EVENT_FAILED): the rescan removes a failed LUN - its dirty data is
 * reported lost - and gives a new disk at the address a file of its own.
 * A check that cannot be done (no answer within its budget) fails the waiting commands
 * with EIO; the cache keeps their data dirty.
 */
enum lun_event_kind {
	LUN_EVENT_CAPACITY,   /* the capacity changed from old_size to new_size bytes (it
	                         is already in effect in this blkdev) */
	LUN_EVENT_FAILED,     /* the LUN failed for good (why): another disk answers at
	                         its address, its block size changed, or it is gone */
	LUN_EVENT_RESCAN,     /* the target said its LUN inventory or this LUN's INQUIRY
	                         data changed, or that no LU is at its address (why):
	                         REPORT LUNS should be read again */
};

struct lun_event {
	enum lun_event_kind kind;
	uint64_t lun;                 /* the LUN's address (lunaddr.h) */
	uint64_t old_size, new_size;  /* bytes; LUN_EVENT_CAPACITY */
	const char *why;              /* one phrase for logs, valid during the call */
};

/*
 * Called for each event, on a session thread or on the thread that called
 * lun_check_capacity()/lun_check_identity(). It must not block and must not call
 * lun_set_event_handler() or the lun_check_*() functions (queue the work for another
 * thread instead); lun_get_size() may be called. Events of one LUN are delivered one
 * at a time.
 */
typedef void (*lun_event_fn)(void *opaque, struct blkdev *dev, const struct lun_event *ev);

/* Set (or with fn NULL, clear) the event handler. After it returns, the previous
 * handler is not running and will not be called again. */
void lun_set_event_handler(struct blkdev *dev, lun_event_fn fn, void *opaque);

/* The LUN's current size in bytes (dev->size, read atomically). */
uint64_t lun_get_size(struct blkdev *dev);

/*
 * Read the capacity again (READ CAPACITY(16), (10) when the LUN lacks it) and apply
 * it as described above. `when` says what caused it, for the log line ("after
 * re-login", "on rescan"). Blocks the calling thread (not a session thread) for at
 * most budget_ms per command (0: the session's budget, replacement_timeout). Returns
 * 0 (applied, changed or not), -ENODEV (the LUN is failed, or just failed: its block
 * size changed), or -errno when the target did not answer usefully (the size is then
 * unchanged).
 */
int lun_check_capacity(struct blkdev *dev, const char *when, int budget_ms);

/*
 * Check on the live session that VPD pages 0x83 and 0x80 are what they were at
 * lun_create (a LUN that had neither is taken as the same), then READ CAPACITY: another
 * block size fails the LUN too (the same disk with other blocks puts every block
 * elsewhere), a new size is applied as lun_check_capacity does. Blocks the calling thread
 * (not a session thread), budget_ms per command as lun_check_capacity. Returns 0 (same
 * disk), -ENODEV (another disk, or none: the LUN is failed for good), or -errno when
 * it could not be checked.
 */
int lun_check_identity(struct blkdev *dev, int budget_ms);

/* Whether the LUN has failed for good (identity or block size changed). */
bool lun_is_failed(struct blkdev *dev);

/* Requests started and not finished (a command of one may be queued in a session,
 * waiting for a retry, or at the target). A failed LUN starts no new command, so once
 * this is 0 nothing of it can reach its address any more: the address may be given to
 * another LUN's blkdev (session_clear_identity). */
int lun_inflight(struct blkdev *dev);

/*
 * The LUN leaves the namespace (a rescan removed it: no longer reported, or another
 * disk at its address): fail it for good, logged once with `why`, so that nothing it
 * still holds (dirty data in the cache above, a request in flight) can reach whatever
 * the target puts at its address later. Reported as LUN_EVENT_FAILED.
 */
void lun_retire(struct blkdev *dev, const char *why);

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
	uint64_t capacity_blocks;             /* the capacity in blocks now (the last
	                                         READ CAPACITY applied) */
	uint64_t capacity_changes;            /* times the capacity changed */
	uint64_t identity_checks;             /* identity checks on the live session
	                                         (unit attentions 3F/xx, lun_check_identity) */
	struct lun_latency lat_read, lat_write, lat_flush;
};
void lun_get_stats(struct blkdev *dev, struct lun_stats *out);

#endif
