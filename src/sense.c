/*
 * sense.c - the one table that maps SCSI status and sense data to errno and a retry
 * decision. Rows are matched top to bottom; 0xff in asc/ascq matches anything.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>

#include "iscsifs/sense.h"
#include "iscsifs/util.h"

enum { KEY_NO_SENSE = 0, KEY_RECOVERED = 1, KEY_NOT_READY = 2, KEY_MEDIUM = 3,
       KEY_HARDWARE = 4, KEY_ILLEGAL = 5, KEY_UNIT_ATTENTION = 6, KEY_DATA_PROTECT = 7,
       KEY_BLANK = 8, KEY_ABORTED = 0xb, KEY_MISCOMPARE = 0xe };

struct row {
	int key, asc, ascq;
	int err;
	enum sense_action action;
	bool capacity_changed, write_protected;
	const char *text;
};

#define ANY 0xff
static const struct row table[] = {
	{ KEY_NO_SENSE, ANY, ANY, 0, SENSE_DONE, false, false, "no sense" },
	{ KEY_RECOVERED, ANY, ANY, 0, SENSE_DONE, false, false, "recovered error" },
	{ KEY_UNIT_ATTENTION, 0x2a, 0x09, 0, SENSE_RETRY_NOW, true, false, "capacity data has changed" },
	{ KEY_UNIT_ATTENTION, 0x29, ANY, 0, SENSE_RETRY_NOW, false, false, "power on or reset occurred" },
	{ KEY_UNIT_ATTENTION, ANY, ANY, 0, SENSE_RETRY_NOW, false, false, "unit attention" },
	{ KEY_NOT_READY, 0x04, 0x01, 0, SENSE_RETRY, false, false, "becoming ready" },
	{ KEY_NOT_READY, 0x04, 0x07, 0, SENSE_RETRY, false, false, "operation in progress" },
	{ KEY_NOT_READY, 0x04, 0x0a, 0, SENSE_RETRY, false, false, "asymmetric access state transition" },
	{ KEY_NOT_READY, 0x3a, ANY, -ENOMEDIUM, SENSE_DONE, false, false, "medium not present" },
	{ KEY_NOT_READY, ANY, ANY, -EIO, SENSE_DONE, false, false, "not ready" },
	{ KEY_MEDIUM, ANY, ANY, -EIO, SENSE_DONE, false, false, "medium error" },
	{ KEY_HARDWARE, ANY, ANY, -EIO, SENSE_DONE, false, false, "hardware error" },
	{ KEY_ILLEGAL, 0x21, 0x00, -ENOSPC, SENSE_DONE, false, false, "LBA out of range" },
	{ KEY_ILLEGAL, 0x20, ANY, -EOPNOTSUPP, SENSE_DONE, false, false, "invalid command operation code" },
	{ KEY_ILLEGAL, 0x24, ANY, -EINVAL, SENSE_DONE, false, false, "invalid field in CDB" },
	{ KEY_ILLEGAL, 0x26, ANY, -EINVAL, SENSE_DONE, false, false, "invalid field in parameter list" },
	{ KEY_ILLEGAL, 0x25, ANY, -ENODEV, SENSE_DONE, false, false, "logical unit not supported" },
	{ KEY_ILLEGAL, ANY, ANY, -EINVAL, SENSE_DONE, false, false, "illegal request" },
	{ KEY_DATA_PROTECT, 0x27, 0x07, -ENOSPC, SENSE_DONE, false, false, "space allocation failed write protect" },
	{ KEY_DATA_PROTECT, ANY, ANY, -EROFS, SENSE_DONE, false, true, "write protected" },
	{ KEY_ABORTED, ANY, ANY, 0, SENSE_RETRY, false, false, "aborted command" },
	{ KEY_MISCOMPARE, ANY, ANY, -EILSEQ, SENSE_DONE, false, false, "miscompare" },
	{ ANY, ANY, ANY, -EIO, SENSE_DONE, false, false, "error" },
};

static const struct row *find(int key, int asc, int ascq)
{
	for (size_t i = 0; i < ARRAY_SIZE(table); i++) {
		const struct row *r = &table[i];
		if ((r->key == ANY || r->key == key) && (r->asc == ANY || r->asc == asc) &&
		    (r->ascq == ANY || r->ascq == ascq))
			return r;
	}
	return &table[ARRAY_SIZE(table) - 1];
}

struct sense_verdict sense_decide(int scsi_status, int key, int asc, int ascq)
{
	struct sense_verdict v = { 0, SENSE_DONE, false, false };
	switch (scsi_status) {
	case 0x00: /* GOOD */
	case 0x04: /* CONDITION MET */
		return v;
	case 0x08: /* BUSY */
	case 0x28: /* TASK SET FULL */
		v.action = SENSE_RETRY;
		v.err = -EIO; /* what the caller reports when retries run out */
		return v;
	case 0x18: /* RESERVATION CONFLICT */
		v.err = -EBUSY;
		return v;
	case 0x02: { /* CHECK CONDITION */
		const struct row *r = find(key, asc, ascq);
		v.err = r->err;
		v.action = r->action;
		v.capacity_changed = r->capacity_changed;
		v.write_protected = r->write_protected;
		if (r->action != SENSE_DONE)
			v.err = -EIO; /* what the caller reports when retries run out */
		return v;
	}
	default:
		v.err = -EIO;
		return v;
	}
}

const char *sense_describe(int scsi_status, int key, int asc, int ascq, char *buf, size_t len)
{
	switch (scsi_status) {
	case 0x00:
		snprintf(buf, len, "good");
		break;
	case 0x08:
		snprintf(buf, len, "target busy");
		break;
	case 0x28:
		snprintf(buf, len, "task set full");
		break;
	case 0x18:
		snprintf(buf, len, "reservation conflict");
		break;
	case 0x02:
		snprintf(buf, len, "%s (sense key 0x%x asc 0x%02x ascq 0x%02x)",
			 find(key, asc, ascq)->text, key, asc, ascq);
		break;
	default:
		snprintf(buf, len, "SCSI status 0x%02x", scsi_status);
	}
	return buf;
}
