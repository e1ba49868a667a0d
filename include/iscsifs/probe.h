/*
 * probe.h - what is on a LUN, by libblkid: content type, label, UUID, partition table
 * and partitions, wherever on the LUN they are (logical partitions anywhere in an EBR
 * chain, a GPT whose backup header at the end is the only good one, BSD labels nested
 * in a DOS partition). libblkid sees the whole LUN but reads only what it asks for,
 * through the blkdev (see probe.c for how).
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
	int number;         /* partition number as libblkid (and partx) number it, 1-based */
	uint64_t start;     /* bytes from the start of the LUN */
	uint64_t size;      /* bytes; for a DOS extended partition only its first 1 KiB (or
	                       one logical block if larger), as Linux's /dev/sdX2 shows it, so
	                       that mkfs on it cannot destroy the logical partitions inside */
	bool extended;      /* a DOS extended partition (a container: no content probed) */
	struct probe_content content;
};

/* A byte range of the LUN [start, end). */
struct probe_extent {
	uint64_t start, end;
};

#define PROBE_MAX_READ 64

struct probe_result {
	struct probe_content content;  /* of the whole LUN */
	char pttype[16];    /* "gpt", "dos", "" */
	int nparts;
	struct probe_part parts[PROBE_MAX_PARTS];
	uint64_t bytes_read;     /* bytes read from the blkdev by this probe */
	bool blank;              /* every byte read was zero (nothing found is then normal) */
	uint64_t first_data;     /* !blank: offset of the first non-zero byte read */
	/* What the probe read of the LUN: the bytes its result depends on, so a write
	 * elsewhere cannot change it (the live namespace re-probes only after a write
	 * that touches them). Sorted, disjoint; when libblkid read more than
	 * PROBE_MAX_READ ranges, the nearest ones are merged: the list may cover more
	 * than was read, never less. nread 0 (a failed probe): unknown, any write may
	 * change the result. */
	struct probe_extent read[PROBE_MAX_READ];
	int nread;
};

/* Probe `dev`, reading only through `dev` and only what libblkid asks for (each byte at
 * most once per call). parts=false only probes the whole-device content.
 * Returns 0, or -errno when a read of the device failed (then `out` holds only
 * bytes_read: no partitions, no content, since a table read in part is not to be
 * trusted). Unknown content is not an error. Callable from any thread, concurrently. */
int probe_blkdev(struct blkdev *dev, bool parts, struct probe_result *out);

#endif
