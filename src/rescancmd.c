/*
 * rescancmd.c - `iscsifs rescan MOUNTPOINT`: ask a mounted iscsifs to compare its
 * namespace with its targets now (REPORT LUNS, READ CAPACITY, SendTargets on a portal
 * mount), wait until it has, and print what changed.
 *
 * The channel is the mount's own control file MOUNTPOINT/.iscsifs/rescan (mode 0600,
 * owned by the mounting user): a write to it starts a rescan and returns when the
 * rescan is done (with the rescan's error, if it failed); a read of the same open file
 * then gives the report of that rescan, one line per change. So the command needs no
 * socket or daemon pid, and only whoever may write that file - the mounting user, or
 * root - can ask (default_permissions is always on). SIGHUP to the daemon does the
 * same without the report.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "iscsifs/commands.h"
#include "iscsifs/exitcode.h"

#define FUSE_SUPER_MAGIC 0x65735546

int rescan_main(const struct config *cfg)
{
	char path[sizeof(cfg->mountpoint) + 32];
	struct statfs sf;
	snprintf(path, sizeof(path), "%s/.iscsifs/rescan", cfg->mountpoint);
	if (statfs(cfg->mountpoint, &sf) != 0) {
		fprintf(stderr, "iscsifs: rescan: cannot reach %s: %s\n", cfg->mountpoint,
			strerror(errno));
		return EXITCODE_RUNTIME;
	}
	int fd = -1;
	if (sf.f_type == FUSE_SUPER_MAGIC)
		fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		int e = sf.f_type == FUSE_SUPER_MAGIC ? errno : ENOENT;
		if (e == ENOENT)
			fprintf(stderr,
				"iscsifs: rescan: %s is not an iscsifs mount (no "
				".iscsifs/rescan there; a mount of an older iscsifs has none)\n",
				cfg->mountpoint);
		else if (e == EACCES || e == EPERM)
			fprintf(stderr,
				"iscsifs: rescan: %s: %s (only the user who mounted it, "
				"or root, may rescan)\n",
				path, strerror(e));
		else
			fprintf(stderr, "iscsifs: rescan: %s: %s\n", path, strerror(e));
		return e == ENOENT ? EXITCODE_USAGE : EXITCODE_RUNTIME;
	}
	static const char req[] = "rescan\n";
	if (write(fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1)) {
		int e = errno;
		if (e == ENOTCONN)
			fprintf(stderr, "iscsifs: rescan of %s failed: a target's session is down "
				"(see iscsifs stat %s and the daemon's log); it is rescanned when "
				"it is back\n", cfg->mountpoint, cfg->mountpoint);
		else
			fprintf(stderr, "iscsifs: rescan of %s failed: %s%s\n", cfg->mountpoint,
				strerror(e),
				e == ETIMEDOUT || e == EIO ? " (a target did not answer; see "
							     "the daemon's log)" :
							     "");
		close(fd);
		return EXITCODE_RUNTIME;
	}
	char buf[4096];
	ssize_t n;
	off_t off = 0; /* the report of this handle's rescan, from its start */
	while ((n = pread(fd, buf, sizeof(buf), off)) > 0) {
		fwrite(buf, 1, (size_t)n, stdout);
		off += n;
	}
	if (n < 0) {
		fprintf(stderr, "iscsifs: rescan: reading the report of %s: %s\n", path,
			strerror(errno));
		close(fd);
		return EXITCODE_RUNTIME;
	}
	close(fd);
	return fflush(stdout) == 0 ? EXITCODE_OK : EXITCODE_RUNTIME;
}
