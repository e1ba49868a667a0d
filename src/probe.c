/*
 * probe.c - what is on a LUN, by libblkid, reading the whole LUN lazily through the
 * blkdev (the cache when mounted, the bare LUN for `iscsifs ls`).
 *
 * libblkid wants a file descriptor. It gets a sparse memfd as large as the LUN, and
 * every region of it is filled from the blkdev the first time libblkid reads there:
 * libblkid finds partitions anywhere (an EBR chain through the whole disk, the GPT
 * backup header at the last LBA, a BSD label inside a DOS partition, a Solaris VTOC)
 * and the probe reads only what libblkid looks at, each byte at most once (a few
 * hundred KiB per LUN, counted in probe_result.bytes_read).
 *
 * HOW THE MEMFD IS FILLED ON DEMAND
 *   This file defines read(2). libblkid reads a device only with lseek() + read() (its
 *   dynamic imports: read, lseek; no pread, readv or mmap of the device; checked on
 *   libblkid 2.38.1 with nm -D and LIBBLKID_DEBUG=lowprobe), and calls read through its
 *   PLT, which the dynamic linker binds to the first definition in the global scope:
 *   the executable's (ELF symbol interposition, as a malloc replacement works; ld
 *   exports `read` from the executable because libblkid, a shared library of the link,
 *   references it). Our read() fills the part of a registered memfd that the call is
 *   about to read, then calls the real read (dlsym(RTLD_NEXT)). Every other descriptor
 *   -- libfuse reads /dev/fuse with read() -- costs one atomic load and a branch.
 *   The first probe checks that the interposition works (libblkid must be seen reading
 *   a test memfd); if it does not (a libblkid that reads some other way), the probe
 *   falls back to copying the first and last 2 MiB of the LUN and 1 MiB of each
 *   partition, as before, and says so once.
 *
 * WHY NOT ANOTHER WAY
 *   - Copying fixed regions (the first and last 2 MiB) misses every structure outside
 *     them: logical partitions past 2 MiB, nested labels; and reads 4 MiB per LUN plus
 *     1 MiB per partition whether or not libblkid needs them.
 *   - Parsing partition tables ourselves to know what to copy duplicates libblkid for
 *     every format, and would never number partitions exactly as partx does.
 *   - Probing through our own FUSE mount after mounting: the namespace must hold the
 *     partition files before it is served (a file appearing later races the user's
 *     first `ls`), the daemon would wait on its own worker threads, and `iscsifs ls`
 *     has no mount.
 *   - A loop, NBD or ublk device over the LUN: needs root and kernel modules, which
 *     iscsifs exists to avoid.
 *   - userfaultfd on the memfd: it reports faults in our own mappings, but read(2) of a
 *     memfd hole copies zeroes in the kernel without a fault.
 *   - Linking libblkid statically with -Wl,--wrap=read would scope the hook to libblkid
 *     alone, but a static copy misses Debian's security updates of libblkid1.
 *
 * NOTES ON THE THREAD MODEL
 *   probe_blkdev() may run in several threads at once (mount, the xattr re-probe in
 *   FUSE worker threads, `ls`). Each call has its own memfd and fill state, used only by
 *   the calling thread (libblkid reads in the caller's thread). The registration table
 *   `slots` is written under `slots_lock` and read without it by read(): a slot's fd is
 *   set (release) only after its state is complete, and cleared before the state goes
 *   away and before the memfd is closed, so no other open file can have that number
 *   while it is registered.
 */
#undef _FORTIFY_SOURCE /* its inline read() wrapper would clash with ours */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <blkid/blkid.h>

#include "iscsifs/log.h"
#include "iscsifs/probe.h"
#include "iscsifs/util.h"

#define PROBE_SLOTS 16        /* probes running at once, at most */
#define FILL_CHUNK (1u << 20) /* largest single read from the blkdev */
#define EDGE (2u << 20)       /* fallback: bytes copied at each end of the LUN */

struct extent {
	uint64_t start, end;
};

/* One probe's memfd: what is filled, what it cost. Used by one thread only. */
struct lazy_src {
	struct blkdev *dev;  /* NULL: the self-test (count reads, fill nothing) */
	int fd;              /* the memfd, dev->size bytes */
	struct extent *have; /* filled byte ranges: sorted, disjoint, not adjacent */
	size_t nhave, cap;
	uint64_t reads;      /* read() calls seen on fd */
	uint64_t bytes_read; /* from dev */
	int error;           /* first failed fill: -errno */
	bool data;           /* a non-zero byte was read */
	uint64_t first_data; /* the lowest offset of one */
};

static struct {
	int fd;               /* -1: free; atomic */
	struct lazy_src *src; /* valid while fd >= 0 */
} slots[PROBE_SLOTS] = { [0 ... PROBE_SLOTS - 1] = { .fd = -1 } };
static int nslots_used; /* atomic; read() checks it first */
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;

static ssize_t (*real_read)(int, void *, size_t); /* atomic */

__attribute__((constructor)) static void probe_resolve_read(void)
{
	__atomic_store_n(&real_read, (ssize_t(*)(int, void *, size_t))dlsym(RTLD_NEXT, "read"),
			 __ATOMIC_RELEASE);
}

static int slot_add(int fd, struct lazy_src *src)
{
	int r = -EAGAIN;
	pthread_mutex_lock(&slots_lock);
	for (int i = 0; i < PROBE_SLOTS; i++) {
		if (__atomic_load_n(&slots[i].fd, __ATOMIC_RELAXED) < 0) {
			slots[i].src = src;
			__atomic_store_n(&slots[i].fd, fd, __ATOMIC_RELEASE);
			__atomic_add_fetch(&nslots_used, 1, __ATOMIC_RELEASE);
			r = 0;
			break;
		}
	}
	pthread_mutex_unlock(&slots_lock);
	return r;
}

static void slot_remove(int fd)
{
	pthread_mutex_lock(&slots_lock);
	for (int i = 0; i < PROBE_SLOTS; i++) {
		if (__atomic_load_n(&slots[i].fd, __ATOMIC_RELAXED) == fd) {
			__atomic_store_n(&slots[i].fd, -1, __ATOMIC_RELEASE);
			__atomic_sub_fetch(&nslots_used, 1, __ATOMIC_RELEASE);
			break;
		}
	}
	pthread_mutex_unlock(&slots_lock);
}

static struct lazy_src *slot_find(int fd)
{
	for (int i = 0; i < PROBE_SLOTS; i++)
		if (__atomic_load_n(&slots[i].fd, __ATOMIC_ACQUIRE) == fd)
			return slots[i].src;
	return NULL;
}

/* Mark [start, end) filled. 0 or -ENOMEM. */
static int have_add(struct lazy_src *s, uint64_t start, uint64_t end)
{
	size_t i = 0;
	while (i < s->nhave && s->have[i].end < start)
		i++;
	/* merge every extent touching [start, end) into one at i */
	size_t j = i;
	while (j < s->nhave && s->have[j].start <= end) {
		start = MIN(start, s->have[j].start);
		end = MAX(end, s->have[j].end);
		j++;
	}
	if (j == i) { /* nothing to merge: insert */
		if (s->nhave == s->cap) {
			size_t cap = s->cap ? 2 * s->cap : 32;
			struct extent *nv = realloc(s->have, cap * sizeof(*nv));
			if (!nv)
				return -ENOMEM;
			s->have = nv;
			s->cap = cap;
		}
		memmove(&s->have[i + 1], &s->have[i], (s->nhave - i) * sizeof(*s->have));
		s->nhave++;
	} else if (j > i + 1) {
		memmove(&s->have[i + 1], &s->have[j], (s->nhave - j) * sizeof(*s->have));
		s->nhave -= j - i - 1;
	}
	s->have[i] = (struct extent){ start, end };
	return 0;
}

/* Copy [off, off+len) of the device into the memfd (block aligned, inside the device). */
static int fill_range(struct lazy_src *s, uint64_t off, uint64_t len)
{
	uint8_t *buf = malloc(MIN(len, (uint64_t)FILL_CHUNK));
	int r = 0;
	if (!buf)
		return -ENOMEM;
	while (len && r == 0) {
		size_t n = (size_t)MIN(len, (uint64_t)FILL_CHUNK);
		r = blkdev_read_sync(s->dev, off, n, buf);
		if (r < 0)
			break;
		s->bytes_read += n;
		if (!s->data || off < s->first_data) {
			for (size_t i = 0; i < n; i++) {
				if (buf[i]) {
					if (!s->data || off + i < s->first_data)
						s->first_data = off + i;
					s->data = true;
					break;
				}
			}
		}
		if (pwrite(s->fd, buf, n, (off_t)off) != (ssize_t)n)
			r = -errno;
		else
			r = have_add(s, off, off + n);
		off += n;
		len -= n;
	}
	free(buf);
	return r;
}

/* Make [off, off+len) of the memfd hold the device's bytes. 0 or -errno. */
static int fill(struct lazy_src *s, uint64_t off, uint64_t len)
{
	const uint64_t bs = s->dev->block_size, size = s->dev->size;
	if (off >= size || len == 0)
		return 0;
	uint64_t end = MIN(DIV_ROUND_UP(off + MIN(len, size - off), bs) * bs, size);
	off -= off % bs;
	for (size_t i = 0; i <= s->nhave && off < end; i++) {
		/* the gap before extent i (or after the last one) */
		uint64_t gap_end = i < s->nhave ? MIN(s->have[i].start, end) : end;
		if (off < gap_end) {
			int r = fill_range(s, off, gap_end - off);
			if (r < 0)
				return r;
			/* have[] changed: start over from the new state */
			return fill(s, gap_end, end - gap_end);
		}
		if (i < s->nhave)
			off = MAX(off, s->have[i].end);
	}
	return 0;
}

/* The read(2) every caller in this process gets; see the top of the file. */
ssize_t read(int fd, void *buf, size_t len)
{
	ssize_t (*next)(int, void *, size_t) = __atomic_load_n(&real_read, __ATOMIC_ACQUIRE);
	if (__atomic_load_n(&nslots_used, __ATOMIC_ACQUIRE) != 0) {
		struct lazy_src *s = slot_find(fd);
		if (s) {
			s->reads++;
			off_t pos = lseek(fd, 0, SEEK_CUR);
			int r = pos < 0 ? -errno : s->dev ? fill(s, (uint64_t)pos, len) : 0;
			if (r < 0) {
				if (!s->error)
					s->error = r;
				errno = -r;
				return -1;
			}
		}
	}
	if (!next) /* called before our constructor ran */
		return syscall(SYS_read, fd, buf, len);
	return next(fd, buf, len);
}

/* ---------- the self-test ---------- */

static bool lazy_works;
static pthread_once_t lazy_once = PTHREAD_ONCE_INIT;

/* Does libblkid read through our read()? Probe a small blank memfd and count. */
static void lazy_selftest(void)
{
	struct lazy_src s = { .fd = memfd_create("iscsifs-probe-test", MFD_CLOEXEC) };
	if (s.fd < 0 || ftruncate(s.fd, 1 << 20) != 0 || slot_add(s.fd, &s) < 0) {
		if (s.fd >= 0)
			close(s.fd);
		log_warn("cannot test how libblkid reads (%m); probing only the first and last "
			 "2 MiB of each LUN");
		return;
	}
	blkid_probe pr = blkid_new_probe();
	if (pr && blkid_probe_set_device(pr, s.fd, 0, 1 << 20) == 0) {
		blkid_probe_enable_superblocks(pr, 1);
		blkid_do_safeprobe(pr);
	}
	if (pr)
		blkid_free_probe(pr);
	slot_remove(s.fd);
	close(s.fd);
	lazy_works = s.reads > 0;
	if (!lazy_works)
		log_warn("libblkid does not read through read(2) here: probing only the first "
			 "and last 2 MiB of each LUN and 1 MiB of each partition (partitions "
			 "outside them are not found)");
}

/* ---------- probing ---------- */

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

static void partitions_of(blkid_probe pr, struct blkdev *dev, struct probe_result *out)
{
	blkid_probe_reset_superblocks_filter(pr);
	blkid_probe_enable_superblocks(pr, 0);
	blkid_probe_enable_partitions(pr, 1);
	blkid_probe_set_partitions_flags(pr, BLKID_PARTS_ENTRY_DETAILS);
	blkid_partlist pl = NULL;
	if (blkid_do_safeprobe(pr) != 0 || !(pl = blkid_probe_get_partitions(pr)))
		return;
	blkid_parttable tab = blkid_partlist_get_table(pl);
	if (tab)
		snprintf(out->pttype, sizeof(out->pttype), "%s", blkid_parttable_get_type(tab));
	int n = blkid_partlist_numof_partitions(pl);
	for (int i = 0; i < n && out->nparts < PROBE_MAX_PARTS; i++) {
		blkid_partition p = blkid_partlist_get_partition(pl, i);
		/* libblkid counts in 512-byte sectors whatever the logical block size */
		uint64_t start = (uint64_t)blkid_partition_get_start(p) * 512;
		uint64_t size = (uint64_t)blkid_partition_get_size(p) * 512;
		if (!size || start >= dev->size || start + size > dev->size)
			continue;
		struct probe_part *pp = &out->parts[out->nparts++];
		pp->number = blkid_partition_get_partno(p);
		pp->start = start;
		pp->extended = blkid_partition_is_extended(p);
		pp->size = pp->extended ? MIN(size, MAX(1024u, (uint64_t)dev->block_size)) : size;
	}
}

/* What was read, into out->read: merge the two ranges with the smallest gap between
 * them until the list fits (covering more than was read, never less). */
static void record_read(const struct lazy_src *s, struct probe_result *out)
{
	size_t n = s->nhave;
	struct extent *e = n ? malloc(n * sizeof(*e)) : NULL;
	if (n && !e)
		return; /* nread 0: unknown */
	if (n)
		memcpy(e, s->have, n * sizeof(*e));
	while (n > PROBE_MAX_READ) {
		size_t best = 0;
		for (size_t i = 1; i + 1 < n; i++)
			if (e[i + 1].start - e[i].end < e[best + 1].start - e[best].end)
				best = i;
		e[best].end = e[best + 1].end;
		memmove(&e[best + 1], &e[best + 2], (n - best - 2) * sizeof(*e));
		n--;
	}
	for (size_t i = 0; i < n; i++)
		out->read[i] = (struct probe_extent){ e[i].start, e[i].end };
	out->nread = (int)n;
	free(e);
}

int probe_blkdev(struct blkdev *dev, bool parts, struct probe_result *out)
{
	memset(out, 0, sizeof(*out));
	out->blank = true;
	pthread_once(&lazy_once, lazy_selftest);
	struct lazy_src src = { .dev = dev, .fd = memfd_create("iscsifs-probe", MFD_CLOEXEC) };
	if (src.fd < 0)
		return -errno;
	int r = 0;
	bool registered = false;
	blkid_probe pr = NULL;
	if (ftruncate(src.fd, (off_t)dev->size) != 0) {
		r = -errno;
		goto out;
	}
	if (lazy_works) {
		if ((r = slot_add(src.fd, &src)) < 0)
			goto out;
		registered = true;
	} else if ((r = fill(&src, 0, EDGE)) < 0 ||
		   (r = fill(&src, dev->size - MIN((uint64_t)EDGE, dev->size), EDGE)) < 0) {
		goto out;
	}

	pr = blkid_new_probe();
	if (!pr) {
		r = -ENOMEM;
		goto out;
	}
	if (blkid_probe_set_device(pr, src.fd, 0, (blkid_loff_t)dev->size) != 0) {
		r = -EIO;
		goto out;
	}
	blkid_probe_set_sectorsize(pr, dev->block_size);
	content_of(pr, &out->content);
	if (parts)
		partitions_of(pr, dev, out);
	for (int i = 0; i < out->nparts && !src.error; i++) {
		struct probe_part *pp = &out->parts[i];
		if (pp->extended)
			continue;
		if (!lazy_works && fill(&src, pp->start, MIN(pp->size, (uint64_t)EDGE / 2)) < 0)
			continue;
		blkid_probe ppr = blkid_new_probe();
		if (!ppr)
			continue;
		if (blkid_probe_set_device(ppr, src.fd, (blkid_loff_t)pp->start,
					   (blkid_loff_t)pp->size) == 0) {
			blkid_probe_set_sectorsize(ppr, dev->block_size);
			content_of(ppr, &pp->content);
		}
		blkid_free_probe(ppr);
	}
	if (src.error)
		r = src.error; /* libblkid saw a failed read as "nothing there": not to trust */
out:
	if (pr)
		blkid_free_probe(pr);
	if (registered)
		slot_remove(src.fd);
	close(src.fd);
	if (r < 0)
		memset(out, 0, sizeof(*out));
	else
		record_read(&src, out);
	free(src.have);
	out->bytes_read = src.bytes_read;
	out->blank = !src.data;
	out->first_data = src.first_data;
	return r;
}
