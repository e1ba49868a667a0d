/*
 * probe.c - libblkid on a sparse memfd image of the regions libblkid looks at.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <blkid/blkid.h>

#include "iscsifs/log.h"
#include "iscsifs/probe.h"
#include "iscsifs/util.h"

#define EDGE (2u << 20)

static int copy_range(struct blkdev *dev, int fd, uint64_t off, uint64_t len)
{
	if (off >= dev->size)
		return 0;
	len = MIN(len, dev->size - off);
	off -= off % dev->block_size;
	len -= len % dev->block_size;
	if (!len)
		return 0;
	uint8_t *buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	int r = blkdev_read_sync(dev, off, len, buf);
	if (r == 0 && pwrite(fd, buf, len, (off_t)off) != (ssize_t)len)
		r = -errno;
	free(buf);
	return r;
}

static void content_of(blkid_probe pr, struct probe_content *c)
{
	const char *v;
	size_t len;
	memset(c, 0, sizeof(*c));
	blkid_probe_enable_superblocks(pr, 1);
	blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_LABEL |
						      BLKID_SUBLKS_UUID);
	if (blkid_do_safeprobe(pr) != 0)
		return;
	if (blkid_probe_lookup_value(pr, "TYPE", &v, &len) == 0)
		snprintf(c->type, sizeof(c->type), "%s", v);
	if (blkid_probe_lookup_value(pr, "LABEL", &v, &len) == 0)
		snprintf(c->label, sizeof(c->label), "%s", v);
	if (blkid_probe_lookup_value(pr, "UUID", &v, &len) == 0)
		snprintf(c->uuid, sizeof(c->uuid), "%s", v);
}

int probe_blkdev(struct blkdev *dev, bool parts, struct probe_result *out)
{
	memset(out, 0, sizeof(*out));
	int fd = memfd_create("iscsifs-probe", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = 0;
	if (ftruncate(fd, (off_t)dev->size) != 0) {
		r = -errno;
		goto out;
	}
	if ((r = copy_range(dev, fd, 0, EDGE)) < 0)
		goto out;
	if (dev->size > EDGE && (r = copy_range(dev, fd, dev->size > 2 * EDGE ? dev->size - EDGE : EDGE, EDGE)) < 0)
		goto out;

	blkid_probe pr = blkid_new_probe();
	if (!pr) {
		r = -ENOMEM;
		goto out;
	}
	if (blkid_probe_set_device(pr, fd, 0, (blkid_loff_t)dev->size) != 0) {
		blkid_free_probe(pr);
		r = -EIO;
		goto out;
	}
	blkid_probe_set_sectorsize(pr, dev->block_size);
	content_of(pr, &out->content);
	if (parts) {
		blkid_probe_reset_superblocks_filter(pr);
		blkid_probe_enable_superblocks(pr, 0);
		blkid_probe_enable_partitions(pr, 1);
		blkid_probe_set_partitions_flags(pr, BLKID_PARTS_ENTRY_DETAILS);
		blkid_partlist pl = NULL;
		if (blkid_do_safeprobe(pr) == 0 && (pl = blkid_probe_get_partitions(pr))) {
			blkid_parttable tab = blkid_partlist_get_table(pl);
			if (tab)
				snprintf(out->pttype, sizeof(out->pttype), "%s",
					 blkid_parttable_get_type(tab));
			int n = blkid_partlist_numof_partitions(pl);
			for (int i = 0; i < n && out->nparts < PROBE_MAX_PARTS; i++) {
				blkid_partition p = blkid_partlist_get_partition(pl, i);
				uint64_t start = (uint64_t)blkid_partition_get_start(p) * 512;
				uint64_t size = (uint64_t)blkid_partition_get_size(p) * 512;
				if (blkid_partition_is_extended(p) || !size || start + size > dev->size)
					continue;
				struct probe_part *pp = &out->parts[out->nparts++];
				pp->number = blkid_partition_get_partno(p);
				pp->start = start;
				pp->size = size;
			}
		}
		/* content of each partition */
		for (int i = 0; i < out->nparts; i++) {
			struct probe_part *pp = &out->parts[i];
			if (copy_range(dev, fd, pp->start, MIN(pp->size, EDGE)) < 0)
				continue;
			blkid_probe pp_pr = blkid_new_probe();
			if (!pp_pr)
				continue;
			if (blkid_probe_set_device(pp_pr, fd, (blkid_loff_t)pp->start,
						   (blkid_loff_t)pp->size) == 0) {
				blkid_probe_set_sectorsize(pp_pr, dev->block_size);
				content_of(pp_pr, &pp->content);
			}
			blkid_free_probe(pp_pr);
		}
	}
	blkid_free_probe(pr);
out:
	close(fd);
	return r;
}
