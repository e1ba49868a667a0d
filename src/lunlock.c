/*
 * lunlock.c - one writer per LUN per host (see lunlock.h for the rules).
 *
 * Each LUN identity has a lock file KEY.lock in the lock directory, locked with a POSIX
 * record lock over the whole file: F_WRLCK for a writable mount, F_RDLCK for a
 * read-only one. POSIX locks rather than flock(2) because F_GETLK names the process
 * holding a conflicting lock, so the message cannot point at a stale holder; the
 * kernel drops the lock when the process exits or dies. (POSIX locks belong to the
 * process and are not inherited by fork; they are taken in the daemon itself, after
 * daemon_fork, and the lock file is never opened twice, since closing any descriptor
 * of it would drop the lock.) Beside it, KEY.PID holds that holder's mode, mountpoint
 * and URL for the message a conflicting mount prints; it is removed at release, and
 * leftovers of dead processes are removed by the next exclusive holder. Lock files
 * stay (unlinking one would race with a process that has just opened it).
 *
 * Called from one thread (mount set-up and exit): the module state is not locked.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "iscsifs/log.h"
#include "iscsifs/lunaddr.h"
#include "iscsifs/lunlock.h"
#include "iscsifs/util.h"

#define KEY_MAX 600
#define STEM_MAX 200 /* file name stem; longer keys keep a prefix and a hash */

struct held {
	char stem[STEM_MAX + 24];
	int fd; /* the lock file, locked */
};

static struct held *held; /* the locks this process holds */
static int nheld;
static int lockdir = -1; /* the lock directory, once found */
static bool lockdir_tried;

/* ---------- where ---------- */

/* BASE/SUB as the lock directory: created 0700, must be ours and not open to others
 * (and BASE ours too when `base_ours`). An open descriptor, or -1. */
static int dir_in(const char *base, const char *sub, bool base_ours)
{
	char path[PATH_MAX];
	struct stat st;
	if (!base || base[0] != '/' || stat(base, &st) != 0 || !S_ISDIR(st.st_mode) ||
	    (base_ours && st.st_uid != geteuid()))
		return -1;
	if (snprintf(path, sizeof(path), "%s/%s", base, sub) >= (int)sizeof(path))
		return -1;
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		return -1;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) != 0 || st.st_uid != geteuid() || (st.st_mode & 077)) {
		log_debug("lock directory %s: not ours or open to others; not used", path);
		close(fd);
		return -1;
	}
	log_debug("per-LUN locks in %s", path);
	return fd;
}

static int lock_dir(void)
{
	char run_user[64], tmp_sub[64];
	if (lockdir_tried)
		return lockdir;
	lockdir_tried = true;
	snprintf(run_user, sizeof(run_user), "/run/user/%u", (unsigned)geteuid());
	snprintf(tmp_sub, sizeof(tmp_sub), "iscsifs-%u", (unsigned)geteuid());
	lockdir = dir_in(getenv("XDG_RUNTIME_DIR"), "iscsifs", true);
	if (lockdir < 0)
		lockdir = dir_in(run_user, "iscsifs", true);
	if (lockdir < 0 && geteuid() == 0)
		lockdir = dir_in("/run", "iscsifs", false);
	if (lockdir < 0)
		lockdir = dir_in("/tmp", tmp_sub, false);
	if (lockdir < 0)
		log_warn("no directory for the per-LUN locks ($XDG_RUNTIME_DIR/iscsifs, "
			 "%s/iscsifs, /tmp/%s: missing, or not a 0700 directory of yours): a "
			 "second mount of the same LUN on this host will not be refused",
			 run_user, tmp_sub);
	return lockdir;
}

/* ---------- which ---------- */

/* A designator text from discovery (lun_info.wwn) that no other LUN anywhere has:
 * NAA 2/5/6 (IEEE-based), EUI-64, a SCSI name string. Not NAA 3 (locally assigned,
 * e.g. tgtd's naa.3000000100000001 for target 1 LUN 1 of every tgtd) nor a T10
 * vendor ID (unique only as the vendor makes it). */
static bool globally_unique(const char *wwn)
{
	if (strncmp(wwn, "naa.", 4) == 0)
		return wwn[4] == '2' || wwn[4] == '5' || wwn[4] == '6';
	return strncmp(wwn, "t10.", 4) != 0;
}

static void key_of(const char *target, const struct lun_info *info, char *key, size_t len)
{
	if (info->wwn[0] && globally_unique(info->wwn))
		snprintf(key, len, "%s", info->wwn);
	else if (info->wwn[0])
		snprintf(key, len, "%s,%s", target, info->wwn);
	else
		snprintf(key, len, "%s,lun-%016" PRIx64, target, info->lun);
}

/* The key as a file name stem: [A-Za-z0-9.-] kept, other bytes as _XX (so distinct
 * keys give distinct stems); a long key keeps its start and a 64-bit FNV-1a hash. */
static void stem_of(const char *key, char *stem, size_t len)
{
	size_t k = 0;
	uint64_t h = 14695981039346656037ull;
	const unsigned char *p;
	for (p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	for (p = (const unsigned char *)key; *p && k + 4 < STEM_MAX; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '.' || *p == '-')
			stem[k++] = (char)*p;
		else
			k += (size_t)snprintf(stem + k, len - k, "_%02x", *p);
	}
	stem[k] = 0;
	if (*p) /* cut: the hash keeps it unique */
		snprintf(stem + k, len - k, "-%016" PRIx64, h);
}

/* ---------- the holder's note ---------- */

static void note_write(const char *stem, bool writable, const char *url, const char *mountpoint,
		       const char *key)
{
	char name[STEM_MAX + 40];
	snprintf(name, sizeof(name), "%s.%d", stem, (int)getpid());
	int fd = openat(lockdir, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	dprintf(fd, "pid=%d\nmode=%s\nmountpoint=%s\nurl=%s\nkey=%s\n", (int)getpid(),
		writable ? "rw" : "ro", mountpoint, url, key);
	close(fd);
}

/* Read field `what` ("mountpoint", "mode") of holder `pid`'s note into out. */
static bool note_read(const char *stem, pid_t pid, const char *what, char *out, size_t len)
{
	char name[STEM_MAX + 40], buf[8192], *p;
	snprintf(name, sizeof(name), "%s.%d", stem, (int)pid);
	int fd = openat(lockdir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	size_t wl = strlen(what);
	for (p = buf; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (strncmp(p, what, wl) == 0 && p[wl] == '=') {
			p += wl + 1;
			snprintf(out, len, "%.*s", (int)strcspn(p, "\n"), p);
			return true;
		}
	}
	return false;
}

/* Remove the notes of `stem` other than ours: we hold the lock exclusively, so every
 * other holder is gone. */
static void notes_clean(const char *stem)
{
	int dfd = dup(lockdir);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	struct dirent *e;
	size_t sl = strlen(stem);
	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return;
	}
	while ((e = readdir(d))) {
		char *end;
		if (strncmp(e->d_name, stem, sl) || e->d_name[sl] != '.')
			continue;
		long pid = strtol(e->d_name + sl + 1, &end, 10);
		if (*end || end == e->d_name + sl + 1 || pid == (long)getpid())
			continue;
		unlinkat(lockdir, e->d_name, 0);
	}
	closedir(d);
}

/* ---------- taking and releasing ---------- */

static int refuse(const char *target, const struct lun_info *info, const char *stem, pid_t pid,
		  bool writable, char *err, size_t errlen)
{
	char where[4096] = "", mode[8] = "";
	char lunname[128];
	snprintf(lunname, sizeof(lunname), "LUN %s of %s%s%s%s", LUNSTR(info->lun), target,
		 info->wwn[0] ? " (" : "", info->wwn, info->wwn[0] ? ")" : "");
	bool known = note_read(stem, pid, "mountpoint", where, sizeof(where));
	note_read(stem, pid, "mode", mode, sizeof(mode));
	bool other_rw = strcmp(mode, "ro") != 0; /* unknown: assume the worse */
	char other[4200];
	if (known)
		snprintf(other, sizeof(other), "iscsifs pid %d on %s", (int)pid, where);
	else
		snprintf(other, sizeof(other), "process %d", (int)pid);
	if (writable && other_rw)
		snprintf(err, errlen,
			 "%s is already mounted writable by %s: two writable mounts of one LUN "
			 "would corrupt it; unmount it first (fusermount3 -u %s), or add -o ro",
			 lunname, other, known ? where : "MOUNTPOINT");
	else if (writable)
		snprintf(err, errlen,
			 "%s is mounted read-only by %s: unmount it first (fusermount3 -u %s), or "
			 "mount this one with -o ro too",
			 lunname, other, known ? where : "MOUNTPOINT");
	else
		snprintf(err, errlen,
			 "%s is mounted writable by %s, whose cache a read-only mount would not "
			 "see: unmount it first (fusermount3 -u %s)",
			 lunname, other, known ? where : "MOUNTPOINT");
	return -EBUSY;
}

int lunlock_take(const char *target, const struct lun_info *info, bool writable, const char *url,
		 const char *mountpoint, char *err, size_t errlen)
{
	char key[KEY_MAX], stem[STEM_MAX + 24], name[STEM_MAX + 40];
	key_of(target, info, key, sizeof(key));
	stem_of(key, stem, sizeof(stem));
	for (int i = 0; i < nheld; i++)
		if (strcmp(held[i].stem, stem) == 0)
			return 0; /* the same LUN twice in this mount: already ours */
	if (lock_dir() < 0)
		return 0;
	struct held *nh = realloc(held, sizeof(*held) * (size_t)(nheld + 1));
	if (!nh)
		return -ENOMEM;
	held = nh;
	snprintf(name, sizeof(name), "%s.lock", stem);
	int fd = openat(lockdir, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_warn("cannot open the lock file %s (%m): mounting %s LUN %s without its lock",
			 name, target, LUNSTR(info->lun));
		return 0;
	}
	struct flock fl = { .l_type = writable ? F_WRLCK : F_RDLCK, .l_whence = SEEK_SET };
	for (int tries = 0;; tries++) {
		if (fcntl(fd, F_SETLK, &fl) == 0)
			break;
		if (errno != EAGAIN && errno != EACCES) {
			log_warn("cannot lock %s (%m): mounting %s LUN %s without its lock", name,
				 target, LUNSTR(info->lun));
			close(fd);
			return 0;
		}
		struct flock q = fl;
		if (fcntl(fd, F_GETLK, &q) == 0 && q.l_type != F_UNLCK) {
			close(fd);
			return refuse(target, info, stem, q.l_pid, writable, err, errlen);
		}
		if (tries == 5) { /* the holder keeps changing: name none */
			close(fd);
			snprintf(err, errlen,
				 "LUN %s of %s is in use by another iscsifs on this host "
				 "(lock %s): unmount it first",
				 LUNSTR(info->lun), target, name);
			return -EBUSY;
		}
	}
	if (writable)
		notes_clean(stem);
	note_write(stem, writable, url, mountpoint, key);
	snprintf(held[nheld].stem, sizeof(held[nheld].stem), "%s", stem);
	held[nheld++].fd = fd;
	log_debug("%s LUN %s: %s lock %s", target, LUNSTR(info->lun),
		  writable ? "exclusive" : "shared", name);
	return 0;
}

void lunlock_release_all(void)
{
	char name[STEM_MAX + 40];
	for (int i = 0; i < nheld; i++) {
		snprintf(name, sizeof(name), "%s.%d", held[i].stem, (int)getpid());
		unlinkat(lockdir, name, 0);
		close(held[i].fd); /* drops the lock */
	}
	free(held);
	held = NULL;
	nheld = 0;
}
