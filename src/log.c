/*
 * log.c - the daemon's log lines: stderr (with timestamps, or systemd's <N> priority
 * prefixes under the journal), syslog, or a file (log.h).
 *
 * NOTES ON THE THREAD MODEL
 *   Every thread logs. `dest` and `fd` are published with atomic stores (release) and
 *   read with atomic loads (acquire); a file descriptor, once published, is never
 *   closed (the process exits with it). Everything else is set before threads exist.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "iscsifs/log.h"

enum dest { DEST_STDERR, DEST_SYSLOG, DEST_FILE };

static bool log_debug_on;              /* set before threads start */
static enum config_log_to log_to;      /* what -o log= asked for; likewise */
static _Atomic int dest = DEST_STDERR; /* where lines go now */
static _Atomic int file_fd = -1;       /* DEST_FILE */
static bool journal;                   /* stderr is systemd's journal stream */

static const char *const level_names[] = { "emerg",   "alert",  "crit", "error",
					   "warning", "notice", "info", "debug" };

/* JOURNAL_STREAM=DEV:INODE names the journal's socket; it is ours only while stderr is
 * that very socket (a child that redirected stderr must not use prefixes). */
static bool stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat sb;

	if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &sb) < 0)
		return false;
	return (unsigned long long)sb.st_dev == dev && (unsigned long long)sb.st_ino == ino;
}

void log_init(bool debug)
{
	log_debug_on = debug;
	journal = stderr_is_journal();
}

bool log_debug_enabled(void)
{
	return log_debug_on;
}

static int open_file(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);

	if (fd < 0) {
		int e = errno;
		if (err)
			snprintf(err, errlen, "cannot open log file %s: %s: check -o log=", path,
				 strerror(e));
		return -e;
	}
	atomic_store(&file_fd, fd);
	atomic_store(&dest, DEST_FILE);
	return 0;
}

int log_configure(const struct config *cfg, char *err, size_t errlen)
{
	log_to = cfg->log_to;
	switch (cfg->log_to) {
	case CONFIG_LOG_FILE:
		return open_file(cfg->log_file, err, errlen);
	case CONFIG_LOG_SYSLOG:
		openlog("iscsifs", LOG_PID, LOG_DAEMON);
		atomic_store(&dest, DEST_SYSLOG);
		return 0;
	default:
		return 0;
	}
}

static int mkdir_p(char *path)
{
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0700) < 0 && errno != EEXIST) {
			*p = '/';
			return -errno;
		}
		*p = '/';
	}
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int log_fallback_path(const char *mountpoint, char *out, size_t outlen)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR"), *state = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");
	char dir[4096], name[256];
	struct stat sb;
	size_t k = 0;
	int r;

	if (xdg && xdg[0] == '/' && stat(xdg, &sb) == 0 && sb.st_uid == geteuid())
		snprintf(dir, sizeof dir, "%s/iscsifs", xdg);
	else if (geteuid() == 0)
		snprintf(dir, sizeof dir, "/run/iscsifs");
	else if (state && state[0] == '/')
		snprintf(dir, sizeof dir, "%s/iscsifs", state);
	else if (home && home[0] == '/')
		snprintf(dir, sizeof dir, "%s/.local/state/iscsifs", home);
	else
		snprintf(dir, sizeof dir, "/tmp/iscsifs-%u", (unsigned)geteuid());
	r = mkdir_p(dir);
	if (r < 0)
		return r;
	/* "/mnt/san" -> "mnt-san" (as systemd names mount units, without its escapes) */
	for (const char *p = mountpoint; *p && k + 5 < sizeof name; p++) {
		if (*p == '/' && (k == 0 || name[k - 1] == '-'))
			continue;
		name[k++] = *p == '/' ? '-' : *p;
	}
	while (k > 0 && name[k - 1] == '-')
		k--;
	if (k == 0)
		name[k++] = '-';
	name[k] = '\0';
	r = snprintf(out, outlen, "%s/%s.log", dir, name);
	return r < 0 || (size_t)r >= outlen ? -ENAMETOOLONG : 0;
}

/* Is there a syslog daemon? /dev/log is its socket. */
static bool have_syslog(void)
{
	struct stat sb;
	return stat("/dev/log", &sb) == 0 && S_ISSOCK(sb.st_mode);
}

bool log_detach(const char *mountpoint)
{
	char path[4200];

	switch (log_to) {
	case CONFIG_LOG_STDERR:
		return true;
	case CONFIG_LOG_AUTO:
		break;
	default:
		return false; /* already a file or syslog */
	}
	if (have_syslog()) {
		openlog("iscsifs", LOG_PID, LOG_DAEMON);
		atomic_store(&dest, DEST_SYSLOG);
		return false;
	}
	if (log_fallback_path(mountpoint, path, sizeof path) < 0 || open_file(path, NULL, 0) < 0) {
		fprintf(stderr,
			"iscsifs: no syslog (/dev/log) and no log file could be "
			"created (%s): the log of this mount is lost; use -o log=FILE\n",
			path);
		return false;
	}
	fprintf(stderr, "iscsifs: no syslog (/dev/log): logging to %s\n", path);
	return false;
}

void log_msg(int level, const char *fmt, ...)
{
	char buf[1280];
	va_list ap;
	int d = atomic_load(&dest), n = 0;

	if (level == LOG_DEBUG && !log_debug_on)
		return;
	level &= 7;
	va_start(ap, fmt);
	if (d == DEST_SYSLOG) {
		vsnprintf(buf, sizeof(buf), fmt, ap);
		va_end(ap);
		syslog(level, "%s", buf);
		return;
	}
	if (d == DEST_STDERR && journal) {
		n = snprintf(buf, sizeof buf, "<%d>iscsifs: ", level);
	} else {
		struct timeval tv;
		struct tm tm;

		gettimeofday(&tv, NULL);
		localtime_r(&tv.tv_sec, &tm);
		n = (int)strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
		n += snprintf(buf + n, sizeof buf - (size_t)n, ".%03d iscsifs: %s%s",
			      (int)(tv.tv_usec / 1000),
			      level <= LOG_WARNING ? level_names[level] : "",
			      level <= LOG_WARNING ? ": " : "");
	}
	if (n < 0 || (size_t)n >= sizeof buf)
		n = 0;
	vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len = strlen(buf);
	buf[len++] = '\n';
	ssize_t w = write(d == DEST_FILE ? atomic_load(&file_fd) : STDERR_FILENO, buf, len);
	(void)w;
}
