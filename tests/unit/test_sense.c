/* test_sense: the one sense table (src/sense.c) maps every class of SCSI status and
 * sense data to the errno and retry decision DESIGN.md §5 asks for, and no answer but
 * GOOD / CONDITION MET is ever success (issue 9 §1: a CHECK CONDITION with NO SENSE,
 * RECOVERED ERROR or unparsable sense used to count as a completed write). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "iscsifs/sense.h"

static int failures;

static void expect(const char *what, int status, int key, int asc, int ascq, int err,
		   enum sense_action action)
{
	struct sense_verdict v = sense_decide(status, true, key, asc, ascq);
	if (v.err != err || v.action != action) {
		printf("FAIL %s: status 0x%x key 0x%x asc 0x%02x ascq 0x%02x: expected err %d "
		       "action %d, got err %d action %d\n",
		       what, status, key, asc, ascq, err, action, v.err, v.action);
		failures++;
	}
}

int main(void)
{
	expect("good", 0, 0, 0, 0, 0, SENSE_DONE);
	expect("condition met", 4, 0, 0, 0, 0, SENSE_DONE);
	expect("busy", 8, 0, 0, 0, -EIO, SENSE_RETRY);
	expect("task set full", 0x28, 0, 0, 0, -EIO, SENSE_RETRY);
	expect("reservation conflict", 0x18, 0, 0, 0, -EBUSY, SENSE_DONE);
	expect("unit attention: power on/reset", 2, 6, 0x29, 0x00, -EIO, SENSE_RETRY_NOW);
	expect("unit attention: capacity changed", 2, 6, 0x2a, 0x09, -EIO, SENSE_RETRY_NOW);
	expect("unit attention: other", 2, 6, 0x3f, 0x0e, -EIO, SENSE_RETRY_NOW);
	expect("not ready: becoming ready", 2, 2, 0x04, 0x01, -EIO, SENSE_RETRY);
	expect("not ready: ALUA transition", 2, 2, 0x04, 0x0a, -EIO, SENSE_RETRY);
	expect("not ready: medium not present", 2, 2, 0x3a, 0x00, -ENOMEDIUM, SENSE_DONE);
	expect("not ready: manual intervention", 2, 2, 0x04, 0x03, -EIO, SENSE_DONE);
	expect("medium error", 2, 3, 0x11, 0x00, -EIO, SENSE_DONE);
	expect("hardware error", 2, 4, 0x44, 0x00, -EIO, SENSE_DONE);
	expect("LBA out of range", 2, 5, 0x21, 0x00, -ENOSPC, SENSE_DONE);
	expect("invalid opcode", 2, 5, 0x20, 0x00, -EOPNOTSUPP, SENSE_DONE);
	expect("invalid field in CDB", 2, 5, 0x24, 0x00, -EINVAL, SENSE_DONE);
	expect("LU not supported", 2, 5, 0x25, 0x00, -ENODEV, SENSE_DONE);
	expect("write protected", 2, 7, 0x27, 0x00, -EROFS, SENSE_DONE);
	expect("space allocation failed", 2, 7, 0x27, 0x07, -ENOSPC, SENSE_DONE);
	expect("aborted command", 2, 0xb, 0x47, 0x00, -EIO, SENSE_RETRY);
	expect("miscompare", 2, 0xe, 0x1d, 0x00, -EILSEQ, SENSE_DONE);
	expect("no sense", 2, 0, 0x00, 0x00, -EIO, SENSE_DONE);
	expect("no sense with an asc", 2, 0, 0x5d, 0x00, -EIO, SENSE_DONE);
	expect("recovered error", 2, 1, 0x17, 0x00, -EIO, SENSE_DONE);
	expect("blank check", 2, 8, 0x00, 0x00, -EIO, SENSE_DONE);
	expect("vendor specific key", 2, 9, 0x80, 0x00, -EIO, SENSE_DONE);
	expect("volume overflow", 2, 0xd, 0x00, 0x00, -EIO, SENSE_DONE);
	expect("ACA active", 0x30, 0, 0, 0, -EIO, SENSE_RETRY);
	expect("task aborted", 0x40, 0, 0, 0, -EIO, SENSE_RETRY);
	expect("intermediate", 0x10, 0, 0, 0, -EIO, SENSE_DONE);
	expect("intermediate-condition met", 0x14, 0, 0, 0, -EIO, SENSE_DONE);
	expect("command terminated", 0x22, 0, 0, 0, -EIO, SENSE_DONE);
	expect("undefined status", 0x7e, 0, 0, 0, -EIO, SENSE_DONE);

	/* CHECK CONDITION whose sense could not be parsed: whatever the fields hold
	 * (libiscsi leaves zeroes, i.e. "no sense", or stale values), an error that is not
	 * retried - not a unit attention to retry, not success. */
	const int garbage[][3] = { { 0, 0, 0 }, { 6, 0x29, 0 }, { 2, 0x04, 0x01 }, { 1, 0, 0 } };
	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		struct sense_verdict g = sense_decide(2, false, garbage[i][0], garbage[i][1],
						      garbage[i][2]);
		if (g.err != -EIO || g.action != SENSE_DONE || g.capacity_changed ||
		    g.write_protected) {
			printf("FAIL unparsable sense (fields key 0x%x asc 0x%02x): err %d action %d\n",
			       garbage[i][0], garbage[i][1], g.err, g.action);
			failures++;
		}
	}

	/* The rule over the whole input space: success only for GOOD and CONDITION MET,
	 * never with a retry; every retry ends in -EIO when retries run out. */
	for (int st = 0; st < 256; st++)
		for (int valid = 0; valid < 2; valid++)
			for (int key = 0; key < 16; key++)
				for (int asc = 0; asc < 256; asc += 3) {
					struct sense_verdict x = sense_decide(st, valid, key, asc, asc ^ 5);
					bool good = st == 0 || st == 4;
					if ((x.err == 0) != good || (good && x.action != SENSE_DONE) ||
					    (x.action != SENSE_DONE && x.err != -EIO) || x.err > 0) {
						printf("FAIL rule: status 0x%02x valid %d key 0x%x asc "
						       "0x%02x: err %d action %d\n", st, valid, key, asc,
						       x.err, x.action);
						failures++;
						st = 256, valid = 2, key = 16, asc = 256; /* once */
					}
				}

	struct sense_verdict v = sense_decide(2, true, 6, 0x2a, 0x09);
	if (!v.capacity_changed) {
		printf("FAIL capacity changed is not flagged\n");
		failures++;
	}
	v = sense_decide(2, true, 7, 0x27, 0x00);
	if (!v.write_protected) {
		printf("FAIL write protect is not flagged\n");
		failures++;
	}
	/* issue 11: the LUN inventory and INQUIRY data unit attentions ask for a rescan and
	 * an identity check of the LUN; other unit attentions and unparsable sense do not */
	const struct { int asc, ascq; bool luns, inq; const char *what; } ua[] = {
		{ 0x3f, 0x0e, true, true, "3F/0E reported LUNs data has changed" },
		{ 0x3f, 0x03, true, true, "3F/03 inquiry data has changed" },
		{ 0x3f, 0x05, true, true, "3F/05 device identifier changed" },
		{ 0x3f, 0x02, true, true, "3F/02 changed operating definition" },
		{ 0x3f, 0x01, false, true, "3F/01 microcode has been changed" },
		{ 0x2a, 0x09, false, false, "2A/09 capacity data has changed" },
		/* every 29/xx: what a newly created logical unit reports first; the LUN at
		 * the address may be another disk (lun-swap fault) */
		{ 0x29, 0x00, false, true, "29/00 power on, reset or bus device reset" },
		{ 0x29, 0x01, false, true, "29/01 power on occurred" },
		{ 0x29, 0x03, false, true, "29/03 bus device reset function occurred" },
		{ 0x29, 0x07, false, true, "29/07 I_T nexus loss occurred" },
		{ 0x28, 0x00, false, true, "28/00 not ready to ready change, medium may have changed" },
		{ 0x2a, 0x01, false, false, "2A/01 mode parameters changed" },
		{ 0x2f, 0x00, false, false, "2F/00 commands cleared by another initiator" },
	};
	for (size_t i = 0; i < sizeof(ua) / sizeof(ua[0]); i++) {
		v = sense_decide(2, true, 6, ua[i].asc, ua[i].ascq);
		if (v.luns_changed != ua[i].luns || v.inquiry_changed != ua[i].inq ||
		    v.action != SENSE_RETRY_NOW) {
			printf("FAIL %s: luns_changed %d inquiry_changed %d action %d\n",
			       ua[i].what, v.luns_changed, v.inquiry_changed, v.action);
			failures++;
		}
	}
	/* no logical unit at the address: gone, not a plain error (hold, rescan, check) */
	const struct { int key, asc, ascq; bool gone; const char *what; } gone[] = {
		{ 5, 0x25, 0x00, true, "25/00 logical unit not supported" },
		{ 2, 0x68, 0x00, true, "68/00 logical unit not configured" },
		{ 5, 0x24, 0x00, false, "24/00 invalid field in CDB" },
		{ 6, 0x29, 0x00, false, "29/00 power on" },
	};
	for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
		v = sense_decide(2, true, gone[i].key, gone[i].asc, gone[i].ascq);
		if (v.lun_gone != gone[i].gone || (gone[i].gone && (v.err != -ENODEV ||
								    !v.luns_changed))) {
			printf("FAIL %s: lun_gone %d err %d luns_changed %d\n", gone[i].what,
			       v.lun_gone, v.err, v.luns_changed);
			failures++;
		}
	}
	v = sense_decide(2, false, 5, 0x25, 0x00);
	if (v.lun_gone) {
		printf("FAIL unparsable sense says the LUN is gone\n");
		failures++;
	}
	v = sense_decide(2, false, 6, 0x3f, 0x0e);
	if (v.luns_changed || v.inquiry_changed) {
		printf("FAIL unparsable sense flags a LUN change\n");
		failures++;
	}
	char buf[128];
	sense_describe(2, true, 3, 0x11, 0, buf, sizeof(buf));
	if (!strstr(buf, "medium error") || !strstr(buf, "0x11")) {
		printf("FAIL describe: got \"%s\"\n", buf);
		failures++;
	}
	sense_describe(2, false, 0, 0, 0, buf, sizeof(buf));
	if (!strstr(buf, "without usable sense")) {
		printf("FAIL describe of unparsable sense: got \"%s\"\n", buf);
		failures++;
	}
	sense_describe(0x30, false, 0, 0, 0, buf, sizeof(buf));
	if (!strstr(buf, "0x30") || !strstr(buf, "ACA ACTIVE")) {
		printf("FAIL describe of ACA ACTIVE: got \"%s\"\n", buf);
		failures++;
	}
	printf(failures ? "test_sense: %d failed\n" : "test_sense: all passed\n", failures);
	return failures != 0;
}
