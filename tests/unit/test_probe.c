/*
 * test_probe.c - proves that probe_blkdev says which bytes its result depends on
 * (probe_result.read, issue 11): the MBR it read is listed, the bytes of a
 * partition's body it never looked at are not, the list is sorted, disjoint and
 * bounded, and a failed probe reports "unknown" (nread 0). The live namespace
 * re-probes a LUN only after a write that touches these ranges.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "iscsifs/log.h"
#include "iscsifs/memdev.h"
#include "iscsifs/probe.h"

#include "check.h"

#define SIZE (64u << 20)

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* A DOS label with one partition: sectors 2048 .. 2048+count-1, type 0x83. */
static void write_mbr(uint8_t *d, uint32_t count)
{
	uint8_t *e = d + 446;
	e[4] = 0x83;
	put_le32(e + 8, 2048);
	put_le32(e + 12, count);
	d[510] = 0x55;
	d[511] = 0xaa;
	put_le32(d + 440, 0x12345678); /* disk signature */
}

static bool covered(const struct probe_result *pr, uint64_t start, uint64_t end)
{
	for (int i = 0; i < pr->nread; i++)
		if (pr->read[i].start <= start && end <= pr->read[i].end)
			return true;
	return false;
}

static bool touched(const struct probe_result *pr, uint64_t start, uint64_t end)
{
	for (int i = 0; i < pr->nread; i++)
		if (pr->read[i].start < end && start < pr->read[i].end)
			return true;
	return false;
}

int main(void)
{
	static struct probe_result pr;
	log_init(false);
	struct blkdev *d = memdev_create(SIZE, 512);
	write_mbr(memdev_data(d), (SIZE / 512) - 4096);
	CHECK_EQ("probe", 0, probe_blkdev(d, true, &pr));
	CHECK_EQ("one partition", 1, pr.nparts);
	CHECK("a read map", pr.nread > 0 && pr.nread <= PROBE_MAX_READ);
	CHECK("the MBR is in it", covered(&pr, 0, 512));
	CHECK("the middle of the partition is not",
	      !touched(&pr, 32u << 20, (32u << 20) + 4096));
	bool sorted = true;
	for (int i = 1; i < pr.nread; i++)
		sorted &= pr.read[i - 1].end < pr.read[i].start;
	CHECK("sorted and disjoint", sorted);
	uint64_t total = 0;
	for (int i = 0; i < pr.nread; i++)
		total += pr.read[i].end - pr.read[i].start;
	CHECK("it covers at least what was read", total >= pr.bytes_read);

	/* a failed probe: nothing is known */
	memdev_fail_reads(d, 0, SIZE, -EIO, 0);
	CHECK_EQ("a failed probe", -EIO, probe_blkdev(d, true, &pr));
	CHECK_EQ("reports no read map (unknown)", 0, pr.nread);
	d->ops->destroy(d);
	printf(failures ? "test_probe: %d failed\n" : "test_probe: all passed\n", failures);
	return failures != 0;
}
