/*
 * discovery.h - what is behind a target: REPORT LUNS, then per LUN INQUIRY (standard
 * and VPD 0x00/0x80/0x83/0xB0/0xB2), READ CAPACITY(16) with (10) as fallback, MODE
 * SENSE for the write-protect bit. Synchronous, on a logged-in session.
 */
#ifndef ISCSIFS_DISCOVERY_H
#define ISCSIFS_DISCOVERY_H

#include "iscsifs/lun.h"

/* The LUNs of the target as REPORT LUNS gives them (lunaddr.h values), sorted;
 * *out is malloc'ed. Falls back to LUN 0 when REPORT LUNS is not supported. Returns
 * the count or -errno (message in err). */
int discovery_report_luns(struct session *s, const char *target, uint64_t **out, char *err,
			  size_t errlen);

/* Fill info for one LUN. Returns 0 or -errno with a message in err. */
int discovery_probe_lun(struct session *s, const char *target, uint64_t lun, struct lun_info *info,
			char *err, size_t errlen);

/* "disk", "tape", "controller", ... for a peripheral device type. */
const char *discovery_devtype_name(uint8_t type);

#endif
