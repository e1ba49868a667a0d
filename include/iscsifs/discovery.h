/*
 * discovery.h - what is behind a target: REPORT LUNS, then per LUN INQUIRY (standard
 * and VPD 0x00/0x80/0x83/0xB0/0xB2), READ CAPACITY(16) with (10) as fallback, MODE
 * SENSE for the write-protect bit. Synchronous, on a logged-in session.
 *
 * Every command is given `budget_s` seconds (the caller passes login_timeout) to be
 * answered; every message says what the target did: "no answer to REPORT LUNS within
 * 15 s", "answered INQUIRY with CHECK CONDITION: ...". Answers are parsed from our own
 * buffers with explicit bounds.
 *
 * Errors that fail the target as a whole (DISCOVERY_TARGET_FAILED): -ETIMEDOUT when
 * it did not answer a command within its budget, -EPROTO when its answer broke the
 * iSCSI protocol or the connection failed repeatedly, -ESHUTDOWN, -ENOMEM. Any other
 * -errno means the target answered, and the answer is an error or unusable for this
 * LUN (-EIO, or the sense's errno), or describes something iscsifs refuses (-EINVAL
 * block size, -EOVERFLOW capacity, -E2BIG REPORT LUNS list).
 */
#define DISCOVERY_TARGET_FAILED(r)                                                   \
	((r) == -ETIMEDOUT || (r) == -EPROTO || (r) == -ESHUTDOWN || (r) == -ENOMEM)
#ifndef ISCSIFS_DISCOVERY_H
#define ISCSIFS_DISCOVERY_H

#include <errno.h>

#include "iscsifs/lun.h"

/* The most REPORT LUNS entries iscsifs reads (a longer list is refused: -E2BIG). */
#define DISCOVERY_MAX_LUNS 65536

/*
 * The LUNs of the target as REPORT LUNS gives them (lunaddr.h values), sorted, each
 * once (a duplicate entry is logged once and dropped); *out is malloc'ed. A list
 * longer than the first allocation is asked for again with the length the target
 * gave. Falls back to LUN 0 when REPORT LUNS is not supported. Returns the count or
 * -errno (message in err).
 */
int discovery_report_luns(struct session *s, const char *target, int budget_s, uint64_t **out,
			  char *err, size_t errlen);

/*
 * Fill info for one LUN. Returns 0 or -errno with a message in err. A capacity that
 * cannot be a file (see lun_capacity()) and READ CAPACITY(10)'s "larger than 2 TiB"
 * answer when READ CAPACITY(16) fails are refused (-EOVERFLOW) with a message naming
 * the target, the LUN and the value.
 */
int discovery_probe_lun(struct session *s, const char *target, int budget_s, uint64_t lun,
			struct lun_info *info, char *err, size_t errlen);

/* "disk", "tape", "controller", ... for a peripheral device type. */
const char *discovery_devtype_name(uint8_t type);

#endif
