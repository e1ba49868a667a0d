/*
 * errfs - a one-file FUSE filesystem for fault-injection tests: MOUNTPOINT/disk is
 * BACKING, except that a read overlapping a byte range listed in FAULTS fails with EIO.
 * tgtd's rdwr backing store turns that EIO into a SCSI MEDIUM ERROR (sense key 3,
 * READ ERROR), which is what test_fault_medium.sh needs; device-mapper's `error` target
 * would do the same but is not available in every sandbox.
 *
 *   errfs BACKING FAULTS MOUNTPOINT      (stays in the foreground; fusermount3 -u ends it)
 *
 * FAULTS is read on every read, so a test adds and removes faults by rewriting it
 * (atomically: write a temp file, rename). Each line is "OFFSET LENGTH" in bytes; a
 * missing or empty file means no faults. Every injected error is logged on stderr as
 * "errfs: EIO: read of LEN at OFF", so the test can tell that the fault was hit.
 * Files are opened with direct_io: no page cache, so every read reaches this process
 * and a removed fault takes effect at once.
 */
#define FUSE_USE_VERSION 31

#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int backing_fd = -1;
static const char *faults_path;

static int is_disk(const char *path)
{
	return strcmp(path, "/disk") == 0;
}

static int faulty(off_t off, size_t len)
{
	FILE *f = fopen(faults_path, "r");
	if (!f)
		return 0;
	unsigned long long fo, fl;
	int hit = 0;
	while (!hit && fscanf(f, "%llu %llu", &fo, &fl) == 2)
		hit = (unsigned long long)off < fo + fl && fo < (unsigned long long)off + len;
	fclose(f);
	return hit;
}

static int e_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	(void)fi;
	memset(st, 0, sizeof(*st));
	if (strcmp(path, "/") == 0) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return 0;
	}
	if (!is_disk(path))
		return -ENOENT;
	struct stat b;
	if (fstat(backing_fd, &b) != 0)
		return -errno;
	st->st_mode = S_IFREG | 0600;
	st->st_nlink = 1;
	st->st_size = b.st_size;
	st->st_blocks = b.st_blocks;
	return 0;
}

static int e_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
		     struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	(void)off;
	(void)fi;
	(void)flags;
	if (strcmp(path, "/") != 0)
		return -ENOTDIR;
	fill(buf, ".", NULL, 0, 0);
	fill(buf, "..", NULL, 0, 0);
	fill(buf, "disk", NULL, 0, 0);
	return 0;
}

static int e_open(const char *path, struct fuse_file_info *fi)
{
	if (!is_disk(path))
		return -ENOENT;
	fi->direct_io = 1;
	return 0;
}

static int e_read(const char *path, char *buf, size_t len, off_t off, struct fuse_file_info *fi)
{
	(void)path;
	(void)fi;
	if (faulty(off, len)) {
		fprintf(stderr, "errfs: EIO: read of %zu at %lld\n", len, (long long)off);
		return -EIO;
	}
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(backing_fd, buf + done, len - done, off + (off_t)done);
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (int)done;
}

static int e_write(const char *path, const char *buf, size_t len, off_t off,
		   struct fuse_file_info *fi)
{
	(void)path;
	(void)fi;
	size_t done = 0;
	while (done < len) {
		ssize_t n = pwrite(backing_fd, buf + done, len - done, off + (off_t)done);
		if (n < 0)
			return -errno;
		done += (size_t)n;
	}
	return (int)done;
}

static int e_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path;
	(void)fi;
	return (datasync ? fdatasync(backing_fd) : fsync(backing_fd)) ? -errno : 0;
}

static int e_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	(void)path;
	(void)size;
	(void)fi;
	return -EPERM;
}

static const struct fuse_operations ops = {
	.getattr = e_getattr,
	.readdir = e_readdir,
	.open = e_open,
	.read = e_read,
	.write = e_write,
	.fsync = e_fsync,
	.truncate = e_truncate,
};

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: errfs BACKING FAULTS MOUNTPOINT\n");
		return 2;
	}
	backing_fd = open(argv[1], O_RDWR | O_CLOEXEC);
	if (backing_fd < 0) {
		fprintf(stderr, "errfs: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	faults_path = argv[2];
	/* foreground, single-threaded: simple and enough for a test */
	char *fargv[] = { argv[0], "-f", "-s", "-o", "fsname=errfs", argv[3], NULL };
	return fuse_main(6, fargv, &ops, NULL);
}
