/*
 * fuseext.c - ask the kernel for FUSE INIT flags libfuse 3.14 does not know.
 *
 * libfuse builds its INIT reply from the capabilities it knows; FUSE_DIRECT_IO_ALLOW_MMAP
 * (kernel 6.6, protocol 7.39) came after 3.14. Without it the kernel refuses
 * mmap(MAP_SHARED) of a file opened with direct_io (every LUN file under -o cache=none)
 * with ENODEV, and tells the daemon nothing. With it, such a mapping goes through the
 * page cache of that file while read() and write() stay direct.
 *
 * FUSE_HANDLE_KILLPRIV_V2 (kernel 5.11, libfuse 3.15): without it the kernel asks the
 * daemon for security.capability before every write(2), to drop it as it drops setuid
 * bits - a second round trip per buffered write. With it the kernel marks the
 * superblock SB_NOSEC and asks once per inode. The promise it makes (the daemon clears
 * setuid/setgid and capabilities on write) holds trivially: LUN files have modes
 * 0600/0400 and refuse setxattr. Measured against the alternatives (random 4 KiB
 * buffered writes, QD1, side by side on a loaded 2-CPU VM): getxattr per write
 * 12.4k/14.3k IOPS; KILLPRIV_V2 17.1k/19.4k; answering getxattr ENOSYS 17.3k/18.8k
 * (but every extended attribute, user.iscsi.* included, is then gone); FUSE's kernel
 * write-back cache 14.2k/16.5k (still a getxattr per write, and a write past the end
 * of the LUN succeeds into the page cache and fails only at write-back).
 *
 * libfuse 3.14 lets a program supply the read and writev that move its /dev/fuse
 * traffic (fuse_session_custom_io). Ours pass everything through unchanged, except:
 * read() notes the INIT request (its unique id, and whether the kernel offers
 * FUSE_DIRECT_IO_ALLOW_MMAP in flags2, FUSE_HANDLE_KILLPRIV_V2 in flags), and writev()
 * adds the flags to the matching INIT reply when the kernel offered them (the first
 * only when libfuse set FUSE_INIT_EXT, which libfuse 3.14 does whenever the kernel
 * does). After INIT, each call costs one atomic load.
 * The wire layout used is the kernel's stable ABI (struct fuse_in_header,
 * fuse_init_in, fuse_out_header, fuse_init_out); nothing of libfuse's internals.
 *
 * Threads: the loop's worker threads call both hooks concurrently; INIT is the first
 * request and the kernel sends no other before its reply, so `init_unique` is written
 * once before any reply can match it, and read after (atomics).
 */
#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fuse_lowlevel.h>
#include <linux/fuse.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "iscsifs/fuseext.h"
#include "iscsifs/log.h"

#ifndef FUSE_DIRECT_IO_ALLOW_MMAP
#define FUSE_DIRECT_IO_ALLOW_MMAP (1ULL << 36)
#endif

enum { INIT_WAITING, INIT_SEEN, INIT_DONE };

static int init_state;       /* atomic: INIT_* */
static uint64_t init_unique; /* atomic: the INIT request's id, once INIT_SEEN */
static bool offered;         /* atomic: the kernel offered the flag */
static bool offered_killpriv; /* atomic: the kernel offered FUSE_HANDLE_KILLPRIV_V2 */
static bool accepted;        /* atomic: we asked for it */

static ssize_t ext_read(int fd, void *buf, size_t len, void *userdata)
{
	(void)userdata;
	ssize_t n = read(fd, buf, len);
	const size_t hdr = sizeof(struct fuse_in_header);
	if (n >= (ssize_t)(hdr + offsetof(struct fuse_init_in, flags2)) &&
	    __atomic_load_n(&init_state, __ATOMIC_ACQUIRE) == INIT_WAITING) {
		const struct fuse_in_header *in = buf;
		if (in->opcode == FUSE_INIT) {
			const struct fuse_init_in *arg = (const void *)(in + 1);
			uint64_t flags = arg->flags;
			if ((flags & FUSE_INIT_EXT) &&
			    n >= (ssize_t)(hdr + offsetof(struct fuse_init_in, unused)))
				flags |= (uint64_t)arg->flags2 << 32;
			__atomic_store_n(&offered, (flags & FUSE_DIRECT_IO_ALLOW_MMAP) != 0,
					 __ATOMIC_RELAXED);
			__atomic_store_n(&offered_killpriv, (flags & FUSE_HANDLE_KILLPRIV_V2) != 0,
					 __ATOMIC_RELAXED);
			__atomic_store_n(&init_unique, in->unique, __ATOMIC_RELAXED);
			__atomic_store_n(&init_state, INIT_SEEN, __ATOMIC_RELEASE);
		}
	}
	return n;
}

static ssize_t ext_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	(void)userdata;
	if (__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) == INIT_SEEN && count >= 2 &&
	    iov[0].iov_len >= sizeof(struct fuse_out_header)) {
		const struct fuse_out_header *out = iov[0].iov_base;
		if (out->unique == __atomic_load_n(&init_unique, __ATOMIC_RELAXED)) {
			__atomic_store_n(&init_state, INIT_DONE, __ATOMIC_RELEASE);
			struct fuse_init_out *arg = iov[1].iov_base;
#ifndef FUSE_CAP_HANDLE_KILLPRIV_V2 /* libfuse >= 3.15 asks for it itself (op_init) */
			if (out->error == 0 &&
			    iov[1].iov_len >= offsetof(struct fuse_init_out, flags) + sizeof(arg->flags) &&
			    __atomic_load_n(&offered_killpriv, __ATOMIC_RELAXED))
				arg->flags |= FUSE_HANDLE_KILLPRIV_V2;
#endif
			if (out->error == 0 &&
			    iov[1].iov_len >= offsetof(struct fuse_init_out, unused) &&
			    (arg->flags & FUSE_INIT_EXT) &&
			    __atomic_load_n(&offered, __ATOMIC_RELAXED)) {
				arg->flags2 |= (uint32_t)(FUSE_DIRECT_IO_ALLOW_MMAP >> 32);
				__atomic_store_n(&accepted, true, __ATOMIC_RELEASE);
			}
		}
	}
	return writev(fd, iov, count);
}

int fuseext_install(struct fuse_session *se)
{
	static const struct fuse_custom_io io = { .read = ext_read, .writev = ext_writev };
	int r = fuse_session_custom_io(se, &io, fuse_session_fd(se));
	if (r < 0)
		log_debug("fuse_session_custom_io: %s; no FUSE_DIRECT_IO_ALLOW_MMAP", strerror(-r));
	return r;
}

bool fuseext_dio_mmap(void)
{
	return __atomic_load_n(&accepted, __ATOMIC_ACQUIRE);
}
