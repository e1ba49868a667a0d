/*
 * probe.h - what is on a LUN, by libblkid: content type, label, UUID, partition table
 * and partitions. libblkid wants a file descriptor, so the probe copies the regions it
 * reads (the first and last 2 MiB of the LUN and the first 1 MiB of each partition)
 * from the blkdev into a sparse memfd of the LUN's size and probes that.
 */
#ifndef ISCSIFS_PROBE_H
#define ISCSIFS_PROBE_H

#include "iscsifs/blkdev.h"

#define PROBE_MAX_PARTS 128

struct probe_content {
	char type[32];      /* "ext4", "xfs", "" when unknown */
	char label[128];
	char uuid[64];
};

struct probe_part {
	int number;         /* partition number as the table says (1-based) */
	uint64_t start, size;  /* bytes */
	struct probe_content content;
};

struct probe_result {
	struct probe_content content;  /* of the whole LUN */
	char pttype[16];    /* "gpt", "dos", "" */
	int nparts;
	struct probe_part parts[PROBE_MAX_PARTS];
};

/* Probe `dev`; parts=false only probes the whole-device content. 0 or -errno
 * (an unreadable device); unknown content is not an error. */
int probe_blkdev(struct blkdev *dev, bool parts, struct probe_result *out);

#endif
