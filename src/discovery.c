/*
 * discovery.c - REPORT LUNS, INQUIRY (standard and VPD), READ CAPACITY, MODE SENSE.
 * Every answer is parsed from our own buffer with explicit bounds; a target that
 * sends less than it announced gets the shorter length. Mandatory answers (REPORT
 * LUNS when supported, INQUIRY, READ CAPACITY) that are errors fail the probe with a
 * message saying what the target did; optional ones (VPD pages, MODE SENSE) answered
 * with an error are taken as absent; no answer at all fails the probe.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsifs/discovery.h"
#include "iscsifs/log.h"
#include "iscsifs/util.h"

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t be64(const uint8_t *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

/*
 * PLAN.md interface 1: a command's time budget (session_cmd.expire_ms), so that a target
 * that logs in and then stops answering fails discovery soon with a message that says
 * so, not after the session's cmd_timeout x attempts + replacement_timeout. Kept
 * across lun_command's retries: the budget is the command's, not each try's.
 */
static void set_budget(struct session_cmd *c, int budget_s)
{
	c->expire_ms = util_now_ms() + (uint64_t)MAX(budget_s, 1) * 1000;
}

/* What the commands of one probe share: where they go and how to say what happened. */
struct dctx {
	struct session *s;
	const char *target;
	int budget_s;
	char subject[CONFIG_NAME_MAX + 40]; /* "target T" or "T LUN n", for messages */
};

/*
 * Run a data-in command (`name` as the user knows it: "REPORT LUNS", "INQUIRY VPD page
 * 0x83"). Returns the bytes received, or -errno with one line in err saying what the
 * target did; -ETIMEDOUT when it did not answer (see discovery.h). On error the buffer
 * is zeroed, never half-filled.
 */
static int datain(struct dctx *d, uint64_t lun, const char *name, const uint8_t *cdb,
		  int cdb_len, uint8_t *buf, uint32_t len, char *err, size_t errlen)
{
	struct session_cmd c = { .lun = lun };
	char why[256];
	memcpy(c.cdb, cdb, (size_t)cdb_len);
	c.cdb_len = (uint8_t)cdb_len;
	c.dir = SESSION_DIR_READ;
	c.buf = buf;
	c.len = len;
	set_budget(&c, d->budget_s);
	memset(buf, 0, len);
	uint64_t start = util_now_ms();
	int r = lun_command(d->s, &c, d->target, NULL, why, sizeof(why));
	if (r >= 0)
		return (int)(len - c.residual); /* lun_command checked residual <= len */
	memset(buf, 0, len);
	if (c.result == -ETIMEDOUT) {
		/* the budget is login_timeout; a command already sent when it runs out
		 * ends at its cmd_timeout: say how long it really was */
		snprintf(err, errlen, "%s: no answer to %s within %.0f s", d->subject, name,
			 (double)(util_now_ms() - start) / 1000.0);
		return -ETIMEDOUT;
	}
	if (c.result == -EIO) {
		snprintf(err, errlen, "%s: %s failed: the target's answer broke the iSCSI protocol, "
			 "or the connection failed repeatedly (see above)", d->subject, name);
		return -EPROTO;
	}
	if (c.result < 0) {
		snprintf(err, errlen, "%s: %s got no answer: %s", d->subject, name, why);
		return c.result == -ENOMEM || c.result == -ESHUTDOWN ? c.result : -ETIMEDOUT;
	}
	snprintf(err, errlen, "%s answered %s with %s", d->subject, name, why);
	return r == -ETIMEDOUT ? -EIO : r;
}

static void copy_trim(char *dst, size_t dstlen, const uint8_t *src, size_t n)
{
	size_t i = 0;
	while (n && (src[n - 1] == ' ' || src[n - 1] == 0))
		n--;
	while (i < n && src[i] == ' ') {
		src++;
		n--;
	}
	for (i = 0; i < n && i + 1 < dstlen; i++)
		dst[i] = isprint(src[i]) ? (char)src[i] : '?';
	dst[i] = 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int discovery_report_luns(struct session *s, const char *target, int budget_s, uint64_t **out,
			  char *err, size_t errlen)
{
	struct dctx d = { .s = s, .target = target, .budget_s = budget_s };
	uint32_t alloc = 8 + 8 * 256, listlen = 0;
	uint8_t *buf = NULL;
	int n = 0;

	snprintf(d.subject, sizeof(d.subject), "target %s", target);
	/* Ask; if the list is longer than what we asked for, ask again for all of it (a
	 * target adding LUNs meanwhile may need a third try; more is a target that never
	 * gives the same answer twice). */
	for (int attempt = 0;; attempt++) {
		uint8_t cdb[12] = { 0xa0 };
		uint8_t *nb = realloc(buf, alloc);
		if (!nb) {
			free(buf);
			return -ENOMEM;
		}
		buf = nb;
		cdb[6] = (uint8_t)(alloc >> 24);
		cdb[7] = (uint8_t)(alloc >> 16);
		cdb[8] = (uint8_t)(alloc >> 8);
		cdb[9] = (uint8_t)alloc;
		n = datain(&d, 0, "REPORT LUNS", cdb, 12, buf, alloc, err, errlen);
		if (n == -EOPNOTSUPP || n == -EINVAL || (n >= 0 && n < 8)) {
			/* no REPORT LUNS (ILLEGAL REQUEST, or no list): SAM says LUN 0 exists */
			free(buf);
			uint64_t *luns = calloc(1, sizeof(*luns));
			if (!luns)
				return -ENOMEM;
			err[0] = 0;
			*out = luns;
			return 1;
		}
		if (n < 0) {
			free(buf);
			return n;
		}
		listlen = be32(buf);
		if (listlen / 8 > DISCOVERY_MAX_LUNS) {
			snprintf(err, errlen, "target %s reports a REPORT LUNS list of %u bytes (%u "
				 "LUNs); iscsifs reads at most %d LUNs of a target", target,
				 listlen, listlen / 8, DISCOVERY_MAX_LUNS);
			free(buf);
			return -E2BIG;
		}
		if (listlen <= alloc - 8)
			break;
		if (attempt == 2) {
			snprintf(err, errlen, "target %s gives a longer REPORT LUNS list each time it "
				 "is asked (%u bytes after asking for %u); try again", target,
				 listlen, alloc - 8);
			free(buf);
			return -EIO;
		}
		alloc = 8 + DIV_ROUND_UP(listlen, 8) * 8;
	}
	uint32_t got = MIN(listlen, (uint32_t)n - 8) / 8;
	if (got < listlen / 8)
		log_warn("target %s: REPORT LUNS announced %u LUNs but sent %u; using those %u",
			 target, listlen / 8, got, got);
	uint64_t *luns = calloc(got + 1, sizeof(*luns));
	if (!luns) {
		free(buf);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < got; i++)
		luns[i] = lunaddr_from_bytes(buf + 8 + 8 * i); /* kept exactly as reported */
	free(buf);
	qsort(luns, got, sizeof(*luns), cmp_u64);
	/* Identical entries are one LUN: a file (and a cache) each would be two writers
	 * to one disk. */
	uint32_t k = 0, dups = 0;
	uint64_t first_dup = 0;
	for (uint32_t i = 0; i < got; i++) {
		if (k && luns[k - 1] == luns[i]) {
			if (!dups++)
				first_dup = luns[i];
			continue;
		}
		luns[k++] = luns[i];
	}
	if (dups)
		log_warn("target %s lists %u duplicate entr%s in REPORT LUNS (LUN %s%s); each LUN "
			 "is used once", target, dups, dups == 1 ? "y" : "ies", LUNSTR(first_dup),
			 dups > 1 ? " and others" : "");
	*out = luns;
	return (int)k;
}

/* info->wwn: the LUN's best VPD 0x83 designator (association 0: the logical unit). */
static void parse_vpd83(struct lun_info *info, const uint8_t *p, int n)
{
	int best = 0;
	if (n < 4)
		return;
	int end = MIN(n, 4 + (int)((p[2] << 8) | p[3]));
	for (int off = 4; off + 4 <= end;) {
		int codeset = p[off] & 0x0f, assoc = (p[off + 1] >> 4) & 3, type = p[off + 1] & 0x0f;
		int len = p[off + 3];
		const uint8_t *id = p + off + 4;
		if (off + 4 + len > end)
			break;
		/* Globally unique designators first: NAA IEEE Registered Extended (6),
		 * Registered (5), Extended (2) - each only with a non-zero IEEE company ID:
		 * tgt derives a NAA 6 with company ID 0 from its default scsi_id, equal for
		 * the same target and LUN numbers of every tgtd - then the rest in page
		 * order: locally assigned NAA (3), EUI-64, SCSI name string, T10 vendor ID. */
		int naa = type == 3 && len >= 8 ? id[0] >> 4 : 0;
		bool registered = (naa == 5 || naa == 6) ? ((id[0] & 0x0f) | id[1] | id[2] | (id[3] >> 4)) != 0
				  : naa == 2             ? (id[2] | id[3] | id[4]) != 0
							 : false;
		int rank = assoc != 0         ? 0
			   : type == 3 && registered ? (naa == 6 ? 9 : naa == 5 ? 8 : 7)
			   : type == 3               ? 6
			   : type == 2               ? 3
			   : type == 8               ? 2
			   : type == 1               ? 1
						   : 0;
		if (rank > best) {
			char buf[256] = "";
			size_t k = 0;
			if (type == 3 || type == 2) {
				k = (size_t)snprintf(buf, sizeof(buf), type == 3 ? "naa." : "eui.");
				for (int i = 0; i < len && k + 3 < sizeof(buf); i++)
					k += (size_t)snprintf(buf + k, sizeof(buf) - k, "%02x", id[i]);
			} else if (codeset == 2 || codeset == 3) {
				if (type == 1)
					k = (size_t)snprintf(buf, sizeof(buf), "t10.");
				copy_trim(buf + k, sizeof(buf) - k, id, (size_t)len);
			}
			if (buf[0]) {
				best = rank;
				snprintf(info->wwn, sizeof(info->wwn), "%s", buf);
			}
		}
		off += 4 + len;
	}
}

/*
 * An optional page or command: a target that answers with an error does not have it
 * (0 bytes); a target that does not answer at all fails the probe (-ETIMEDOUT). The
 * answer must be the page asked for.
 */
static int optional(struct dctx *d, uint64_t lun, const char *name, const uint8_t *cdb,
		    int cdb_len, uint8_t *buf, uint32_t len, char *err, size_t errlen)
{
	int n = datain(d, lun, name, cdb, cdb_len, buf, len, err, errlen);
	if (DISCOVERY_TARGET_FAILED(n))
		return n;
	if (n < 0) {
		log_debug("%s", err); /* not supported, or an error: without it */
		err[0] = 0;
		return 0;
	}
	return n;
}

/* A VPD page: its bytes (header included, bounded by its own length field), 0 when
 * absent or when the target answered with another page, or -errno. */
static int vpd_page(struct dctx *d, uint64_t lun, uint8_t page, uint8_t *buf, char *err,
		    size_t errlen)
{
	uint8_t cdb[6] = { 0x12, 1, page, 0, 255, 0 };
	char name[32];
	snprintf(name, sizeof(name), "INQUIRY VPD page 0x%02x", page);
	int n = optional(d, lun, name, cdb, 6, buf, 255, err, errlen);
	if (n < 4)
		return n < 0 ? n : 0;
	if (buf[1] != page) {
		log_debug("%s: answered %s with page 0x%02x; ignored", d->subject, name, buf[1]);
		return 0;
	}
	return MIN(n, 4 + ((buf[2] << 8) | buf[3]));
}

int discovery_probe_lun(struct session *s, const char *target, int budget_s, uint64_t lun,
			struct lun_info *info, char *err, size_t errlen)
{
	struct dctx d = { .s = s, .target = target, .budget_s = budget_s };
	uint8_t buf[512];
	uint8_t cdb[16];
	int n;

	snprintf(d.subject, sizeof(d.subject), "%s LUN %s", target, LUNSTR(lun));
	memset(info, 0, sizeof(*info));
	info->lun = lun;

	/* standard INQUIRY */
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x12;
	cdb[4] = 96;
	n = datain(&d, lun, "INQUIRY", cdb, 6, buf, 96, err, errlen);
	if (n < 0)
		return n;
	if (n < 36) {
		snprintf(err, errlen, "%s answered INQUIRY with %d bytes (at least 36 needed)",
			 d.subject, n);
		return -EIO;
	}
	info->qualifier = buf[0] >> 5;
	info->devtype = buf[0] & 0x1f;
	copy_trim(info->vendor, sizeof(info->vendor), buf + 8, 8);
	copy_trim(info->product, sizeof(info->product), buf + 16, 16);
	copy_trim(info->revision, sizeof(info->revision), buf + 32, 4);
	if (info->qualifier != 0 || info->devtype != 0)
		return 0; /* not a connected disk: listed, never mounted */

	/* supported VPD pages */
	bool have80 = false, have83 = false, haveb0 = false, haveb2 = false;
	if ((n = vpd_page(&d, lun, 0x00, buf, err, errlen)) < 0)
		return n;
	for (int i = 4; i < n; i++) {
		have80 |= buf[i] == 0x80;
		have83 |= buf[i] == 0x83;
		haveb0 |= buf[i] == 0xb0;
		haveb2 |= buf[i] == 0xb2;
	}
	if (have80) {
		if ((n = vpd_page(&d, lun, 0x80, buf, err, errlen)) < 0)
			return n;
		if (n > 4) {
			copy_trim(info->serial, sizeof(info->serial), buf + 4, (size_t)(n - 4));
			info->vpd80_len = (size_t)MIN(n, (int)sizeof(info->vpd80));
			memcpy(info->vpd80, buf, info->vpd80_len);
		}
	}
	if (have83) {
		if ((n = vpd_page(&d, lun, 0x83, buf, err, errlen)) < 0)
			return n;
		if (n > 4) {
			parse_vpd83(info, buf, n);
			info->vpd83_len = (size_t)MIN(n, (int)sizeof(info->vpd83));
			memcpy(info->vpd83, buf, info->vpd83_len);
		}
	}
	if (haveb0) { /* Block Limits */
		if ((n = vpd_page(&d, lun, 0xb0, buf, err, errlen)) < 0)
			return n;
		if (n >= 12)
			info->max_xfer_blocks = be32(buf + 8);
		if (n >= 24)
			info->max_unmap_blocks = be32(buf + 20);
		if (n >= 28)
			info->max_unmap_descs = be32(buf + 24);
		if (n >= 44)
			info->max_ws_blocks = be64(buf + 36);
	}
	if (haveb2) { /* Logical Block Provisioning */
		if ((n = vpd_page(&d, lun, 0xb2, buf, err, errlen)) < 0)
			return n;
		if (n >= 6) {
			info->can_unmap = buf[5] & 0x80;
			info->can_ws16 = buf[5] & 0x40;
		}
	}

	/* capacity: READ CAPACITY(16), else (10) */
	char rc16_why[CONFIG_ERRLEN] = "";
	uint64_t last_lba;
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x9e;
	cdb[1] = 0x10;
	cdb[13] = 32;
	n = datain(&d, lun, "READ CAPACITY(16)", cdb, 16, buf, 32, rc16_why, sizeof(rc16_why));
	if (DISCOVERY_TARGET_FAILED(n)) {
		snprintf(err, errlen, "%s", rc16_why);
		return n;
	}
	if (n >= 0 && n < 12) {
		snprintf(rc16_why, sizeof(rc16_why), "%s answered READ CAPACITY(16) with %d bytes",
			 d.subject, n);
		n = -EIO;
	}
	if (n >= 12) {
		last_lba = be64(buf);
		info->block_size = be32(buf + 8);
		if (n >= 15) {
			info->thin = buf[14] & 0x80;
			info->lbprz = buf[14] & 0x40;
		}
	} else {
		log_debug("%s; trying READ CAPACITY(10)", rc16_why);
		memset(cdb, 0, sizeof(cdb));
		cdb[0] = 0x25;
		n = datain(&d, lun, "READ CAPACITY(10)", cdb, 10, buf, 8, err, errlen);
		if (n < 0)
			return n;
		if (n < 8) {
			snprintf(err, errlen, "%s answered READ CAPACITY(10) with %d bytes (8 needed)",
				 d.subject, n);
			return -EIO;
		}
		last_lba = be32(buf);
		info->block_size = be32(buf + 4);
		if (last_lba == 0xffffffff) {
			/* SBC: "the capacity does not fit, use READ CAPACITY(16)" - which failed */
			const char *why16 = rc16_why;
			size_t sl = strlen(d.subject);
			if (strncmp(why16, d.subject, sl) == 0) /* "answered ... with ..." */
				why16 += sl + (why16[sl] == ':') + (why16[sl + (why16[sl] == ':')] == ' ');
			snprintf(err, errlen, "%s: READ CAPACITY(10) says the LUN is too large for it "
				 "(last LBA 0xffffffff: use READ CAPACITY(16)), and READ "
				 "CAPACITY(16) failed (%s); its size is unknown",
				 d.subject, why16);
			return -EOVERFLOW;
		}
	}
	if (info->block_size < 512 || info->block_size > 65536 ||
	    (info->block_size & (info->block_size - 1))) {
		snprintf(err, errlen, "%s reports a block size of %u bytes, which iscsifs "
			 "does not support (512..65536, a power of two)", d.subject, info->block_size);
		return -EINVAL;
	}
	uint64_t bytes;
	if (lun_capacity(last_lba, info->block_size, &info->nblocks, &bytes) < 0) {
		snprintf(err, errlen, "%s reports an impossible capacity: last LBA %" PRIu64
			 " (0x%" PRIx64 ") with %u-byte blocks is more than a file can hold "
			 "(2^63 - 1 bytes)", d.subject, last_lba, last_lba,
			 info->block_size);
		return -EOVERFLOW;
	}
	if (!info->thin) {
		info->can_unmap = false;
		/* WRITE SAME without UNMAP still zeroes; keep can_ws16 as reported */
	}

	/* write protect: MODE SENSE(6), else (10) */
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x1a;
	cdb[2] = 0x3f;
	cdb[4] = 255;
	n = optional(&d, lun, "MODE SENSE(6)", cdb, 6, buf, 255, err, errlen);
	if (n < 0)
		return n;
	if (n >= 4) {
		info->write_protected = buf[2] & 0x80;
	} else {
		memset(cdb, 0, sizeof(cdb));
		cdb[0] = 0x5a;
		cdb[2] = 0x3f;
		cdb[8] = 255;
		n = optional(&d, lun, "MODE SENSE(10)", cdb, 10, buf, 255, err, errlen);
		if (n < 0)
			return n;
		if (n >= 8)
			info->write_protected = buf[3] & 0x80;
	}
	return 0;
}

const char *discovery_devtype_name(uint8_t type)
{
	static const char *const names[] = {
		[0x00] = "disk", [0x01] = "tape", [0x02] = "printer", [0x03] = "processor",
		[0x04] = "worm", [0x05] = "cd/dvd", [0x07] = "optical", [0x08] = "changer",
		[0x0c] = "controller", [0x0d] = "enclosure", [0x0e] = "rbc", [0x11] = "osd",
	};
	if (type < ARRAY_SIZE(names) && names[type])
		return names[type];
	return "other";
}
