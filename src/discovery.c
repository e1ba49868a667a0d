/*
 * discovery.c - REPORT LUNS, INQUIRY (standard and VPD), READ CAPACITY, MODE SENSE.
 * Every answer is parsed from our own buffer with explicit bounds; a target that
 * sends less than it announced gets the shorter length.
 */
#include <ctype.h>
#include <errno.h>
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

/* Run a data-in command; returns bytes received or -errno. `what` NULL: silent. */
static int datain(struct session *s, const char *target, uint64_t lun, const uint8_t *cdb,
		  int cdb_len, uint8_t *buf, uint32_t len, const char *what)
{
	struct session_cmd c = { .lun = lun };
	memcpy(c.cdb, cdb, (size_t)cdb_len);
	c.cdb_len = (uint8_t)cdb_len;
	c.dir = SESSION_DIR_READ;
	c.buf = buf;
	c.len = len;
	memset(buf, 0, len);
	int r = lun_command(s, &c, target, what);
	if (r < 0)
		return r;
	return (int)(len - MIN(c.residual, len));
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

int discovery_report_luns(struct session *s, const char *target, uint64_t **out, char *err,
			  size_t errlen)
{
	uint32_t alloc = 16 + 8 * 1024;
	uint8_t *buf = malloc(alloc);
	uint8_t cdb[12] = { 0xa0 };
	if (!buf)
		return -ENOMEM;
	cdb[6] = (uint8_t)(alloc >> 24);
	cdb[7] = (uint8_t)(alloc >> 16);
	cdb[8] = (uint8_t)(alloc >> 8);
	cdb[9] = (uint8_t)alloc;
	int n = datain(s, target, 0, cdb, 12, buf, alloc, NULL);
	uint64_t *luns;
	int count = 0;
	if (n < 0 && n != -EOPNOTSUPP && n != -EINVAL) {
		snprintf(err, errlen, "REPORT LUNS on %s failed: %s", target, strerror(-n));
		free(buf);
		return n;
	}
	if (n < 8) {
		/* no REPORT LUNS: SAM says LUN 0 exists */
		luns = malloc(sizeof(*luns));
		if (!luns) {
			free(buf);
			return -ENOMEM;
		}
		luns[0] = 0;
		*out = luns;
		free(buf);
		return 1;
	}
	uint32_t listlen = MIN(be32(buf), (uint32_t)n - 8);
	luns = calloc(listlen / 8 + 1, sizeof(*luns));
	if (!luns) {
		free(buf);
		return -ENOMEM;
	}
	for (uint32_t off = 8; off + 8 <= 8 + listlen; off += 8) {
		/* kept exactly as reported: the target is addressed the same way */
		luns[count++] = lunaddr_from_bytes(buf + off);
	}
	free(buf);
	/* sort */
	for (int i = 1; i < count; i++)
		for (int j = i; j > 0 && luns[j - 1] > luns[j]; j--) {
			uint64_t t = luns[j];
			luns[j] = luns[j - 1];
			luns[j - 1] = t;
		}
	*out = luns;
	return count;
}

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
		int rank = assoc != 0 ? 0 : type == 3 ? 4 : type == 2 ? 3 : type == 8 ? 2 : type == 1 ? 1 : 0;
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

int discovery_probe_lun(struct session *s, const char *target, uint64_t lun, struct lun_info *info,
			char *err, size_t errlen)
{
	uint8_t buf[512];
	uint8_t cdb[16];
	int n;

	memset(info, 0, sizeof(*info));
	info->lun = lun;

	/* standard INQUIRY */
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x12;
	cdb[4] = 96;
	n = datain(s, target, lun, cdb, 6, buf, 96, "INQUIRY");
	if (n < 0) {
		snprintf(err, errlen, "INQUIRY of %s LUN %s failed: %s", target, LUNSTR(lun), strerror(-n));
		return n;
	}
	if (n < 36) {
		snprintf(err, errlen, "INQUIRY of %s LUN %s: short answer (%d bytes)", target, LUNSTR(lun), n);
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
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x12;
	cdb[1] = 1;
	cdb[4] = 255;
	n = datain(s, target, lun, cdb, 6, buf, 255, NULL);
	for (int i = 4; n > 4 && i < MIN(n, 4 + buf[3]); i++) {
		have80 |= buf[i] == 0x80;
		have83 |= buf[i] == 0x83;
		haveb0 |= buf[i] == 0xb0;
		haveb2 |= buf[i] == 0xb2;
	}
	if (have80) {
		cdb[2] = 0x80;
		n = datain(s, target, lun, cdb, 6, buf, 255, NULL);
		if (n > 4) {
			copy_trim(info->serial, sizeof(info->serial), buf + 4, (size_t)MIN(n - 4, buf[3]));
			info->vpd80_len = (size_t)MIN(n, (int)sizeof(info->vpd80));
			memcpy(info->vpd80, buf, info->vpd80_len);
		}
	}
	if (have83) {
		cdb[2] = 0x83;
		n = datain(s, target, lun, cdb, 6, buf, 255, NULL);
		if (n > 4) {
			parse_vpd83(info, buf, n);
			info->vpd83_len = (size_t)MIN(n, (int)sizeof(info->vpd83));
			memcpy(info->vpd83, buf, info->vpd83_len);
		}
	}
	if (haveb0) {
		cdb[2] = 0xb0;
		n = datain(s, target, lun, cdb, 6, buf, 255, NULL);
		if (n >= 16)
			info->max_xfer_blocks = be32(buf + 8);
		if (n >= 28)
			info->max_unmap_blocks = be32(buf + 20);
		if (n >= 44)
			info->max_ws_blocks = be64(buf + 36);
	}
	if (haveb2) {
		cdb[2] = 0xb2;
		n = datain(s, target, lun, cdb, 6, buf, 255, NULL);
		if (n >= 6) {
			info->can_unmap = buf[5] & 0x80;
			info->can_ws16 = buf[5] & 0x40;
		}
	}

	/* capacity: READ CAPACITY(16), else (10) */
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x9e;
	cdb[1] = 0x10;
	cdb[13] = 32;
	n = datain(s, target, lun, cdb, 16, buf, 32, NULL);
	if (n >= 12) {
		info->nblocks = be64(buf) + 1;
		info->block_size = be32(buf + 8);
		if (n >= 15) {
			info->thin = buf[14] & 0x80;
			info->lbprz = buf[14] & 0x40;
		}
	} else {
		memset(cdb, 0, sizeof(cdb));
		cdb[0] = 0x25;
		n = datain(s, target, lun, cdb, 10, buf, 8, "READ CAPACITY");
		if (n < 8) {
			snprintf(err, errlen, "READ CAPACITY of %s LUN %s failed: %s", target, LUNSTR(lun),
				 n < 0 ? strerror(-n) : "short answer");
			return n < 0 ? n : -EIO;
		}
		info->nblocks = (uint64_t)be32(buf) + 1;
		info->block_size = be32(buf + 4);
	}
	if (info->block_size < 512 || info->block_size > 65536 ||
	    (info->block_size & (info->block_size - 1))) {
		snprintf(err, errlen, "%s LUN %s reports a block size of %u bytes, which iscsifs "
			 "does not support (512..65536, a power of two)", target, LUNSTR(lun), info->block_size);
		return -EINVAL;
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
	n = datain(s, target, lun, cdb, 6, buf, 255, NULL);
	if (n >= 4) {
		info->write_protected = buf[2] & 0x80;
	} else {
		memset(cdb, 0, sizeof(cdb));
		cdb[0] = 0x5a;
		cdb[2] = 0x3f;
		cdb[8] = 255;
		n = datain(s, target, lun, cdb, 10, buf, 255, NULL);
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
