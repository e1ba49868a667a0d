/*
 * sense.h - SCSI status and sense data to errno and retry policy, in one table
 * (DESIGN.md §5). Pure: no I/O, unit-tested.
 */
#ifndef ISCSIFS_SENSE_H
#define ISCSIFS_SENSE_H

#include <stdbool.h>

enum sense_action {
	SENSE_DONE = 0,        /* complete with `err` (0 = success) */
	SENSE_RETRY,           /* transient: retry after backoff, a bounded number of times */
	SENSE_RETRY_NOW,       /* unit attention: retry at once (it is reported only once) */
};

struct sense_verdict {
	int err;                    /* 0 or -errno for the caller when not retried */
	enum sense_action action;
	bool capacity_changed;      /* re-read the capacity */
	bool write_protected;       /* the LUN became write protected */
};

/* scsi_status: the SCSI status byte; key/asc/ascq from the sense data (CHECK
 * CONDITION only). */
struct sense_verdict sense_decide(int scsi_status, int key, int asc, int ascq);

/* Human text for log lines: "MEDIUM ERROR: unrecovered read error (asc 0x11 ascq 0x00)". */
const char *sense_describe(int scsi_status, int key, int asc, int ascq, char *buf, size_t len);

#endif
