/*
 * sense.h - SCSI status and sense data to errno and retry policy, in one table
 * (DESIGN.md §5). Pure: no I/O, unit-tested (tests/unit/test_sense.c).
 *
 * The rule: the only success is GOOD or CONDITION MET. Every other status is an error
 * or a bounded retry, whatever the sense says: a CHECK CONDITION is never success,
 * even with sense key NO SENSE or RECOVERED ERROR, and a CHECK CONDITION whose sense
 * data cannot be parsed (absent, shorter than it claims, response code not
 * 0x70-0x73) is an error of its own, never read as "no error".
 *
 * Status bytes (SAM-5 5.3):
 *   0x00 GOOD, 0x04 CONDITION MET            success
 *   0x02 CHECK CONDITION                     the sense table in sense.c
 *   0x08 BUSY, 0x28 TASK SET FULL            retry with backoff (bounded), then EIO
 *   0x30 ACA ACTIVE                          retry with backoff (we never set NACA, so
 *                                            the ACA is another nexus's), then EIO
 *   0x40 TASK ABORTED                        retry with backoff (another initiator's
 *                                            task management aborted it), then EIO
 *   0x18 RESERVATION CONFLICT                EBUSY (another initiator holds the LUN)
 *   0x10 INTERMEDIATE, 0x14 INTERMEDIATE-CONDITION MET, 0x22 COMMAND TERMINATED
 *                                            EIO: answers to linked commands or to a
 *                                            task management function we never send
 *   anything else                            EIO
 */
#ifndef ISCSIFS_SENSE_H
#define ISCSIFS_SENSE_H

#include <stdbool.h>
#include <stddef.h>

enum sense_action {
	SENSE_DONE = 0,        /* complete with `err` (0 = success) */
	SENSE_RETRY,           /* transient: retry after backoff, a bounded number of times */
	SENSE_RETRY_NOW,       /* unit attention: retry at once (it is reported only once) */
};

struct sense_verdict {
	int err;                    /* 0 or -errno: the result when not retried, and when
	                               the retries run out (then always -EIO) */
	enum sense_action action;
	bool capacity_changed;      /* re-read the capacity */
	bool write_protected;       /* the LUN became write protected */
	bool luns_changed;          /* the target's LUN inventory may have changed
	                               (3F/0E, 3F/03, 3F/05): rescan it */
	bool inquiry_changed;       /* this LUN may no longer be the same disk (3F/0E,
	                               3F/03, 3F/05, 3F/02, 3F/01, 29/xx, 28/xx; the
	                               table in sense.c says why each): check its
	                               identity before sending it more */
	bool lun_gone;              /* no logical unit at this address (25/00, 68/xx):
	                               hold the LUN's commands, rescan, and check what
	                               answers there before sending it anything */
};

/*
 * scsi_status: the SCSI status byte. sense_valid, key/asc/ascq: the sense data of a
 * CHECK CONDITION (sense_valid false: there was none that could be parsed; key, asc
 * and ascq are then ignored). For other statuses they are ignored.
 */
struct sense_verdict sense_decide(int scsi_status, bool sense_valid, int key, int asc,
				  int ascq);

/*
 * One line for logs, with the raw values: "CHECK CONDITION: medium error (sense key
 * 0x3 asc 0x11 ascq 0x00)", "CHECK CONDITION without usable sense data",
 * "status 0x30 (ACA ACTIVE)". Returns buf.
 */
const char *sense_describe(int scsi_status, bool sense_valid, int key, int asc, int ascq,
			   char *buf, size_t len);

#endif
