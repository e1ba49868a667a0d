/*
 * sense.c - the one table that maps SCSI status and sense data to errno and a retry
 * decision (the rule and the status table are in sense.h). Sense rows are matched top
 * to bottom; 0xff in asc/ascq matches anything. No row maps to success: a CHECK
 * CONDITION always reports an error.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>

#include "iscsifs/sense.h"
#include "iscsifs/util.h"

enum { KEY_NO_SENSE = 0, KEY_RECOVERED = 1, KEY_NOT_READY = 2, KEY_MEDIUM = 3,
       KEY_HARDWARE = 4, KEY_ILLEGAL = 5, KEY_UNIT_ATTENTION = 6, KEY_DATA_PROTECT = 7,
       KEY_BLANK = 8, KEY_ABORTED = 0xb, KEY_MISCOMPARE = 0xe };

enum { ST_GOOD = 0x00, ST_CHECK_CONDITION = 0x02, ST_CONDITION_MET = 0x04, ST_BUSY = 0x08,
       ST_INTERMEDIATE = 0x10, ST_INTERMEDIATE_CM = 0x14, ST_RESERVATION_CONFLICT = 0x18,
       ST_COMMAND_TERMINATED = 0x22, ST_TASK_SET_FULL = 0x28, ST_ACA_ACTIVE = 0x30,
       ST_TASK_ABORTED = 0x40 };

struct row {
	int key, asc, ascq;
	int err;
	enum sense_action action;
	unsigned note;               /* NOTE_*: what the verdict tells the LUN layer */
	const char *text;
};

enum { NOTE_CAPACITY = 1, NOTE_WP = 2, NOTE_LUNS = 4, NOTE_INQUIRY = 8, NOTE_GONE = 16 };

#define ANY 0xff
static const struct row table[] = {
	/* The command did not complete as GOOD, and the target does not say why (or says
	 * it recovered): nothing proves the data moved. An error, never success. */
	{ KEY_NO_SENSE, ANY, ANY, -EIO, SENSE_DONE, 0, "no sense" },
	{ KEY_RECOVERED, ANY, ANY, -EIO, SENSE_DONE, 0, "recovered error" },
	{ KEY_UNIT_ATTENTION, 0x2a, 0x09, -EIO, SENSE_RETRY_NOW, NOTE_CAPACITY, "capacity data has changed" },
	/*
	 * The logical unit at this address may no longer be the one we identified
	 * (NOTE_INQUIRY: lun.c parks the LUN's commands and checks VPD 0x83/0x80 on the live
	 * session before it sends it one more byte). From SPC-4's list of unit attentions
	 * (annex F), those that announce a new, reset or redefined logical unit:
	 *   3F/0E reported LUNs data has changed   LUNs were removed and created
	 *   3F/03 inquiry data has changed          its identity may have changed
	 *   3F/05 device identifier changed         it has
	 *   3F/02 changed operating definition      it may now be another kind of unit
	 *   3F/01 microcode has been changed        new firmware: check before trusting it
	 *   29/xx power on, reset, bus device reset, I_T nexus loss, ...: every qualifier.
	 *         What a logical unit that has just been created reports first (SAM-5);
	 *         the state we knew is gone, and so may be the disk.
	 *   28/xx not ready to ready change, medium may have changed
	 * Not in the list: 2A/xx other than 09 (parameters, reservations, ALUA state), 2F/00
	 * (commands cleared by another initiator), 3F/0F (echo buffer), 3F/12-14 (iSCSI
	 * addresses): they change the state of the same logical unit, not which one it is.
	 */
	{ KEY_UNIT_ATTENTION, 0x3f, 0x0e, -EIO, SENSE_RETRY_NOW, NOTE_LUNS | NOTE_INQUIRY, "reported LUNs data has changed" },
	{ KEY_UNIT_ATTENTION, 0x3f, 0x03, -EIO, SENSE_RETRY_NOW, NOTE_INQUIRY | NOTE_LUNS, "inquiry data has changed" },
	{ KEY_UNIT_ATTENTION, 0x3f, 0x05, -EIO, SENSE_RETRY_NOW, NOTE_INQUIRY | NOTE_LUNS, "device identifier changed" },
	{ KEY_UNIT_ATTENTION, 0x3f, 0x02, -EIO, SENSE_RETRY_NOW, NOTE_INQUIRY | NOTE_LUNS, "changed operating definition" },
	{ KEY_UNIT_ATTENTION, 0x3f, 0x01, -EIO, SENSE_RETRY_NOW, NOTE_INQUIRY, "microcode has been changed" },
	{ KEY_UNIT_ATTENTION, 0x29, ANY, -EIO, SENSE_RETRY_NOW, NOTE_INQUIRY, "power on or reset occurred" },
	{ KEY_UNIT_ATTENTION, 0x28, ANY, -EIO, SENSE_RETRY_NOW, NOTE_INQUIRY, "not ready to ready change, medium may have changed" },
	{ KEY_UNIT_ATTENTION, ANY, ANY, -EIO, SENSE_RETRY_NOW, 0, "unit attention" },
	/* No logical unit at this address (any more): LOGICAL UNIT NOT SUPPORTED, LOGICAL
	 * UNIT NOT CONFIGURED (68/xx, any key). NOTE_GONE: lun.c holds the LUN's commands,
	 * asks for a rescan and checks what answers there now before it sends anything. */
	{ KEY_ILLEGAL, 0x25, ANY, -ENODEV, SENSE_DONE, NOTE_GONE | NOTE_LUNS, "logical unit not supported" },
	{ ANY, 0x68, ANY, -ENODEV, SENSE_DONE, NOTE_GONE | NOTE_LUNS, "logical unit not configured" },
	{ KEY_NOT_READY, 0x04, 0x01, -EIO, SENSE_RETRY, 0, "becoming ready" },
	{ KEY_NOT_READY, 0x04, 0x07, -EIO, SENSE_RETRY, 0, "operation in progress" },
	{ KEY_NOT_READY, 0x04, 0x0a, -EIO, SENSE_RETRY, 0, "asymmetric access state transition" },
	{ KEY_NOT_READY, 0x3a, ANY, -ENOMEDIUM, SENSE_DONE, 0, "medium not present" },
	{ KEY_NOT_READY, ANY, ANY, -EIO, SENSE_DONE, 0, "not ready" },
	{ KEY_MEDIUM, ANY, ANY, -EIO, SENSE_DONE, 0, "medium error" },
	{ KEY_HARDWARE, ANY, ANY, -EIO, SENSE_DONE, 0, "hardware error" },
	{ KEY_ILLEGAL, 0x21, 0x00, -ENOSPC, SENSE_DONE, 0, "LBA out of range" },
	{ KEY_ILLEGAL, 0x20, ANY, -EOPNOTSUPP, SENSE_DONE, 0, "invalid command operation code" },
	{ KEY_ILLEGAL, 0x24, ANY, -EINVAL, SENSE_DONE, 0, "invalid field in CDB" },
	{ KEY_ILLEGAL, 0x26, ANY, -EINVAL, SENSE_DONE, 0, "invalid field in parameter list" },
	{ KEY_ILLEGAL, ANY, ANY, -EINVAL, SENSE_DONE, 0, "illegal request" },
	{ KEY_DATA_PROTECT, 0x27, 0x07, -ENOSPC, SENSE_DONE, 0, "space allocation failed write protect" },
	{ KEY_DATA_PROTECT, ANY, ANY, -EROFS, SENSE_DONE, NOTE_WP, "write protected" },
	{ KEY_BLANK, ANY, ANY, -EIO, SENSE_DONE, 0, "blank check" },
	{ KEY_ABORTED, ANY, ANY, -EIO, SENSE_RETRY, 0, "aborted command" },
	{ KEY_MISCOMPARE, ANY, ANY, -EILSEQ, SENSE_DONE, 0, "miscompare" },
	{ ANY, ANY, ANY, -EIO, SENSE_DONE, 0, "error" },
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

struct sense_verdict sense_decide(int scsi_status, bool sense_valid, int key, int asc,
				  int ascq)
{
	struct sense_verdict v = { .err = -EIO, .action = SENSE_DONE };
	switch (scsi_status) {
	case ST_GOOD:
	case ST_CONDITION_MET:
		v.err = 0;
		return v;
	case ST_BUSY:
	case ST_TASK_SET_FULL:
	case ST_ACA_ACTIVE:
	case ST_TASK_ABORTED:
		v.action = SENSE_RETRY; /* err: what the caller reports when retries run out */
		return v;
	case ST_RESERVATION_CONFLICT:
		v.err = -EBUSY;
		return v;
	case ST_CHECK_CONDITION: {
		if (!sense_valid)
			return v; /* -EIO: a CHECK CONDITION is never success */
		const struct row *r = find(key, asc, ascq);
		v.err = r->err;
		v.action = r->action;
		v.capacity_changed = r->note & NOTE_CAPACITY;
		v.write_protected = r->note & NOTE_WP;
		v.luns_changed = r->note & NOTE_LUNS;
		v.inquiry_changed = r->note & NOTE_INQUIRY;
		v.lun_gone = r->note & NOTE_GONE;
		return v;
	}
	default: /* INTERMEDIATE, COMMAND TERMINATED, undefined values */
		return v;
	}
}

static const char *status_name(int s)
{
	switch (s) {
	case ST_GOOD: return "GOOD";
	case ST_CHECK_CONDITION: return "CHECK CONDITION";
	case ST_CONDITION_MET: return "CONDITION MET";
	case ST_BUSY: return "BUSY";
	case ST_INTERMEDIATE: return "INTERMEDIATE";
	case ST_INTERMEDIATE_CM: return "INTERMEDIATE-CONDITION MET";
	case ST_RESERVATION_CONFLICT: return "RESERVATION CONFLICT";
	case ST_COMMAND_TERMINATED: return "COMMAND TERMINATED";
	case ST_TASK_SET_FULL: return "TASK SET FULL";
	case ST_ACA_ACTIVE: return "ACA ACTIVE";
	case ST_TASK_ABORTED: return "TASK ABORTED";
	default: return "undefined status";
	}
}

const char *sense_describe(int scsi_status, bool sense_valid, int key, int asc, int ascq,
			   char *buf, size_t len)
{
	if (scsi_status != ST_CHECK_CONDITION)
		snprintf(buf, len, "status 0x%02x (%s)", scsi_status, status_name(scsi_status));
	else if (!sense_valid)
		snprintf(buf, len, "CHECK CONDITION without usable sense data (status 0x02)");
	else
		snprintf(buf, len, "CHECK CONDITION: %s (sense key 0x%x asc 0x%02x ascq 0x%02x)",
			 find(key, asc, ascq)->text, key, asc, ascq);
	return buf;
}
